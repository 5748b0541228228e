"""NAVSIM comfort (C), history comfort (HC) and extended comfort (EC) (navsim_metrics.md §5.7, §5.9, §8.B)."""

from __future__ import annotations

import numpy as np
import pytest

from drive_jepa_core.constants import EGO_VEHICLE
from drive_jepa_core.geometry import local_to_global
from drive_jepa_core.metrics.comfort import (
    COMFORT_CHECK_NAMES,
    center_acceleration_x,
    comfort_v1,
    comfort_v1_checks,
    extended_comfort,
    history_comfort,
    history_comfort_checks,
    history_states_from_log,
    overlap_steps,
    phase_unwrap,
    savgol,
)
from drive_jepa_core.sim import StateIndex, simulate_trajectories

TIMES = np.arange(1, 9) * 0.5
LAT = COMFORT_CHECK_NAMES.index("lat_acceleration")
LON = COMFORT_CHECK_NAMES.index("lon_acceleration")
SIM_TIMES_BEFORE = -1.5 + 0.1 * np.arange(14)  # NAVSIM's history sample times: -1.5 … -0.2 s


def _straight(speed: float) -> np.ndarray:
    return np.stack([speed * TIMES, 0 * TIMES, 0 * TIMES], axis=-1)


def _hard_brake() -> np.ndarray:
    """10 m/s to standstill within 1 s (10 m/s² of deceleration), then holding at 5 m."""
    x = np.where(TIMES <= 1.0, 10.0 * TIMES - 5.0 * TIMES**2, 5.0)
    return np.stack([x, 0 * x, 0 * x], axis=-1)


def _ego(speed: float, ay: float = 0.0) -> np.ndarray:
    return np.array([0.0, 0.0, 0.0, speed, 0.0, 0.0, ay])


def _constant_speed_history(speed: float, num: int = 14) -> np.ndarray:
    hist = np.zeros((num, 11))
    hist[:, StateIndex.X] = speed * SIM_TIMES_BEFORE[-num:]
    hist[:, StateIndex.VELOCITY_X] = speed
    return hist


# ----------------------------------------------------------------------------------------------------------------------
# Savitzky-Golay pipeline: nuPlan unit-test vectors (navsim_metrics.md §8.B, 1 s sampling)
# ----------------------------------------------------------------------------------------------------------------------
def test_nuplan_savgol_vectors() -> None:
    accel = np.array([0, 1, 0.5, 1, 0.5, 0.7, 0.3, 1, 0.5, 1, 0.5, 0.7])
    smoothed = np.round(savgol(accel, 8, 2), 8)
    np.testing.assert_allclose(smoothed, [0.36, 0.50, 0.61, 0.69, 0.62, 0.61, 0.63, 0.71, 0.72, 0.72, 0.70, 0.66],
                               atol=0.005)
    jerk = savgol(smoothed, 15, 2, deriv=1, delta=1.0)  # window min(15, 12)
    np.testing.assert_allclose(jerk, [0.07, 0.06, 0.05, 0.04, 0.04, 0.03, 0.02, 0.01, -0.00, -0.01, -0.02, -0.03],
                               atol=0.005)
    headings = phase_unwrap(np.array([-1.5349] * 4 + [1.5349]))
    np.testing.assert_allclose(savgol(headings, 5, 2, deriv=1, delta=1.0), [-1.14, -0.26, 0.61, 1.49, 2.37], atol=0.005)
    np.testing.assert_allclose(savgol(headings, 5, 3, deriv=2, delta=1.0), [-2.19, -0.66, 0.88, 2.41, 3.95], atol=0.005)


def test_savgol_rejects_too_short_series() -> None:
    with pytest.raises(ValueError):
        savgol(np.zeros(3), 5, 3)


def test_phase_unwrap() -> None:
    np.testing.assert_allclose(phase_unwrap(np.array([3.1, -3.1, -3.0])), [3.1, 2 * np.pi - 3.1, 2 * np.pi - 3.0])
    np.testing.assert_allclose(phase_unwrap(np.array([[0.1, 0.2]])), [[0.1, 0.2]])


def test_center_acceleration_quirk() -> None:
    states = np.zeros((1, 1, 11))
    states[..., [StateIndex.ACCELERATION_X, StateIndex.ANGULAR_VELOCITY, StateIndex.ANGULAR_ACCELERATION]] = [1, 0.5, 2]
    d = EGO_VEHICLE.rear_axle_to_center
    assert d == pytest.approx(1.461)
    assert center_acceleration_x(states)[0, 0] == pytest.approx(1.0 + d * 0.25 + d * 2.0)


