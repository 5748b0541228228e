"""The colcon-built workspace (install/) as a user sees it after ``source scripts/env.sh``.

Needs ``bash scripts/setup_env.sh`` first (scripts/test.sh runs it). The ``ros`` tests fail, rather than skip, when the
workspace is missing: a missing build is a broken set-up, not an absent optional feature.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from drive_jepa_core import constants

ROOT = Path(__file__).resolve().parents[3]
INSTALL = ROOT / "install"
PACKAGES = ("drive_jepa_core", "drive_jepa_msgs", "drive_jepa_ros")


def _clean_env() -> dict[str, str]:
    """This process's environment without anything the ROS wheels or env.sh put there."""
    env = dict(os.environ)
    for key in (
        "_ROS_WHEELS_BOOTSTRAP_COMPLETE",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "AMENT_PREFIX_PATH",
        "VIRTUAL_ENV",
        "ROS_AUTOMATIC_DISCOVERY_RANGE",
    ):
        env.pop(key, None)
    return env


def _run_sourced(python_code: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c python_code`` in a fresh bash that only did ``source scripts/env.sh`` (from another cwd)."""
    venv = os.environ.get("DRIVE_JEPA_VENV", str(Path(sys.prefix)))
    env = _clean_env() | {"DRIVE_JEPA_VENV": venv}
    script = f'source "{ROOT}/scripts/env.sh" && cd / && exec python -c "$0"'
    return subprocess.run(
        ["bash", "-c", script, python_code], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def msgs():
    """The generated drive_jepa_msgs.msg module (requires the environment of scripts/env.sh)."""
    if not (INSTALL / "drive_jepa_msgs").is_dir():
        pytest.fail(f"{INSTALL}/drive_jepa_msgs is missing: run bash scripts/setup_env.sh")
    try:
        import drive_jepa_msgs.msg as module
    except ImportError as exc:
        pytest.fail(f"drive_jepa_msgs not importable in this process ({exc}): source scripts/env.sh first")
    return module


# ----------------------------------------------------------------------------------------------------------------
# Package manifests (no build needed)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("package", PACKAGES)
def test_package_manifest_is_format_3_and_named_like_its_folder(package: str) -> None:
    root = ET.parse(ROOT / "src" / package / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == package
    assert root.find("export/build_type") is not None


def test_ros_package_declares_its_runtime_dependencies() -> None:
    root = ET.parse(ROOT / "src" / "drive_jepa_ros" / "package.xml").getroot()
    deps = {e.text for e in root.findall("exec_depend")} | {e.text for e in root.findall("depend")}
    expected = {"rclpy", "drive_jepa_msgs", "drive_jepa_core", "sensor_msgs", "nav_msgs", "geometry_msgs"}
    expected |= {"visualization_msgs", "diagnostic_msgs", "lifecycle_msgs", "std_msgs", "rcl_interfaces"}
    expected |= {"launch", "launch_ros", "rviz2"}  # launch/planner.launch.py (rviz2 only with rviz:=true)
    assert expected <= deps


def test_conversions_do_not_import_rclpy() -> None:
    code = "import sys, drive_jepa_ros.conversions; print('rclpy' in sys.modules)"
    env = dict(os.environ) | {"PYTHONPATH": str(ROOT / "src" / "drive_jepa_ros")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------------------------
# The built install tree
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.ros
def test_env_sh_alone_makes_the_workspace_usable() -> None:
    code = (
        "import json, rclpy\n"
        "from ament_index_python.packages import get_package_share_directory as share\n"
        "from rclpy.serialization import serialize_message\n"
        "from drive_jepa_msgs.msg import CandidateTrajectories, CandidateTrajectory\n"
        "import drive_jepa_ros\n"
        "m = CandidateTrajectories(candidates=[CandidateTrajectory(index=1)])\n"
        "print(json.dumps({'bytes': len(serialize_message(m)), 'ros_share': share('drive_jepa_ros'),\n"
        "    'std_share': share('std_msgs'), 'ros_pkg': drive_jepa_ros.__file__,\n"
        "    'range': __import__('os').environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE')}))\n"
    )
    result = _run_sourced(code)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["bytes"] > 0
    assert Path(info["ros_share"]) == INSTALL / "drive_jepa_ros" / "share" / "drive_jepa_ros"
    assert Path(info["std_share"]).is_dir()
    # --symlink-install: the installed package is the source tree, so edits need no rebuild.
    assert Path(info["ros_pkg"]).resolve() == (ROOT / "src" / "drive_jepa_ros" / "drive_jepa_ros" / "__init__.py")
    assert info["range"] == "LOCALHOST"


@pytest.mark.ros
def test_message_constants_match_the_documentation_and_core(msgs) -> None:
    s = msgs.SelectionState
    assert (s.NONE, s.FIRST_FRAME, s.GAP, s.TIME_BACKWARDS, s.REQUESTED, s.INPUT_FAULT) == (0, 1, 2, 3, 4, 5)
    c = msgs.DrivingCommand
    assert (c.LEFT, c.STRAIGHT, c.RIGHT, c.UNKNOWN) == (0, 1, 2, 255)
    assert (c.LEFT, c.STRAIGHT, c.RIGHT) == (
        constants.COMMAND_LEFT,
        constants.COMMAND_STRAIGHT,
        constants.COMMAND_RIGHT,
    )


@pytest.mark.ros
def test_message_fields(msgs) -> None:
    assert msgs.CandidateTrajectory.get_fields_and_field_types() == {
        "path": "nav_msgs/Path",
        "learned_score": "float",
        "comfort_score": "float",
        "final_score": "float",
        "time_step": "float",
        "index": "uint16",
    }
    assert msgs.CandidateTrajectories.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "generator_name": "string",
        "generator_id": "uint8[16]",
        "candidates": "sequence<drive_jepa_msgs/CandidateTrajectory>",
        "selected_index": "int32",
        "selection": "drive_jepa_msgs/SelectionState",
    }
    assert msgs.SelectionState.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "momentum_valid": "boolean",
        "reset_reason": "uint8",
        "interval": "float",
        "previous_index": "int32",
        "selected_index": "int32",
        "momentum_weight": "float",
        "max_gap": "float",
        "comfort_scores": "sequence<float>",
    }
    assert msgs.DrivingCommand.get_fields_and_field_types() == {"header": "std_msgs/Header", "command": "uint8"}


@pytest.mark.ros
def test_candidates_round_trip_through_cdr(msgs) -> None:
    from rclpy.serialization import deserialize_message, serialize_message

    from drive_jepa_ros.conversions import trajectory_to_path

    generator = uuid.uuid4()
    msg = msgs.CandidateTrajectories(generator_name="drive_jepa", selected_index=1)
    msg.header.frame_id = "odom"
    msg.generator_id = list(generator.bytes)
    for i in range(3):
        path = trajectory_to_path([[1.0 + i, 0.0, 0.0], [2.0 + i, 0.5, 0.1]], [0.0, 0.0, 0.0], msg.header)
        msg.candidates.append(
            msgs.CandidateTrajectory(
                path=path, learned_score=0.5 + 0.1 * i, comfort_score=-1.0, time_step=0.5, index=i
            )
        )
    msg.selection.reset_reason = msgs.SelectionState.FIRST_FRAME
    msg.selection.comfort_scores = [1.0, 0.0, 1.0]
    back = deserialize_message(serialize_message(msg), msgs.CandidateTrajectories)
    assert uuid.UUID(bytes=bytes(back.generator_id)) == generator
    assert [c.index for c in back.candidates] == [0, 1, 2]
    assert back.candidates[2].path.poses[1].pose.position.x == pytest.approx(4.0)
    assert back.candidates[0].comfort_score == -1.0  # "not available" (CandidateTrajectory.msg)
    assert back.selection.reset_reason == msgs.SelectionState.FIRST_FRAME
    assert list(back.selection.comfort_scores) == [1.0, 0.0, 1.0]
    # uint8[16] is fixed size; rclpy only checks that with check_fields (ROS_PYTHON_CHECK_FIELDS=1 in scripts/test.sh).
    with pytest.raises(AssertionError, match=r"size of 16|length 16"):
        msgs.CandidateTrajectories(check_fields=True).generator_id = list(range(15))


@pytest.mark.ros
def test_installed_share_directories() -> None:
    msgs_share = INSTALL / "drive_jepa_msgs" / "share" / "drive_jepa_msgs"
    for name in ("CandidateTrajectory", "CandidateTrajectories", "SelectionState", "DrivingCommand"):
        assert (msgs_share / "msg" / f"{name}.msg").is_file(), name
    ros_share = INSTALL / "drive_jepa_ros" / "share" / "drive_jepa_ros"
    assert (ros_share / "package.xml").is_file()
    index = INSTALL / "drive_jepa_ros" / "share" / "ament_index" / "resource_index" / "packages" / "drive_jepa_ros"
    assert index.is_file()
    # Repository-root launch/ and config/ files are installed into the package's share dir (when there are any).
    for folder, patterns in (("launch", ("*.py",)), ("config", ("*.yaml", "*.rviz"))):
        for pattern in patterns:
            for source in sorted((ROOT / folder).glob(pattern)):
                installed = ros_share / folder / source.name
                assert installed.is_file(), f"{installed} missing: re-run bash scripts/setup_env.sh"
                assert installed.read_bytes() == source.read_bytes()
    # `ros2 run drive_jepa_ros planner_node` looks for the executable here.
    assert (INSTALL / "drive_jepa_ros" / "lib" / "drive_jepa_ros" / "planner_node").is_file()
