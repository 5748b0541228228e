"""NAVSIM's batch LQR tracker + kinematic bicycle model (navsim_metrics.md §2.2-§2.5), vectorized over trajectories.

``simulate`` turns K world reference pose sequences into K simulated ego state sequences. It reproduces NAVSIM's
behaviour, quirks included, but solves the same equations more cheaply (no Python loop over K, none of NAVSIM's
per-trajectory 40x40 pseudo-inverses):

* velocity fit: with unit heading vectors, AᵀA = dt² TᵀT does not depend on the trajectory, so the regularized
  least-squares solution is one constant (M, M) matrix applied to the projected displacements;
* curvature fit: in the curvature values z = T x the normal equations are tridiagonal, solved by a vectorized
  Thomas sweep;
* lateral LQR: the 10-step product of the unipotent per-step matrices has a closed form (sums over the horizon).

All three are algebraically identical to NAVSIM's formulation (checked against the direct one in the tests).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from drive_jepa_core.geometry import wrap_angle
from drive_jepa_core.sim.constants import STATE_DIM, TRACKER_PARAMETERS, StateIndex, TrackerParameters

__all__ = [
    "STATE_DIM",
    "StateIndex",
    "TrackerParameters",
    "bicycle_step",
    "curvature_profile",
    "initial_state",
    "lateral_lifted_system",
    "navsim_jerk_regularizer",
    "simulate",
    "velocity_profile",
]

_EGO_STATE7_DIM = 7  # Scene.ego_states columns: x, y, heading, vx, vy, ax, ay


def initial_state(ego_state7: np.ndarray) -> np.ndarray:
    """The simulation's state 0 from a ``Scene.ego_states`` row (navsim_metrics.md §2.2).

    Args:
        ego_state7: ``(7,)`` world rear-axle [x, y, heading, vx, vy, ax, ay] (velocity/acceleration in body frame).
    Returns:
        ``(11,)`` state (see :class:`StateIndex`). NAVSIM builds the ego state without steering angle, steering rate,
        yaw rate and yaw acceleration, so those four are 0.
    """
    ego_state7 = np.asarray(ego_state7, dtype=np.float64)
    if ego_state7.shape != (_EGO_STATE7_DIM,):
        raise ValueError(f"ego_state7 must be (7,) [x, y, heading, vx, vy, ax, ay], got {ego_state7.shape}")
    if not np.all(np.isfinite(ego_state7)):
        raise ValueError("ego_state7 must be finite")
    state = np.zeros(STATE_DIM, dtype=np.float64)
    state[: _EGO_STATE7_DIM] = ego_state7
    return state


# ----------------------------------------------------------------------------------------------------------------------
# Reference-profile fit (navsim_metrics.md §2.3)
# ----------------------------------------------------------------------------------------------------------------------
def navsim_jerk_regularizer(num_displacements: int) -> np.ndarray:
    """NAVSIM's (buggy) jerk regularizer R for the velocity fit, shape ``(M - 2, M)`` over [v0, a_0 … a_{M-2}].

    NAVSIM QUIRK (copied for parity, navsim_metrics.md §2.3): the batch code means to build a first-difference
    matrix, but its second slice assignment overwrites the first, leaving D = -I with a single +1 at
    (last row, last column). R = [0-column | D], so the penalty is
    lambda * (sum_{r <= M-4} a_r² + (a_{M-2} - a_{M-3})²) instead of the sum of squared acceleration differences.
    """
    if num_displacements < 3:
        raise ValueError(f"need at least 3 displacements (4 poses) for the velocity fit, got {num_displacements}")
    rows = num_displacements - 2
    diff = -np.eye(rows, num_displacements - 1)
    diff[-1, -1] = 1.0
    return np.concatenate([np.zeros((rows, 1)), diff], axis=1)


def _integration_matrix(num: int, dt: float) -> np.ndarray:
    """T ``(num, num)``: profile_i = x_0 + dt * sum_{k<i} x_{k+1} (initial value + integrated derivatives)."""
    mat = np.tril(np.full((num, num), dt), k=0)
    mat[:, 0] = 1.0  # row i: initial value + dt * derivatives 0 … i-1 (columns 1 … i)
    return mat


@lru_cache(maxsize=16)
def _velocity_fit_operator(num_displacements: int, dt: float, jerk_penalty: float) -> np.ndarray:
    """Constant ``(M, M)`` W with velocity_profile = W @ p, p_i = unit(h_i) · Δxy_i.

    NAVSIM solves x = pinv(AᵀA + λ RᵀR) Aᵀ y per trajectory with A's row pair i = dt (cos h_i, sin h_i) ⊗ T_i. As
    cos² + sin² = 1, AᵀA = dt² TᵀT and Aᵀy = dt Tᵀ p, so the operator is the same for every trajectory.
    """
    integ = _integration_matrix(num_displacements, dt)
    reg = navsim_jerk_regularizer(num_displacements)
    normal = dt**2 * integ.T @ integ + jerk_penalty * reg.T @ reg
    solve = np.linalg.pinv(normal) @ (dt * integ.T)  # x = solve @ p (pinv as NAVSIM)
    operator = integ @ solve  # velocity profile v_i = v0 + dt * sum_{k<i} a_k
    operator.setflags(write=False)
    return operator


def velocity_profile(poses: np.ndarray, params: TrackerParameters = TRACKER_PARAMETERS) -> np.ndarray:
    """Regularized least-squares velocity profile of reference poses (navsim_metrics.md §2.3).

    Args:
        poses: ``(K, T, 3)`` reference poses at ``params.dt``.
    Returns:
        ``(K, T - 1)`` velocities v_0 … v_{T-2} (M = T - 1 values).
    """
    disp = np.diff(poses[..., :2], axis=1)  # (K, M, 2)
    heading = poses[:, :-1, 2]
    proj = disp[..., 0] * np.cos(heading) + disp[..., 1] * np.sin(heading)  # (K, M)
    operator = _velocity_fit_operator(proj.shape[1], float(params.dt), float(params.jerk_penalty))
    return proj @ operator.T


def curvature_profile(
    poses: np.ndarray, velocities: np.ndarray, params: TrackerParameters = TRACKER_PARAMETERS
) -> np.ndarray:
    """Regularized least-squares curvature profile (navsim_metrics.md §2.3).

    NAVSIM minimizes sum_i (Δh_i - dt v_i (κ0 + dt sum_{k<i} ρ_k))² + 1e-10 κ0² + 1e-2 sum_k ρ_k². In the
    curvature values z_i = κ0 + dt sum_{k<i} ρ_k (ρ_k = (z_{k+1} - z_k) / dt) this is
    sum_i (Δh_i - dt v_i z_i)² + 1e-10 z_0² + (1e-2 / dt²) sum_k (z_{k+1} - z_k)², whose normal equations are
    tridiagonal and symmetric positive definite; a Thomas sweep over time solves all K at once.

    Args:
        poses: ``(K, T, 3)`` reference poses; velocities: ``(K, T - 1)`` from :func:`velocity_profile`.
    Returns:
        ``(K, T - 1)`` curvatures κ_0 … κ_{T-2}.
    """
    dt = params.dt
    smooth = params.curvature_rate_penalty / dt**2
    # Time-major (M, K) so that each Thomas step reads contiguous rows.
    dh = np.ascontiguousarray(wrap_angle(np.diff(poses[..., 2], axis=1)).T)  # (M, K)
    vel = np.ascontiguousarray(np.asarray(velocities, dtype=np.float64).T)
    num = dh.shape[0]
    # Tridiagonal system: diagonal `diag`, constant off-diagonal -smooth, right-hand side `rhs`.
    lap = np.full((num, 1), 2.0 * smooth)
    lap[0] = lap[-1] = smooth
    diag = (dt * vel) ** 2 + lap
    diag[0] += params.initial_curvature_penalty
    rhs = dt * vel * dh
    off = -smooth

    # Thomas algorithm (no pivoting needed: the matrix is SPD). Loop over time, vectorized over K.
    c_prime = np.empty_like(diag)
    d_prime = np.empty_like(diag)
    c_prime[0] = off / diag[0]
    d_prime[0] = rhs[0] / diag[0]
    for i in range(1, num):
        denom = diag[i] - off * c_prime[i - 1]
        c_prime[i] = off / denom
        d_prime[i] = (rhs[i] - off * d_prime[i - 1]) / denom
    curv = np.empty_like(diag)
    curv[-1] = d_prime[-1]
    for i in range(num - 2, -1, -1):
        curv[i] = d_prime[i] - c_prime[i] * curv[i + 1]
    return curv.T


# ----------------------------------------------------------------------------------------------------------------------
# Lateral LQR lifted over the horizon (navsim_metrics.md §2.4)
# ----------------------------------------------------------------------------------------------------------------------
def _lifted_terms(
    velocities: np.ndarray, curvatures: np.ndarray, dt: float, wheel_base: float
) -> tuple[np.ndarray, ...]:
    """Closed form of composing M_i = I + a_i E01 + b_i E12 (a_i = v_i dt, b_i = a_i / L) over the horizon.

    With A ← M_i A, B ← M_i B + (0, 0, dt), g ← M_i g + (0, c_i, 0), c_i = -v_i κ_i dt, starting from (I, 0, 0):
    A = [[1, Σa, Σ_{p<q} b_p a_q], [0, 1, Σb], [0, 0, 1]],
    B = dt (Σ_{p<q} p b_p a_q, Σ_p p b_p, H), g = (Σ_i c_i Σ_{q>i} a_q, Σ_i c_i, 0).

    Args:
        velocities, curvatures: ``(K, H)``.
    Returns:
        (sum_a, sum_b, sum_ab, b0, b1, b2, g0, g1), each ``(K,)``.
    """
    horizon = velocities.shape[1]
    step = np.arange(horizon, dtype=np.float64)
    a = velocities * dt
    b = a / wheel_base
    c = -velocities * curvatures * dt
    cum_a = np.cumsum(a, axis=1)
    cum_b = np.cumsum(b, axis=1)
    cum_pb = np.cumsum(step * b, axis=1)
    sum_a = cum_a[:, -1]
    sum_b = cum_b[:, -1]
    sum_ab = np.sum(a * (cum_b - b), axis=1)  # Σ_q a_q Σ_{p<q} b_p
    b0 = dt * np.sum(a * (cum_pb - step * b), axis=1)  # dt Σ_q a_q Σ_{p<q} p b_p
    b1 = dt * (cum_pb[:, -1])
    b2 = np.full_like(sum_a, dt * horizon)
    g0 = np.sum(c * (sum_a[:, None] - cum_a), axis=1)  # Σ_i c_i Σ_{q>i} a_q
    g1 = np.sum(c, axis=1)
    return sum_a, sum_b, sum_ab, b0, b1, b2, g0, g1


def lateral_lifted_system(
    velocities: np.ndarray, curvatures: np.ndarray, params: TrackerParameters = TRACKER_PARAMETERS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lifted lateral model e_H = A e_0 + B u + g over the horizon as matrices (for inspection and tests).

    Args:
        velocities, curvatures: ``(K, H)`` linearization velocities and reference curvatures.
    Returns:
        A ``(K, 3, 3)``, B ``(K, 3)``, g ``(K, 3)`` over the state [lateral error, heading error, steering angle].
    """
    sum_a, sum_b, sum_ab, b0, b1, b2, g0, g1 = _lifted_terms(
        np.asarray(velocities, dtype=np.float64), np.asarray(curvatures, dtype=np.float64), params.dt,
        params.wheel_base,
    )
    num = sum_a.shape[0]
    mat_a = np.tile(np.eye(3), (num, 1, 1))
    mat_a[:, 0, 1] = sum_a
    mat_a[:, 0, 2] = sum_ab
    mat_a[:, 1, 2] = sum_b
    return mat_a, np.stack([b0, b1, b2], axis=1), np.stack([g0, g1, np.zeros_like(g0)], axis=1)


