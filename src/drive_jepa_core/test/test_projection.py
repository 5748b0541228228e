"""Camera projection into grid_sample coordinates, checked against a hand-made camera.

Camera: 200 x 100 px, f = 100 px, principal point (99.5, 49.5) (the image centre in OpenCV pixel convention), mounted
at ego (1, 0, 1.5) m looking along +x. Ego point (11, 2, 0.5) is 10 m ahead, 2 m left, 1 m below the camera:
u = 99.5 + 100·(−2)/10 = 79.5, v = 49.5 + 100·1/10 = 59.5, i.e. normalized x = 80·2/200 − 1 = −0.2,
y = 60·2/100 − 1 = 0.2.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drive_jepa_core.models.camera_projection import (
    adjust_projection_for_resize,
    model_ego2image,
    project_points,
)
from drive_jepa_core.preprocess import ImageGeometry, resize_pixel_transform
from drive_jepa_core.scene.format import CameraCalibration

WIDTH, HEIGHT = 200, 100
POINT = (11.0, 2.0, 0.5)


def make_camera(mount_xyz: tuple[float, float, float] = (1.0, 0.0, 1.5)) -> CameraCalibration:
    K = np.array([[100.0, 0.0, 99.5], [0.0, 100.0, 49.5], [0.0, 0.0, 1.0]])
    sensor2ego = np.eye(4)
    # optical x (right) = ego -y, optical y (down) = ego -z, optical z (forward) = ego +x
    sensor2ego[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    sensor2ego[:3, 3] = mount_xyz
    return CameraCalibration("front", WIDTH, HEIGHT, K, sensor2ego)


def test_known_point_projects_to_expected_pixel() -> None:
    P = make_camera().ego2image()
    uvw = P @ np.array([*POINT, 1.0])
    np.testing.assert_allclose(uvw[:2] / uvw[2], [79.5, 59.5], atol=1e-9)
    grid, visible = project_points(torch.tensor([[POINT]], dtype=torch.float64), torch.tensor(P)[None], (WIDTH, HEIGHT))
    np.testing.assert_allclose(grid[0, 0].numpy(), [-0.2, 0.2], atol=1e-9)
    assert bool(visible[0, 0])


def test_visibility_behind_outside_and_edges() -> None:
    P = torch.tensor(make_camera().ego2image())[None]
    points = torch.tensor([[
        [0.0, 0.0, 1.5],  # 1 m behind the camera
        [1.0, 0.0, 1.5],  # at the camera centre (depth 0)
        [2.0, 10.0, 1.5],  # in front but far left: u = 99.5 - 1000
        [11.0, 0.995, 1.5],  # u = 99.5 - 9.95 = 89.55: inside
        [11.0, 10.0, 1.5],  # u = 99.5 - 100 = -0.5: exactly on the left edge -> not strictly inside
    ]], dtype=torch.float64)
    grid, visible = project_points(points, P, (WIDTH, HEIGHT))
    assert visible[0].tolist() == [False, False, False, True, False]
    assert torch.isfinite(grid).all()
    assert grid[0, 0].tolist() == [0.0, 0.0]  # invisible points are parked at a finite (0, 0)


def test_resize_and_crop_adjustment_by_hand() -> None:
    # crop columns 50..150 (100 x 100), resize to 50 x 50: s = 0.5, u' = 0.5 (u - 50 + 0.5) - 0.5
    # (79.5, 59.5) -> (14.5, 29.5) -> normalized (15·2/50 − 1, 30·2/50 − 1) = (−0.4, 0.2)
    crop = (50, 0, 150, 100)
    P = model_ego2image(make_camera(), (50, 50), crop)
    assert P.dtype == np.float32 and P.shape == (3, 4)
    uvw = P.astype(np.float64) @ np.array([*POINT, 1.0])
    np.testing.assert_allclose(uvw[:2] / uvw[2], [14.5, 29.5], atol=1e-4)
    grid, visible = project_points(torch.tensor([[POINT]]), torch.tensor(P)[None], (50, 50))
    np.testing.assert_allclose(grid[0, 0].numpy(), [-0.4, 0.2], atol=1e-5)
    assert bool(visible[0, 0])
    # torch input keeps its type and batch shape
    Pt = adjust_projection_for_resize(torch.tensor(make_camera().ego2image()).expand(3, 3, 4), (WIDTH, HEIGHT),
                                      (50, 50), crop)
    assert isinstance(Pt, torch.Tensor) and Pt.shape == (3, 3, 4)
    np.testing.assert_allclose(Pt[2].numpy(), P, rtol=1e-6, atol=1e-4)


def test_projection_follows_cv2_resize() -> None:
    """Sample a crop+resized linear image at the projected point: bilinear resize and bilinear sampling are exact for
    a linear image, so the value must be the source image's value at the source pixel (79.5, 59.5)."""
    u, v = np.meshgrid(np.arange(WIDTH, dtype=np.float32), np.arange(HEIGHT, dtype=np.float32))
    image = u + 2.0 * v  # I(u, v) = u + 2v
    crop, dst = (40, 10, 160, 70), (60, 30)  # 120 x 60 -> 60 x 30
    x0, y0, x1, y1 = crop
    resized = cv2.resize(image[y0:y1, x0:x1], dst, interpolation=cv2.INTER_LINEAR)
    P = model_ego2image(make_camera(), dst, crop)
    grid, visible = project_points(torch.tensor([[POINT]]), torch.tensor(P)[None], dst)
    assert bool(visible[0, 0])
    sampled = F.grid_sample(torch.tensor(resized)[None, None], grid[:, :, None, :].float(), align_corners=False)
    assert float(sampled) == pytest.approx(79.5 + 2.0 * 59.5, abs=1e-3)


def test_matches_preprocess_image_geometry() -> None:
    """The model's projection helper and the image preprocessing must agree on the crop + resize."""
    geometry = ImageGeometry.center_crop(1920, 1080, 512, 256)
    P = make_camera().ego2image()
    np.testing.assert_allclose(
        adjust_projection_for_resize(P, (1920, 1080), (512, 256), geometry.crop_box), geometry.adjust_projection(P))
    np.testing.assert_allclose(resize_pixel_transform((1920, 1080), (512, 256), geometry.crop_box),
                               geometry.pixel_transform())


def test_each_sample_uses_its_own_camera() -> None:
    # Sample 1's camera sits 1 m further left: the same point appears 10 px further right (u = 79.5 + 10).
    P = torch.tensor(np.stack([make_camera().ego2image(), make_camera((1.0, 1.0, 1.5)).ego2image()]))
    points = torch.tensor([[POINT], [POINT]], dtype=torch.float64)
    grid, visible = project_points(points, P, (WIDTH, HEIGHT))
    np.testing.assert_allclose(grid[:, 0, 0].numpy(), [-0.2, -0.1], atol=1e-9)
    assert visible.all()


def test_bad_inputs_raise() -> None:
    P = torch.tensor(make_camera().ego2image())[None]
    with pytest.raises(ValueError, match="points"):
        project_points(torch.zeros(1, 4, 2), P, (WIDTH, HEIGHT))
    with pytest.raises(ValueError, match="ego2image"):
        project_points(torch.zeros(2, 4, 3, dtype=torch.float64), P, (WIDTH, HEIGHT))
    with pytest.raises(ValueError, match="crop_box"):
        resize_pixel_transform((WIDTH, HEIGHT), (50, 50), (150, 0, 250, 100))
    with pytest.raises(ValueError, match="3, 4"):
        adjust_projection_for_resize(np.eye(3), (WIDTH, HEIGHT), (50, 50))
