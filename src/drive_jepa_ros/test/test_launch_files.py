"""Launch, parameter and RViz files: installed into share/drive_jepa_ros, parseable, and consistent with the node.

``launch``/``launch_ros`` have no PyPI wheels: the launch file is checked by parsing its source here, and loaded for
real only where launch_ros is installed (that test skips with the reason otherwise).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from pathlib import Path

import pytest
import yaml

from drive_jepa_ros.parameters import NODE_NAME, PARAMETER_SPECS, check_value

ROOT = Path(__file__).resolve().parents[3]
SHARE = ROOT / "install" / "drive_jepa_ros" / "share" / "drive_jepa_ros"
LAUNCH = ROOT / "launch" / "planner.launch.py"
CONFIG = ROOT / "config" / "planner.yaml"
RVIZ = ROOT / "config" / "planner.rviz"
LAUNCH_ARGUMENTS = {"params_file", "namespace", "use_sim_time", "log_level", "rviz", "image_topic", "image_transport"}
# rclpy declares these on every node; they are not the planner's to document
RCLPY_PARAMETERS = {"use_sim_time", "start_type_description_service"}


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_values() -> dict[str, object]:
    data = yaml.safe_load(CONFIG.read_text())
    assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"]
    return flatten(data["/**"]["ros__parameters"])


def documented_keys(text: str) -> dict[str, bool]:
    """Dotted key of every YAML leaf under ros__parameters -> whether a comment documents it (the line above is a
    comment, or the line has an inline comment)."""
    out: dict[str, bool] = {}
    stack: list[tuple[int, str]] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3).strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if rest == "" or rest.startswith("#"):
            stack.append((indent, key))
            continue
        path = [k for _, k in stack if k not in ("ros__parameters",)]
        name = ".".join([*path, key])
        above = lines[i - 1].strip() if i else ""
        out[name] = above.startswith("#") or " #" in rest
    return out


def test_config_documents_every_node_parameter() -> None:
    values = config_values()
    assert set(values) == set(PARAMETER_SPECS), (
        f"missing: {sorted(set(PARAMETER_SPECS) - set(values))}, unknown: {sorted(set(values) - set(PARAMETER_SPECS))}")
    documented = documented_keys(CONFIG.read_text())
    assert set(documented) == set(PARAMETER_SPECS)
    assert [name for name, ok in documented.items() if not ok] == []


def test_config_values_are_valid_and_typed() -> None:
    """ROS 2 refuses an integer for a double parameter: every value must have the parameter's exact type."""
    for name, value in config_values().items():
        spec = PARAMETER_SPECS[name]
        assert type(value) is spec.type, f"{name}: {value!r} is a {type(value).__name__}, expected {spec.type}"
        assert check_value(spec, value) is None
        if isinstance(value, float):
            assert math.isfinite(value)
    assert config_values()["model_path"] == ""  # set per deployment (-p model_path:=... or launch model_path:=...)


def test_launch_file_declares_the_arguments() -> None:
    tree = ast.parse(LAUNCH.read_text())
    arguments = next(node for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                     and getattr(node.target, "id", "") == "ARGUMENTS")
    names = {element.elts[0].value for element in arguments.value.elts}
    assert LAUNCH_ARGUMENTS <= names
    source = LAUNCH.read_text()
    assert "LifecycleNode(" in source and 'executable="planner_node"' in source
    assert f'NODE_NAME = "{NODE_NAME}"' in source
    assert '"planner.rviz"' in source and '"rviz2"' in source


def test_launch_description_loads_with_launch_ros() -> None:
    pytest.importorskip("launch_ros", reason="launch_ros has no PyPI wheel; it comes with a ROS 2 installation")
    from launch.actions import DeclareLaunchArgument

    spec = importlib.util.spec_from_file_location("planner_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert LAUNCH_ARGUMENTS <= declared


def test_rviz_config_shows_camera_path_and_candidates() -> None:
    data = yaml.safe_load(RVIZ.read_text())
    manager = data["Visualization Manager"]
    displays = {d["Class"]: d for d in manager["Displays"]}
    assert {"rviz_default_plugins/Image", "rviz_default_plugins/Path", "rviz_default_plugins/MarkerArray"} <= set(
        displays)
    config = config_values()
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == f"/{config['image_topic']}"
    assert displays["rviz_default_plugins/Image"]["Topic"]["Reliability Policy"] == "Best Effort"
    assert displays["rviz_default_plugins/Path"]["Topic"]["Value"] == f"/{NODE_NAME}/output/path"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == f"/{NODE_NAME}/debug/markers"
    assert manager["Global Options"]["Fixed Frame"] == config["ego_frame_id"]


def test_docker_files_parse() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    service = compose["services"]["planner"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(r"^FROM ros:\$\{ROS_DISTRO\}", dockerfile, re.M) and "ARG ROS_DISTRO=jazzy" in dockerfile
    assert "colcon build" in dockerfile and "planner.launch.py" in dockerfile


@pytest.mark.ros
def test_installed_into_the_package_share() -> None:
    for folder, source in (("launch", LAUNCH), ("config", CONFIG), ("config", RVIZ)):
        installed = SHARE / folder / source.name
        assert installed.is_file(), f"{installed} missing: re-run bash scripts/setup_env.sh"
        assert installed.read_bytes() == source.read_bytes()


@pytest.mark.ros
def test_the_node_declares_exactly_the_documented_parameters() -> None:
    """A real PlannerNode (in-process, unconfigured) lists its parameters; each is in config/planner.yaml."""
    import rclpy

    from drive_jepa_ros.planner_node import PlannerNode

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=231)
    try:
        node = PlannerNode(context=context)
        try:
            declared = set(node.list_parameters([], 0).names) - RCLPY_PARAMETERS
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()
    assert declared == set(config_values())