@lru_cache(maxsize=16)
def _affine_horizon_constants(horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Index sums for :func:`_lifted_terms` when a_i = alpha + beta i (the tracker's linearization v + a dt i).

    Returns:
        ``poly (9,)``: [S0, S1, S2, P00, P10 + P01, P11, P10, P20 + P11, P21] with S_r = sum_i i^r and
        P_rs = sum_{p<q} p^r q^s; ``weights (H, 5)``: per-index weights of the five curvature sums
        [1, i, n_i, i n_i + m_i, i m_i] with n_i = #{q > i} and m_i = sum_{q > i} q.
    """
    idx = np.arange(horizon, dtype=np.float64)
    upper = np.triu(np.ones((horizon, horizon)), k=1)  # [p, q] = 1 for p < q

    def pair(r: int, s_: int) -> float:
        return float(np.sum(upper * idx[:, None] ** r * idx[None, :] ** s_))

    poly = np.array([
        horizon, idx.sum(), (idx**2).sum(),
        pair(0, 0), pair(1, 0) + pair(0, 1), pair(1, 1),
        pair(1, 0), pair(2, 0) + pair(1, 1), pair(2, 1),
    ])
    n_after = upper.sum(axis=1)  # n_i
    m_after = upper @ idx  # m_i
    weights = np.stack([np.ones(horizon), idx, n_after, idx * n_after + m_after, idx * m_after], axis=1)
    poly.setflags(write=False)
    weights.setflags(write=False)
    return poly, weights


def _window_curvature_sums(curvatures: np.ndarray, horizon: int) -> np.ndarray:
    """The five weighted curvature sums of every step's horizon window, ``(M, 5, K)`` (time-major).

    Step k sees κ[min(k + i, M - 1)] for i < H (κ[k … j-1] padded with κ[j], j = min(k + H, M - 1),
    navsim_metrics.md §2.4). Each weighted window sum is linear in κ, so all steps come from one matmul.
    """
    num = curvatures.shape[1]
    _, weights = _affine_horizon_constants(horizon)
    gather = np.zeros((num, 5, num))  # [k, w, j]
    src = np.minimum(np.arange(num)[:, None] + np.arange(horizon)[None, :], num - 1)  # (M, H)
    for i in range(horizon):
        gather[np.arange(num), :, src[:, i]] += weights[i]
    return (gather.reshape(num * 5, num) @ curvatures.T).reshape(num, 5, -1)


# ----------------------------------------------------------------------------------------------------------------------
# Closed-loop simulation (navsim_metrics.md §2.4-§2.5)
# ----------------------------------------------------------------------------------------------------------------------
def _principal_value(angle: np.ndarray) -> np.ndarray:
    """Angle in [-pi, pi) by modulo: nuPlan's ``principal_value``, which the bicycle model uses for the new heading.

    The tracker also uses it in place of NAVSIM's atan2(sin, cos) wrap of error angles: both give the same angle up
    to rounding (they differ only at exactly ±pi), and the modulo is several times cheaper.
    """
    return np.mod(angle + np.pi, 2.0 * np.pi) - np.pi


def _bicycle_columns(
    cols: tuple[np.ndarray, ...], accel_cmd: np.ndarray, steer_rate_cmd: np.ndarray, p: TrackerParameters
) -> tuple[np.ndarray | float, ...]:
    """One Euler step of the kinematic bicycle with first-order actuator lags (navsim_metrics.md §2.5).

    Args:
        cols: the 11 state columns, each ``(K,)``, in :class:`StateIndex` order.
    Returns:
        The 11 next-state columns (VELOCITY_Y and ACCELERATION_Y as the scalar 0.0).
    """
    dt = p.dt
    x, y, h, v = cols[StateIndex.X], cols[StateIndex.Y], cols[StateIndex.HEADING], cols[StateIndex.VELOCITY_X]
    accel, steer = cols[StateIndex.ACCELERATION_X], cols[StateIndex.STEERING_ANGLE]
    yaw_rate = cols[StateIndex.ANGULAR_VELOCITY]

    accel_new = accel + dt / (dt + p.accel_time_constant) * (accel_cmd - accel)
    steer_ideal = steer + dt * steer_rate_cmd
    steer_lagged = steer + dt / (dt + p.steering_angle_time_constant) * (steer_ideal - steer)
    steer_rate_new = (steer_lagged - steer) / dt
    # Position and heading integrate the OLD speed, heading and steering angle.
    dist = dt * v
    x_new = x + dist * np.cos(h)
    y_new = y + dist * np.sin(h)
    h_new = _principal_value(h + dist * np.tan(steer) / p.wheel_base)
    v_new = v + dt * accel_new
    steer_new = np.clip(steer + dt * steer_rate_new, -p.max_steering_angle, p.max_steering_angle)
    yaw_rate_new = v_new * np.tan(steer_new) / p.wheel_base
    yaw_accel_new = (yaw_rate_new - yaw_rate) / dt
    # Kinematic bicycle: no lateral velocity or acceleration.
    return (x_new, y_new, h_new, v_new, 0.0, accel_new, 0.0, steer_new, steer_rate_new, yaw_rate_new, yaw_accel_new)


def bicycle_step(
    state: np.ndarray,
    accel_cmd: np.ndarray,
    steer_rate_cmd: np.ndarray,
    params: TrackerParameters = TRACKER_PARAMETERS,
) -> np.ndarray:
    """Propagate ``(K, 11)`` states one step with commanded acceleration and steering rate ``(K,)`` each.

    First-order lags on acceleration (0.2 s) and steering angle (0.05 s), Euler integration with the old speed and
    steering for position/heading, steering clipped to ±π/3, yaw rate v tan(δ) / L (navsim_metrics.md §2.5).
    """
    state = np.asarray(state, dtype=np.float64)
    if state.ndim != 2 or state.shape[1] != STATE_DIM:
        raise ValueError(f"state must be (K, {STATE_DIM}), got {state.shape}")
    num = state.shape[0]
    accel_cmd = np.broadcast_to(np.asarray(accel_cmd, dtype=np.float64), (num,))
    steer_rate_cmd = np.broadcast_to(np.asarray(steer_rate_cmd, dtype=np.float64), (num,))
    cols = _bicycle_columns(tuple(state.T), accel_cmd, steer_rate_cmd, params)
    return np.stack([np.broadcast_to(c, (num,)) for c in cols], axis=1)


def simulate(
    reference: np.ndarray, initial: np.ndarray, params: TrackerParameters = TRACKER_PARAMETERS
) -> np.ndarray:
    """Track K reference pose sequences with the LQR tracker and the kinematic bicycle model.

    Args:
        reference: ``(K, T, 3)`` world reference poses at ``params.dt`` (T = 41 for NAVSIM, from
            :func:`drive_jepa_core.sim.interpolate.reference_poses`); T >= 4.
        initial: ``(11,)`` state shared by all K, or ``(K, 11)`` (see :func:`initial_state`).
    Returns:
        ``(K, T, 11)`` simulated states (columns :class:`StateIndex`); index 0 is ``initial``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    initial = np.asarray(initial, dtype=np.float64)
    if reference.ndim != 3 or reference.shape[-1] != 3:
        raise ValueError(f"reference must be (K, T, 3), got {reference.shape}")
    num_traj, num_states, _ = reference.shape
    if num_states < 4:
        raise ValueError(f"reference needs at least 4 poses (T >= 4), got T={num_states}")
    if initial.shape == (STATE_DIM,):
        initial = np.broadcast_to(initial, (num_traj, STATE_DIM))
    elif initial.shape != (num_traj, STATE_DIM):
        raise ValueError(f"initial must be (11,) or ({num_traj}, 11), got {initial.shape}")
    if not (np.all(np.isfinite(reference)) and np.all(np.isfinite(initial))):
        raise ValueError("reference and initial must be finite")

    p = params
    dt, wheel_base, horizon = p.dt, p.wheel_base, p.tracking_horizon
    num_steps = num_states - 1  # M: commands / displacements

    # Time-major copies: every per-step read below is a contiguous (K,) row.
    ref_t = np.ascontiguousarray(reference.transpose(1, 2, 0))  # (T, 3, K)
    sin_ref, cos_ref = np.sin(ref_t[:, 2]), np.cos(ref_t[:, 2])  # (T, K)
    disp = np.diff(ref_t[:, :2], axis=0)  # (M, 2, K)
    proj = disp[:, 0] * cos_ref[:-1] + disp[:, 1] * sin_ref[:-1]  # (M, K): displacement along the heading
    v_ref_t = _velocity_fit_operator(num_steps, float(dt), float(p.jerk_penalty)) @ proj  # (M, K)
    k_prof = curvature_profile(reference, v_ref_t.T, p)  # (K, M)
    kappa_sums = _window_curvature_sums(k_prof, horizon)  # (M, 5, K)
    poly, _ = _affine_horizon_constants(horizon)
    s0, s1, s2, p00, p10_01, p11, p10, p20_11, p21 = poly

    lon_gain = horizon * dt  # B of the longitudinal model: acceleration held over the horizon (1.0 s)
    lon_scale = -lon_gain * p.q_longitudinal / (lon_gain * p.q_longitudinal * lon_gain + p.r_longitudinal)
    q0, q1, q2 = p.q_lateral
    b2 = dt * horizon  # steering-angle row of the lifted input vector

    # (T, K, 11): each step fills one contiguous block; the final transpose moves whole 11-value states.
    out = np.empty((num_states, num_traj, STATE_DIM), dtype=np.float64)
    out[0] = initial
    cols = tuple(np.ascontiguousarray(initial.T))
    for k in range(num_steps):
        x, y, h, v, steer = (cols[StateIndex.X], cols[StateIndex.Y], cols[StateIndex.HEADING],
                             cols[StateIndex.VELOCITY_X], cols[StateIndex.STEERING_ANGLE])
        # --- tracking errors against the reference at the same index k (navsim_metrics.md §2.4) ---
        e_lat = (y - ref_t[k, 1]) * cos_ref[k] - (x - ref_t[k, 0]) * sin_ref[k]
        e_head = _principal_value(h - ref_t[k, 2])
        v_ref = v_ref_t[min(k + horizon, num_steps - 1)]

        # --- longitudinal LQR (acceleration held over the horizon) and the stopping P controller ---
        v_err = v - v_ref
        accel_lqr = lon_scale * v_err
        stopping = (v_ref <= p.stopping_velocity) & (v <= p.stopping_velocity)
        accel_cmd = np.where(stopping, -p.stopping_proportional_gain * v_err, accel_lqr)

        # --- lateral LQR on the lifted H-step model linearized along v_i = v + a_lqr dt i, i.e. per-step
        #     displacement a_i = alpha + beta i; closed forms of _lifted_terms for that affine profile ---
        alpha = dt * v
        beta = (dt * dt) * accel_lqr
        aa, ab, bb = alpha * alpha, alpha * beta, beta * beta
        sum_a = alpha * s0 + beta * s1
        sum_ab = (aa * p00 + ab * p10_01 + bb * p11) / wheel_base
        b0 = (dt / wheel_base) * (aa * p10 + ab * p20_11 + bb * p21)
        b1 = (dt / wheel_base) * (alpha * s1 + beta * s2)
        ks = kappa_sums[k]
        g0 = -(aa * ks[2] + ab * ks[3] + bb * ks[4])
        g1 = -(alpha * ks[0] + beta * ks[1])
        err0 = e_lat + sum_a * e_head + sum_ab * steer + g0
        # NAVSIM wraps the heading and steering components of the predicted error.
        err1 = _principal_value(e_head + (sum_a / wheel_base) * steer + g1)
        numerator = q0 * b0 * err0 + q1 * b1 * err1
        denominator = q0 * b0 * b0 + q1 * b1 * b1 + (q2 * b2 * b2 + p.r_lateral)
        if q2 != 0.0:  # q_lateral[2] = 0 by default, so the steering term drops out
            numerator = numerator + q2 * b2 * _principal_value(steer)
        steer_rate_cmd = np.where(stopping, 0.0, -numerator / denominator)

        # --- kinematic bicycle (navsim_metrics.md §2.5) ---
        cols = _bicycle_columns(cols, accel_cmd, steer_rate_cmd, p)
        dst = out[k + 1]
        for index, column in enumerate(cols):
            dst[:, index] = column
    return np.ascontiguousarray(out.transpose(1, 0, 2))
