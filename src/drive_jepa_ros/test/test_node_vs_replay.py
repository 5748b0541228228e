"""The installed planner node and the offline replay, on the same bag, plan the same frames with the same outputs.

Both pair frames with :class:`drive_jepa_core.replay.pairing.InputPairer` (one implementation). A synthetic bag of the
built-in world (with one camera frame and a stretch of odometry removed, so the pairing must skip frames for two
reasons) is replayed offline with ``replay_bag``; then a test-side player publishes the bag's raw serialized messages
in log order to the running node over DDS. Odometry, camera_info and commands travel on other topics than the images,
so before each image the player waits until /diagnostics shows the node has received every earlier message, and
after it waits for the node's answer for that image (a SelectionState, planned or INPUT_FAULT), so "latest frame
wins" never drops a frame. Every planned frame must match: selected index, selected path, learned/final/comfort
scores (float32 messages against the replay's float64 dump), momentum validity; and the skipped frames must be the
same.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from planner_node_harness import (
    CAMERA_H,
    CAMERA_W,
    NUM_PROPOSALS,
    Graph,
    NodeProcess,
    PlannerIO,
    domain_id,
    make_tiny_checkpoint,
    require_workspace,
    status_values,
)

pytestmark = pytest.mark.ros

SECONDS = 4.0  # 41 frames at 10 Hz
DROPPED_IMAGE = 20  # its absence leaves frame 25 without a frame 0.5 s earlier (19 and 21 are 0.1 s off)
# Odometry (50 Hz) within ODOMETRY_HOLE_S of frame STALE_IMAGE is removed: that frame's nearest sample is 0.14 s away,
# and so is the next frame's, since the samples after the hole are logged after that image (neither side looks ahead).
STALE_IMAGE = 32
ODOMETRY_HOLE_S = 0.13
OUTCOME_TIMEOUT_S = 4.0  # then the image is sent again (the camera QoS is best effort)
SYNC_TIMEOUT_S = 15.0


def stamp_ns_of(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def yaw_of(pose) -> float:
    q = pose.orientation
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def poses_of(path) -> np.ndarray:
    return np.array([[p.pose.position.x, p.pose.position.y, yaw_of(p.pose)] for p in path.poses])


def _edited_bag(source, out):
    """Copy of the synthetic bag without image DROPPED_IMAGE and the odometry around image STALE_IMAGE."""
    from rosbags.rosbag2 import Reader, Writer

    from drive_jepa_core.replay.bag_io import bag_typestore

    store = bag_typestore()
    dropped = int(source.image_stamps_ns[DROPPED_IMAGE])
    hole = int(source.image_stamps_ns[STALE_IMAGE])
    with Reader(source.path) as reader, Writer(out, version=9) as writer:
        conns = {c.id: writer.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for conn, log_time, raw in reader.messages():
            if conn.topic == source.topics["camera"] or conn.topic == source.topics["odometry"]:
                stamp = store.deserialize_cdr(raw, conn.msgtype).header.stamp
                stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
                if conn.topic == source.topics["camera"] and stamp_ns == dropped:
                    continue
                if conn.topic == source.topics["odometry"] and abs(stamp_ns - hole) <= ODOMETRY_HOLE_S * 1e9:
                    continue
            writer.write(conns[conn.id], log_time, bytes(raw))
    return out


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """The bag, its offline replay (frames.npz) and the tiny model both sides run."""
    from drive_jepa_core.replay.bag_io import write_synthetic_bag
    from drive_jepa_core.replay.replay import replay_bag

    tmp = tmp_path_factory.mktemp("node_vs_replay")
    checkpoint = make_tiny_checkpoint(tmp / "tiny.safetensors")
    source = write_synthetic_bag(tmp / "synthetic", seed=3, seconds=SECONDS, width=CAMERA_W, height=CAMERA_H)
    bag = _edited_bag(source, tmp / "bag")
    # ego output frame: the node's output_frame default; momentum and pairing: both sides' defaults
    replay_bag(bag, tmp / "replay", model=checkpoint, backend="torch", device="cpu", output_frame="ego",
               write_bag=False, report=False)
    dump = dict(np.load(tmp / "replay" / "frames.npz"))
    return tmp, checkpoint, source, bag, dump


def _play(bag, topics, io: PlannerIO) -> dict[int, object]:
    """Publish the bag in log order; returns the node's SelectionState per image stamp (ns)."""
    from rosbags.rosbag2 import Reader

    from drive_jepa_core.replay.bag_io import bag_typestore

    graph = io.graph
    store = bag_typestore()
    publishers = {topics["camera"]: io.image, topics["camera_info"]: io.info, topics["odometry"]: io.odom,
                  topics["command"]: io.command}
    counts = {"odometry": 0, "camera_info": 0, "command": 0}
    kinds = {topics["odometry"]: "odometry", topics["camera_info"]: "camera_info", topics["command"]: "command"}
    outcomes: dict[int, object] = {}
    confirmed_commands = 0
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic in publishers]
        # Pre-roll: the first camera_info until the node has one. Its sensor-data subscription is best effort, so a
        # message sent while the node's side of the discovery is still finishing may be lost.
        info_conn = next(c for c in conns if c.topic == topics["camera_info"])
        info = bytes(next(raw for _, _, raw in reader.messages(connections=[info_conn])))
        for attempt in range(10):
            io.info.publish(info)
            try:
                io.wait_diagnostic("inputs", lambda s: int(status_values(s)["camera_info_count"]) >= 1, 1.0)
                break
            except AssertionError:
                if attempt == 9:
                    raise
        for conn, _, raw in reader.messages(connections=conns):
            data = bytes(raw)
            if conn.topic != topics["camera"]:
                if conn.topic == topics["command"] and counts["command"] > confirmed_commands:
                    # the node keeps only the newest command (depth 1): let it take the previous one first
                    _sync(io, counts)
                    confirmed_commands = counts["command"]
                publishers[conn.topic].publish(data)
                counts[kinds[conn.topic]] += 1
                continue
            stamp_ns = stamp_ns_of(store.deserialize_cdr(data, conn.msgtype))
            _sync(io, counts)  # everything logged before this image has been taken by the node
            confirmed_commands = counts["command"]

            def outcome(stamp_ns=stamp_ns):
                return next((s for s in io.states if stamp_ns_of(s) == stamp_ns), None)

            for attempt in range(3):
                io.image.publish(data)
                try:
                    outcomes[stamp_ns] = graph.spin_until(outcome, OUTCOME_TIMEOUT_S, f"the answer at {stamp_ns}")
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
    return outcomes


