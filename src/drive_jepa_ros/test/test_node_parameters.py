"""Parameters of the installed planner node: descriptors with ranges, bad values refused with a reason (over the
SetParameters service), live changes accepted, and bad values in a params file refused at start or at configure.
"""

from __future__ import annotations

import time

import pytest
import yaml
from planner_node_harness import (
    NODE,
    PARAMS_FILE,
    Graph,
    NodeProcess,
    domain_id,
    make_tiny_checkpoint,
    require_workspace,
)

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("node_params") / "tiny.safetensors")


@pytest.fixture(scope="module")
def rig(checkpoint, tmp_path_factory):
    require_workspace()
    domain = domain_id(4)
    node = NodeProcess(domain, tmp_path_factory.mktemp("node_params_log") / "node.log",
                       {"model_path": str(checkpoint)})
    graph = Graph(domain)
    try:
        graph.spin_until(lambda: NODE.lstrip("/") in graph.node.get_node_names(), 30.0, "the planner node")
        graph.spin_until(lambda: graph.get_state(NODE) == "active", 30.0, "autostart to activate the node")
        yield node, graph
    finally:
        graph.close()
        code = node.stop()
        print(node.log()[-3000:])
    assert code == 0


def get(graph: Graph, names: list[str]) -> list:
    from rcl_interfaces.srv import GetParameters

    return list(graph.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=names)).values)


def test_descriptors_carry_ranges_and_descriptions(rig) -> None:
    from rcl_interfaces.srv import DescribeParameters

    _, graph = rig
    response = graph.call(DescribeParameters, f"{NODE}/describe_parameters",
                          DescribeParameters.Request(names=["odometry_max_age", "default_command", "backend"]))
    age, command, backend = response.descriptors
    assert age.floating_point_range[0].from_value == 0.0 and age.floating_point_range[0].to_value == 5.0
    assert "odometry" in age.description and "(0, 5]" in age.additional_constraints
    assert command.integer_range[0].from_value == 0 and command.integer_range[0].to_value == 2
    assert "torch, onnxruntime, tensorrt" in backend.additional_constraints


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("odometry_max_age", 10.0, "out of range"),  # FloatingPointRange, checked by rclpy
    ("odometry_max_age", 0.0, "must be > 0"),  # open lower bound, checked by the node's callback
    ("frame_gap_tolerance", 0.3, "out of range"),
    ("default_command", 3, "out of range"),  # IntegerRange
    ("output_frame", "map", "must be one of ego, odom"),
    ("odometry_max_age", "fast", "type"),  # wrong type
    ("device", "gpu", "auto, cpu, cuda or cuda:N"),
    ("momentum.max_gap", 0.0, "must be > 0"),
])
def test_bad_values_are_refused_with_a_reason(rig, name: str, value, reason: str) -> None:
    _, graph = rig
    before = get(graph, [name])[0]
    result = graph.set_parameters(NODE, {name: value})[0]
    assert not result.successful
    assert reason in result.reason, result.reason
    assert get(graph, [name])[0] == before  # unchanged


def test_live_parameters_apply_while_active(rig) -> None:
    _, graph = rig
    results = graph.set_parameters(NODE, {"frame_gap_tolerance": 0.08, "odometry_max_age": 0.2,
                                          "publish_markers": False})
    assert all(r.successful for r in results), [r.reason for r in results]
    values = get(graph, ["frame_gap_tolerance", "odometry_max_age", "publish_markers"])
    assert values[0].double_value == pytest.approx(0.08) and values[1].double_value == pytest.approx(0.2)
    assert values[2].bool_value is False


def test_configure_time_parameter_refused_while_active(rig) -> None:
    _, graph = rig
    result = graph.set_parameters(NODE, {"camera.use_camera_info": False})[0]
    assert not result.successful and "read when the node is configured" in result.reason


def _params_file(tmp_path, **overrides) -> object:
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["/**"]["ros__parameters"].update(overrides)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_out_of_range_value_in_the_params_file_stops_the_node_with_the_reason(tmp_path, checkpoint) -> None:
    require_workspace()
    node = NodeProcess(domain_id(5), tmp_path / "node.log", {"model_path": str(checkpoint)},
                       params_file=_params_file(tmp_path, frame_gap_tolerance=0.5))
    code = node.wait_exit(60.0)
    log = node.log()
    assert code == 1, log
    assert "frame_gap_tolerance" in log and "fatal" in log


def test_invalid_value_in_the_params_file_fails_configure_with_the_reason(tmp_path, checkpoint) -> None:
    """Within the descriptor's range but not valid (an open bound): the node stays up, unconfigured, and says why."""
    require_workspace()
    node = NodeProcess(domain_id(6), tmp_path / "node.log", {"model_path": str(checkpoint)},
                       params_file=_params_file(tmp_path, odometry_max_age=0.0))
    try:
        deadline = 60.0
        start = time.monotonic()
        while "configure failed" not in node.log() and time.monotonic() - start < deadline and node.alive():
            time.sleep(0.2)
        log = node.log()
        assert node.alive(), log
        assert "configure failed: invalid parameters: odometry_max_age must be > 0" in log, log
    finally:
        assert node.stop() == 0
