"""Runs tests/integrations/test_verl.py in .venv-verl, so that ``./test.sh`` checks the verl integration.

verl 0.9.1 pins transformers<5.11 and cannot share .venv; ``scripts/verl_env.sh`` (called by
``./test.sh``) builds .venv-verl. A missing .venv-verl is a failure, not a skip: CI must run these tests.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = Path(os.environ.get("POLYREWARD_VERL_VENV", ROOT / ".venv-verl")) / "bin" / "python"


@pytest.mark.skipif(
    importlib.util.find_spec("verl") is not None, reason="verl is importable here: test_verl.py runs directly"
)
def test_verl_integration_passes_in_its_own_venv():
    assert VENV_PYTHON.exists(), f"{VENV_PYTHON} is missing: run scripts/verl_env.sh (./test.sh does)"
    cmd = [str(VENV_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integrations/test_verl.py"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-40:])
    assert run.returncode == 0, f"{' '.join(cmd)} failed:\n{tail}"
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], f"the verl tests did not run:\n{tail}"


@pytest.mark.skipif(importlib.util.find_spec("verl") is not None, reason="verl is importable here")
def test_missing_verl_is_a_clear_error():
    from polyreward.integrations import verl as pv  # importing the module needs no verl

    with pytest.raises(ImportError, match="scripts/verl_env.sh"):
        pv.register_with_verl()
    with pytest.raises(ImportError, match="needs verl"):
        pv.PolyrewardRewardManager  # noqa: B018
    assert sys.modules.get("verl") is None
