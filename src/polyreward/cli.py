"""``polyreward`` command line: ``train``, ``report``, ``compare``, ``demo``, ``estimators``, ``diagnose``."""

from __future__ import annotations

import argparse
import ast
import inspect
import sys

from polyreward import advantages
from polyreward.demo import run_demo
from polyreward.diagnostics import diagnose
from polyreward.reward_table import read_reward_table


def _parse_setting(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, Python literal or the raw string)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def _list_estimators() -> str:
    lines = []
    for name in advantages.names():
        doc = inspect.getdoc(advantages.get(name)) or ""
        params = ", ".join(f"{k}={p.default!r}" for k, p in advantages.parameters(name).items())
        lines.append(f"{name:<14} {doc.splitlines()[0] if doc else ''}\n{'':<14} params: {params or '-'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyreward", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a language model (no arguments: the built-in default job)")
    train.add_argument("config", nargs="?", help="YAML config file (keys: polyreward train --help-config)")
    train.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set estimator=grpo",
    )
    train.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--help-config", action="store_true", help="list every config key with its default and help")
    evaluate = commands.add_parser("eval", help="per-reward means of a model (or a run's last checkpoint) on a task")
    evaluate.add_argument("config", nargs="?", help="YAML config file (task, rewards, model, max_new_tokens ...)")
    evaluate.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--run", help="evaluate the last checkpoint of this run directory")
    evaluate.add_argument("--prompts", type=int, default=64, help="number of task prompts (default 64)")
    evaluate.add_argument("--samples", type=int, default=1, help="completions per prompt (1 = greedy)")
    report = commands.add_parser("report", help="HTML report of a run directory (RUN_DIR/report/index.html)")
    report.add_argument("run_dir")
    compare = commands.add_parser("compare", help="overlay several runs in one HTML page")
    compare.add_argument("run_dirs", nargs="+")
    compare.add_argument("--out", required=True, help="output folder for index.html and PNGs")
    commands.add_parser("demo", help="every estimator side by side on the built-in reward batch")
    commands.add_parser("estimators", help="list the registered advantage estimators and their parameters")
    diag = commands.add_parser("diagnose", help="diagnostics table for a reward matrix in a CSV/JSONL file")
    diag.add_argument("file", help="CSV or JSONL: one row per sample, a group column, one column per reward")
    diag.add_argument("--estimator", default="gdpo", help="registered estimator name (default: gdpo)")
    diag.add_argument("--group-column", default="group", help="column holding the prompt id (default: group)")
    diag.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        type=_parse_setting,
        metavar="KEY=VALUE",
        help="an estimator parameter, e.g. --set scale=batch",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from polyreward.lm.run import train_from_cli

            return train_from_cli(args.config, args.settings, args.resume, not args.no_progress, args.help_config)
        if args.command == "eval":
            from polyreward.config import load_config
            from polyreward.lm.config import TrainConfig
            from polyreward.lm.run import evaluate

            result = evaluate(load_config(TrainConfig, args.config, args.settings), args.run, args.prompts, args.samples)
            print("\n".join(f"{k}: {v}" for k, v in result.items()))
        elif args.command == "report":
            from polyreward.report import render_report

            print(render_report(args.run_dir))
        elif args.command == "compare":
            from polyreward.report import compare_runs

            print(compare_runs(args.run_dirs, args.out))
        elif args.command == "demo":
            print(run_demo())
        elif args.command == "estimators":
            print(_list_estimators())
        elif args.command == "diagnose":
            batch = read_reward_table(args.file, args.group_column)
            print(diagnose(batch, args.estimator, **dict(args.settings)).table())
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        print(f"polyreward {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
