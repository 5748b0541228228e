"""Intelligent Driver Model (IDM) car following, vectorized over vehicles.

IDM (Treiber, Hennecke & Helbing, "Congested traffic states in empirical observations and microscopic
simulations", Phys. Rev. E 62, 1805, 2000):

    a = a_max * [1 - (v / v0)^delta - (s* / s)^2],   s* = s0 + v*T + v*dv / (2*sqrt(a_max*b))

with gap ``s`` to the leader's rear, approach rate ``dv = v - v_leader``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class IDMParameters:
    """One driver's IDM constants."""

    time_headway: float  # T, s
    min_gap: float  # s0, m
    max_accel: float  # a_max, m/s^2
    comfortable_decel: float  # b, m/s^2
    exponent: float = 4.0  # delta (Treiber et al. 2000)
    max_decel: float = 6.0  # m/s^2, physical braking limit the output is clipped to (~0.6 g, dry asphalt)


# nuPlan / NAVSIM reactive IDM agents: headway 1.5 s, min gap 1 m, a_max 1 m/s^2, d_max 2 m/s^2
# (navsim_metrics.md §3). We keep a 2 m standstill gap (Treiber et al. 2000, s0 = 2 m) so queues look natural.
AGENT_IDM = IDMParameters(time_headway=1.5, min_gap=2.0, max_accel=1.0, comfortable_decel=2.0)
# Expert ("human") driver: PDM-Closed's IDM headway and a_max (navsim_metrics.md §5.5), comfortable b = 2 m/s^2.
# Output clipped to nuPlan's comfort bounds -4.05 < a_lon < 2.40 (navsim_metrics.md §5.7) with margin.
EXPERT_IDM = IDMParameters(time_headway=1.5, min_gap=2.0, max_accel=1.5, comfortable_decel=2.0, max_decel=4.0)
AGENT_PARAMETER_SPREAD = 0.25  # +-25 % per-driver variation of T, a_max, b for heterogeneous traffic (our choice)


def idm_acceleration(speed: np.ndarray, desired_speed: np.ndarray, gap: np.ndarray, approach_rate: np.ndarray,
                     time_headway: np.ndarray, min_gap: np.ndarray, max_accel: np.ndarray,
                     comfortable_decel: np.ndarray, exponent: float | np.ndarray = 4.0,
                     max_decel: float | np.ndarray = 6.0) -> np.ndarray:
    """IDM acceleration ``(N,)`` for ``N`` vehicles; ``gap = inf`` means free road. All inputs broadcast to ``(N,)``.

    ``desired_speed`` <= 0 makes the vehicle brake to a standstill.
    """
    v = np.maximum(np.asarray(speed, dtype=np.float64), 0.0)
    v0 = np.maximum(np.asarray(desired_speed, dtype=np.float64), 1e-3)
    free = 1.0 - (v / v0) ** exponent
    dynamic = v * time_headway + v * approach_rate / (2.0 * np.sqrt(max_accel * comfortable_decel))
    s_star = min_gap + np.maximum(0.0, dynamic)
    s = np.maximum(np.asarray(gap, dtype=np.float64), 0.1)
    interaction = np.where(np.isfinite(s), (s_star / s) ** 2, 0.0)
    acc = max_accel * (free - interaction)
    return np.clip(acc, -np.asarray(max_decel), max_accel)


def sample_agent_parameters(rng: np.random.Generator, base: IDMParameters = AGENT_IDM) -> IDMParameters:
    """A heterogeneous driver: ``base`` with T, a_max, b scaled by U(1 - spread, 1 + spread)."""
    f = rng.uniform(1.0 - AGENT_PARAMETER_SPREAD, 1.0 + AGENT_PARAMETER_SPREAD, size=3)
    return IDMParameters(time_headway=base.time_headway * f[0], min_gap=base.min_gap, max_accel=base.max_accel * f[1],
                         comfortable_decel=base.comfortable_decel * f[2], exponent=base.exponent,
                         max_decel=base.max_decel)
