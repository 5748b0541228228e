# shellcheck shell=bash
# Source me (bash):  source scripts/env.sh
# Puts the project venv (which is also the ROS 2 Kilted install prefix, from PyPI wheels) and the colcon workspace
# (install/) into this shell: PATH, AMENT_PREFIX_PATH, PYTHONPATH, LD_LIBRARY_PATH, and local-only DDS discovery.
# Build the workspace first with `bash scripts/setup_env.sh`. Respects DRIVE_JEPA_VENV like setup_env.sh.
if [ -z "${BASH_VERSION:-}" ]; then
  echo "scripts/env.sh: source it from bash" >&2
  return 1 2>/dev/null || exit 1
fi

DRIVE_JEPA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DRIVE_JEPA_ROOT
_dj_venv="${DRIVE_JEPA_VENV:-$DRIVE_JEPA_ROOT/.venv}"

# prepend $2 to the colon list named $1 unless it is already there
_dj_prepend() {
  local current="${!1:-}"
  case ":$current:" in
    *":$2:"*) ;;
    *) export "$1=$2${current:+:$current}" ;;
  esac
}

if [ ! -x "$_dj_venv/bin/python" ]; then
  echo "scripts/env.sh: no venv at $_dj_venv; run: bash scripts/setup_env.sh" >&2
  unset _dj_venv; unset -f _dj_prepend
  return 1 2>/dev/null || exit 1
fi

export VIRTUAL_ENV="$_dj_venv"
_dj_prepend PATH "$_dj_venv/bin"
# The venv is the ROS install prefix: ament_index look-ups (message packages, share dirs) start there.
_dj_prepend AMENT_PREFIX_PATH "$_dj_venv"
# Fast DDS is the only RMW in the PyPI wheels; keep discovery on this machine unless the caller decided otherwise.
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
# Unbuffered node logs so launch/CI output interleaves correctly.
export RCUTILS_LOGGING_BUFFERED_STREAM="${RCUTILS_LOGGING_BUFFERED_STREAM:-1}"

if [ -f "$DRIVE_JEPA_ROOT/install/setup.bash" ]; then
  # colcon's scripts are not written for `set -u`; relax it while they run.
  case $- in *u*) _dj_nounset=1; set +u ;; *) _dj_nounset=0 ;; esac
  # shellcheck disable=SC1091
  source "$DRIVE_JEPA_ROOT/install/setup.bash"
  [ "$_dj_nounset" = 1 ] && set -u
  unset _dj_nounset
  # colcon leaves a trailing ':' when the variable was empty; an empty entry would mean "the current directory".
  LD_LIBRARY_PATH="${LD_LIBRARY_PATH%:}"
  PYTHONPATH="${PYTHONPATH%:}"
else
  echo "scripts/env.sh: $DRIVE_JEPA_ROOT/install is missing; run: bash scripts/setup_env.sh" >&2
fi
unset _dj_venv; unset -f _dj_prepend
