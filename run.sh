#!/usr/bin/env bash
# The main job on the built-in default. Creates/reuses .venv, installs what it needs, then runs.
set -euo pipefail
root=$(cd "$(dirname "$0")" && pwd)
"$root/scripts/env.sh" lm
exec "$root/.venv/bin/polyreward" train "$@"
