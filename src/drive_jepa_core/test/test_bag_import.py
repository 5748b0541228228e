"""``drive-jepa bag import``: rosbag2 recordings → scene files that load, validate and feed the training dataset."""

from __future__ import annotations

import numpy as np
import pytest

from drive_jepa_core.cli import main
from drive_jepa_core.geometry import global_to_local, wrap_angle
from drive_jepa_core.replay.bag_import import CAMERA_OFFSETS, ImportConfig, import_bag
from drive_jepa_core.replay.bag_io import BagReader, BagWriter, ImageEvent, OdometryEvent, write_synthetic_bag
from drive_jepa_core.replay.pairing import InputPairer, PairedInput
from drive_jepa_core.scene.format import load_scene
from drive_jepa_core.world.scenes import make_renderer, render_frames

W, H = 64, 32
START = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_bag(tmp_path_factory.mktemp("bags") / "drive", seed=2, seconds=7.0, storage="mcap",
                               width=W, height=H)


def test_import_scenes_match_the_recording(synthetic, tmp_path):
    summary = import_bag(synthetic.path, tmp_path / "scenes", ImportConfig(stride=0.5))
    # a scene needs odometry over [t0 - 1.5, t0 + 5.0] inside [0, 7]: t0 = 1.5 and 2.0 of the anchors 0, 0.5, ..., 7
    assert summary["scenes"] == 2 and summary["anchors"] == 15
    assert summary["skipped"] == {"no_odometry_coverage": 13, "missing_camera_frame": 0,
                                  "undecodable_camera_frame": 0}
    log = synthetic.log
    renderer = make_renderer(log, synthetic.camera)
    for path, step in zip(sorted(summary["paths"]), (15, 20), strict=True):
        scene = load_scene(path)
        scene.validate()
        assert scene.source == "rosbag" and scene.split == "train" and not scene.has_map
        assert scene.agent_ids.shape == (0,) and scene.extra["t0_stamp_ns"] == START + step * 100_000_000
        assert scene.num_steps == 66 and scene.t0_index == 15
        window = log.ego_states[step - 15:step + 51]
        np.testing.assert_allclose(scene.ego_states[:, [0, 1, 3, 4]], window[:, [0, 1, 3, 4]], atol=1e-6)
        np.testing.assert_allclose(wrap_angle(scene.ego_states[:, 2] - window[:, 2]), 0.0, atol=1e-9)
        np.testing.assert_allclose(scene.future_trajectory(),
                                   global_to_local(log.ego_states[step + 5:step + 41:5, :3], log.ego_states[step, :3]),
                                   atol=1e-6)
        assert scene.command == int(synthetic.commands[step])
        np.testing.assert_allclose(scene.camera_timestamps, CAMERA_OFFSETS, atol=1e-6)
        np.testing.assert_allclose(scene.camera.intrinsics, synthetic.camera.intrinsics)
        frames = render_frames(log, [step + int(round(o * 10)) for o in CAMERA_OFFSETS], renderer)
        np.testing.assert_array_equal(scene.frame_at(0.0), frames[step])
        np.testing.assert_array_equal(scene.frame_at(-0.5), frames[step - 5])


def test_import_acceleration_equals_the_runtime_pairing(synthetic, tmp_path):
    """The t0 ego status a model trains on is what InputPairer computes on the vehicle for that image."""
    summary = import_bag(synthetic.path, tmp_path / "scenes", ImportConfig(stride=0.5))
    scene = load_scene(sorted(summary["paths"])[0], load_frames=False)
    t0_ns = scene.extra["t0_stamp_ns"]
    pairer = InputPairer()
    paired = None
    with BagReader(synthetic.path) as reader:
        for event in reader.messages(("camera", "odometry")):
            if isinstance(event, OdometryEvent):
                pairer.add_odometry(event.stamp, event.pose, event.velocity, event.frame_id)
            elif isinstance(event, ImageEvent):
                result = pairer.process_image(event.stamp, event.frame)
                if event.stamp_ns == t0_ns:
                    paired = result
                    break
    assert isinstance(paired, PairedInput) and paired.acceleration_valid
    np.testing.assert_allclose(scene.ego_states[scene.t0_index], paired.ego_state7(), atol=1e-9)


def test_import_downscaled_and_through_the_cli(synthetic, tmp_path):
    assert main(["bag", "import", str(synthetic.path), "--out", str(tmp_path / "small"), "--stride", "0.5",
                 "--width", "32", "--split", "val"]) == 0
    paths = sorted((tmp_path / "small").glob("*.npz"))
    assert len(paths) == 2
    scene = load_scene(paths[0])
    assert scene.split == "val" and scene.camera_frames.shape == (12, 16, 32, 3)
    assert (scene.camera.width, scene.camera.height) == (32, 16)
    # a ground point projects onto the same relative image position before and after the downscale
    point = np.array([12.0, 1.0, 0.0, 1.0])
    big = synthetic.camera.ego2image() @ point
    small = scene.camera.ego2image() @ point
    u_big, u_small = big[:2] / big[2], small[:2] / small[2]
    np.testing.assert_allclose((u_small + 0.5) * 2.0, u_big + 0.5, atol=1e-9)


def test_import_feeds_the_training_dataset(synthetic, tmp_path):
    from drive_jepa_core.train.dataset import PlannerDataset

    import_bag(synthetic.path, tmp_path / "scenes", ImportConfig(stride=0.5))
    dataset = PlannerDataset(tmp_path / "scenes", image_size=(64, 32), use_teachers=False)
    sample = dataset[0]
    assert tuple(sample["video"].shape) == (3, 2, 32, 64) and tuple(sample["trajectory"].shape) == (8, 3)


def test_import_handles_missing_odometry_and_camera_gaps(tmp_path):
    frame = np.zeros((8, 16, 3), np.uint8)
    path = tmp_path / "gappy"
    with BagWriter(path, "sqlite3") as bag:
        for k in range(80):  # 8 s of camera with a gap around 6 s; odometry only for the first 7 s
            t_ns = START + k * 100_000_000
            if k < 71:
                bag.write_odometry("/odom", t_ns, (0.5 * k, 0.0, 0.0), (5.0, 0.0))
            if not 58 <= k <= 62:
                bag.write_image("/cam", t_ns, frame, log_time_ns=t_ns + 1)
    summary = import_bag(path, tmp_path / "scenes", ImportConfig(stride=0.5))
    # anchors 0 … 7.5 s; odometry covers [t0 - 1.5, t0 + 5] for t0 in {1.5, 2.0}; t0 = 2.0 needs a keyframe at
    # 6.0 s, inside the camera gap (nearest image 0.3 s away)
    assert summary["scenes"] == 1 and summary["skipped"]["missing_camera_frame"] == 1
    assert summary["skipped"]["no_odometry_coverage"] == 14
    scene = load_scene(summary["paths"][0])
    assert scene.command == 1 and scene.camera.name  # straight without a command topic; default camera
    assert scene.ego_states[scene.t0_index, 3] == pytest.approx(5.0)
    no_odom = tmp_path / "camera_only"
    with BagWriter(no_odom, "mcap") as bag:
        for k in range(20):
            bag.write_image("/cam", START + k * 100_000_000, frame)
    summary = import_bag(no_odom, tmp_path / "none")
    assert summary["scenes"] == 0 and summary["skipped"]["no_odometry_coverage"] == 2