# ----------------------------------------------------------------------------------------------------------------------
# C and HC
# ----------------------------------------------------------------------------------------------------------------------
def test_constant_velocity_is_comfortable() -> None:
    states = simulate_trajectories(_straight(10.0)[None], _ego(10.0))
    assert comfort_v1(states).tolist() == [True]
    assert history_comfort(states, _constant_speed_history(10.0)).tolist() == [True]


def test_hard_braking_is_not_comfortable() -> None:
    states = simulate_trajectories(np.stack([_straight(10.0), _hard_brake()]), _ego(10.0))
    assert comfort_v1(states).tolist() == [True, False]
    assert history_comfort(states, _constant_speed_history(10.0)).tolist() == [True, False]
    assert not comfort_v1_checks(states)[1, LON]
    assert not history_comfort_checks(states, _constant_speed_history(10.0))[1, LON]


def test_v1_smooths_accelerations_over_the_whole_horizon() -> None:
    # A logged lateral acceleration only at t0 is an impulse; v1 fits one quadratic over all 41 samples, whose
    # value at the endpoint is the endpoint leverage (0.1994) times the impulse (hat matrix of a 41-point fit).
    leverage = 0.19941657888339714
    ok = simulate_trajectories(_straight(10.0)[None], _ego(10.0, ay=20.0))  # 3.99 < 4.89
    bad = simulate_trajectories(_straight(10.0)[None], _ego(10.0, ay=25.0))  # 4.99 > 4.89
    assert 20.0 * leverage < 4.89 < 25.0 * leverage
    assert comfort_v1_checks(ok)[0, LAT] and not comfort_v1_checks(bad)[0, LAT]


def test_hc_uses_window_8_on_history() -> None:
    # The same 10 m/s² lateral impulse on the first history sample: HC's 8-sample window keeps 0.7083 of it (7.08)
    states = simulate_trajectories(_straight(10.0)[None], _ego(10.0))
    history = _constant_speed_history(10.0)
    history[0, StateIndex.ACCELERATION_Y] = 10.0
    assert not history_comfort_checks(states, history)[0, LAT]
    # … while v1 on a 41-sample series with that impulse at t0 keeps only 1.99 and passes
    assert comfort_v1_checks(simulate_trajectories(_straight(10.0)[None], _ego(10.0, ay=10.0)))[0, LAT]


def test_hc_without_history_is_one() -> None:
    states = simulate_trajectories(_hard_brake()[None], _ego(10.0))
    assert history_comfort(states, None).tolist() == [True]
    assert history_comfort_checks(states, np.zeros((0, 11))).shape == (1, 6)


def test_comfort_is_vectorized() -> None:
    trajs = np.stack([_straight(10.0), _hard_brake(), _straight(5.0)])
    states = simulate_trajectories(trajs, _ego(8.0))
    history = _constant_speed_history(8.0)
    for k in range(3):
        assert comfort_v1_checks(states)[k].tolist() == comfort_v1_checks(states[k:k + 1])[0].tolist()
        assert history_comfort(states, history)[k] == history_comfort(states[k:k + 1], history)[0]


def test_comfort_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        comfort_v1(np.zeros((41, 11)))
    with pytest.raises(ValueError):
        history_comfort(np.zeros((1, 41, 11)), np.zeros((3, 7)))


# ----------------------------------------------------------------------------------------------------------------------
# History samples from the log
# ----------------------------------------------------------------------------------------------------------------------
def _log(num_before: int = 20, num_after: int = 50) -> tuple[np.ndarray, np.ndarray, int]:
    t = np.arange(-num_before, num_after + 1) * 0.1
    ego = np.zeros((t.shape[0], 7))
    ego[:, 0] = t**2  # x = t² -> interpolation between 2 Hz keyframes is visible
    ego[:, 1] = 2.0 * t
    ego[:, 2] = np.pi - 0.05 + 0.01 * np.arange(t.shape[0]) - 0.2  # crosses +pi into negative values
    ego[:, 2] = np.arctan2(np.sin(ego[:, 2]), np.cos(ego[:, 2]))
    ego[:, 3] = 2.0 * t
    ego[:, 5] = 2.0
    return t, ego, num_before


