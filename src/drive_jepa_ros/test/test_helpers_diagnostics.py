"""drive_jepa_ros.diagnostics without ROS: health states, levels, messages, latency percentiles."""

from __future__ import annotations

import math

import pytest
from builtin_interfaces.msg import Time

from drive_jepa_ros.diagnostics import ERROR, OK, WARN, Fault, LatencyWindow, NodeHealth, to_diagnostic_array


def by_part(health: NodeHealth, now: float) -> dict[str, object]:
    return {s.name.split(": ")[1]: s for s in health.statuses(now)}


def test_latency_window_percentiles() -> None:
    window = LatencyWindow(size=4)
    assert math.isnan(window.percentile(50))
    for ms in (100.0, 1.0, 2.0, 3.0, 4.0):  # the first falls out of the window
        window.add(ms)
    assert len(window) == 4
    assert window.percentile(50) == pytest.approx(2.5)
    assert window.percentile(100) == 4.0 and window.mean() == 2.5


def test_model_states() -> None:
    health = NodeHealth("planner")
    model = by_part(health, 0.0)["model"]
    assert model.level == WARN and "unconfigured" in model.message
    health.model_failed("cannot load model 'x'")
    assert by_part(health, 0.0)["model"].level == ERROR
    health.model_loaded("torch on cpu", [("num_proposals", 8)])
    model = by_part(health, 0.0)["model"]
    assert model.level == OK and model.value("num_proposals") == "8"
    assert model.name == "planner: model"


def test_inputs_freshness() -> None:
    health = NodeHealth("planner", input_timeout=0.5, use_camera_info=False)
    assert by_part(health, 0.0)["inputs"].level == OK  # inactive: not monitored
    health.set_active(True)
    inputs = by_part(health, 10.0)["inputs"]
    assert inputs.level == ERROR and "no camera received" in inputs.message and "no odometry" in inputs.message
    health.input_received("camera", 10.0)
    health.input_received("odometry", 10.2)
    inputs = by_part(health, 10.4)["inputs"]
    assert inputs.level == OK and inputs.value("camera_age_s") == "0.400" and inputs.value("camera_count") == "1"
    inputs = by_part(health, 10.6)["inputs"]
    assert inputs.level == ERROR and inputs.message == "camera stale (0.60 s > 0.5 s)"
    # camera_info only counts when it is required
    health.use_camera_info = True
    health.input_received("camera", 10.6)
    assert "no camera_info received" in by_part(health, 10.6)["inputs"].message


def test_failsafe_reports_the_last_fault_until_a_frame_is_published() -> None:
    health = NodeHealth("planner")
    health.set_active(True)
    assert by_part(health, 0.0)["failsafe"].level == WARN  # nothing planned yet
    assert health.frame_failed(Fault.NO_ODOMETRY, "no odometry received") is True
    assert health.frame_failed(Fault.NO_ODOMETRY, "still none") is False  # same fault: no extra report
    failsafe = by_part(health, 1.0)["failsafe"]
    assert failsafe.level == ERROR
    assert failsafe.message == "no trajectory: no_odometry: still none"
    assert failsafe.value("fault") == "no_odometry" and failsafe.value("consecutive_faults") == "2"
    assert failsafe.value("faults_no_odometry") == "2"
    health.frame_published({"plan": 30.0, "node_total": 31.0}, now=2.0)
    failsafe = by_part(health, 2.5)["failsafe"]
    assert failsafe.level == OK and failsafe.value("last_published_age_s") == "0.500"
    assert health.fault_count(Fault.NO_ODOMETRY) == 2 and health.published == 1
    assert health.last_fault is None
    processing = by_part(health, 2.5)["processing"]
    assert processing.value("plan_ms_p50") == "30.00" and processing.value("node_total_ms_p99") == "31.00"
    assert processing.value("inference_ms_p50") == "n/a"


def test_queue_values() -> None:
    health = NodeHealth("planner")
    health.set_queue(1, 42)
    processing = by_part(health, 0.0)["processing"]
    assert processing.value("queue_depth") == "1" and processing.value("dropped_frames") == "42"


def test_input_and_model_faults() -> None:
    assert Fault.BAD_IMAGE.is_input_fault and Fault.TIME_JUMP_BACKWARD.is_input_fault
    assert not Fault.INFERENCE_ERROR.is_input_fault and not Fault.NONFINITE_OUTPUT.is_input_fault


def test_diagnostic_array_message() -> None:
    health = NodeHealth("planner")
    health.frame_failed(Fault.BAD_IMAGE, "unsupported image encoding '32FC1'")
    array = to_diagnostic_array(health.statuses(0.0), Time(sec=5))
    assert array.header.stamp.sec == 5
    names = [s.name for s in array.status]
    assert names == ["planner: model", "planner: inputs", "planner: processing", "planner: failsafe"]
    failsafe = array.status[3]
    assert failsafe.level == bytes([ERROR]) and failsafe.hardware_id == "drive_jepa"
    assert {kv.key: kv.value for kv in failsafe.values}["fault"] == "bad_image"
