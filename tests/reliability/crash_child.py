"""A tiny-model training run that can SIGKILL itself at a chosen point inside checkpoint saving.

    python -m tests.reliability.crash_child RUN_DIR STEPS MODEL_DIR [--resume] [--kill KILL_POINT]

KILL_POINT ``"<step>:<line>"``: while saving the checkpoint of ``step``, the process kills itself
(SIGKILL, no clean-up) just before line ``<line>`` of :func:`polyreward.checkpoint.save_checkpoint`
runs; ``"<step>:mid-write"``: halfway through writing ``optimizer.pt`` (a truncated file on disk).
The run is ``tests/e2e/tiny_lm.py``'s (two rewards, a checkpoint every step).
"""

from __future__ import annotations

import ast
import inspect
import os
import signal
import sys
import textwrap

import torch

from polyreward import checkpoint
from polyreward.lm import trainer as trainer_module


def save_lines() -> list[tuple[int, str]]:
    """``(line number, source)`` of every statement of ``save_checkpoint`` (where a kill can land), docstring excepted."""
    lines, first = inspect.getsourcelines(checkpoint.save_checkpoint)
    function = ast.parse(textwrap.dedent("".join(lines))).body[0]
    statements = [node for node in ast.walk(function) if isinstance(node, ast.stmt) and node is not function]
    docstring = function.body[0] if ast.get_docstring(function) else None
    numbers = sorted({node.lineno + first - 1 for node in statements if node is not docstring})
    return [(n, lines[n - first].strip()) for n in numbers]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_before_line(line: int):
    code = checkpoint.save_checkpoint.__code__

    def local(frame, event, arg):
        if event == "line" and frame.f_lineno == line:
            _die()
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code is code else None

    return tracer


def _half_write(original):
    def save(obj, path, *args, **kwargs):
        if not str(path).endswith("optimizer.pt"):
            return original(obj, path, *args, **kwargs)
        import io

        buffer = io.BytesIO()
        original(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
        _die()

    return save


def arm(kill: str) -> None:
    """Make the trainer's checkpoint save of the chosen step kill this process at the chosen point."""
    step, where = kill.split(":")
    original = trainer_module.save_checkpoint

    def save_checkpoint(run_dir, at_step, *args, **kwargs):
        if at_step != int(step):
            return original(run_dir, at_step, *args, **kwargs)
        if where == "mid-write":
            torch.save = _half_write(torch.save)
            return original(run_dir, at_step, *args, **kwargs)
        sys.settrace(_kill_before_line(int(where)))
        try:
            return original(run_dir, at_step, *args, **kwargs)
        finally:
            sys.settrace(None)

    trainer_module.save_checkpoint = save_checkpoint


def main(argv: list[str]) -> None:
    from tests.e2e.tiny_lm import run

    if "--kill" in argv:
        arm(argv[argv.index("--kill") + 1])
    run(argv[0], int(argv[1]), "--resume" in argv, argv[2])


if __name__ == "__main__":
    main(sys.argv[1:])
