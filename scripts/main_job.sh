#!/usr/bin/env bash
# The project's main job on the embedded default (the built-in world): scenes + NAVSIM scores, a synthetic rosbag,
# and its replay through the planner vs the constant-velocity baseline. scripts/setup.sh runs it after set-up.
#   bash scripts/main_job.sh [--out runs/demo] [--scenes 100] ...   (arguments go to `drive-jepa demo`)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# This checkout's venv and workspace first, also when another checkout's env.sh is active in the calling shell.
# shellcheck disable=SC1091
source scripts/env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec drive-jepa demo "$@"
