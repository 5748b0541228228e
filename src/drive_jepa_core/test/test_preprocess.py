"""The single preprocessing path: crop/resize geometry, normalization, ego status."""

import numpy as np
import pytest

from drive_jepa_core.constants import IMAGENET_MEAN, IMAGENET_STD
from drive_jepa_core.preprocess import (
    ImageGeometry,
    command_one_hot,
    ego_status_vector,
    normalize_frames,
    prepare_video,
    resize_frame,
)


def test_center_crop_keeps_target_aspect():
    g = ImageGeometry.center_crop(1920, 1080, 512, 256)
    x0, y0, x1, y1 = g.crop_box
    assert (x1 - x0) / (y1 - y0) == pytest.approx(2.0)
    assert (x0, x1) == (0, 1920) and (y0, y1) == (60, 1020)
    g2 = ImageGeometry.center_crop(1024, 256, 512, 256)  # too wide: columns cropped
    assert g2.crop_box == (256, 0, 768, 256)


def test_pixel_transform_follows_the_resized_pixels():
    # A single bright pixel moves where the affine says after crop + 2x downscale.
    g = ImageGeometry.center_crop(1024, 600, 512, 256)
    frame = np.zeros((600, 1024, 3), np.uint8)
    u, v = 400, 300
    frame[v - 4:v + 4, u - 4:u + 4] = 255
    out = resize_frame(frame, g)
    ys, xs = np.nonzero(out[:, :, 0] > 100)
    expected = g.pixel_transform() @ np.array([u - 0.5, v - 0.5, 1.0])  # centre of the 8x8 block
    assert xs.mean() == pytest.approx(expected[0], abs=0.6)
    assert ys.mean() == pytest.approx(expected[1], abs=0.6)


def test_adjust_projection_composes_with_pixel_transform():
    g = ImageGeometry.center_crop(800, 600, 512, 256)
    P = np.hstack([np.eye(3), np.zeros((3, 1))])
    P[0, 0] = 300.0
    point = np.array([2.0, -1.0, 10.0, 1.0])
    raw = P @ point
    adjusted = g.adjust_projection(P) @ point
    np.testing.assert_allclose(adjusted[:2] / adjusted[2], (g.pixel_transform() @ (raw / raw[2]))[:2])


def test_normalize_and_stack():
    frames = np.full((2, 4, 6, 3), 255, np.uint8)
    video = normalize_frames(frames)
    assert video.shape == (3, 2, 4, 6) and video.dtype == np.float32
    np.testing.assert_allclose(video[:, 0, 0, 0], (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD), rtol=1e-6)
    g = ImageGeometry.center_crop(64, 32, 32, 16)
    prev = np.zeros((32, 64, 3), np.uint8)
    now = np.full((32, 64, 3), 255, np.uint8)
    v = prepare_video(prev, now, g)
    assert v.shape == (3, 2, 16, 32)
    assert v[:, 0].mean() < v[:, 1].mean()  # temporal order [t-0.5 s, t]


def test_bad_frames_and_values_raise():
    g = ImageGeometry.center_crop(64, 32, 32, 16)
    with pytest.raises(ValueError, match="uint8 RGB"):
        resize_frame(np.zeros((32, 64), np.uint8), g)
    with pytest.raises(ValueError, match="configured for 64x32"):
        resize_frame(np.zeros((30, 64, 3), np.uint8), g)
    with pytest.raises(ValueError, match="NaN"):
        ego_status_vector(np.array([np.nan, 0]), np.zeros(2), 1)
    with pytest.raises(ValueError, match="driving command"):
        command_one_hot(3)


def test_ego_status_layout():
    s = ego_status_vector(np.array([5.0, 0.1]), np.array([0.5, -0.2]), 2)
    np.testing.assert_allclose(s, [0, 0, 0, 5.0, 0.1, 0.5, -0.2, 0, 0, 1, 0], rtol=1e-6)
