"""SE(2) helpers shared by the world, the simulator, the metrics and the runtime (numpy, vectorized).

Poses are ``(..., 3)`` arrays ``(x, y, heading)``; headings are radians, CCW positive.
"""

from __future__ import annotations

import numpy as np

from drive_jepa_core.constants import EGO_VEHICLE, VehicleParameters


def wrap_angle(angle: np.ndarray | float) -> np.ndarray:
    """Wrap to [-pi, pi] as ``atan2(sin a, cos a)`` (NAVSIM's convention)."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.arctan2(np.sin(angle), np.cos(angle))


def local_to_global(local: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Compose poses given in the frame of ``origin`` into the global frame.

    Args:
        local: ``(..., 3)`` poses (x, y, heading) relative to ``origin``.
        origin: ``(3,)`` or broadcastable ``(..., 3)`` global pose of the local frame.
    Returns:
        ``(..., 3)`` global poses; headings add and are wrapped.
    """
    local = np.asarray(local, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    cos_h, sin_h = np.cos(origin[..., 2]), np.sin(origin[..., 2])
    x = origin[..., 0] + cos_h * local[..., 0] - sin_h * local[..., 1]
    y = origin[..., 1] + sin_h * local[..., 0] + cos_h * local[..., 1]
    return np.stack([x, y, wrap_angle(origin[..., 2] + local[..., 2])], axis=-1)


def global_to_local(poses: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Express global ``(..., 3)`` poses in the frame of the global pose ``origin`` (inverse of local_to_global)."""
    poses = np.asarray(poses, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64)
    dx, dy = poses[..., 0] - origin[..., 0], poses[..., 1] - origin[..., 1]
    cos_h, sin_h = np.cos(origin[..., 2]), np.sin(origin[..., 2])
    x = cos_h * dx + sin_h * dy
    y = -sin_h * dx + cos_h * dy
    return np.stack([x, y, wrap_angle(poses[..., 2] - origin[..., 2])], axis=-1)


def rotate_vectors(vectors: np.ndarray, angle: np.ndarray | float) -> np.ndarray:
    """Rotate ``(..., 2)`` vectors by ``angle`` (broadcast over the leading dims)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    return np.stack(
        [cos_a * vectors[..., 0] - sin_a * vectors[..., 1], sin_a * vectors[..., 0] + cos_a * vectors[..., 1]],
        axis=-1,
    )


def box_corners(center_xy: np.ndarray, heading: np.ndarray, length: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Corners of oriented boxes in the order FL, RL, RR, FR (NAVSIM's order).

    Args:
        center_xy: ``(..., 2)`` box centres; heading ``(...)``; length, width broadcastable to ``(...)``.
    Returns:
        ``(..., 4, 2)`` corners.
    """
    center_xy = np.asarray(center_xy, dtype=np.float64)
    heading = np.asarray(heading, dtype=np.float64)
    half_l = np.asarray(length, dtype=np.float64)[..., None] / 2.0
    half_w = np.asarray(width, dtype=np.float64)[..., None] / 2.0
    fwd = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    left = np.stack([-np.sin(heading), np.cos(heading)], axis=-1)
    fl = center_xy + half_l * fwd + half_w * left
    rl = center_xy - half_l * fwd + half_w * left
    rr = center_xy - half_l * fwd - half_w * left
    fr = center_xy + half_l * fwd - half_w * left
    return np.stack([fl, rl, rr, fr], axis=-2)


def ego_center(rear_axle_pose: np.ndarray, vehicle: VehicleParameters = EGO_VEHICLE) -> np.ndarray:
    """Geometric centre ``(..., 2)`` of the ego box from rear-axle poses ``(..., 3)``."""
    rear_axle_pose = np.asarray(rear_axle_pose, dtype=np.float64)
    d = vehicle.rear_axle_to_center
    return rear_axle_pose[..., :2] + d * np.stack(
        [np.cos(rear_axle_pose[..., 2]), np.sin(rear_axle_pose[..., 2])], axis=-1
    )


def ego_corners(rear_axle_pose: np.ndarray, vehicle: VehicleParameters = EGO_VEHICLE) -> np.ndarray:
    """Ego box corners ``(..., 4, 2)`` (FL, RL, RR, FR) from rear-axle poses ``(..., 3)``."""
    return box_corners(ego_center(rear_axle_pose, vehicle), np.asarray(rear_axle_pose)[..., 2],
                       vehicle.length, vehicle.width)
