"""Momentum-aware selection over a stream of frames (drive_jepa.md §7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drive_jepa_core.selection import MomentumConfig, MomentumSelector, ResetReason
from drive_jepa_core.sim import StateIndex

TIMES = np.arange(1, 9) * 0.5
EGO0 = np.array([50.0, -10.0, 0.4, 10.0, 0.0, 0.0, 0.0])


def _straight(speed: float = 10.0) -> np.ndarray:
    return np.stack([speed * TIMES, 0 * TIMES, 0 * TIMES], axis=-1)


def _hard_brake() -> np.ndarray:
    x = np.where(TIMES <= 1.0, 10.0 * TIMES - 5.0 * TIMES**2, 5.0)
    return np.stack([x, 0 * x, 0 * x], axis=-1)


def _swerve() -> np.ndarray:
    """A sharp left turn (curvature 0.1 1/m) at 10 m/s."""
    h = 0.1 * 10.0 * TIMES
    return np.stack([np.sin(h) / 0.1, (1 - np.cos(h)) / 0.1, h], axis=-1)


def _ego_after(states: np.ndarray, index: int = 5) -> np.ndarray:
    """The world ego state reached along a simulated plan (as the next frame's Scene.ego_states row)."""
    s = states[index]
    return np.array([s[StateIndex.X], s[StateIndex.Y], s[StateIndex.HEADING], s[StateIndex.VELOCITY_X],
                     s[StateIndex.VELOCITY_Y], s[StateIndex.ACCELERATION_X], s[StateIndex.ACCELERATION_Y]])


def _first_frame(selector: MomentumSelector, stamp: float = 100.0):
    return selector.select(np.stack([_straight(), _hard_brake(), _swerve()]), np.array([0.9, 0.5, 0.3]), EGO0, stamp)


def test_default_weights() -> None:
    cfg = MomentumConfig()
    assert cfg.score_weight == pytest.approx(14 / 16) and cfg.comfort_weight == pytest.approx(2 / 16)
    assert cfg.max_gap == pytest.approx(0.55)
    with pytest.raises(ValueError):
        MomentumConfig(score_weight=1.5)
    with pytest.raises(ValueError):
        MomentumConfig(max_gap=0.8)


def test_first_frame_has_no_momentum() -> None:
    selector = MomentumSelector()
    res = _first_frame(selector)
    assert res.selected_index == 0 and not res.valid
    assert res.reset_reason is ResetReason.FIRST_FRAME and res.reset_reason == "first_frame"
    assert math.isnan(res.interval) and res.previous_index == -1
    assert np.all(np.isnan(res.comfort_scores))
    np.testing.assert_array_equal(res.final_scores, [0.9, 0.5, 0.3])
    assert res.selected_states.shape == (41, 11) and res.proposal_states.shape == (3, 41, 11)
    np.testing.assert_allclose(res.selected_states[0, :3], EGO0[:3])  # world frame
    np.testing.assert_array_equal(selector.previous_states, res.selected_states)


def test_steady_state_rewards_the_consistent_plan() -> None:
    selector = MomentumSelector()
    first = _first_frame(selector)
    ego = _ego_after(first.selected_states)  # the ego drove the selected plan for 0.5 s
    proposals = np.stack([_hard_brake(), _straight(), _swerve()])
    scores = np.array([0.80, 0.75, 0.70])
    res = selector.select(proposals, scores, ego, 100.5)
    assert res.valid and res.reset_reason is ResetReason.NONE
    assert res.interval == pytest.approx(0.5) and res.previous_index == 0
    # the previous plan continued (shifted by the ego motion) is extended-comfortable, sharp changes are not
    np.testing.assert_array_equal(res.comfort_scores, [0.0, 1.0, 0.0])
    np.testing.assert_allclose(res.final_scores, (7 * scores + res.comfort_scores) / 8)
    assert res.selected_index == 1  # 0.78125 beats 0.70 although its raw score is lower
    np.testing.assert_array_equal(selector.previous_states, res.selected_states)


def test_reset_on_gap() -> None:
    for dt in (1.0, 0.56, 0.55, 0.04, 0.0):  # 0.55 is outside EC's open interval; 0.04 rounds to no shift
        selector = MomentumSelector()
        first = _first_frame(selector, stamp=0.0)
        res = selector.select(_straight()[None], np.array([0.4]), _ego_after(first.selected_states), dt)
        assert not res.valid and res.reset_reason is ResetReason.GAP, dt
        assert res.interval == pytest.approx(dt) and res.previous_index == 0
        assert np.isnan(res.comfort_scores[0]) and res.final_scores[0] == 0.4


def test_reset_on_time_going_backwards_then_resume() -> None:
    selector = MomentumSelector()
    _first_frame(selector, stamp=100.0)
    res = selector.select(_straight()[None], np.array([0.4]), EGO0, 40.0)  # bag looped
    assert not res.valid and res.reset_reason is ResetReason.TIME_BACKWARDS and res.interval == pytest.approx(-60.0)
    res = selector.select(_straight()[None], np.array([0.4]), _ego_after(res.selected_states), 40.5)
    assert res.valid and res.comfort_scores.tolist() == [1.0]


def test_requested_reset() -> None:
    selector = MomentumSelector()
    first = _first_frame(selector)
    selector.reset()
    assert selector.previous_states is None
    ego = _ego_after(first.selected_states)
    res = selector.select(_straight()[None], np.array([0.4]), ego, 100.5)
    assert not res.valid and res.reset_reason is ResetReason.REQUESTED and res.previous_index == -1
    res = selector.select(_straight()[None], np.array([0.4]), _ego_after(res.selected_states), 101.0)
    assert res.valid and res.reset_reason is ResetReason.NONE


def test_bad_input() -> None:
    selector = MomentumSelector()
    with pytest.raises(ValueError):
        selector.select(np.zeros((2, 8, 2)), np.zeros(2), EGO0, 0.0)
    with pytest.raises(ValueError):
        selector.select(np.zeros((2, 8, 3)), np.zeros(3), EGO0, 0.0)
    with pytest.raises(ValueError):
        selector.select(np.zeros((2, 8, 3)), np.array([0.1, np.nan]), EGO0, 0.0)
    with pytest.raises(ValueError):
        selector.select(np.zeros((2, 8, 3)), np.zeros(2), EGO0, float("nan"))
