"""Judges and reward models on tiny random models built offline: every reward equals the formula applied by hand
to the model's raw logits on the exact same, unpadded input."""

from __future__ import annotations

import pytest
import torch

from polyreward.rewards.judges import (
    JudgeError,
    clear_judge_cache,
    expected_score,
    judge_reward,
    label_probabilities,
    pairwise_win_probability,
    reward_model_reward,
)
from tests.tiny_models import llama_config, word_tokenizer

WORDS = [
    *("<pad>", "<unk>", "<s>", "</s>"),
    *("1", "2", "3", "4", "5", "A", "B", "Yes", "No", "user", "assistant", "judge", "score", "check", "verdict"),
    *("the", "cat", "dog", "sat", "on", "mat", "good", "bad", "answer", "is", "a", "red", "blue", ":", "?"),
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant {% endif %}"
)
PROMPTS = ["the cat", "is the dog red ?", "a", "the mat is blue", "dog"]
COMPLETIONS = ["good answer", "the cat sat on the mat", "bad", "red red blue", "a dog is a dog is a dog"]
TEMPLATE = "judge {prompt} : {response}"
PAIR_TEMPLATE = "judge {prompt} : A {response_a} B {response_b}"


def _tokenizer(chat: bool = False):
    return word_tokenizer(WORDS, CHAT_TEMPLATE if chat else None)


def _config(**extra):
    # a large initializer_range gives sharper next-token distributions than the default 0.02
    return llama_config(len(WORDS), initializer_range=0.5, **extra)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Saved tiny models: Llama causal LM (plain and chat tokenizer), GPT-2 causal LM, 1-logit RM, 3-label RM."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    out = {"lm": LlamaForCausalLM(_config()).eval()}
    out["rm1"] = LlamaForSequenceClassification(_config(num_labels=1)).eval()
    out["rm3"] = LlamaForSequenceClassification(
        _config(num_labels=3, id2label={0: "bad", 1: "ok", 2: "good"}, label2id={"bad": 0, "ok": 1, "good": 2})
    ).eval()
    for key, chat in (("lm", False), ("lm", True), ("rm1", False), ("rm3", True)):
        path = tmp_path_factory.mktemp(f"tiny-{key}{'-chat' if chat else ''}")
        out[key].save_pretrained(path)
        _tokenizer(chat).save_pretrained(path)
        out[f"{key}_path{'_chat' if chat else ''}"] = path
    # GPT-2 has absolute position embeddings: left padding is only harmless with position ids from the mask.
    out["gpt2"] = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(WORDS), n_embd=32, n_layer=2, n_head=2, n_positions=512, initializer_range=0.5)
    ).eval()
    out["gpt2_path"] = tmp_path_factory.mktemp("tiny-gpt2")
    out["gpt2"].save_pretrained(out["gpt2_path"])
    _tokenizer().save_pretrained(out["gpt2_path"])
    out["tok"], out["chat_tok"] = _tokenizer(), _tokenizer(chat=True)
    yield out
    clear_judge_cache()


