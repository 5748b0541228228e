"""PlannerDataset: sample shapes and values from hand-built scenes, teacher draws, collation, GridMask."""

import numpy as np
import pytest
import torch
from _train_scenes import IMAGE_H, IMAGE_W, make_scene, write_scenes

from drive_jepa_core.preprocess import ImageGeometry, prepare_video
from drive_jepa_core.scene import save_scene
from drive_jepa_core.train.augment import GridMask
from drive_jepa_core.train.dataset import PlannerDataset, collate_samples, teachers_path


def test_sample_shapes_and_values(tmp_path):
    paths = write_scenes(tmp_path, 2)
    ds = PlannerDataset(tmp_path, image_size=(128, 64), max_teachers=4)
    assert len(ds) == 2
    s = ds[1]  # speed 7 m/s, command 1 (straight)
    assert s["video"].shape == (3, 2, 64, 128) and s["video"].dtype == torch.float32
    assert s["ego_status"].shape == (11,) and s["ego2image"].shape == (3, 4)
    # Human future: 7 m/s straight ahead -> x = 3.5 k, y = heading = 0.
    np.testing.assert_allclose(s["trajectory"][:, 0].numpy(), 3.5 * np.arange(1, 9), atol=1e-5)
    np.testing.assert_allclose(s["trajectory"][:, 1:].numpy(), 0.0, atol=1e-6)
    # Ego status: pose 0, vx 7, vy/ax/ay 0, command one-hot "straight".
    np.testing.assert_allclose(s["ego_status"].numpy(), [0, 0, 0, 7, 0, 0, 0, 0, 1, 0, 0])
    assert int(s["command"]) == 1 and s["scene_path"] == str(paths[1])
    # The video is exactly the shared preprocessing of the frames at t-0.5 s and t.
    scene = make_scene(1, speed=7.0, command=1)
    g = ImageGeometry.center_crop(IMAGE_W, IMAGE_H, 128, 64)
    expected = prepare_video(scene.frame_at(-0.5), scene.frame_at(0.0), g)
    np.testing.assert_allclose(s["video"].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(s["ego2image"].numpy(), g.adjust_projection(scene.camera.ego2image()), rtol=1e-5)
    # A point straight ahead of the camera lands on the principal point cx = 80, which the crop (rows 8..88) and
    # the 0.8x resize move to 0.8 (80 + 0.5) - 0.5 = 63.9 (cv2 pixel-centre convention); cy = 48 -> 0.8 (40.5) - 0.5.
    uvw = s["ego2image"].numpy() @ np.array([11.5, 0.0, 1.5, 1.0])
    assert uvw[0] / uvw[2] == pytest.approx(63.9, abs=1e-4)
    assert uvw[1] / uvw[2] == pytest.approx(31.9, abs=1e-4)
    # No teacher file -> all padding.
    assert s["teachers"].shape == (1, 4, 8, 3) and not s["teacher_mask"].any() and int(s["num_teachers"]) == 0


def test_teacher_draws_without_replacement(tmp_path):
    (path,) = write_scenes(tmp_path, 1)
    teachers = np.zeros((6, 8, 3), np.float32)
    teachers[:, :, 0] = np.arange(6)[:, None]  # teacher j has x == j everywhere
    np.save(teachers_path(path), teachers)
    ds = PlannerDataset(tmp_path, image_size=(128, 64), max_teachers=4, teacher_draws=3)
    torch.manual_seed(0)
    s = ds[0]
    assert s["teachers"].shape == (3, 4, 8, 3) and s["teacher_mask"].all() and int(s["num_teachers"]) == 6
    for d in range(3):
        ids = s["teachers"][d, :, 0, 0].numpy()
        assert len(set(ids.tolist())) == 4 and set(ids.tolist()) <= set(range(6))
    # Fewer teachers than slots: the rest is padding.
    np.save(teachers_path(path), teachers[:2])
    s = PlannerDataset(tmp_path, image_size=(128, 64), cache=False)[0]
    assert s["teacher_mask"][0].tolist() == [True, True, False, False]
    assert np.all(s["teachers"][0, 2:].numpy() == 0)
    # Disabled teachers (no MTD) ignore the files.
    assert not PlannerDataset(tmp_path, image_size=(128, 64), use_teachers=False)[0]["teacher_mask"].any()


def test_collate_and_errors(tmp_path):
    write_scenes(tmp_path, 3)
    ds = PlannerDataset(tmp_path, image_size=(128, 64))
    batch = collate_samples([ds[i] for i in range(3)])
    assert batch["video"].shape == (3, 3, 2, 64, 128) and batch["teachers"].shape == (3, 1, 4, 8, 3)
    assert isinstance(batch["scene_path"], list) and len(batch["scene_path"]) == 3
    with pytest.raises(ValueError, match="multiples of the 16-pixel patch"):
        PlannerDataset(tmp_path, image_size=(100, 64))
    with pytest.raises(ValueError, match="no scene files"):
        PlannerDataset([])
    bad = make_scene(9)
    bad.camera_frames, bad.camera_timestamps = bad.camera_frames[:2], bad.camera_timestamps[:2]  # no frame at t0
    save_scene(bad, tmp_path / "bad" / "bad.npz")
    with pytest.raises(Exception, match="cannot build a training sample"):
        PlannerDataset(tmp_path / "bad", image_size=(128, 64))[0]


def test_grid_mask_pattern():
    gm = GridMask(prob=1.0, ratio=0.5)
    m = gm.mask(64, 128, torch.Generator().manual_seed(0))
    assert m.shape == (64, 128) and set(m.unique().tolist()) <= {0.0, 1.0}
    # Kept = union of row and column stripes of width ~d/2: about 1 - 1/4 of the pixels stay.
    assert 0.5 < float(m.mean()) < 0.95
    video = torch.ones(2, 3, 2, 64, 128)
    out = gm(video, torch.Generator().manual_seed(0))
    assert torch.equal(out[0, 0, 0], out[1, 2, 1])  # one mask for the batch and both frames
    assert torch.equal(GridMask(prob=0.0)(video), video)
