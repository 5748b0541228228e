"""DiffusionDrive mode-diversity score D (arXiv 2411.15139, Eq. 3; navsim_metrics.md §7).

D = 1 - (1/N) Σ_i Area(τ_i ∩ ∪_j τ_j) / Area(τ_i ∪ ∪_j τ_j) = 1 - mean_i Area(τ_i) / Area(∪_j τ_j), since each
τ_i lies inside the union. D = 0 when all modes coincide and grows as they spread.

Upstream leaves open how a trajectory becomes an area (navsim_metrics.md §7, §11). Our documented choice: the
polyline from the ego origin (0, 0) through the waypoints, buffered by :data:`CORRIDOR_HALF_WIDTH` = 1.0 m on each
side (a 2 m corridor) with flat end caps and shapely's default round joins; areas are exact shapely polygon areas
(no rasterisation). Report D together with this choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely

CORRIDOR_HALF_WIDTH: float = 1.0  # m, half width of a trajectory's corridor (navsim_metrics.md §7 suggested choice)
CORRIDOR_CAP_STYLE: str = "flat"  # no corridor beyond the origin and the last waypoint

__all__ = ["CORRIDOR_CAP_STYLE", "CORRIDOR_HALF_WIDTH", "diversity", "diversity_batch", "trajectory_corridors"]


def trajectory_corridors(trajectories: np.ndarray, half_width: float = CORRIDOR_HALF_WIDTH) -> np.ndarray:
    """Corridor polygons of trajectories in the ego frame.

    Args:
        trajectories: ``(N, M, 2 or 3)`` waypoints (x, y[, heading]) in the current ego frame; heading is ignored.
        half_width: buffer distance in metres.
    Returns:
        ``(N,)`` array of shapely geometries (empty when a trajectory has zero length).
    """
    trajectories = np.asarray(trajectories, dtype=np.float64)
    if trajectories.ndim != 3 or trajectories.shape[-1] not in (2, 3) or trajectories.shape[1] < 1:
        raise ValueError(f"trajectories must be (N, M>=1, 2 or 3), got {trajectories.shape}")
    if trajectories.shape[0] < 1:
        raise ValueError("need at least one trajectory")
    if not np.all(np.isfinite(trajectories)):
        raise ValueError("trajectories must be finite")
    xy = trajectories[..., :2]
    origin = np.zeros((xy.shape[0], 1, 2))
    lines = shapely.linestrings(np.concatenate([origin, xy], axis=1))
    return shapely.buffer(lines, half_width, cap_style=CORRIDOR_CAP_STYLE)


def diversity(trajectories: np.ndarray, half_width: float = CORRIDOR_HALF_WIDTH) -> float:
    """Mode diversity D of one scene's N trajectories (see the module docstring for the area definition).

    Args:
        trajectories: ``(N, M, 2 or 3)`` ego-frame waypoints (DiffusionDrive: N = 20, M = 8).
    Returns:
        D in [0, 1); 0.0 when the union has zero area (all trajectories degenerate at the origin).
    """
    corridors = trajectory_corridors(trajectories, half_width)
    union_area = float(shapely.area(shapely.union_all(corridors)))
    if union_area <= 0.0:
        return 0.0
    return float(1.0 - np.mean(shapely.area(corridors)) / union_area)


def diversity_batch(scenes: Sequence[np.ndarray], half_width: float = CORRIDOR_HALF_WIDTH) -> np.ndarray:
    """Per-scene D for a list of ``(N_s, M, 2 or 3)`` arrays; returns ``(S,)`` (average it for a split's D)."""
    return np.array([diversity(scene, half_width) for scene in scenes], dtype=np.float64)
