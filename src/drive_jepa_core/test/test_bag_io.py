"""rosbag2 reading/writing with rosbags: synthetic round trips (mcap and sqlite3), image decoders, topic detection."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from drive_jepa_core.replay.bag_io import (
    IMAGE,
    OUTPUT_TOPICS,
    BagError,
    BagReader,
    BagWriter,
    CameraInfoEvent,
    CommandEvent,
    ImageDecodeError,
    ImageEvent,
    OdometryEvent,
    bag_typestore,
    decode_compressed_image,
    decode_raw_image,
    ns_to_seconds,
    quaternion_to_yaw,
    write_synthetic_bag,
)
from drive_jepa_core.replay.pairing import SkipReason
from drive_jepa_core.world.scenes import make_renderer, render_frames

W, H = 64, 32


@pytest.fixture(scope="module", params=[("mcap", "raw"), ("sqlite3", "jpeg")], ids=["mcap-raw", "sqlite3-jpeg"])
def synthetic(request, tmp_path_factory):
    storage, fmt = request.param
    path = tmp_path_factory.mktemp("bags") / f"synth_{storage}"
    return write_synthetic_bag(path, seed=4, seconds=2.0, storage=storage, image_format=fmt, width=W, height=H)


def test_synthetic_round_trip(synthetic):
    log = synthetic.log
    assert len(synthetic.image_stamps_ns) == log.num_steps == 21
    assert len(synthetic.odometry_stamps_ns) == 101  # 50 Hz over 2 s
    with BagReader(synthetic.path) as reader:
        assert reader.storage == synthetic.storage
        assert reader.topics.camera == synthetic.topics["camera"]
        assert reader.topics.odometry == "/odom" and reader.topics.command == synthetic.topics["command"]
        assert reader.topics.camera_info == synthetic.topics["camera_info"]
        events = list(reader.messages())
        track = reader.odometry_track()
    log_times = [e.log_time_ns for e in events]
    assert log_times == sorted(log_times)
    images = [e for e in events if isinstance(e, ImageEvent)]
    odometry = [e for e in events if isinstance(e, OdometryEvent)]
    commands = [e for e in events if isinstance(e, CommandEvent)]
    infos = [e for e in events if isinstance(e, CameraInfoEvent)]
    assert [e.stamp_ns for e in images] == synthetic.image_stamps_ns.tolist()
    assert len(odometry) == 101 and len(commands) == 21 and len(infos) == 21
    assert [c.command for c in commands] == synthetic.commands.tolist()
    assert odometry[0].frame_id == "odom" and odometry[0].child_frame_id == "base_link"
    np.testing.assert_allclose(infos[0].k, synthetic.camera.intrinsics)
    calib = infos[0].calibration()
    assert calib is not None and (calib.width, calib.height) == (W, H)
    np.testing.assert_allclose(calib.ego2image(), synthetic.camera.ego2image())
    # odometry at the camera stamps reproduces the world log exactly (samples fall on the 10 Hz states)
    at_images = [o for o in odometry if o.stamp_ns in set(synthetic.image_stamps_ns.tolist())]
    assert len(at_images) == 21
    np.testing.assert_allclose([o.pose for o in at_images], log.ego_states[:, :3], atol=1e-9)
    np.testing.assert_allclose([o.velocity for o in at_images], log.ego_states[:, 3:5], atol=1e-9)
    poses, velocities = track.interpolate(np.array([ns_to_seconds(int(s)) for s in synthetic.image_stamps_ns]))
    np.testing.assert_allclose(poses, log.ego_states[:, :3], atol=1e-6)
    np.testing.assert_allclose(velocities, log.ego_states[:, 3:5], atol=1e-6)
    # frames: raw is pixel exact; jpeg close
    renderer = make_renderer(log, synthetic.camera)
    for k in (0, 10, 20):
        expected = render_frames(log, [k], renderer)[k]
        frame = images[k].frame
        assert frame is not None and frame.shape == (H, W, 3) and frame.dtype == np.uint8
        if synthetic.storage == "mcap":
            np.testing.assert_array_equal(frame, expected)
        else:
            assert np.mean(np.abs(frame.astype(int) - expected.astype(int))) < 8.0


def test_raw_decoders_by_hand():
    rgb = np.array([[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]]], dtype=np.uint8)
    assert decode_raw_image("rgb8", 2, 2, 6, rgb.tobytes()).tolist() == rgb.tolist()
    assert decode_raw_image("bgr8", 2, 2, 6, rgb[..., ::-1].tobytes()).tolist() == rgb.tolist()
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 200, np.uint8)], axis=2)
    assert decode_raw_image("rgba8", 2, 2, 8, rgba.tobytes()).tolist() == rgb.tolist()
    bgra = np.concatenate([rgb[..., ::-1], np.full((2, 2, 1), 200, np.uint8)], axis=2)
    assert decode_raw_image("BGRA8", 2, 2, 8, bgra.tobytes()).tolist() == rgb.tolist()
    mono = decode_raw_image("mono8", 1, 3, 3, bytes([0, 128, 255]))
    assert mono.tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]
    padded = np.zeros((2, 8), np.uint8)  # step 8 > row 6 (2 padding bytes per row)
    padded[:, :6] = rgb.reshape(2, 6)
    assert decode_raw_image("rgb8", 2, 2, 8, padded.tobytes()[:-2]).tolist() == rgb.tolist()  # last pad may be cut
    with pytest.raises(ImageDecodeError) as err:
        decode_raw_image("yuv422", 2, 2, 4, bytes(8))
    assert err.value.reason is SkipReason.WRONG_ENCODING
    for args in (("rgb8", 2, 2, 6, bytes(11)), ("rgb8", 2, 2, 5, bytes(12)), ("rgb8", 0, 2, 6, b"")):
        with pytest.raises(ImageDecodeError) as err:
            decode_raw_image(*args)
        assert err.value.reason is SkipReason.UNDECODABLE_IMAGE


def test_compressed_decoders():
    img = np.random.default_rng(0).integers(0, 255, (8, 12, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", img[:, :, ::-1])
    assert ok
    np.testing.assert_array_equal(decode_compressed_image("png", png.tobytes()), img)
    np.testing.assert_array_equal(decode_compressed_image("", png.tobytes()), img)  # sniffed from the bytes
    np.testing.assert_array_equal(decode_compressed_image("rgb8; png compressed bgr8", png.tobytes()), img)
    for fmt, data, reason in (("jpeg", b"not an image", SkipReason.UNDECODABLE_IMAGE),
                              ("jpeg", b"", SkipReason.UNDECODABLE_IMAGE),
                              ("16UC1; compressedDepth png", png.tobytes(), SkipReason.WRONG_ENCODING),
                              ("h264", png.tobytes(), SkipReason.WRONG_ENCODING)):
        with pytest.raises(ImageDecodeError) as err:
            decode_compressed_image(fmt, data)
        assert err.value.reason is reason


def test_quaternion_to_yaw():
    assert quaternion_to_yaw(0.0, 0.0, math.sin(0.3), math.cos(0.3)) == pytest.approx(0.6)
    assert quaternion_to_yaw(0.0, 0.0, 2 * math.sin(-1.0), 2 * math.cos(-1.0)) == pytest.approx(-2.0)
    assert math.isnan(quaternion_to_yaw(0.0, 0.0, 0.0, 0.0))
    assert math.isnan(quaternion_to_yaw(0.0, 0.0, math.nan, 1.0))


def test_topic_detection(tmp_path):
    frame = np.zeros((4, 4, 3), np.uint8)
    path = tmp_path / "two_cams"
    with BagWriter(path, "mcap") as bag:
        bag.write_image("/camera/rear/image_raw", 1, frame)
        bag.write_image("/camera/front/image_raw", 2, frame)
        bag.write_compressed("/camera/front/image_raw/compressed", 3, frame)
    with BagReader(path) as reader:  # raw before compressed, "front" breaks the tie
        assert reader.topics.camera == "/camera/front/image_raw" and reader.topics.camera_type == IMAGE
        assert reader.topics.odometry is None and reader.topics.command is None
    with BagReader(path, camera_topic="/camera/front/image_raw/compressed") as reader:
        assert [e.frame.shape for e in reader.messages() if isinstance(e, ImageEvent)] == [(4, 4, 3)]
    with pytest.raises(BagError, match="not in the bag"):
        BagReader(path, camera_topic="/nope")
    path2 = tmp_path / "ambiguous"
    with BagWriter(path2, "sqlite3") as bag:
        bag.write_image("/a/image", 1, frame)
        bag.write_image("/b/image", 2, frame)
    with pytest.raises(BagError, match="several camera topics"):
        BagReader(path2)
    path3 = tmp_path / "no_camera"
    with BagWriter(path3, "mcap") as bag:
        bag.write_odometry("/odom", 1, (0, 0, 0), (1, 0))
    with pytest.raises(BagError, match="no sensor_msgs/Image"):
        BagReader(path3)
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "missing")
    with pytest.raises(BagError, match="exists already"):
        BagWriter(path3)


def test_reader_reports_bad_images_instead_of_failing(tmp_path):
    path = tmp_path / "bad"
    with BagWriter(path, "sqlite3") as bag:
        bag.write_image("/cam", 1, data=bytes(16), width=2, height=2, step=8, encoding="yuv422")
        bag.write_image("/cam", 2, data=bytes(5), width=2, height=2, step=6, encoding="rgb8")
        bag.write_image("/cam", 3, np.zeros((2, 2, 3), np.uint8), encoding="bgr8")
        bag.write_odometry("/odom", 4, (1.0, 2.0, math.nan), (1.0, 0.0))
    with BagReader(path) as reader:
        events = list(reader.messages())
        assert len(reader.odometry_track()) == 0  # the only sample is not finite
    skips = [e.skip for e in events if isinstance(e, ImageEvent)]
    assert skips == [SkipReason.WRONG_ENCODING, SkipReason.UNDECODABLE_IMAGE, None]
    odo = next(e for e in events if isinstance(e, OdometryEvent))
    assert math.isnan(odo.pose[2]) and odo.pose[0] == 1.0


def test_output_messages_round_trip(tmp_path):
    from drive_jepa_core.runtime.planner import PlanResult, StageTimings
    from drive_jepa_core.selection import MomentumSelector

    proposals = np.zeros((3, 8, 3), np.float32)
    proposals[:, :, 0] = np.arange(1, 9) * 2.0
    proposals[1, :, 1] = 1.0
    proposals[2, :, 1] = -1.0
    scores = np.array([0.2, 0.9, 0.5])
    ego = np.array([10.0, 20.0, math.pi / 2, 4.0, 0.0, 0.0, 0.0])
    sel = MomentumSelector().select(proposals, scores, ego, 5.0)
    plan = PlanResult(stamp=5.0, ego_state=ego, proposals=proposals, score_logits=np.zeros(3, np.float32),
                      scores=scores, comfort_scores=sel.comfort_scores, final_scores=sel.final_scores,
                      selected_index=sel.selected_index, trajectory=proposals[sel.selected_index],
                      valid=sel.valid, reset_reason=sel.reset_reason, interval=sel.interval,
                      previous_index=sel.previous_index, timings=StageTimings(0.0, 0.0, 0.0), backend="test",
                      selection=sel)
    path = tmp_path / "out"
    stamp = 1_700_000_005_250_000_000
    with BagWriter(path, "mcap") as bag:
        bag.write_plan(plan, stamp, frame_id="odom")
    store = bag_typestore()
    with Reader(path) as reader:
        assert {c.topic for c in reader.connections} == {t for t, _ in OUTPUT_TOPICS.values()}
        msgs = {c.topic: (t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()}
    assert [log_time for log_time, _ in msgs.values()] == [stamp] * 4
    path_msg = msgs[OUTPUT_TOPICS["path"][0]][1]
    assert path_msg.header.frame_id == "odom" and path_msg.header.stamp.sec == 1_700_000_005
    assert path_msg.header.stamp.nanosec == 250_000_000 and len(path_msg.poses) == 8
    first = path_msg.poses[0].pose  # selected = proposal 1 (highest score): (2, 1) local -> heading north at (10, 20)
    assert (first.position.x, first.position.y) == pytest.approx((9.0, 22.0))
    assert quaternion_to_yaw(first.orientation.x, first.orientation.y, first.orientation.z,
                             first.orientation.w) == pytest.approx(math.pi / 2)
    cands = msgs[OUTPUT_TOPICS["candidates"][0]][1]
    assert cands.selected_index == 1 and len(cands.candidates) == 3 and cands.generator_name == "drive_jepa"
    assert [c.index for c in cands.candidates] == [0, 1, 2]
    assert [c.learned_score for c in cands.candidates] == pytest.approx(scores.tolist())
    assert all(c.comfort_score == -1.0 for c in cands.candidates)  # first frame: no momentum ("not available")
    assert cands.candidates[0].time_step == pytest.approx(0.5) and len(cands.generator_id) == 16
    state = msgs[OUTPUT_TOPICS["selection_state"][0]][1]
    assert not state.momentum_valid and state.reset_reason == 1 and state.selected_index == 1
    assert list(state.comfort_scores) == [-1.0] * 3 and state.interval == 0.0  # never NaN
    assert state.previous_index == -1 and state.momentum_weight == pytest.approx(1 / 8)
    markers = msgs[OUTPUT_TOPICS["markers"][0]][1].markers
    assert markers[0].action == 3 and len(markers) == 1 + 3 + 1
    assert markers[-1].ns == "selected" and len(markers[-1].points) == 8
