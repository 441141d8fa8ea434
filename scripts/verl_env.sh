#!/usr/bin/env bash
# Create (or reuse) .venv-verl: verl 0.9.1 beside polyreward, for tests/integrations/test_verl.py.
# verl 0.9.1 pins transformers<5.11 and tensordict<=0.10, so it cannot share .venv (newest
# transformers). polyreward goes in editable and without dependencies: verl's own pins win.
# Usage: scripts/verl_env.sh [VENV]   (default: .venv-verl in the repository root)
# Re-installs only when pyproject.toml or this script changes (a stamp file in the venv records them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-"$root/.venv-verl"}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
# verl 0.9.1 imports these in its trainer modules (ray_trainer, the v1 trainer) without declaring them.
requirements=(verl==0.9.1 torch==2.13.0 cachetools uvicorn fastapi transferqueue "pytest>=8" "hypothesis>=6.100" pyyaml tqdm)

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv with $python" >&2
  "$python" -m venv "$venv"
fi
hash=$(cat "$root/pyproject.toml" "$0" | sha256sum | cut -c1-12)
stamp="$venv/.polyreward-verl-installed-$hash"
if [ ! -f "$stamp" ]; then
  echo "installing verl==0.9.1 and polyreward (no deps) into $venv (first time ~2-3 min, ~1.9 GB)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "${requirements[@]}"
  "$venv/bin/python" -m pip install -q --no-deps -e "$root"
  rm -f "$venv"/.polyreward-verl-installed-*
  touch "$stamp"
fi
