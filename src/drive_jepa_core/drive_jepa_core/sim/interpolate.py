"""Planned poses at 0.5 s -> world reference poses at 0.1 s (navsim_metrics.md §2.1)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from drive_jepa_core.constants import SIM_DT, TRAJ_DT
from drive_jepa_core.geometry import local_to_global, wrap_angle

# Simulation steps per planner interval (0.5 s / 0.1 s = 5).
STEPS_PER_POSE: int = round(TRAJ_DT / SIM_DT)


@lru_cache(maxsize=8)
def _interpolation_weights(num_poses: int) -> np.ndarray:
    """``(N + 1, 5 N + 1)`` linear-interpolation weights from the uniform 0.5 s knots to the 0.1 s samples.

    Sample m lies between knots m // 5 and m // 5 + 1 at fraction (m % 5) / 5; the last sample is knot N exactly.
    """
    num_out = STEPS_PER_POSE * num_poses + 1
    weights = np.zeros((num_poses + 1, num_out))
    for m in range(num_out):
        left, rem = divmod(m, STEPS_PER_POSE)
        frac = rem / STEPS_PER_POSE
        weights[left, m] = 1.0 - frac
        if rem:
            weights[left + 1, m] = frac
    weights.setflags(write=False)
    return weights


def reference_poses(trajectories: np.ndarray, ego_pose: np.ndarray) -> np.ndarray:
    """World reference poses at 0.1 s for planned trajectories (navsim_metrics.md §2.1).

    The N local poses are composed with the current rear-axle pose, the current pose is prepended at t = 0, x and y
    are interpolated linearly, the heading is unwrapped over the N + 1 knots, interpolated linearly and wrapped.

    Args:
        trajectories: ``(K, N, 3)`` poses (x, y, heading) at t = 0.5, 1.0, …, 0.5 N s in the current rear-axle frame
            (N = 8 for NAVSIM).
        ego_pose: ``(3,)`` current world rear-axle pose.
    Returns:
        ``(K, 5 N + 1, 3)`` world poses at t = 0, 0.1, …, 0.5 N s (41 for N = 8); index 0 is ``ego_pose``.
    """
    trajectories = np.asarray(trajectories, dtype=np.float64)
    ego_pose = np.asarray(ego_pose, dtype=np.float64)
    if trajectories.ndim != 3 or trajectories.shape[-1] != 3 or trajectories.shape[1] < 1:
        raise ValueError(f"trajectories must be (K, N>=1, 3), got {trajectories.shape}")
    if ego_pose.shape != (3,):
        raise ValueError(f"ego_pose must be (3,), got {ego_pose.shape}")
    if not (np.all(np.isfinite(trajectories)) and np.all(np.isfinite(ego_pose))):
        raise ValueError("trajectories and ego_pose must be finite")

    num_traj, num_poses, _ = trajectories.shape
    world = local_to_global(trajectories, ego_pose)  # (K, N, 3)
    knots = np.concatenate([np.broadcast_to(ego_pose, (num_traj, 1, 3)), world], axis=1)  # (K, N + 1, 3)
    headings = np.unwrap(knots[..., 2], axis=1)

    weights = _interpolation_weights(num_poses)  # (N + 1, 5 N + 1)
    out = np.empty((num_traj, weights.shape[1], 3), dtype=np.float64)
    out[..., 0] = knots[..., 0] @ weights
    out[..., 1] = knots[..., 1] @ weights
    out[..., 2] = wrap_angle(headings @ weights)
    return out
