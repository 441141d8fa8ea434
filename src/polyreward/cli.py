"""``polyreward`` command line: ``train``, ``report``, ``compare``, ``demo``, ``estimators``, ``diagnose``, ``rm``."""

from __future__ import annotations

import argparse
import ast
import inspect
import sys

from polyreward import advantages
from polyreward.config import load_config, trainer_kind
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
    train = commands.add_parser(
        "train", help="train a language model, or a gym policy with 'trainer: gym' (no arguments: the built-in default job)"
    )
    train.add_argument(
        "config", nargs="?", help="YAML config file (keys: polyreward train --help-config [--set trainer=gym])"
    )
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
    evaluate = commands.add_parser(
        "eval", help="per-reward means of a model (or a run's last checkpoint) on a task; per-component returns for gym"
    )
    evaluate.add_argument("config", nargs="?", help="YAML config file (task, rewards, model, max_new_tokens ...)")
    evaluate.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--run", help="evaluate the last checkpoint of this run directory")
    evaluate.add_argument("--prompts", type=int, default=64, help="number of task prompts (default 64)")
    evaluate.add_argument("--samples", type=int, default=1, help="completions per prompt (1 = greedy)")
    evaluate.add_argument("--episodes", type=int, default=10, help="gym: greedy episodes (default 10)")
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
    _add_rm_parser(commands)
    return parser


def _add_rm_parser(commands) -> None:
    """``polyreward rm train CONFIG`` and ``polyreward rm eval MODEL DATA`` (see docs/reward-models.md)."""
    rm = commands.add_parser("rm", help="train or evaluate a reward model on preference pairs")
    rm_commands = rm.add_subparsers(dest="rm_command", required=True)
    rm_train = rm_commands.add_parser("train", help="train a reward model (keys: polyreward rm train --help-config)")
    rm_train.add_argument("config", nargs="?", help="YAML config file")
    rm_train.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    rm_train.add_argument("--no-progress", action="store_true", help="no progress bar")
    rm_train.add_argument("--help-config", action="store_true", help="list every config key with its default and help")
    rm_eval = rm_commands.add_parser("eval", help="held-out pair accuracy of a saved reward model")
    rm_eval.add_argument("model", help="a reward model directory (RUN_DIR/model)")
    rm_eval.add_argument("data", help="a .jsonl/.parquet/.csv file of pairs, or 'synthetic'")
    rm_eval.add_argument("--skip-invalid", action="store_true", help="skip and count malformed rows")
    rm_eval.add_argument("--size", type=int, default=512, help="pairs generated for 'synthetic' (default 512)")
    rm_eval.add_argument("--seed", type=int, default=1, help="seed of the generated pairs (default 1)")


def _run_rm(args: argparse.Namespace) -> int:
    from polyreward.rm.train import eval_from_cli, train_from_cli

    if args.rm_command == "train":
        return train_from_cli(args.config, args.settings, not args.no_progress, args.help_config)
    on_invalid = "skip" if args.skip_invalid else "raise"
    result = eval_from_cli(args.model, args.data, on_invalid, args.size, args.seed)
    print("\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def _evaluate(args: argparse.Namespace) -> dict:
    if trainer_kind(args.config, args.settings) == "gym":
        from polyreward.gym.config import GymConfig
        from polyreward.gym.run import evaluate

        return evaluate(load_config(GymConfig, args.config, args.settings), args.run, args.episodes)
    from polyreward.lm.config import TrainConfig
    from polyreward.lm.run import evaluate

    return evaluate(load_config(TrainConfig, args.config, args.settings), args.run, args.prompts, args.samples)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "rm":
            return _run_rm(args)
        if args.command == "train":
            kind = trainer_kind(args.config, args.settings)
            if kind == "gym":
                from polyreward.gym.run import train_from_cli
            elif kind == "dual_play":  # PasoDoble self-play (docs/self-play.md)
                from polyreward.lm.selfplay import train_from_cli
            elif kind == "complementary":  # Complementary RL (docs/self-play.md)
                from polyreward.lm.experience import train_from_cli
            else:
                from polyreward.lm.run import train_from_cli

            return train_from_cli(args.config, args.settings, args.resume, not args.no_progress, args.help_config)
        if args.command == "eval":
            print("\n".join(f"{k}: {v}" for k, v in _evaluate(args).items()))
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
