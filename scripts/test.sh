#!/usr/bin/env bash
# The project's test entry point (CI runs it through .ci/run):
#   bash scripts/test.sh                 # set up (idempotent), lint, whole suite
#   bash scripts/test.sh -k odometry -x  # extra arguments go to pytest
#   bash scripts/test.sh -m "not ros"    # skip the tests that need rclpy and the colcon workspace
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup_env.sh
# shellcheck disable=SC1091
source scripts/env.sh

# Each run gets its own DDS domain (1-100) and stays on this machine, so parallel runs and other graphs on the
# host cannot cross-talk; Fast DDS segments left in /dev/shm by a crashed run cannot leak into the next one's domain.
export ROS_DOMAIN_ID="${DRIVE_JEPA_TEST_DOMAIN_ID:-$(($$ % 100 + 1))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PYTHONUNBUFFERED=1
# Type/size checks on every message field assignment (off by default in rclpy for speed): wrong types fail in tests.
export ROS_PYTHON_CHECK_FIELDS=1
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID ROS_AUTOMATIC_DISCOVERY_RANGE=$ROS_AUTOMATIC_DISCOVERY_RANGE"

# git does not keep empty folders, so lint only the ones that exist.
lint_paths=()
for d in src bench launch scripts; do [ -d "$d" ] && lint_paths+=("$d"); done
echo "[test] ruff check ${lint_paths[*]}"
ruff check "${lint_paths[@]}"

echo "[test] pytest $*"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "[test] pytest collected no tests: that is a failure here" >&2
fi
exit "$rc"