def _sync(io: PlannerIO, counts: dict[str, int]) -> None:
    """Until /diagnostics shows the node has received ``counts`` messages per input (camera_info: the pre-roll's one
    suffices, it never changes and its best-effort QoS may drop a copy)."""
    try:
        io.wait_inputs(**(counts | {"camera_info": 1}))
    except AssertionError as exc:
        newest = next((st for a in reversed(io.diagnostics) for st in a.status if st.name.endswith(": inputs")), None)
        raise AssertionError(f"{exc}; newest inputs status: {newest and status_values(newest)}") from None


@pytest.fixture(scope="module")
def played(replayed):
    require_workspace()
    tmp, checkpoint, source, bag, _ = replayed
    domain = domain_id(7)  # 1-6: the other node test modules
    node = NodeProcess(domain, tmp / "node.log", {"model_path": str(checkpoint), "device": "cpu",
                                                  "output_frame": "ego", "diagnostics_period": 0.05,
                                                  "publish_markers": False})
    graph = Graph(domain, "node_vs_replay_player")
    try:
        io = PlannerIO(graph)
        io.wait_ready()
        outcomes = _play(bag, source.topics, io)
        graph.spin_for(0.2)  # the candidates of the last frame
        yield io, outcomes
    finally:
        graph.close()
        code = node.stop()
        print(node.log()[-3000:])
    assert code == 0