def _raw_next_probs(model, tok, text: str, add_special: bool = True) -> torch.Tensor:
    """Full-vocabulary next-token probabilities after ``text``: one unpadded sequence, no mask, no position ids."""
    ids = torch.tensor([tok(text, add_special_tokens=add_special)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1].softmax(-1)


def _over(probs: torch.Tensor, tok, labels) -> torch.Tensor:
    """Renormalize full-vocabulary probabilities over the given label tokens."""
    p = probs[tok.convert_tokens_to_ids(list(labels))]
    return p / p.sum()


# ---------------------------------------------------------------- pure math


def test_pure_formulas_hand_numbers():
    assert expected_score(torch.tensor([[0.0, 0, 1, 0, 0], [0.5, 0, 0, 0, 0.5], [0, 0, 0, 0, 1.0]])).tolist() == [
        0.5,
        0.5,
        1.0,
    ]
    assert expected_score(torch.tensor([[0.2, 0.8]])).item() == pytest.approx(0.8)
    win = pairwise_win_probability(torch.tensor([0.8, 0.1]), torch.tensor([0.6, 0.3]))
    assert win.tolist() == pytest.approx([0.7, 0.2])
    assert pairwise_win_probability(torch.tensor([0.8]), torch.tensor([0.6]), centered=True).item() == pytest.approx(0.2)
    # A label spelled by two tokens gets the sum of both; normalization is over the label tokens only.
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    assert label_probabilities(logits, [[0, 1], [3]]).tolist()[0] == pytest.approx([0.3 / 0.7, 0.4 / 0.7])


# ---------------------------------------------------------------- generative judge vs raw logits


def test_score_equals_expectation_from_raw_logits(tiny):
    fn = judge_reward(tiny["lm_path"], mode="score", template=TEMPLATE, answer_prefix="score :")
    got = fn(PROMPTS, COMPLETIONS)
    for p, c, value in zip(PROMPTS, COMPLETIONS, got, strict=True):
        probs = _over(_raw_next_probs(tiny["lm"], tiny["tok"], f"judge {p} : {c}\nscore :"), tiny["tok"], "12345")
        assert value == pytest.approx(float((probs * torch.tensor([0, 0.25, 0.5, 0.75, 1])).sum()), abs=1e-5)
    assert len(set(got)) == len(got)  # the judge actually looks at the input


def test_verdict_and_custom_labels_from_raw_logits(tiny):
    fn = judge_reward(tiny["lm_path"], mode="verdict", template=TEMPLATE, answer_prefix="verdict :")
    three = judge_reward(tiny["lm_path"], mode="score", labels=["bad", "good", "A"], template=TEMPLATE, answer_prefix="")
    for p, c, yes, tri in zip(PROMPTS, COMPLETIONS, fn(PROMPTS, COMPLETIONS), three(PROMPTS, COMPLETIONS), strict=True):
        probs = _raw_next_probs(tiny["lm"], tiny["tok"], f"judge {p} : {c}\nverdict :")
        assert yes == pytest.approx(float(_over(probs, tiny["tok"], ["Yes", "No"])[0]), abs=1e-5)
        q = _over(_raw_next_probs(tiny["lm"], tiny["tok"], f"judge {p} : {c}\n"), tiny["tok"], ["bad", "good", "A"])
        assert tri == pytest.approx(float(q[1] * 0.5 + q[2]), abs=1e-5)


def test_pairwise_averages_both_orderings(tiny):
    refs = ["the mat", None, "good answer", "bad", "dog"]
    kw = {"template": PAIR_TEMPLATE, "answer_prefix": "verdict :"}
    fn = judge_reward(tiny["lm_path"], mode="pairwise", **kw)
    centered = judge_reward(tiny["lm_path"], mode="pairwise", centered=True, **kw)
    got, got_c = fn(PROMPTS, COMPLETIONS, reference=refs), centered(PROMPTS, COMPLETIONS, reference=refs)
    assert got[1] is None and got_c[1] is None  # no reference: not applicable
    for p, c, ref, value, value_c in zip(PROMPTS, COMPLETIONS, refs, got, got_c, strict=True):
        if ref is None:
            continue
        first = _raw_next_probs(tiny["lm"], tiny["tok"], f"judge {p} : A {c} B {ref}\nverdict :")
        second = _raw_next_probs(tiny["lm"], tiny["tok"], f"judge {p} : A {ref} B {c}\nverdict :")
        p_first = float(_over(first, tiny["tok"], "AB")[0])  # response shown first, judge says A
        p_second = float(_over(second, tiny["tok"], "AB")[1])  # response shown second, judge says B
        assert p_first != pytest.approx(p_second, abs=1e-4)  # the two orderings really differ here
        assert value == pytest.approx((p_first + p_second) / 2, abs=1e-5)
        assert value_c == pytest.approx(value - 0.5, abs=1e-6)


def test_pairwise_needs_the_reference_column(tiny):
    fn = judge_reward(tiny["lm_path"], mode="pairwise")
    with pytest.raises(JudgeError, match="'reference' column"):
        fn(PROMPTS[:2], COMPLETIONS[:2])
    with pytest.raises(JudgeError, match="1 'reference' values for 2 completions"):
        fn(PROMPTS[:2], COMPLETIONS[:2], reference=["a"])
    other = judge_reward(tiny["lm_path"], mode="pairwise", reference_column="anchor")
    assert other(["a"], ["b"], anchor=[None]) == [None]


def test_rethink_two_passes_match_manual_generation(tiny):
    kw = {"analysis_template": "judge {prompt} : {response}", "recheck_template": "check", "answer_prefix": "score :"}
    fn = judge_reward(tiny["lm_path"], mode="score", rethink=True, max_new_tokens=4, **kw)
    assert fn.__name__.endswith("_score_rethink")
    got = fn(PROMPTS, COMPLETIONS)
    model, tok = tiny["lm"], tiny["tok"]
    analyses = []
    for p, c, value in zip(PROMPTS, COMPLETIONS, got, strict=True):
        first = f"judge {p} : {c}\n"
        ids = torch.tensor([tok(first)["input_ids"]])
        with torch.no_grad():
            out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=3)
        analysis = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()
        analyses.append(analysis)
        probs = _over(_raw_next_probs(model, tok, f"{first}{analysis}\ncheck\nscore :"), tok, "12345")
        assert value == pytest.approx(float((probs * torch.linspace(0, 1, 5)).sum()), abs=1e-5)
    assert any(analyses)  # pass 1 produced text that pass 2 conditioned on


