"""NAVSIM trajectory simulation: reference interpolation, profile fits (with the regularizer quirk), lifted lateral
LQR, kinematic bicycle, and the whole tracker against a literal per-trajectory transcription of
shared/reference/navsim_metrics.md §2.3-§2.5."""

from __future__ import annotations

import numpy as np
import pytest

from drive_jepa_core.constants import EGO_VEHICLE
from drive_jepa_core.sim import StateIndex, simulate_trajectories
from drive_jepa_core.sim.interpolate import reference_poses
from drive_jepa_core.sim.tracker import (
    bicycle_step,
    curvature_profile,
    initial_state,
    lateral_lifted_system,
    navsim_jerk_regularizer,
    simulate,
    velocity_profile,
)

DT = 0.1
WHEEL_BASE = EGO_VEHICLE.wheel_base
TIMES = np.arange(1, 9) * 0.5  # planner pose times


def _wrap(a: np.ndarray) -> np.ndarray:
    return np.arctan2(np.sin(a), np.cos(a))


def _arc(speed: float, curvature: float) -> np.ndarray:
    """(8, 3) local poses on a constant-speed arc."""
    s = speed * TIMES
    if curvature == 0.0:
        return np.stack([s, 0.0 * s, 0.0 * s], axis=-1)
    h = curvature * s
    return np.stack([np.sin(h) / curvature, (1 - np.cos(h)) / curvature, h], axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# Literal transcription of the spec: per trajectory, explicit matrices, pinv, sequential lifting.
# ----------------------------------------------------------------------------------------------------------------------
def _literal_velocity_fit(ref: np.ndarray) -> np.ndarray:
    m = ref.shape[0] - 1
    dxy, heading = np.diff(ref[:, :2], axis=0), ref[:-1, 2]
    a_mat = np.zeros((2 * m, m))
    for i in range(m):
        u = np.array([np.cos(heading[i]), np.sin(heading[i])])
        a_mat[2 * i:2 * i + 2, 0] = DT * u
        a_mat[2 * i:2 * i + 2, 1:i + 1] = DT * DT * u[:, None]
    r_mat = navsim_jerk_regularizer(m)
    x = np.linalg.pinv(a_mat.T @ a_mat + 1e-4 * r_mat.T @ r_mat) @ a_mat.T @ dxy.reshape(-1)
    return x[0] + np.concatenate([[0.0], np.cumsum(x[1:] * DT)])


def _literal_curvature_fit(ref: np.ndarray, vel: np.ndarray) -> np.ndarray:
    m = ref.shape[0] - 1
    dh = _wrap(np.diff(ref[:, 2]))
    a_mat = np.zeros((m, m))
    for i in range(m):
        a_mat[i, 0] = DT * vel[i]
        a_mat[i, 1:i + 1] = DT * DT * vel[i]
    q_mat = 1e-2 * np.eye(m)
    q_mat[0, 0] = 1e-10
    x = np.linalg.pinv(a_mat.T @ a_mat + q_mat) @ a_mat.T @ dh
    return x[0] + np.concatenate([[0.0], np.cumsum(x[1:] * DT)])


def _literal_lifted(vels: np.ndarray, curvs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a_mat, b_vec, g_vec = np.eye(3), np.zeros(3), np.zeros(3)
    for v_i, k_i in zip(vels, curvs, strict=True):
        step = np.eye(3)
        step[0, 1] = v_i * DT
        step[1, 2] = v_i * DT / WHEEL_BASE
        a_mat = step @ a_mat
        b_vec = step @ b_vec + np.array([0.0, 0.0, DT])
        g_vec = step @ g_vec + np.array([0.0, -v_i * k_i * DT, 0.0])
    return a_mat, b_vec, g_vec


def _literal_simulate(ref: np.ndarray, init: np.ndarray) -> np.ndarray:
    m = ref.shape[0] - 1
    vel = _literal_velocity_fit(ref)
    curv = _literal_curvature_fit(ref, vel)
    out = np.zeros((m + 1, 11))
    out[0] = s = init.copy()
    for k in range(m):
        r = ref[k]
        err = np.array([-(s[0] - r[0]) * np.sin(r[2]) + (s[1] - r[1]) * np.cos(r[2]), _wrap(s[2] - r[2]), s[7]])
        j = min(k + 10, m - 1)
        v_ref = vel[j]
        kappa = np.concatenate([curv[k:j], np.full(10 - (j - k), curv[j])])
        if v_ref <= 0.2 and s[3] <= 0.2:
            a_cmd, d_cmd = -0.5 * (s[3] - v_ref), 0.0
        else:
            a_cmd = -(10.0 / 11.0) * (s[3] - v_ref)
            a_mat, b_vec, g_vec = _literal_lifted(s[3] + a_cmd * DT * np.arange(10), kappa)
            e = a_mat @ err + g_vec
            e[1:] = _wrap(e[1:])
            q_mat = np.diag([1.0, 10.0, 0.0])
            d_cmd = -(b_vec @ q_mat @ e) / (b_vec @ q_mat @ b_vec + 1.0)
        n = s.copy()
        n[5] = s[5] + DT / (DT + 0.2) * (a_cmd - s[5])
        d_f = s[7] + DT / (DT + 0.05) * (s[7] + DT * d_cmd - s[7])
        n[8] = (d_f - s[7]) / DT
        n[0] = s[0] + DT * s[3] * np.cos(s[2])
        n[1] = s[1] + DT * s[3] * np.sin(s[2])
        n[2] = _wrap(s[2] + DT * s[3] * np.tan(s[7]) / WHEEL_BASE)
        n[3] = s[3] + DT * n[5]
        n[4] = n[6] = 0.0
        n[7] = np.clip(s[7] + DT * n[8], -np.pi / 3, np.pi / 3)
        n[9] = n[3] * np.tan(n[7]) / WHEEL_BASE
        n[10] = (n[9] - s[9]) / DT
        out[k + 1] = s = n
    return out


@pytest.fixture(scope="module")
def mixed_batch() -> tuple[np.ndarray, np.ndarray]:
    """Reference poses of varied trajectories (stop, creep, arcs, noise) and an initial state heading near pi."""
    rng = np.random.default_rng(7)
    trajs = [_arc(0.0, 0.0), _arc(0.05, 0.0), _arc(8.0, 0.0), _arc(12.0, 0.08), _arc(5.0, -0.2), _arc(14.0, 0.01)]
    trajs = np.stack(trajs) + rng.normal(0.0, 0.1, (len(trajs), 8, 3)) * np.array([1, 1, 0.1])
    ego = np.array([10.0, 5.0, 3.0, 8.0, 0.1, 0.5, 0.2])
    return reference_poses(trajs, ego[:3]), initial_state(ego)


# ----------------------------------------------------------------------------------------------------------------------
# Reference poses and initial state
# ----------------------------------------------------------------------------------------------------------------------
def test_reference_poses_straight_line_by_hand() -> None:
    traj = _arc(10.0, 0.0)[None]  # 5 m per 0.5 s along local x
    ego = np.array([100.0, -20.0, np.pi / 2])  # facing +y
    ref = reference_poses(traj, ego)
    assert ref.shape == (1, 41, 3)
    np.testing.assert_allclose(ref[0, :, 0], 100.0, atol=1e-12)
    np.testing.assert_allclose(ref[0, :, 1], -20.0 + np.arange(41) * 1.0, atol=1e-12)
    np.testing.assert_allclose(ref[0, :, 2], np.pi / 2, atol=1e-12)


def test_reference_poses_interpolates_heading_through_pi() -> None:
    # Local heading goes 0 -> 0.4 rad; the ego faces 3.0 rad so the world heading crosses +pi (3.0 -> 3.4 -> wrapped)
    traj = np.zeros((1, 8, 3))
    traj[0, :, 0] = np.arange(1, 9)
    traj[0, :, 2] = np.linspace(0.05, 0.4, 8)
    ref = reference_poses(traj, np.array([0.0, 0.0, 3.0]))
    unwrapped = np.unwrap(ref[0, :, 2])
    assert np.all(np.diff(unwrapped) > 0.0)  # monotone through pi, never swinging back through 0
    np.testing.assert_allclose(unwrapped[[0, 5, 40]], [3.0, 3.05, 3.4], atol=1e-12)
    np.testing.assert_allclose(unwrapped[3], 3.0 + 0.6 * 0.05, atol=1e-12)  # 3/5 of the way to the first knot
    assert np.all(np.abs(ref[0, :, 2]) <= np.pi)


def test_reference_poses_other_lengths_and_errors() -> None:
    assert reference_poses(np.zeros((2, 4, 3)), np.zeros(3)).shape == (2, 21, 3)
    with pytest.raises(ValueError):
        reference_poses(np.zeros((8, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        reference_poses(np.zeros((1, 8, 3)), np.zeros(2))
    with pytest.raises(ValueError):
        reference_poses(np.full((1, 8, 3), np.nan), np.zeros(3))


def test_initial_state_zero_steering_and_yaw() -> None:
    state = initial_state(np.array([1.0, 2.0, 0.3, 4.0, 0.5, 0.6, 0.7]))
    np.testing.assert_array_equal(state, [1.0, 2.0, 0.3, 4.0, 0.5, 0.6, 0.7, 0.0, 0.0, 0.0, 0.0])
    assert StateIndex.ANGULAR_ACCELERATION == 10 and len(StateIndex) == 11
    with pytest.raises(ValueError):
        initial_state(np.zeros(6))


# ----------------------------------------------------------------------------------------------------------------------
# Profile fits
# ----------------------------------------------------------------------------------------------------------------------
def test_regularizer_quirk_structure() -> None:
    m = 40
    reg = navsim_jerk_regularizer(m)
    assert reg.shape == (m - 2, m)
    np.testing.assert_array_equal(reg[:, 0], 0.0)  # v0 is never penalized
    expected = -np.eye(m - 2, m - 1)
    expected[-1, -1] = 1.0  # the single surviving +1 of the intended difference matrix
    np.testing.assert_array_equal(reg[:, 1:], expected)
    # Penalty = sum_{r <= M-4} a_r^2 + (a_{M-2} - a_{M-3})^2 instead of sum of squared differences.
    accel = np.random.default_rng(0).normal(size=m - 1)
    x = np.concatenate([[3.0], accel])
    np.testing.assert_allclose(np.sum((reg @ x) ** 2), np.sum(accel[: m - 3] ** 2) + (accel[-1] - accel[-2]) ** 2)


def test_velocity_and_curvature_fits_match_direct_formulation(mixed_batch: tuple[np.ndarray, np.ndarray]) -> None:
    ref, _ = mixed_batch
    vel = velocity_profile(ref)
    curv = curvature_profile(ref, vel)
    assert vel.shape == curv.shape == (ref.shape[0], 40)
    for k in range(ref.shape[0]):
        np.testing.assert_allclose(vel[k], _literal_velocity_fit(ref[k]), atol=1e-9)
        np.testing.assert_allclose(curv[k], _literal_curvature_fit(ref[k], vel[k]), atol=1e-9)


def test_velocity_fit_of_constant_speed_is_constant() -> None:
    ref = reference_poses(_arc(10.0, 0.0)[None], np.zeros(3))
    np.testing.assert_allclose(velocity_profile(ref)[0], 10.0, atol=1e-9)


def test_lifted_lateral_system_closed_form_matches_sequential_product() -> None:
    rng = np.random.default_rng(3)
    vels, curvs = rng.uniform(0.0, 15.0, (4, 10)), rng.normal(0.0, 0.05, (4, 10))
    mat_a, vec_b, vec_g = lateral_lifted_system(vels, curvs)
    for k in range(4):
        exp_a, exp_b, exp_g = _literal_lifted(vels[k], curvs[k])
        np.testing.assert_allclose(mat_a[k], exp_a, atol=1e-12)
        np.testing.assert_allclose(vec_b[k], exp_b, atol=1e-12)
        np.testing.assert_allclose(vec_g[k], exp_g, atol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# Motion model and full simulation
# ----------------------------------------------------------------------------------------------------------------------
def test_bicycle_one_step_by_hand() -> None:
    state = np.zeros((1, 11))
    state[0, [StateIndex.VELOCITY_X, StateIndex.ACCELERATION_X, StateIndex.STEERING_ANGLE]] = [10.0, 1.0, 0.1]
    state[0, StateIndex.ANGULAR_VELOCITY] = 0.2
    nxt = bicycle_step(state, np.array([3.0]), np.array([0.5]))[0]
    accel = 1.0 + 0.1 / 0.3 * (3.0 - 1.0)  # 1.6667: lag 0.2 s
    steer_rate = (0.1 / 0.15) * 0.5  # lagged angle change / dt with the 0.05 s lag: 0.3333 rad/s
    steer = 0.1 + 0.1 * steer_rate
    speed = 10.0 + 0.1 * accel
    yaw_rate = speed * np.tan(steer) / WHEEL_BASE
    expected = [1.0, 0.0, 0.1 * 10.0 * np.tan(0.1) / WHEEL_BASE, speed, 0.0, accel, 0.0, steer, steer_rate, yaw_rate,
                (yaw_rate - 0.2) / 0.1]
    np.testing.assert_allclose(nxt, expected, rtol=1e-12, atol=1e-12)


def test_bicycle_clips_steering() -> None:
    state = np.zeros((1, 11))
    state[0, StateIndex.STEERING_ANGLE] = 1.04
    nxt = bicycle_step(state, np.zeros(1), np.array([10.0]))
    assert nxt[0, StateIndex.STEERING_ANGLE] == pytest.approx(np.pi / 3)


def test_simulate_matches_literal_transcription(mixed_batch: tuple[np.ndarray, np.ndarray]) -> None:
    ref, init = mixed_batch
    states = simulate(ref, init)
    assert states.shape == (ref.shape[0], 41, 11)
    for k in range(ref.shape[0]):
        expected = _literal_simulate(ref[k], init)
        diff = states[k] - expected
        diff[:, StateIndex.HEADING] = _wrap(diff[:, StateIndex.HEADING])
        np.testing.assert_allclose(diff, 0.0, atol=1e-8)


def test_simulate_other_horizon_matches_literal_transcription() -> None:
    trajs = np.stack([_arc(9.0, 0.04)[:4], _arc(0.1, 0.0)[:4]])  # 4 poses -> 21 states (lookahead clipped early)
    ego = np.array([0.0, 0.0, -1.0, 7.0, 0.0, -0.5, 0.0])
    ref = reference_poses(trajs, ego[:3])
    states = simulate(ref, initial_state(ego))
    assert states.shape == (2, 21, 11)
    for k in range(2):
        np.testing.assert_allclose(states[k], _literal_simulate(ref[k], initial_state(ego)), atol=1e-8)


def test_stopping_branch_first_step_by_hand() -> None:
    # Reference stays at the ego pose: v_ref = 0 and v = 0.1 <= 0.2 -> a_cmd = -0.5 * 0.1, no steering.
    ego = np.array([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0])
    states = simulate_trajectories(np.zeros((1, 8, 3)), ego)
    accel = 0.1 / 0.3 * (-0.05)
    assert states[0, 1, StateIndex.ACCELERATION_X] == pytest.approx(accel, abs=1e-12)
    assert states[0, 1, StateIndex.VELOCITY_X] == pytest.approx(0.1 + 0.1 * accel, abs=1e-12)
    assert states[0, 1, StateIndex.X] == pytest.approx(0.01, abs=1e-12)
    np.testing.assert_array_equal(states[0, :, StateIndex.STEERING_RATE], 0.0)


def test_straight_constant_speed_tracks_exactly() -> None:
    ego = np.array([5.0, -3.0, 0.7, 10.0, 0.0, 0.0, 0.0])
    states = simulate_trajectories(_arc(10.0, 0.0)[None], ego)[0]
    ref = reference_poses(_arc(10.0, 0.0)[None], ego[:3])[0]
    np.testing.assert_allclose(states[:, :2], ref[:, :2], atol=1e-6)
    np.testing.assert_allclose(states[:, StateIndex.VELOCITY_X], 10.0, atol=1e-6)
    np.testing.assert_allclose(states[:, StateIndex.HEADING], 0.7, atol=1e-9)
    np.testing.assert_allclose(states[1:, StateIndex.ACCELERATION_X], 0.0, atol=1e-6)


def test_arc_is_followed() -> None:
    # Starting with zero steering on a 20 m radius arc, NAVSIM's one-step lifted LQR (no weight on the steering
    # state) swings around the arc by about a metre (the literal transcription above behaves identically), but it
    # turns by the same total heading and keeps the speed.
    curvature, speed = 0.05, 8.0
    ego = np.array([0.0, 0.0, 0.0, speed, 0.0, 0.0, 0.0])
    states = simulate_trajectories(_arc(speed, curvature)[None], ego)[0]
    ref = reference_poses(_arc(speed, curvature)[None], ego[:3])[0]
    assert np.max(np.hypot(*(states[:, :2] - ref[:, :2]).T)) < 2.0
    assert abs(_wrap(states[-1, StateIndex.HEADING] - ref[-1, 2])) < 0.05
    np.testing.assert_allclose(states[:, StateIndex.VELOCITY_X], speed, atol=0.05)


def test_stop_trajectory_ends_near_zero_speed() -> None:
    # 10 m/s braking at 5 m/s^2: stops after 2 s at x = 10 m, then holds.
    x = np.where(TIMES <= 2.0, 10.0 * TIMES - 2.5 * TIMES**2, 10.0)
    traj = np.stack([x, 0 * x, 0 * x], axis=-1)[None]
    states = simulate_trajectories(traj, np.array([0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 0.0]))[0]
    assert abs(states[-1, StateIndex.VELOCITY_X]) < 0.2
    assert np.all(np.diff(states[:, StateIndex.VELOCITY_X]) <= 1e-9)  # monotone braking
    assert 10.0 < states[-1, StateIndex.X] < 15.0  # the lagged tracker overshoots the 10 m stop point a little


def test_batch_equals_single() -> None:
    trajs = np.stack([_arc(3.0, 0.1), _arc(12.0, -0.02), _arc(0.0, 0.0)])
    ego = np.array([1.0, 2.0, -2.5, 6.0, 0.2, -0.4, 0.1])
    batch = simulate_trajectories(trajs, ego)
    for k in range(3):
        np.testing.assert_allclose(batch[k], simulate_trajectories(trajs[k:k + 1], ego)[0], rtol=0, atol=1e-12)


def test_per_trajectory_initial_states() -> None:
    trajs = np.stack([_arc(5.0, 0.0), _arc(5.0, 0.0)])
    ref = reference_poses(trajs, np.zeros(3))
    inits = np.stack([initial_state(np.array([0, 0, 0, speed, 0, 0, 0])) for speed in (5.0, 2.0)])
    states = simulate(ref, inits)
    np.testing.assert_array_equal(states[:, 0], inits)
    np.testing.assert_allclose(states[0], simulate(ref[:1], inits[0])[0], atol=1e-12)


def test_simulate_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        simulate(np.zeros((2, 41, 2)), np.zeros(11))
    with pytest.raises(ValueError):
        simulate(np.zeros((2, 41, 3)), np.zeros((3, 11)))
    with pytest.raises(ValueError):
        simulate(np.zeros((2, 3, 3)), np.zeros(11))
    with pytest.raises(ValueError):
        simulate(np.full((1, 41, 3), np.inf), np.zeros(11))
