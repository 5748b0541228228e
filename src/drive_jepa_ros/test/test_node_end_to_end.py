"""The installed planner node end to end over Fast DDS: camera + camera_info + odometry + command in; path, candidates,
selection state, markers, processing time and diagnostics out, equal to what the core Planner computes for the same
inputs in this process.

The node runs as the installed executable with ``--params-file config/planner.yaml`` (autostart: true) in its own
DDS domain; the test side is a plain rclpy node spun in the test thread.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from planner_node_harness import (
    CAMERA_H,
    CAMERA_W,
    NODE,
    NUM_PROPOSALS,
    Graph,
    NodeProcess,
    PlannerIO,
    domain_id,
    ego_state,
    find_stamped,
    frame_pixels,
    make_tiny_checkpoint,
    require_workspace,
    stamp_of,
    status_values,
)

pytestmark = pytest.mark.ros

T0 = 100.0  # first camera stamp, s
DT = 0.1  # camera period, s (frames k and k-5 are 0.5 s apart)
GAP = 5  # frames between t and t - 0.5 s
FRAMES = 12
COMMAND = 0  # left


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Node process + test graph + the reference core Planner on the same checkpoint."""
    require_workspace()
    from drive_jepa_core.runtime.planner import Planner
    from drive_jepa_core.world.render import default_front_camera
    from drive_jepa_msgs.msg import DrivingCommand

    tmp = tmp_path_factory.mktemp("node_e2e")
    checkpoint = make_tiny_checkpoint(tmp / "tiny.safetensors")
    domain = domain_id(1)
    node = NodeProcess(domain, tmp / "node.log", {"model_path": str(checkpoint), "diagnostics_period": 0.2})
    graph = Graph(domain)
    try:
        io = PlannerIO(graph)
        io.wait_ready()
        # The config's camera extrinsics are the built-in world camera's; camera_info gives its K at 256x128.
        camera = default_front_camera(CAMERA_W, CAMERA_H)
        reference = Planner.from_checkpoint(checkpoint, backend="torch", device="cpu", camera=camera)
        io.command.publish(DrivingCommand(command=COMMAND))
        for k in range(-3, FRAMES + 2):  # odometry from 0.3 s before the first frame (acceleration window 0.2 s)
            t = T0 + k * DT
            io.send_odometry(t, ego_state(t, T0))
        io.wait_inputs(odometry=FRAMES + 5, command=1)
        yield node, graph, io, reference, camera
    finally:
        graph.close()
        code = node.stop()
        print(node.log()[-3000:])
    assert code == 0, "the node did not exit cleanly on SIGINT"


def yaw_of(pose) -> float:
    q = pose.orientation
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def poses_of(path) -> np.ndarray:
    return np.array([[p.pose.position.x, p.pose.position.y, yaw_of(p.pose)] for p in path.poses])


def wrap(a: np.ndarray) -> np.ndarray:
    return np.arctan2(np.sin(a), np.cos(a))