def test_chat_template_and_message_prompts(tiny):
    fn = judge_reward(tiny["lm_path_chat"], mode="verdict", template=TEMPLATE, answer_prefix="verdict :")
    prompts = [[{"role": "system", "content": "a"}, {"role": "user", "content": "the cat"}], "dog"]
    completions = [[{"role": "assistant", "content": "good answer"}], "bad"]
    got = fn(prompts, completions)
    transcripts = ["System: a\n\nUser: the cat", "dog"]
    for transcript, c, value in zip(transcripts, ["good answer", "bad"], got, strict=True):
        text = f"<s> user judge {transcript} : {c} </s> <s> assistant verdict :"
        probs = _raw_next_probs(tiny["lm"], tiny["chat_tok"], text, add_special=False)
        assert value == pytest.approx(float(_over(probs, tiny["chat_tok"], ["Yes", "No"])[0]), abs=1e-5)
    plain = judge_reward(
        tiny["lm_path_chat"], mode="verdict", template=TEMPLATE, answer_prefix="verdict :", use_chat_template=False
    )
    assert plain(prompts, completions) != pytest.approx(got, abs=1e-6)


@pytest.mark.parametrize(("mode", "rethink"), [("score", False), ("verdict", True), ("pairwise", False), ("pairwise", True)])
def test_batch_equals_one_by_one(tiny, mode, rethink):
    """Left padding + position ids: a padded batch gives what each sample gives alone."""
    kw = {"mode": mode, "rethink": rethink, "max_new_tokens": 3}
    batched = judge_reward(tiny["lm_path"], batch_size=8, **kw)
    single = judge_reward(tiny["lm_path"], batch_size=1, **kw)
    refs = {"reference": ["the mat", "bad", "good answer", None, "a"]} if mode == "pairwise" else {}
    got = batched(PROMPTS, COMPLETIONS, **refs)
    one_by_one = [
        single([p], [c], **{k: [v[i]] for k, v in refs.items()})[0]
        for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS, strict=True))
    ]
    assert got == pytest.approx(one_by_one, abs=1e-5)
    assert single(PROMPTS, COMPLETIONS, **refs) == pytest.approx(got, abs=1e-5)


