"""Ego-frame 3-D points → normalized image / feature-map coordinates for ``F.grid_sample``, per sample.

Conventions:
* Ego frame: rear axle, x forward, y left, z up (NAVSIM). A camera's ``ego2image`` is the ``(3, 4)`` matrix
  ``K [R | t]`` of :meth:`drive_jepa_core.scene.format.CameraCalibration.ego2image`.
* Pixels: OpenCV's, pixel ``(0, 0)``'s centre at ``u = v = 0``; an image of width W spans ``u ∈ [-0.5, W - 0.5]``.
* Normalized coordinates: ``F.grid_sample(align_corners=False)``'s, ``x = (u + 0.5) · 2 / W − 1`` so the image spans
  exactly ``[-1, 1]``. A ViT feature map of ``H/16 × W/16`` cells covers the same extent, so the same normalized
  point addresses the same place in the image and in the feature map.

This fixes two reference quirks (drive_jepa.md §4.2 b, §13): every sample is projected through its own camera
(upstream took the visibility of batch element 0), and the projection is adjusted by the very crop + resize applied
to the pixels (upstream normalized by a padded full frame while the features came from a cropped one).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from drive_jepa_core.preprocess import resize_pixel_transform
from drive_jepa_core.scene.format import CameraCalibration

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def adjust_projection_for_resize(P: ArrayT, src_wh: tuple[int, int], dst_wh: tuple[int, int],
                                 crop_box: tuple[int, int, int, int] | None = None) -> ArrayT:
    """Projection into the source image → projection into the cropped and resized image.

    Args:
        P: ``(..., 3, 4)`` ego2image matrices (numpy or torch) for images of size ``src_wh``.
        src_wh, dst_wh, crop_box: as :func:`resize_pixel_transform`.
    Returns:
        ``(..., 3, 4)`` of the same type, dtype and device.
    """
    if P.shape[-2:] != (3, 4):
        raise ValueError(f"expected projection matrices (..., 3, 4), got shape {tuple(P.shape)}")
    A = resize_pixel_transform(src_wh, dst_wh, crop_box)
    if isinstance(P, torch.Tensor):
        return torch.as_tensor(A, dtype=P.dtype, device=P.device) @ P
    return (A @ np.asarray(P, dtype=np.float64)).astype(np.result_type(P.dtype, np.float32), copy=False)


def model_ego2image(calibration: CameraCalibration, dst_wh: tuple[int, int],
                    crop_box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``(3, 4)`` float32 ego2image of a scene camera for the model input (same crop + resize as the image)."""
    P = adjust_projection_for_resize(calibration.ego2image(), (calibration.width, calibration.height), dst_wh, crop_box)
    return P.astype(np.float32)


def project_points(points: torch.Tensor, ego2image: torch.Tensor, image_wh: tuple[int, int],
                   min_depth: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ego-frame points through each sample's own camera.

    Args:
        points: ``(B, Q, 3)`` ego-frame points (m).
        ego2image: ``(B, 3, 4)`` projection into the model-input image (see :func:`adjust_projection_for_resize`).
        image_wh: model-input image ``(width, height)`` in pixels.
        min_depth: points at camera depth ≤ this are behind the camera (m).
    Returns:
        grid: ``(B, Q, 2)`` normalized ``(x, y)`` in ``grid_sample`` convention; points that are not visible are set to
            ``(0, 0)`` so they stay finite (mask them with ``visible``).
        visible: ``(B, Q)`` bool, in front of the camera and strictly inside the image.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be (B, Q, 3), got {tuple(points.shape)}")
    if ego2image.dim() != 3 or ego2image.shape[1:] != (3, 4) or ego2image.shape[0] != points.shape[0]:
        raise ValueError(f"ego2image must be (B={points.shape[0]}, 3, 4), got {tuple(ego2image.shape)}")
    width, height = (float(v) for v in image_wh)
    with torch.autocast(device_type=points.device.type, enabled=False):  # pixel coordinates need fp32 or better
        if points.dtype in (torch.float16, torch.bfloat16):
            points = points.float()
        return _project(points, ego2image.to(points.dtype), width, height, min_depth)


def _project(points: torch.Tensor, ego2image: torch.Tensor, width: float, height: float,
             min_depth: float) -> tuple[torch.Tensor, torch.Tensor]:
    rot, trans = ego2image[:, :, :3], ego2image[:, :, 3]
    uvw = points @ rot.transpose(1, 2) + trans[:, None, :]  # (B, Q, 3) homogeneous pixels
    depth = uvw[..., 2]
    in_front = depth > min_depth
    uv = uvw[..., :2] / depth.clamp(min=min_depth).unsqueeze(-1)
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=points.dtype, device=points.device)
    grid = (uv + 0.5) * scale - 1.0
    visible = in_front & (grid.abs() < 1.0).all(dim=-1)
    grid = torch.where(visible.unsqueeze(-1), grid, torch.zeros_like(grid))
    return grid, visible
