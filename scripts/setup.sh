#!/usr/bin/env bash
# One command from a fresh clone to the project's main job: set up the environment (idempotent), then run it.
#   bash scripts/setup.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
# shellcheck disable=SC1091
source "$ROOT/scripts/env.sh"
exec bash "$ROOT/scripts/main_job.sh" "$@"