def test_outputs_match_the_core_planner(world) -> None:
    from drive_jepa_core.selection import ResetReason
    from drive_jepa_msgs.msg import SelectionState

    _node, graph, io, reference, camera = world
    reasons = {ResetReason.NONE: SelectionState.NONE, ResetReason.FIRST_FRAME: SelectionState.FIRST_FRAME}
    for k in range(FRAMES):
        t = T0 + k * DT
        pixels = frame_pixels(k)
        io.send_frame(t, pixels, camera.intrinsics)
        state = io.outcome(t, resend=lambda t=t, p=pixels: io.send_frame(t, p, camera.intrinsics))
        if k < GAP:  # nothing 0.5 s earlier yet: no trajectory, an INPUT_FAULT state
            assert state.reset_reason == SelectionState.INPUT_FAULT and state.selected_index == -1
            assert find_stamped(io.paths, t) is None
            continue
        expected = reference.plan(pixels, frame_pixels(k - GAP), ego_state(t, T0), COMMAND, t)
        candidates = graph.spin_until(lambda t=t: find_stamped(io.candidates, t), 10.0, "candidates")
        path = graph.spin_until(lambda t=t: find_stamped(io.paths, t), 10.0, "path")

        assert candidates.header.frame_id == path.header.frame_id == "base_link"
        assert len(candidates.candidates) == NUM_PROPOSALS
        assert [c.index for c in candidates.candidates] == list(range(NUM_PROPOSALS))
        got = np.stack([poses_of(c.path) for c in candidates.candidates])
        np.testing.assert_allclose(got[..., :2], expected.proposals[..., :2], atol=1e-4)
        np.testing.assert_allclose(wrap(got[..., 2] - expected.proposals[..., 2]), 0.0, atol=1e-4)
        np.testing.assert_allclose([c.learned_score for c in candidates.candidates], expected.scores, atol=1e-5)
        np.testing.assert_allclose([c.final_score for c in candidates.candidates], expected.final_scores,
                                   atol=1e-5)
        # comfort that does not exist (no momentum: NaN in the core) is published as -1.0, never NaN
        expected_comfort = np.where(np.isfinite(expected.comfort_scores), expected.comfort_scores, -1.0)
        np.testing.assert_allclose([c.comfort_score for c in candidates.candidates], expected_comfort, atol=1e-6)
        assert all(c.time_step == pytest.approx(0.5) for c in candidates.candidates)
        assert candidates.selected_index == state.selected_index == expected.selected_index
        np.testing.assert_allclose(poses_of(path), got[expected.selected_index], atol=1e-9)
        assert np.all(np.isfinite(poses_of(path)))
        assert candidates.generator_name == "drive_jepa" and len(bytes(candidates.generator_id)) == 16

        assert state.momentum_valid == expected.valid
        assert state.reset_reason == reasons[expected.reset_reason]
        assert state.previous_index == expected.previous_index
        assert state.momentum_weight == pytest.approx(0.125) and state.max_gap == pytest.approx(0.55)
        if k == GAP:
            assert state.reset_reason == SelectionState.FIRST_FRAME and not state.momentum_valid
            assert list(state.comfort_scores) == [-1.0] * NUM_PROPOSALS and state.interval == 0.0
            assert all(c.comfort_score == -1.0 for c in candidates.candidates)
        else:  # 0.1 s after the previous cycle: momentum applies
            assert state.momentum_valid and state.interval == pytest.approx(DT, abs=1e-6)
            np.testing.assert_allclose(state.comfort_scores, expected.comfort_scores)
        assert candidates.selection.selected_index == state.selected_index
    # one generator id for the node's lifetime
    assert len({bytes(c.generator_id) for c in io.candidates}) == 1


def test_markers_processing_time_and_diagnostics(world) -> None:
    from visualization_msgs.msg import Marker

    from drive_jepa_ros.markers import NAMESPACE_PROPOSALS, NAMESPACE_SELECTED, score_color

    _node, graph, io, _, _ = world
    last = io.candidates[-1]
    t_last = stamp_of(last)

    def last_markers():
        return next((m for m in io.markers if m.markers and stamp_of(m.markers[0]) == t_last), None)

    array = graph.spin_until(last_markers, 10.0, "markers of the last cycle")
    assert array.markers[0].action == Marker.DELETEALL
    lines = [m for m in array.markers if m.ns == NAMESPACE_PROPOSALS]
    assert [m.id for m in lines] == list(range(NUM_PROPOSALS))
    for m, c in zip(lines, last.candidates, strict=True):
        assert m.type == Marker.LINE_STRIP and len(m.points) == 1 + len(c.path.poses)
        assert (m.points[0].x, m.points[0].y) == (0.0, 0.0)  # every line starts at the ego (ego output frame)
        assert (m.color.r, m.color.g, m.color.b) == pytest.approx(score_color(c.final_score)[:3], abs=1e-6)
    selected = [m for m in array.markers if m.ns == NAMESPACE_SELECTED]
    assert len(selected) == 1
    expected_xy = [(p.pose.position.x, p.pose.position.y) for p in last.candidates[last.selected_index].path.poses]
    np.testing.assert_allclose([(p.x, p.y) for p in selected[0].points[1:]], expected_xy, atol=1e-9)

    graph.spin_until(lambda: len(io.times) >= len(io.candidates), 10.0, "one processing time per planned frame")
    assert len(io.times) == len(io.candidates)
    assert all(math.isfinite(m.data) and m.data > 0.0 for m in io.times)
    processing = io.wait_diagnostic("processing", lambda s: int(status_values(s)["published_frames"]) >= 7)
    values = status_values(processing)
    assert float(values["plan_ms_p50"]) > 0.0 and float(values["node_total_ms_p50"]) >= float(values["plan_ms_p50"])
    model = io.wait_diagnostic("model", lambda s: True)
    assert model.level == b"\x00" and status_values(model)["num_proposals"] == str(NUM_PROPOSALS)
    failsafe = io.wait_diagnostic("failsafe", lambda s: "publishing" in s.message)
    assert failsafe.level == b"\x00"


