"""Multi-turn tool rollouts: exact token spans per turn, tool tokens attended but not trained, dual-level training."""

import json

import pytest
import torch

from polyreward.lm import multiturn
from polyreward.lm.model import load_policy
from polyreward.lm.multiturn import ToolEnvironment, sample_with_tools, turn_advantages_to_tokens
from polyreward.lm.rollout import Rollout
from polyreward.lm.trainer import Trainer

from .tiny_lm import make_chatml_model, tiny_config


def add(a, b):
    return a + b


def fails():
    raise RuntimeError("tool broke")


def test_environment_answers_calls_and_reports_mistakes():
    env = ToolEnvironment.of(add, fails)
    assert env.respond("no tools here") == (None, 0)
    reply, count = env.respond('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>')
    assert (reply, count) == ("<tool_response>5</tool_response>", 1)
    reply, count = env.respond(
        '<tool_call>{"name": "mul", "arguments": {}}</tool_call><tool_call>{bad</tool_call>'
        '<tool_call>{"name": "fails"}</tool_call>'
    )
    assert count == 3
    assert "unknown tool 'mul'; available: ['add', 'fails']" in reply
    assert "malformed tool call (JSONDecodeError" in reply and "error: RuntimeError: tool broke" in reply


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    return make_chatml_model(tmp_path_factory.mktemp("chatml") / "model")


class ScriptedSampler:
    """Stands in for ``sample_group``: "samples" scripted assistant texts (``script[row][turn]``) + EOS."""

    def __init__(self, script, max_turns):
        self.script, self.max_turns = script, max_turns
        self.active, self.turn, self.prefixes = list(range(len(script))), 0, []

    def __call__(self, model, tok, prompt_ids, group_size, max_new_tokens, *args):
        assert len(prompt_ids) == len(self.active) and group_size == 1
        self.prefixes.append([list(p) for p in prompt_ids])
        texts = [self.script[row][self.turn] for row in self.active]
        encoded = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
        width = max(len(e) for e in encoded)
        ids = torch.full((len(texts), width), tok.pad_token_id)
        mask = torch.zeros((len(texts), width), dtype=torch.bool)
        for i, e in enumerate(encoded):
            ids[i, : len(e)], mask[i, : len(e)] = torch.tensor(e), True
        self.active = [
            r for r, t in zip(self.active, texts, strict=True) if "<tool_call>" in t and self.turn < self.max_turns - 1
        ]
        self.turn += 1
        one = torch.ones(len(texts), 1, dtype=torch.bool)
        return Rollout(torch.zeros(len(texts), 1, dtype=torch.long), one, ids, mask, texts, 1)


CALL = '<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
SCRIPT = [[CALL, "<answer>5</answer>"], ["<answer>6</answer>"], [CALL, CALL, "<answer>5</answer>"], [CALL, CALL, CALL]]
TOOL_MESSAGE = "\n<|im_start|>tool\n<tool_response>5</tool_response><|im_end|>\n<|im_start|>assistant\n"


def test_turns_are_exact_token_spans_and_tool_tokens_are_attended_not_trained(chatml, monkeypatch):
    model, tokenizer = load_policy(str(chatml))
    sampler = ScriptedSampler(SCRIPT, max_turns=3)
    monkeypatch.setattr(multiturn, "sample_group", sampler)
    env = ToolEnvironment.of(add, max_turns=3)
    rollout = sample_with_tools(model, tokenizer, ["What is 2 + 3?", "What is 3 + 3?"], 2, env, 16)
    assert rollout.turns == SCRIPT
    assert rollout.tool_calls.tolist() == [1, 0, 2, 3]  # calls made; the last turn's call gets no answer
    for row, turns in enumerate(rollout.turns):
        for t, text in enumerate(turns):
            ids = rollout.completion_ids[row][rollout.token_turn[row] == t]
            assert tokenizer.decode(ids) == text + tokenizer.eos_token  # the sampled tokens, untouched
        tool_ids = rollout.completion_ids[row][rollout.attention[row] & (rollout.token_turn[row] < 0)]
        answered = min(rollout.tool_calls[row].item(), 2)
        assert tokenizer.decode(tool_ids) == TOOL_MESSAGE * answered
    assert torch.equal(rollout.completion_mask, rollout.token_turn >= 0)
    # row 0's second turn was sampled from: prompt + its first turn + the tool message, token for token
    second_prefix = sampler.prefixes[1][0]
    assert tokenizer.decode(second_prefix).endswith(CALL + tokenizer.eos_token + TOOL_MESSAGE)


def test_turn_advantages_spread_over_their_tokens():
    adv = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    token_turn = torch.tensor([[0, 0, -1, 1, -1], [0, -1, -1, -1, -1]])
    assert turn_advantages_to_tokens(adv, token_turn).tolist() == [[1, 1, 0, -2, 0], [0.5, 0, 0, 0, 0]]


def correct(prompts, completions, **kwargs):
    return [1.0 if "<answer>5</answer>" in c else 0.0 for c in completions]


def tool_count_seen(prompts, completions, tool_calls, **kwargs):
    return [float(n) for n in tool_calls]


def per_turn(prompts, completions, turns, **kwargs):
    return [[1.0 if "answer>5" in t else 0.25 for t in ts] for ts in turns]


def test_trainer_with_tools_trains_on_per_turn_dual_level_advantages(chatml, monkeypatch, tmp_path):
    model, tokenizer = load_policy(str(chatml))
    config = tiny_config(
        tmp_path / "run",
        chatml,
        steps=1,
        prompts_per_step=2,
        group_size=2,
        estimator="dual_level",
        save_every=0,
        max_new_tokens=16,
    )
    monkeypatch.setattr(multiturn, "sample_group", ScriptedSampler(SCRIPT, max_turns=3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(
        model,
        tokenizer,
        [correct, tool_count_seen],
        [{"prompt": "What is 2 + 3?"}] * 2,
        config,
        tools=ToolEnvironment.of(add, max_turns=3),
        turn_reward=per_turn,
    )
    metrics = trainer.step()
    assert metrics["reward/tool_count_seen/mean"] == pytest.approx((1 + 0 + 2 + 3) / 4)
    assert metrics["loss/grad_norm"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert json.dumps(trainer._last_samples)  # samples stay serializable
