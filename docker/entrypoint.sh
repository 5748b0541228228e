#!/usr/bin/env bash
# Source ROS and the workspace, then run the command (default: ros2 launch drive_jepa_ros planner.launch.py).
set -e
# shellcheck disable=SC1090
source "/opt/ros/${ROS_DISTRO}/setup.bash"
# shellcheck disable=SC1091
source /ws/install/setup.bash
exec "$@"