def test_output_frame_odom_is_a_live_parameter(world) -> None:
    from drive_jepa_core.geometry import local_to_global

    _node, graph, io, reference, camera = world
    results = graph.set_parameters(NODE, {"output_frame": "odom"})
    assert results[0].successful, results[0].reason
    try:
        k = FRAMES
        t = T0 + k * DT
        pixels = frame_pixels(k)
        io.send_frame(t, pixels, camera.intrinsics)
        io.outcome(t, resend=lambda: io.send_frame(t, pixels, camera.intrinsics))
        expected = reference.plan(pixels, frame_pixels(k - GAP), ego_state(t, T0), COMMAND, t)
        path = graph.spin_until(lambda: find_stamped(io.paths, t), 10.0, "path in odom")
        assert path.header.frame_id == "odom"
        world_poses = local_to_global(expected.trajectory, ego_state(t, T0)[:3])
        np.testing.assert_allclose(poses_of(path)[:, :2], world_poses[:, :2], atol=1e-4)
        markers = graph.spin_until(lambda: next((m for m in io.markers if m.markers[0].header.frame_id == "odom"),
                                                None), 10.0, "markers in odom")
        origin = markers.markers[1].points[0]
        assert (origin.x, origin.y) == pytest.approx(tuple(ego_state(t, T0)[:2]))
    finally:
        assert graph.set_parameters(NODE, {"output_frame": "ego"})[0].successful


def test_a_burst_is_dropped_not_queued(world) -> None:
    """Frames far faster than the model: the newest one always wins, so the last frame of the burst is planned, many
    in between are skipped, and at most one frame ever waits in the node."""
    _, graph, io, _, camera = world
    first, count = FRAMES + 1, 40
    for k in range(first, first + count):
        t = T0 + k * DT
        io.send_odometry(t, ego_state(t, T0))
    io.wait_inputs(odometry=FRAMES + 5 + count)
    for k in range(first, first + count):
        io.send_frame(T0 + k * DT, frame_pixels(k), camera.intrinsics)
        graph.spin_for(0.002)
    last = T0 + (first + count - 1) * DT
    for attempt in range(3):  # best-effort camera QoS: should the last frame itself be lost, send it again
        try:
            graph.spin_until(lambda: find_stamped(io.paths, last), 8.0, "the path of the burst's last frame")
            break
        except AssertionError:
            if attempt == 2:
                raise
            io.send_frame(last, frame_pixels(first + count - 1), camera.intrinsics)
    graph.spin_for(0.5)  # a diagnostics period after the last path
    values = status_values(io.wait_diagnostic("processing", lambda s: True))
    assert int(values["queue_depth"]) <= 1
    planned = [p for p in io.paths if T0 + first * DT - 1e-6 <= stamp_of(p) <= last + 1e-6]
    # frames are skipped (in DDS, which keeps only the newest image, or in the node's one-slot mailbox), not queued
    assert len(planned) < count
