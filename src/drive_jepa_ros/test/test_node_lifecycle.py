"""Lifecycle of the installed planner node driven through lifecycle_msgs/srv/ChangeState from a test node:
unconfigured -> configure (fails with a reason for a missing model) -> inactive -> active (processes; a model that
outputs NaN publishes nothing and says so) -> inactive (stops) -> cleanup -> reconfigure with compressed images ->
active (plans again) -> shutdown. Also: configure-time parameters are refused while configured.
"""

from __future__ import annotations

import pytest
from planner_node_harness import (
    CAMERA_H,
    CAMERA_W,
    NODE,
    Driver,
    Graph,
    NodeProcess,
    PlannerIO,
    compressed_msg,
    domain_id,
    find_stamped,
    frame_pixels,
    make_tiny_checkpoint,
    require_workspace,
    status_values,
)

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    require_workspace()
    from drive_jepa_core.world.render import default_front_camera

    tmp = tmp_path_factory.mktemp("node_lifecycle")
    good = make_tiny_checkpoint(tmp / "good.safetensors")
    nan = make_tiny_checkpoint(tmp / "nan.safetensors", nan_weights=True)
    domain = domain_id(3)
    node = NodeProcess(domain, tmp / "node.log", {"autostart": False, "model_path": str(tmp / "missing.safetensors"),
                                                  "diagnostics_period": 0.2})
    graph = Graph(domain)
    try:
        io = PlannerIO(graph)
        K = default_front_camera(CAMERA_W, CAMERA_H).intrinsics
        yield node, graph, io, K, {"good": str(good), "nan": str(nan)}
    finally:
        graph.close()
        code = node.stop()
        print(node.log()[-4000:])
    assert code == 0


def transition(name: str) -> int:
    from lifecycle_msgs.msg import Transition

    return getattr(Transition, f"TRANSITION_{name.upper()}")


def model_status(io, predicate, what: str):
    return io.wait_diagnostic("model", predicate, 15.0, what)


def test_starts_unconfigured(rig) -> None:
    _, graph, io, _, _ = rig
    assert graph.get_state(NODE) == "unconfigured"
    status = model_status(io, lambda s: "unconfigured" in s.message, "model not loaded")
    assert status.level == b"\x01"


def test_configure_fails_with_a_reason_for_a_missing_model(rig) -> None:
    _, graph, io, _, _ = rig
    assert not graph.change_state(NODE, transition("configure"))
    assert graph.get_state(NODE) == "unconfigured"
    status = model_status(io, lambda s: s.level == b"\x02", "model load error")
    assert "cannot load model" in status.message and "missing.safetensors" in status.message


def test_a_model_producing_nan_publishes_nothing(rig) -> None:
    _, graph, io, K, models = rig
    assert graph.set_parameters(NODE, {"model_path": models["nan"]})[0].successful
    assert graph.change_state(NODE, transition("configure"))
    assert graph.get_state(NODE) == "inactive"
    assert graph.change_state(NODE, transition("activate"))
    assert graph.get_state(NODE) == "active"
    io.wait_ready()
    driver = Driver(io, K, 10.0, t0=10.0)
    states = driver.run(5)  # no 0.5 s of history yet: INPUT_FAULT states
    assert all(s.selected_index == -1 for s in states)
    driver.odometry(driver.t, driver.t + 0.2)
    io.send_frame(driver.t, frame_pixels(5), K)
    status = io.wait_diagnostic("failsafe", lambda s: status_values(s).get("fault") == "nonfinite_output", 15.0,
                                "non-finite model output")
    assert "NaN/inf" in status.message and status.level == b"\x02"
    graph.spin_for(0.3)
    assert io.paths == [] and io.candidates == []
    assert find_stamped(io.states, driver.t) is None  # a model fault is not an input fault: no INPUT_FAULT state


def test_configure_time_parameters_are_refused_while_configured(rig) -> None:
    _, graph, _, _, models = rig
    for name, value in (("backend", "onnxruntime"), ("model_path", models["good"]), ("image_transport", "compressed")):
        result = graph.set_parameters(NODE, {name: value})[0]
        assert not result.successful and "clean up" in result.reason, (name, result.reason)
    live = graph.set_parameters(NODE, {"marker_line_width": 0.3})[0]
    assert live.successful, live.reason


def test_deactivate_stops_processing(rig) -> None:
    _, graph, io, _K, _ = rig
    assert graph.change_state(NODE, transition("deactivate"))
    assert graph.get_state(NODE) == "inactive"
    graph.spin_until(lambda: io.image.get_subscription_count() == 0, 10.0, "the camera subscription to go away")
    status = io.wait_diagnostic("inputs", lambda s: "inactive" in s.message, 10.0, "inputs inactive")
    assert status.level == b"\x00"


def test_cleanup_then_reconfigure_with_compressed_images_and_parameter_intrinsics(rig) -> None:
    _, graph, io, K, models = rig
    assert graph.change_state(NODE, transition("cleanup"))
    assert graph.get_state(NODE) == "unconfigured"
    model_status(io, lambda s: "unconfigured" in s.message, "model unloaded")
    # compressed images, and intrinsics from parameters instead of camera_info (none is sent from here on)
    results = graph.set_parameters(NODE, {
        "model_path": models["good"], "image_transport": "compressed", "camera.use_camera_info": False,
        "camera.width": CAMERA_W, "camera.height": CAMERA_H, "camera.fx": float(K[0, 0]),
        "camera.fy": float(K[1, 1]), "camera.cx": float(K[0, 2]), "camera.cy": float(K[1, 2])})
    assert all(r.successful for r in results), [r.reason for r in results]
    assert graph.change_state(NODE, transition("configure"))
    assert graph.change_state(NODE, transition("activate"))
    compressed = PlannerIO(graph, transport="compressed")
    compressed.wait_ready(camera_info=False)
    driver = Driver(compressed, None, 20.0, t0=20.0)
    states = driver.run(7)
    assert all(s.selected_index == -1 for s in states[:5]) and all(s.selected_index >= 0 for s in states[5:])
    path = graph.spin_until(lambda: find_stamped(compressed.paths, driver.t - 0.1), 10.0, "path")
    assert len(path.poses) == 8
    # bytes that are no image
    t = driver.t
    compressed.image.publish(compressed_msg(None, t, data=b"\x00not an image"))
    state = compressed.outcome(t, resend=lambda: compressed.image.publish(compressed_msg(None, t, data=b"\x00")))
    assert state.selected_index == -1
    status = compressed.wait_diagnostic("failsafe", lambda s: status_values(s).get("fault") == "bad_image")
    assert "could not decode" in status.message


def test_shutdown_finalizes(rig) -> None:
    node, graph, _, _, _ = rig
    assert graph.change_state(NODE, transition("active_shutdown"))
    assert graph.get_state(NODE) == "finalized"
    assert node.alive()
