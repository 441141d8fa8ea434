#!/usr/bin/env bash
# The test suite. Creates/reuses .venv with the dev extras, then runs pytest (extra args pass through).
# pytest exits non-zero when a test fails and when no tests are collected (exit code 5).
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
"$root/scripts/env.sh" dev,lm,gym,ray
"$root/scripts/verl_env.sh"  # .venv-verl: verl 0.9.1 pins transformers<5.11; tests/integrations/test_verl_venv.py runs its tests there
cd "$root"
exec "$root/.venv/bin/python" -m pytest -q "$@"
