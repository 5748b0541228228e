"""NAVSIM-faithful ego simulation: planned poses -> 0.1 s references -> LQR tracker + kinematic bicycle states.

See shared/reference/navsim_metrics.md §2. Public entry points: :func:`simulate_trajectories` (planner output to
simulated states), :func:`~drive_jepa_core.sim.interpolate.reference_poses`,
:func:`~drive_jepa_core.sim.tracker.initial_state`, :func:`~drive_jepa_core.sim.tracker.simulate` and the state
column indices :class:`StateIndex`.
"""

from __future__ import annotations

import numpy as np

from drive_jepa_core.sim.constants import STATE_DIM, TRACKER_PARAMETERS, StateIndex, TrackerParameters
from drive_jepa_core.sim.interpolate import reference_poses
from drive_jepa_core.sim.tracker import initial_state, simulate

__all__ = [
    "STATE_DIM",
    "TRACKER_PARAMETERS",
    "StateIndex",
    "TrackerParameters",
    "initial_state",
    "reference_poses",
    "simulate",
    "simulate_trajectories",
]


def simulate_trajectories(
    trajectories: np.ndarray, ego_state7: np.ndarray, params: TrackerParameters = TRACKER_PARAMETERS
) -> np.ndarray:
    """Simulate planned trajectories from the current ego state, as NAVSIM scores them.

    Args:
        trajectories: ``(K, N, 3)`` planned poses at 0.5 s in the current rear-axle frame (N = 8).
        ego_state7: ``(7,)`` current world ego state [x, y, heading, vx, vy, ax, ay] (a ``Scene.ego_states`` row).
    Returns:
        ``(K, 5 N + 1, 11)`` world-frame simulated states at 0.1 s (41 for N = 8).
    """
    start = initial_state(ego_state7)
    return simulate(reference_poses(trajectories, start[:3]), start, params)
