"""Failsafe of the installed planner node: every unusable input gives no trajectory for that frame, an INPUT_FAULT
selection state and a /diagnostics fault saying why; the node keeps running and recovers with the next good frames.
No published trajectory ever contains NaN. A time jump backwards (bag loop) resets the planner's momentum.

The tests share one node process and run in file order along one timeline (the Driver's clock).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from planner_node_harness import (
    CAMERA_H,
    CAMERA_W,
    Driver,
    Graph,
    NodeProcess,
    PlannerIO,
    domain_id,
    find_stamped,
    frame_pixels,
    image_msg,
    make_tiny_checkpoint,
    odometry_msg,
    require_workspace,
    status_values,
)

pytestmark = pytest.mark.ros

T_START = 500.0


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    require_workspace()
    from drive_jepa_core.world.render import default_front_camera

    tmp = tmp_path_factory.mktemp("node_failsafe")
    checkpoint = make_tiny_checkpoint(tmp / "tiny.safetensors")
    domain = domain_id(2)
    node = NodeProcess(domain, tmp / "node.log", {"model_path": str(checkpoint), "diagnostics_period": 0.2,
                                                  "input_timeout": 0.5})
    graph = Graph(domain)
    try:
        io = PlannerIO(graph)
        io.wait_ready()
        driver = Driver(io, default_front_camera(CAMERA_W, CAMERA_H).intrinsics, T_START, t0=T_START)
        yield node, graph, io, driver
        assert node.alive(), "the node died during the failsafe tests"
    finally:
        graph.close()
        code = node.stop()
        print(node.log()[-4000:])
    assert code == 0


def assert_fault(io, state, t: float, fault: str, detail: str = "") -> None:
    """Frame ``t``: INPUT_FAULT state, no path, and a failsafe diagnostic naming ``fault`` (and ``detail``)."""
    from drive_jepa_msgs.msg import SelectionState

    assert state.reset_reason == SelectionState.INPUT_FAULT and state.selected_index == -1
    assert not state.momentum_valid and list(state.comfort_scores) == []
    status = io.wait_diagnostic("failsafe", lambda s: status_values(s).get("fault") == fault and detail in s.message,
                                10.0, f"failsafe fault {fault} ({detail})")
    assert status.level == b"\x02"
    io.graph.spin_for(0.2)
    assert find_stamped(io.paths, t) is None and find_stamped(io.candidates, t) is None


def planned(state) -> bool:
    return state.selected_index >= 0


def test_no_camera_info_yet(rig) -> None:
    _, _, io, driver = rig
    driver.odometry(driver.t - 0.3, driver.t)
    t = driver.t
    assert_fault(io, driver.frame(with_info=False), t, "no_camera_info", "no camera_info received yet")


def test_plans_once_inputs_are_complete(rig) -> None:
    _, _, io, driver = rig
    states = driver.run(7)
    assert not any(planned(s) for s in states[:4])  # 0.5 s of history first (frame 0 had no camera_info: kept)
    assert all(planned(s) for s in states[5:])
    status = io.wait_diagnostic("failsafe", lambda s: "publishing" in s.message)
    assert status.level == b"\x00"


def test_undecodable_and_mismatched_images(rig) -> None:
    _, _, io, driver = rig
    driver.odometry(driver.t, driver.t + 0.3)
    # an encoding the node cannot turn into RGB
    t = driver.t
    depth = np.zeros((CAMERA_H, CAMERA_W, 1), np.float32)
    assert_fault(io, driver.frame(pixels=depth, encoding="32FC1"), t, "bad_image", "unsupported image encoding")
    # an image whose size is not the camera_info's
    t = driver.t
    small = frame_pixels(0)[: CAMERA_H // 2, : CAMERA_W // 2].copy()
    assert_fault(io, driver.frame(pixels=small), t, "bad_image", "is 128x64 but the camera is 256x128")
    # truncated data (sent after a good frame has been answered, so the two outcomes cannot race)
    t = driver.t
    assert planned(driver.frame())
    msg = image_msg(frame_pixels(1), t)
    msg.header.stamp.nanosec += 1  # a fresh stamp for the broken copy
    msg.data = bytes(msg.data)[: len(msg.data) // 2]
    io.image.publish(msg)
    broken_t = t + 1e-9
    state = io.outcome(broken_t, resend=lambda: io.image.publish(msg))
    assert_fault(io, state, broken_t, "bad_image", "image data has")


def test_missing_stale_and_nan_odometry(rig) -> None:
    _, _, io, driver = rig
    # the odometry published so far ends at driver.t (0.1 s after the last frame); this frame is 0.5 s later
    t = driver.t + 0.5
    assert_fault(io, driver.frame(t=t), t, "no_odometry", "no odometry within 0.1 s of the image stamp")
    inputs = io.wait_diagnostic("inputs", lambda s: "odometry stale" in s.message, 5.0, "odometry stale")
    assert inputs.level == b"\x02"
    # NaN position in the sample at the image stamp
    t = driver.t
    bad = odometry_msg(t, np.array([math.nan, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0]))
    io.odom.publish(bad)
    driver.odometry_sent += 1
    io.wait_inputs(odometry=driver.odometry_sent)
    assert_fault(io, driver.frame(t=t), t, "bad_odometry", "non-finite")


def test_out_of_order_and_duplicate_stamps(rig) -> None:
    _, _, io, driver = rig
    states = driver.run(7)
    assert planned(states[-1])
    t_last = driver.t - 0.1
    early = t_last - 0.05
    assert_fault(io, driver.frame(t=early), early, "out_of_order", "older than the previous one")
    # a repeated stamp: the node answers the duplicate with a second INPUT_FAULT state for the same stamp
    before = len([s for s in io.states if abs(s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 - t_last) < 1e-6])
    io.send_frame(t_last, frame_pixels(99), driver.K)
    io.wait_diagnostic("failsafe", lambda s: status_values(s).get("fault") == "duplicate_stamp")

    def at_last() -> list:
        return [s for s in io.states if abs(s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 - t_last) < 1e-6]

    after = io.graph.spin_until(lambda: len(at_last()) > before and at_last(), 10.0, "duplicate's state")
    assert len(after) == before + 1 and after[-1].selected_index == -1
    driver.t = t_last + 0.1
    assert planned(driver.run(1)[0])  # the stream goes on: the next frame is planned again


def test_time_jump_backwards_resets_momentum(rig) -> None:
    from drive_jepa_msgs.msg import SelectionState

    _, _, io, driver = rig
    states = driver.run(2)
    assert states[-1].momentum_valid
    jump_t = driver.t - 10.0
    driver.t = jump_t
    driver.odometry(jump_t - 0.3, jump_t + 1.0)
    assert_fault(io, driver.frame(), jump_t, "time_jump_backward", "time jumped back")
    after = [driver.frame() for _ in range(6)]
    assert not any(planned(s) for s in after[:4])  # the buffer was cleared: 0.5 s of history again
    first = after[4]
    assert planned(first) and not first.momentum_valid
    assert first.reset_reason == SelectionState.TIME_BACKWARDS
    second = after[5]
    assert planned(second) and second.momentum_valid and second.reset_reason == SelectionState.NONE


def test_time_jump_forward_clears_the_buffer(rig) -> None:
    _, _, io, driver = rig
    jump_t = driver.t + 5.0
    driver.t = jump_t
    driver.odometry(jump_t - 0.3, jump_t + 0.7)
    assert_fault(io, driver.frame(), jump_t, "time_jump_forward", "time jumped forward")
    after = [driver.frame() for _ in range(6)]
    assert not any(planned(s) for s in after[:4]) and all(planned(s) for s in after[4:])
    # 5 s since the last plan: the selector itself reports the gap
    from drive_jepa_msgs.msg import SelectionState

    assert after[4].reset_reason == SelectionState.GAP


def test_stale_camera_is_reported(rig) -> None:
    _, _, io, _ = rig
    time.sleep(0.6)
    status = io.wait_diagnostic("inputs", lambda s: "camera stale" in s.message, 5.0, "camera stale")
    assert status.level == b"\x02"


def test_no_nan_was_ever_published(rig) -> None:
    _, _, io, _ = rig
    assert len(io.paths) >= 10
    for path in io.paths:
        xy = [(p.pose.position.x, p.pose.position.y, p.pose.orientation.z, p.pose.orientation.w) for p in path.poses]
        assert len(xy) == 8 and np.all(np.isfinite(xy))
    for candidates in io.candidates:
        for c in candidates.candidates:
            assert math.isfinite(c.learned_score) and math.isfinite(c.final_score)
            assert c.comfort_score in (-1.0, 0.0, 1.0)  # -1.0 = not available (no momentum), never NaN
            assert np.all(np.isfinite([(p.pose.position.x, p.pose.position.y) for p in c.path.poses]))
    assert any(c.comfort_score == -1.0 for m in io.candidates for c in m.candidates)  # after the resets
    for state in io.states:  # planned and INPUT_FAULT states alike
        floats = [state.interval, state.momentum_weight, state.max_gap, *state.comfort_scores]
        assert np.all(np.isfinite(floats)), floats
