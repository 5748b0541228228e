"""Launch the Drive-JEPA planner lifecycle node (and optionally RViz).

    ros2 launch drive_jepa_ros planner.launch.py model_path:=/models/run/model.safetensors
    ros2 launch drive_jepa_ros planner.launch.py params_file:=my_car.yaml namespace:=car1 rviz:=true \
        image_topic:=/sensing/camera/front/image_raw image_transport:=compressed use_sim_time:=true

The node configures and activates itself when the parameter ``autostart`` is true (the default in
config/planner.yaml), so no lifecycle manager is needed; set it false to drive the transitions with
``ros2 lifecycle set /drive_jepa_planner configure|activate`` or a nav2_lifecycle_manager.
"""

from __future__ import annotations

# launch.launch_context / launch.launch_description rather than `from launch import ...`: ruff would take the
# repository's launch/ folder for the `launch` package and sort the import as first-party.
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "drive_jepa_ros"
NODE_NAME = "drive_jepa_planner"

# (name, default, description, choices)
ARGUMENTS: tuple[tuple[str, str, str, list[str] | None], ...] = (
    ("params_file", "", "node parameter YAML; empty = the installed config/planner.yaml", None),
    ("namespace", "", "namespace of the node (and of its relative topic names)", None),
    ("use_sim_time", "false", "use /clock (bag replay, simulator)", ["true", "false"]),
    ("log_level", "info", "node log level", ["debug", "info", "warn", "error", "fatal"]),
    ("rviz", "false", "also start RViz with config/planner.rviz", ["true", "false"]),
    ("image_topic", "", "camera topic; empty = image_topic from the params file", None),
    ("image_transport", "", "raw | compressed; empty = image_transport from the params file",
     ["", "raw", "compressed"]),
    ("model_path", "", "trained planner (run directory, .safetensors, .onnx, .engine); empty = from the params file",
     None),
)


def _launch_nodes(context: LaunchContext) -> list:
    """The planner node (and RViz) with the arguments resolved; empty arguments leave the params file in charge."""
    value = {name: LaunchConfiguration(name).perform(context) for name, *_ in ARGUMENTS}
    share = FindPackageShare(PACKAGE).perform(context)
    params_file = value["params_file"] or f"{share}/config/planner.yaml"
    use_sim_time = value["use_sim_time"].lower() == "true"
    overrides: dict[str, object] = {"use_sim_time": use_sim_time}
    for name in ("image_topic", "image_transport", "model_path"):
        if value[name]:
            overrides[name] = value[name]
    planner = LifecycleNode(
        package=PACKAGE,
        executable="planner_node",
        name=NODE_NAME,
        namespace=value["namespace"],
        parameters=[params_file, overrides],
        arguments=["--ros-args", "--log-level", value["log_level"]],
        output="screen",
        emulate_tty=True,
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="rviz2",
        namespace=value["namespace"],
        arguments=["-d", PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "planner.rviz"])],
        parameters=[{"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return [planner, rviz]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(name, default_value=default, description=description,
                              **({"choices": choices} if choices else {}))
        for name, default, description, choices in ARGUMENTS
    ]
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable("RCUTILS_LOGGING_BUFFERED_STREAM", "1"),
        OpaqueFunction(function=_launch_nodes),
    ])