def test_absolute_positions_batch_equals_one_by_one(tiny):
    batched = judge_reward(tiny["gpt2_path"], mode="score", batch_size=8)
    single = judge_reward(tiny["gpt2_path"], mode="score", batch_size=1)
    got = batched(PROMPTS, COMPLETIONS)
    assert got == pytest.approx([single([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)], abs=1e-5)
    probs = _over(
        _raw_next_probs(tiny["gpt2"], tiny["tok"], f"judge {PROMPTS[0]} : {COMPLETIONS[0]}\nscore :"), tiny["tok"], "12345"
    )
    raw = judge_reward(tiny["gpt2_path"], template=TEMPLATE, answer_prefix="score :")(PROMPTS, COMPLETIONS)[0]
    assert raw == pytest.approx(float((probs * torch.linspace(0, 1, 5)).sum()), abs=1e-5)


# ---------------------------------------------------------------- names, sharing, errors


def test_names_and_a_shared_model(tiny):
    path = tiny["lm_path"]
    score, pair = judge_reward(path), judge_reward(path, mode="pairwise", rethink=True)
    named = judge_reward(path, mode="verdict", name="helpful")
    assert score.__name__ == f"{path.name}_score" and pair.__name__ == f"{path.name}_pairwise_rethink"
    assert named.__name__ == "helpful"
    assert score.model is pair.model is named.model  # one load per path
    assert judge_reward(str(path) + "/").model is score.model
    loaded = judge_reward(tiny["lm"], tiny["tok"], mode="verdict")
    assert loaded.model is tiny["lm"] and loaded.__name__ == "LlamaForCausalLM_verdict"


def test_loaded_model_keeps_its_training_mode(tiny):
    model = tiny["lm"]
    fn = judge_reward(model, tiny["tok"], mode="verdict", template=TEMPLATE, answer_prefix="verdict :")
    model.train()
    try:
        value = fn(["the cat"], ["good"])[0]
        assert model.training
    finally:
        model.eval()
    expected = _over(_raw_next_probs(model, tiny["tok"], "judge the cat : good\nverdict :"), tiny["tok"], ["Yes", "No"])
    assert value == pytest.approx(float(expected[0]), abs=1e-5)


def test_errors_name_the_sample(tiny, monkeypatch):
    fn = judge_reward(tiny["lm_path"], mode="score", batch_size=4)
    with pytest.raises(JudgeError, match="sample 1") as info:
        fn(["a", "b", "c"], ["ok", 42, "ok"])
    assert info.value.sample == 1
    with pytest.raises(JudgeError, match="sample 0.*KeyError"):
        judge_reward(tiny["lm_path"], template="{nope}")(["a"], ["b"])
    with pytest.raises(JudgeError, match="sample 1.*KeyError"):
        judge_reward(tiny["lm_path"], mode="pairwise", rethink=True, recheck_template="{nope}")(
            ["a", "b"], ["c", "d"], reference=[None, "e"]
        )
    # A model failure inside a batch is traced to the sample that causes it.
    model, red = fn.model, tiny["tok"].convert_tokens_to_ids("red")
    forward = model.forward

    def fragile(input_ids=None, **kwargs):
        if (input_ids == red).any():
            raise RuntimeError("boom")
        return forward(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "forward", fragile)
    with pytest.raises(JudgeError, match="sample 2.*boom"):
        fn(["a", "b", "is the dog red ?", "c"], ["x", "y", "z", "w"])


def test_config_errors(tiny):
    path = tiny["lm_path"]
    with pytest.raises(ValueError, match="max_score must be in 2..9"):
        judge_reward(path, max_score=10)
    with pytest.raises(ValueError, match="'zebra' is not one known token"):
        judge_reward(path, mode="verdict", labels=["Yes", "zebra"])
    with pytest.raises(ValueError, match="exactly 2 labels"):
        judge_reward(path, mode="pairwise", labels=["A", "B", "Yes"])
    with pytest.raises(ValueError, match="centered=True only applies"):
        judge_reward(path, centered=True)
    with pytest.raises(ValueError, match="mode must be"):
        judge_reward(path, mode="likert")
    with pytest.raises(ValueError, match="needs its tokenizer"):
        judge_reward(torch.nn.Linear(1, 1))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        judge_reward("HuggingFaceTB/SmolLM2-135M-Instruct")


# ---------------------------------------------------------------- sequence-classification reward models


def _raw_rm_logits(model, tok, text: str, add_special: bool = True) -> torch.Tensor:
    ids = torch.tensor([tok(text, add_special_tokens=add_special)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits[0]


def test_single_logit_reward_model(tiny):
    logit = reward_model_reward(tiny["rm1_path"], template="{prompt} : {response}", batch_size=2)
    prob = reward_model_reward(tiny["rm1_path"], template="{prompt} : {response}", output="sigmoid", shift=0.5, scale=2.0)
    assert logit.__name__ == f"{tiny['rm1_path'].name}_rm"
    for p, c, a, b in zip(PROMPTS, COMPLETIONS, logit(PROMPTS, COMPLETIONS), prob(PROMPTS, COMPLETIONS), strict=True):
        value = _raw_rm_logits(tiny["rm1"], tiny["tok"], f"{p} : {c}")[0]
        assert a == pytest.approx(float(value), abs=1e-5)
        assert b == pytest.approx((float(value.sigmoid()) - 0.5) / 2.0, abs=1e-5)
    one_by_one = [
        reward_model_reward(tiny["rm1_path"], batch_size=1)([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS, strict=True)
    ]
    assert reward_model_reward(tiny["rm1_path"], batch_size=8)(PROMPTS, COMPLETIONS) == pytest.approx(one_by_one, abs=1e-5)


def test_multi_label_reward_model_with_chat_template(tiny):
    with pytest.raises(ValueError, match="pass label="):
        reward_model_reward(tiny["rm3_path_chat"])
    with pytest.raises(ValueError, match="not one of the model's labels"):
        reward_model_reward(tiny["rm3_path_chat"], label="great")
    good = reward_model_reward(tiny["rm3_path_chat"], label="good", output="prob")
    assert good.__name__ == f"{tiny['rm3_path_chat'].name}_rm_good"
    prompts = ["the cat", [{"role": "user", "content": "is the dog red ?"}]]
    completions = ["good answer", [{"role": "assistant", "content": "a dog"}]]
    got = good(prompts, completions)
    texts = [
        "<s> user the cat </s> <s> assistant good answer </s> ",
        "<s> user is the dog red ? </s> <s> assistant a dog </s> ",
    ]
    for text, value in zip(texts, got, strict=True):
        logits = _raw_rm_logits(tiny["rm3"], tiny["chat_tok"], text, add_special=False)
        assert value == pytest.approx(float(logits.softmax(-1)[2]), abs=1e-5)
    assert reward_model_reward(tiny["rm3_path_chat"], label=2).model is good.model


def test_reward_model_error_names_the_sample(tiny):
    fn = reward_model_reward(tiny["rm1_path"])
    with pytest.raises(JudgeError, match="sample 2"):
        fn(["a", "b", "c"], ["x", "y", None])
