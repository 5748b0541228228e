"""Momentum-aware trajectory selection for a streaming planner (drive_jepa.md §7).

Each frame every proposal is simulated with NAVSIM's tracker from the current ego state, compared with the plan
selected in the previous frame by two-frame extended comfort (EC, navsim_metrics.md §5.9), and re-scored
S' = w S + (1 - w) S_c with S_c = EC ∈ {0, 1} and w = 7/8 (the reference's (14 S + 2 EC) / 16). The argmax is
selected and its simulated world-frame states become the reference of the next frame.

Momentum is skipped (S' = S) on the first frame, after :meth:`MomentumSelector.reset`, when time went backwards
(e.g. a bag looping), and when the gap to the previous frame is too long (> ``max_gap``) or too short to shift the
plans by at least one 0.1 s step (round(Δt / 0.1) == 0, which includes repeated stamps); EC is only defined for
0 < Δt < 0.55 s, so Δt >= 0.55 s is a gap as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from drive_jepa_core.metrics.comfort import EC_MAX_INTERVAL, extended_comfort, overlap_steps
from drive_jepa_core.sim import simulate_trajectories

__all__ = ["MomentumConfig", "MomentumSelector", "ResetReason", "SelectionResult"]


@dataclass(frozen=True)
class MomentumConfig:
    """Selection weights and reset policy.

    Attributes:
        score_weight: w in S' = w S + (1 - w) S_c. 7/8 = 14/16 follows Drive-JEPA's calibrate_score, whose 14:2
            split mirrors the EPDMS weights (EP 5, TTC 5, LK 2, HC 2 | EC 2) (drive_jepa.md §7.6).
        max_gap: seconds; a longer interval since the previous frame resets momentum. 0.55 s is the reference's
            reset interval (drive_jepa.md §7.1) and NAVSIM's EC pairing bound (navsim_metrics.md §5.9).
    """

    score_weight: float = 7.0 / 8.0
    max_gap: float = EC_MAX_INTERVAL

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_weight <= 1.0:
            raise ValueError(f"score_weight must be in [0, 1], got {self.score_weight}")
        if not 0.0 < self.max_gap <= EC_MAX_INTERVAL:
            raise ValueError(f"max_gap must be in (0, {EC_MAX_INTERVAL}] s (EC's domain), got {self.max_gap}")

    @property
    def comfort_weight(self) -> float:
        return 1.0 - self.score_weight


class ResetReason(str, Enum):
    """Why momentum was not applied in a frame ("none" when it was)."""

    NONE = "none"
    FIRST_FRAME = "first_frame"
    GAP = "gap"
    TIME_BACKWARDS = "time_backwards"
    REQUESTED = "requested"


@dataclass(frozen=True)
class SelectionResult:
    """Outcome of one :meth:`MomentumSelector.select` call.

    Attributes:
        selected_index: argmax of ``final_scores``.
        final_scores: ``(Np,)`` S' (equal to the input scores when momentum was not applied).
        comfort_scores: ``(Np,)`` S_c = EC ∈ {0, 1} against the previous plan; NaN when momentum was not applied.
        valid: True iff momentum was applied this frame.
        reset_reason: :class:`ResetReason` (``NONE`` when valid).
        interval: seconds since the previous frame (negative when time went backwards); NaN without one.
        previous_index: index selected in the previous frame, -1 when no previous plan is held.
        selected_states: ``(T, 11)`` world-frame simulated states of the selected proposal.
        proposal_states: ``(Np, T, 11)`` world-frame simulated states of all proposals.
    """

    selected_index: int
    final_scores: np.ndarray
    comfort_scores: np.ndarray
    valid: bool
    reset_reason: ResetReason
    interval: float
    previous_index: int
    selected_states: np.ndarray
    proposal_states: np.ndarray


class MomentumSelector:
    """Stateful selector; keeps the previously selected plan (world-frame simulated states and its stamp)."""

    def __init__(self, config: MomentumConfig | None = None) -> None:
        self.config = config if config is not None else MomentumConfig()
        self._prev_states: np.ndarray | None = None
        self._prev_stamp: float | None = None
        self._prev_index: int = -1
        self._reset_requested = False

    @property
    def previous_states(self) -> np.ndarray | None:
        """``(T, 11)`` world-frame states of the last selected plan, or None."""
        return self._prev_states

    def reset(self) -> None:
        """Forget the previous plan; the next frame is selected without momentum (reason "requested")."""
        self._prev_states = None
        self._prev_stamp = None
        self._prev_index = -1
        self._reset_requested = True

    def _reset_reason(self, interval: float) -> ResetReason:
        if self._reset_requested:
            return ResetReason.REQUESTED
        if self._prev_states is None:
            return ResetReason.FIRST_FRAME
        if interval < 0.0:
            return ResetReason.TIME_BACKWARDS
        if interval > self.config.max_gap or interval >= EC_MAX_INTERVAL or overlap_steps(interval) == 0:
            return ResetReason.GAP
        return ResetReason.NONE

    def select(
        self, proposals: np.ndarray, scores: np.ndarray, ego_state7: np.ndarray, stamp: float
    ) -> SelectionResult:
        """Select one proposal for this frame and remember it.

        Args:
            proposals: ``(Np, M, 3)`` planned poses at 0.5 s in the current rear-axle frame.
            scores: ``(Np,)`` planner scores S (sigmoid of the final-score logits), finite.
            ego_state7: ``(7,)`` current world ego state [x, y, heading, vx, vy, ax, ay].
            stamp: current time in seconds (any monotonic clock shared by consecutive calls).
        Returns:
            :class:`SelectionResult`.
        """
        proposals = np.asarray(proposals, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        if proposals.ndim != 3 or proposals.shape[-1] != 3 or proposals.shape[0] < 1:
            raise ValueError(f"proposals must be (Np>=1, M, 3), got {proposals.shape}")
        if scores.shape != (proposals.shape[0],) or not np.all(np.isfinite(scores)):
            raise ValueError(f"scores must be finite with shape ({proposals.shape[0]},), got {scores.shape}")
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")

        states = simulate_trajectories(proposals, ego_state7)  # (Np, T, 11) world frame
        interval = stamp - self._prev_stamp if self._prev_stamp is not None else math.nan
        reason = self._reset_reason(interval)
        if reason is ResetReason.NONE and self._prev_states is not None and self._prev_states.shape != states.shape[1:]:
            raise ValueError(f"proposal horizon changed: previous plan {self._prev_states.shape}, now "
                             f"{states.shape[1:]}; call reset() first")

        if reason is ResetReason.NONE:
            comfort = extended_comfort(states, self._prev_states, interval).ec
            final = self.config.score_weight * scores + self.config.comfort_weight * comfort
        else:
            comfort = np.full(scores.shape, np.nan)
            final = scores.copy()
        selected = int(np.argmax(final))
        result = SelectionResult(
            selected_index=selected,
            final_scores=final,
            comfort_scores=comfort,
            valid=reason is ResetReason.NONE,
            reset_reason=reason,
            interval=interval,
            previous_index=self._prev_index,
            selected_states=states[selected].copy(),
            proposal_states=states,
        )
        self._prev_states = result.selected_states
        self._prev_stamp = stamp
        self._prev_index = selected
        self._reset_requested = False
        return result
