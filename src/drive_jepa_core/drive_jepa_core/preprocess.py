"""Model input preparation shared by training, evaluation, replay and the ROS node (one path, no drift).

Camera frames arrive as uint8 RGB ``(H, W, 3)`` of any size. They are centre-cropped to the model's aspect ratio,
resized to the model input (default 512×256, drive_jepa.md §2.1), converted to float and ImageNet-normalized, and the
two frames are stacked in temporal order ``[t-0.5 s, t]`` as a 2-frame video ``(3, T=2, H, W)``.
The same crop/resize is applied to the camera projection matrix so waypoint anchors land where the pixels went.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from drive_jepa_core.constants import (
    COMMAND_DIM,
    DEFAULT_IMAGE_HEIGHT,
    DEFAULT_IMAGE_WIDTH,
    IMAGENET_MEAN,
    IMAGENET_STD,
)

EGO_STATUS_DIM = 11  # pose (3) + velocity (2) + acceleration (2) + command (4), drive_jepa.md §2.2

_MEAN = np.asarray(IMAGENET_MEAN, dtype=np.float32) * 255.0
_INV_STD = 1.0 / (np.asarray(IMAGENET_STD, dtype=np.float32) * 255.0)


@dataclass(frozen=True)
class ImageGeometry:
    """How a source image maps onto the model input: crop ``(x0, y0, x1, y1)`` in source pixels, then resize."""

    src_width: int
    src_height: int
    crop_box: tuple[int, int, int, int]
    dst_width: int
    dst_height: int

    @classmethod
    def center_crop(cls, src_width: int, src_height: int, dst_width: int = DEFAULT_IMAGE_WIDTH,
                    dst_height: int = DEFAULT_IMAGE_HEIGHT) -> ImageGeometry:
        """Largest centred crop with the destination aspect ratio (the reference crops rows [28:-28] of 1920×1080
        and calls the 1.875 result "2:1"; we crop to the exact target aspect so pixels are not stretched)."""
        if min(src_width, src_height, dst_width, dst_height) <= 0:
            raise ValueError(f"image sizes must be positive, got src {src_width}x{src_height} "
                             f"dst {dst_width}x{dst_height}")
        target = dst_width / dst_height
        if src_width / src_height > target:  # too wide: crop columns
            w = int(round(src_height * target))
            x0 = (src_width - w) // 2
            box = (x0, 0, x0 + w, src_height)
        else:  # too tall: crop rows
            h = int(round(src_width / target))
            y0 = (src_height - h) // 2
            box = (0, y0, src_width, y0 + h)
        return cls(src_width, src_height, box, dst_width, dst_height)

    def pixel_transform(self) -> np.ndarray:
        """``(3, 3)`` affine taking source pixel coordinates to model-input pixel coordinates."""
        return resize_pixel_transform((self.src_width, self.src_height), (self.dst_width, self.dst_height),
                                      self.crop_box)

    def adjust_projection(self, ego2image: np.ndarray) -> np.ndarray:
        """Projection ``(3, 4)`` from ego coordinates into the *model input* image."""
        return self.pixel_transform() @ np.asarray(ego2image, dtype=np.float64)


def resize_pixel_transform(src_wh: tuple[int, int], dst_wh: tuple[int, int],
                           crop_box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``(3, 3)`` affine from source pixels to pixels after cropping ``crop_box`` and resizing to ``dst_wh``.

    Args:
        src_wh: source image ``(width, height)``.
        dst_wh: resized image ``(width, height)``.
        crop_box: ``(x0, y0, x1, y1)`` in source pixels, x1/y1 exclusive; ``None`` = the whole image.
    Returns:
        ``A`` with ``[u', v', 1] = A [u, v, 1]``; ``cv2.resize`` maps pixel centres as ``u' + 0.5 = s (u − x0 + 0.5)``.
    """
    src_w, src_h = (int(v) for v in src_wh)
    dst_w, dst_h = (int(v) for v in dst_wh)
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"image sizes must be positive, got src {src_wh} dst {dst_wh}")
    x0, y0, x1, y1 = (0, 0, src_w, src_h) if crop_box is None else (int(v) for v in crop_box)
    if not (0 <= x0 < x1 <= src_w and 0 <= y0 < y1 <= src_h):
        raise ValueError(f"crop_box {crop_box} is not a non-empty box inside the {src_w}x{src_h} source image")
    sx, sy = dst_w / (x1 - x0), dst_h / (y1 - y0)
    return np.array([[sx, 0.0, sx * (0.5 - x0) - 0.5], [0.0, sy, sy * (0.5 - y0) - 0.5], [0.0, 0.0, 1.0]])


def resize_frame(frame: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """Crop + resize a uint8 ``(H, W, 3)`` RGB frame to ``(dst_h, dst_w, 3)`` uint8."""
    check_frame(frame, geometry)
    x0, y0, x1, y1 = geometry.crop_box
    crop = frame[y0:y1, x0:x1]
    if crop.shape[1] == geometry.dst_width and crop.shape[0] == geometry.dst_height:
        return np.ascontiguousarray(crop)
    interp = cv2.INTER_AREA if crop.shape[1] > geometry.dst_width else cv2.INTER_LINEAR
    return cv2.resize(crop, (geometry.dst_width, geometry.dst_height), interpolation=interp)


def check_frame(frame: np.ndarray, geometry: ImageGeometry | None = None) -> None:
    """Raise ValueError unless ``frame`` is a uint8 ``(H, W, 3)`` image (of the geometry's source size)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected a uint8 RGB frame of shape (H, W, 3), got {desc}")
    if geometry is not None and frame.shape[:2] != (geometry.src_height, geometry.src_width):
        raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]} but the camera is configured for "
                         f"{geometry.src_width}x{geometry.src_height}")


def normalize_frames(frames: np.ndarray) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` → ImageNet-normalized float32 video ``(3, T, H, W)``."""
    video = (frames.astype(np.float32) - _MEAN) * _INV_STD
    return np.ascontiguousarray(video.transpose(3, 0, 1, 2))


def prepare_video(frame_prev: np.ndarray, frame_now: np.ndarray, geometry: ImageGeometry) -> np.ndarray:
    """Two uint8 frames (t-0.5 s, t) → model input ``(3, 2, H, W)`` float32."""
    frames = np.stack([resize_frame(frame_prev, geometry), resize_frame(frame_now, geometry)])
    return normalize_frames(frames)


def command_one_hot(command: int) -> np.ndarray:
    """Driving command index (0 left, 1 straight, 2 right) → ``(4,)`` float32 one-hot (4th slot unused)."""
    if not 0 <= int(command) < COMMAND_DIM - 1:
        raise ValueError(f"driving command must be 0 (left), 1 (straight) or 2 (right), got {command}")
    out = np.zeros(COMMAND_DIM, dtype=np.float32)
    out[int(command)] = 1.0
    return out


def ego_status_vector(velocity: np.ndarray, acceleration: np.ndarray, command: int) -> np.ndarray:
    """Ego status ``(11,)`` = [pose in its own frame (0, 0, 0), vx, vy, ax, ay, command one-hot (4)].

    Velocity and acceleration are body-frame (rear axle), as in NAVSIM's AgentInput (drive_jepa.md §2.2).
    """
    values = np.concatenate([np.zeros(3), np.asarray(velocity, float)[:2], np.asarray(acceleration, float)[:2]])
    if not np.all(np.isfinite(values)):
        raise ValueError(f"ego status contains NaN/inf: velocity={velocity}, acceleration={acceleration}")
    return np.concatenate([values.astype(np.float32), command_one_hot(command)])
