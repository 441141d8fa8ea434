"""polyreward's GRPO step vs TRL 1.16 GRPOTrainer, same model, prompts, rewards and settings.

SmolLM2-135M-Instruct, 4 prompts x G = 4 completions per step, up to 32 new tokens, CPU. Both
trainers run ``STEPS`` optimizer steps after one warm-up step; the reported rate is completions
per second (and completion tokens per second, since sampled lengths differ between runs).
The "model's own work" reference times one HF ``generate`` of 16 x 32 tokens plus one forward
and backward pass on the same 16 sequences: the floor any trainer pays.

    .venv/bin/python benchmarks/lm_step_speed.py [--dtype float32|bfloat16] [--steps 5]
writes results/lm_step_speed_<dtype>.json and .png.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from polyreward.lm.config import TrainConfig
from polyreward.lm.model import load_policy
from polyreward.lm.rollout import encode_prompts, left_pad
from polyreward.lm.tasks import answer_format, arithmetic_rows, brevity, correct
from polyreward.lm.trainer import Trainer

OUT = Path(__file__).parent / "results"
PROMPTS, G, NEW_TOKENS, LR, MICRO = 4, 4, 32, 1e-5, 8  # micro-batches of 8: what results/ were measured with


def polyreward_steps(dtype: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        config = TrainConfig(
            dtype=dtype,
            steps=steps + 1,
            save_every=0,
            output_dir=run_dir,
            prompts_per_step=PROMPTS,
            group_size=G,
            max_new_tokens=NEW_TOKENS,
            learning_rate=LR,
            estimator="grpo",
            samples_to_log=0,
            micro_batch_size=MICRO,
        )
        model, tokenizer = load_policy(config.model, dtype)
        trainer = Trainer(model, tokenizer, [correct, answer_format, brevity], arithmetic_rows(200, 0), config)
        records = [trainer.step() for _ in range(steps + 1)][1:]  # drop the warm-up step
    keys = ("time/step_s", "time/sample_s", "time/reward_s", "time/optimize_s", "completion_tokens/mean")
    summary = {k: statistics.mean(r[k] for r in records) for k in keys}
    summary["samples_per_s"] = PROMPTS * G / summary["time/step_s"]
    summary["tokens_per_s"] = PROMPTS * G * summary["completion_tokens/mean"] / summary["time/step_s"]
    return summary


def trl_steps(dtype: str, steps: int) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    times: list[float] = []
    lengths: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    rows = arithmetic_rows(200, 0)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "answer": r["answer"]} for r in rows])
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = GRPOConfig(
            output_dir=out,
            use_cpu=True,
            bf16=dtype == "bfloat16",
            per_device_train_batch_size=PROMPTS * G,
            num_generations=G,
            max_completion_length=NEW_TOKENS,
            learning_rate=LR,
            max_steps=steps + 1,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            beta=0.0,
            seed=0,
        )
        model, tokenizer = load_policy("smollm2-135m", dtype)
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=[correct, answer_format, brevity],
            args=args,
            train_dataset=dataset,
            callbacks=[Clock()],
        )
        start = time.perf_counter()
        trainer.train()
        times.append(time.perf_counter())
    step_times = [b - a for a, b in itertools.pairwise(times[1:])]  # skip the warm-up step
    step_s = statistics.mean(step_times)
    mean_len = statistics.mean(lengths[1:]) if len(lengths) > 1 else float("nan")
    return {
        "time/step_s": step_s,
        "samples_per_s": PROMPTS * G / step_s,
        "completion_tokens/mean": mean_len,
        "tokens_per_s": PROMPTS * G * mean_len / step_s,
        "total_s": times[-1] - start,
    }


def model_floor(dtype: str) -> dict:
    """One generate of 16 x 32 new tokens + one forward/backward on the same sequences."""
    model, tokenizer = load_policy("smollm2-135m", dtype)
    rows = arithmetic_rows(PROMPTS, 0)
    ids, mask = left_pad(encode_prompts(tokenizer, [r["prompt"] for r in rows]), tokenizer.pad_token_id)
    model.eval()
    with torch.no_grad():
        model.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=4, num_return_sequences=G)
        start = time.perf_counter()
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            num_return_sequences=G,
            pad_token_id=tokenizer.pad_token_id,
        )
        generate_s = time.perf_counter() - start
    model.train()
    full_mask = torch.cat([mask.repeat_interleave(G, 0), torch.ones(out.shape[0], NEW_TOKENS, dtype=torch.bool)], 1)
    start = time.perf_counter()
    logits = model(input_ids=out, attention_mask=full_mask, logits_to_keep=NEW_TOKENS + 1).logits
    logits.float().logsumexp(-1).mean().backward()
    backward_s = time.perf_counter() - start
    return {"generate_s": generate_s, "forward_backward_s": backward_s, "total_s": generate_s + backward_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    floor = model_floor(args.dtype)
    ours = polyreward_steps(args.dtype, args.steps)
    theirs = trl_steps(args.dtype, args.steps)
    report = {
        "setup": {
            "model": "SmolLM2-135M-Instruct",
            "dtype": args.dtype,
            "prompts_per_step": PROMPTS,
            "group_size": G,
            "max_new_tokens": NEW_TOKENS,
            "steps_timed": args.steps,
            "threads": 2,
            "torch": torch.__version__,
            "machine": platform.machine(),
        },
        "model_floor": floor,
        "polyreward": ours,
        "trl": theirs,
        "ratio_samples_per_s": ours["samples_per_s"] / theirs["samples_per_s"],
        "ratio_tokens_per_s": ours["tokens_per_s"] / theirs["tokens_per_s"],
        "polyreward_step_over_floor": ours["time/step_s"] / floor["total_s"],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"lm_step_speed_{args.dtype}.json").write_text(json.dumps(report, indent=2))
    plot(report, OUT / f"lm_step_speed_{args.dtype}.png")
    print(json.dumps({k: report[k] for k in ("ratio_samples_per_s", "ratio_tokens_per_s", "polyreward_step_over_floor")}))


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, floor = report["polyreward"], report["model_floor"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(
        ["polyreward", "TRL 1.16"], [ours["samples_per_s"], report["trl"]["samples_per_s"]], color=["tab:blue", "tab:gray"]
    )
    left.set_ylabel("completions per second")
    left.set_title(f"GRPO step throughput ({report['setup']['dtype']}, 2 CPU threads)")
    parts = {
        "sample": ours["time/sample_s"],
        "rewards + advantages": ours["time/reward_s"],
        "optimize": ours["time/optimize_s"],
    }
    right.barh(["polyreward step", "model floor"], [0, 0])
    bottom = 0.0
    for label, value in parts.items():
        right.barh(["polyreward step"], [value], left=bottom, label=label)
        bottom += value
    right.barh(["model floor"], [floor["generate_s"]], label="HF generate 16x32")
    right.barh(["model floor"], [floor["forward_backward_s"]], left=floor["generate_s"], label="forward+backward")
    right.set_xlabel("seconds per step")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