def test_history_from_10hz_log_keeps_14_samples() -> None:
    t, ego, t0 = _log()
    hist = history_states_from_log(t, ego, t0)
    assert hist.shape == (14, 11)  # -1.5 … -0.2 s: the sample at -0.1 s is dropped as NAVSIM does
    expected_t = -1.5 + 0.1 * np.arange(14)
    np.testing.assert_allclose(hist[:, StateIndex.X], expected_t**2, atol=1e-9)
    np.testing.assert_allclose(hist[:, StateIndex.VELOCITY_X], 2.0 * expected_t, atol=1e-9)
    np.testing.assert_allclose(hist[:, StateIndex.ACCELERATION_X], 2.0)
    np.testing.assert_allclose(hist[:, StateIndex.HEADING], ego[5:19, 2], atol=1e-9)  # log indices of -1.5 … -0.2
    np.testing.assert_array_equal(hist[:, StateIndex.STEERING_ANGLE:], 0.0)


def test_history_from_2hz_keyframes_interpolates_linearly() -> None:
    t, ego, t0 = _log()
    hist = history_states_from_log(t, ego, t0, source_step=0.5)
    assert hist.shape == (14, 11)
    # x between keyframes (-1.5, 2.25) and (-1.0, 1.0) at -1.4 s: 2.25 - 0.2 * 1.25 = 2.0 (the 10 Hz log has 1.96)
    assert hist[1, StateIndex.X] == pytest.approx(2.0)
    # headings crossing pi interpolate through pi, not through 0
    assert np.all(np.abs(np.diff(np.unwrap(hist[:, StateIndex.HEADING]))) < 0.02)


def test_history_short_and_missing() -> None:
    t, ego, _ = _log(num_before=3)
    hist = history_states_from_log(t, ego, 3)
    np.testing.assert_allclose(hist[:, StateIndex.X], [0.09, 0.04], atol=1e-9)  # -0.3, -0.2 (then -0.1 dropped)
    assert history_states_from_log(t, ego, 0).shape == (0, 11)
    with pytest.raises(ValueError):
        history_states_from_log(t, ego[:, :6], 3)


# ----------------------------------------------------------------------------------------------------------------------
# EC
# ----------------------------------------------------------------------------------------------------------------------
def _analytic_states(num: int) -> np.ndarray:
    """``(num, 11)`` smooth states sampled at 0.1 s with varying speed, acceleration and yaw."""
    t = 0.1 * np.arange(num)
    states = np.zeros((num, 11))
    states[:, StateIndex.HEADING] = 0.3 * np.sin(0.8 * t)
    states[:, StateIndex.VELOCITY_X] = 8.0 + np.sin(t)
    states[:, StateIndex.ACCELERATION_X] = np.cos(t) + 0.3 * np.sin(2.0 * t)
    states[:, StateIndex.ACCELERATION_Y] = 0.2 * t
    return states


def test_ec_identical_consecutive_plans_is_one() -> None:
    long = _analytic_states(46)  # 0 … 4.5 s
    previous, current = long[:41], long[5:]  # the current plan is the previous one, 0.5 s further along
    res = extended_comfort(current[None], previous, 0.5)
    assert res.ec.tolist() == [1.0]
    for rms in (res.rms_acceleration, res.rms_jerk, res.rms_yaw_rate, res.rms_yaw_accel):
        np.testing.assert_allclose(rms, 0.0, atol=1e-12)
    # rigid motion of the whole frame (world-frame poses of a moving ego) does not change the features
    moved = current.copy()
    moved[:, :3] = local_to_global(current[:, :3], np.array([30.0, -4.0, 2.0]))
    assert extended_comfort(moved[None], previous, 0.5).ec.tolist() == [1.0]


def test_ec_uses_the_rounded_overlap() -> None:
    long = _analytic_states(44)
    assert overlap_steps(0.3) == 3 and overlap_steps(0.49) == 5
    assert extended_comfort(long[3:][None], long[:41], 0.3).ec.tolist() == [1.0]
    assert extended_comfort(long[None, 3:], long[None, :41], 0.31).rms_jerk[0] == pytest.approx(0.0, abs=1e-12)


def test_ec_sharply_different_plan_is_zero() -> None:
    ego = _ego(10.0)
    previous = simulate_trajectories(_straight(10.0)[None], ego)[0]
    ego_now = np.concatenate([previous[5, :4], [0.0], previous[5, 5:7]])
    current = simulate_trajectories(np.stack([_straight(10.0), _hard_brake()]), ego_now)
    res = extended_comfort(current, previous, 0.5)
    assert res.ec.tolist() == [1.0, 0.0]
    assert res.rms_acceleration[1] > 0.7 and res.rms_jerk[1] > 0.5


def test_ec_interval_domain() -> None:
    states = _analytic_states(41)[None]
    for dt in (0.0, -0.1, 0.55, 0.6):
        with pytest.raises(ValueError):
            extended_comfort(states, states[0], dt)
    with pytest.raises(ValueError):
        extended_comfort(states, states[0, :40], 0.5)