def test_the_same_frames_are_planned_and_skipped(replayed, played) -> None:
    from drive_jepa_msgs.msg import SelectionState

    _, _, source, _, dump = replayed
    _, outcomes = played
    image_stamps = [int(s) for s in dump["image_stamps_ns"]]
    assert len(image_stamps) == len(source.image_stamps_ns) - 1 and set(outcomes) == set(image_stamps)
    replay_planned = {s for s, status in zip(image_stamps, dump["image_status"], strict=True) if status == "planned"}
    node_planned = {s for s, state in outcomes.items() if state.selected_index >= 0}
    assert node_planned == replay_planned
    statuses = dict(zip(image_stamps, dump["image_status"].tolist(), strict=True))
    stamps = source.image_stamps_ns
    # the skips the bag was built to cause: start-up, the missing t - 0.5 s frame, the odometry hole
    expected_skips = {int(stamps[k]): "no_previous_frame" for k in (0, 1, 2, 3, 4, DROPPED_IMAGE + 5)}
    expected_skips |= {int(stamps[k]): "stale_odometry" for k in (STALE_IMAGE, STALE_IMAGE + 1)}
    assert {s: st for s, st in statuses.items() if st != "planned"} == expected_skips
    for s in expected_skips:
        assert outcomes[s].reset_reason == SelectionState.INPUT_FAULT and list(outcomes[s].comfort_scores) == []


def test_planned_outputs_are_equal(replayed, played) -> None:
    _, _, _, _, dump = replayed
    io, outcomes = played
    candidates = {stamp_ns_of(c): c for c in io.candidates}
    paths = {stamp_ns_of(p): p for p in io.paths}
    assert len(dump["stamps_ns"]) >= 25
    worst = {"path": 0.0, "score": 0.0}
    for i, stamp_ns in enumerate(int(s) for s in dump["stamps_ns"]):
        cands, path, state = candidates[stamp_ns], paths[stamp_ns], outcomes[stamp_ns]
        selected = int(dump["selected_index"][i])
        assert cands.selected_index == state.selected_index == selected, f"frame {stamp_ns}"
        assert len(cands.candidates) == NUM_PROPOSALS and cands.header.frame_id == "base_link"
        expected = np.asarray(dump["trajectory"][i], np.float64)  # (M, 3) ego frame
        got = poses_of(path)
        np.testing.assert_allclose(got[:, :2], expected[:, :2], atol=1e-4)
        np.testing.assert_allclose(np.angle(np.exp(1j * (got[:, 2] - expected[:, 2]))), 0.0, atol=1e-4)
        np.testing.assert_allclose(poses_of(cands.candidates[selected].path), got, atol=1e-9)
        np.testing.assert_allclose([c.learned_score for c in cands.candidates], dump["scores"][i], atol=1e-5)
        worst["path"] = max(worst["path"], float(np.abs(got[:, :2] - expected[:, :2]).max()))
        worst["score"] = max(worst["score"], float(np.abs(np.subtract([c.learned_score for c in cands.candidates],
                                                                      dump["scores"][i])).max()))
        np.testing.assert_allclose([c.final_score for c in cands.candidates], dump["final_scores"][i], atol=1e-5)
        comfort = np.where(np.isfinite(dump["comfort_scores"][i]), dump["comfort_scores"][i], -1.0)
        np.testing.assert_allclose([c.comfort_score for c in cands.candidates], comfort, atol=0.0)
        np.testing.assert_allclose(state.comfort_scores, comfort, atol=0.0)
        assert state.momentum_valid == bool(dump["momentum_valid"][i])
    assert dump["momentum_valid"].sum() >= 20  # momentum-aware selection was exercised, not only first frames
    print(f"{len(dump['stamps_ns'])} planned frames equal; largest differences: path {worst['path']:.2e} m, "
          f"learned score {worst['score']:.2e}")
