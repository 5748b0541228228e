"""NAVSIM comfort metrics on simulated ego states: C (PDMS v1.1), HC and EC (EPDMS v2).

Follows shared/reference/navsim_metrics.md §5.7 (C, HC) and §5.9 (EC), NAVSIM ``pdm_comfort_metrics.py``:
Savitzky–Golay smoothing / differentiation with scipy (mode ``interp``, window = min(w, n), derivatives with
delta = 0.1 s), every filtered series rounded to 8 decimals, headings phase-unwrapped. All functions are vectorized
over the leading K axis of ``(K, T, 11)`` state arrays (columns :class:`drive_jepa_core.sim.StateIndex`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter

from drive_jepa_core.constants import EGO_VEHICLE, HISTORY_SECONDS, SIM_DT
from drive_jepa_core.geometry import wrap_angle
from drive_jepa_core.sim.constants import STATE_DIM, StateIndex

__all__ = [
    "COMFORT_BOUNDS",
    "COMFORT_CHECK_NAMES",
    "EC_MAX_INTERVAL",
    "EC_THRESHOLDS",
    "ComfortBounds",
    "ExtendedComfortResult",
    "ExtendedComfortThresholds",
    "center_acceleration_x",
    "comfort_v1",
    "comfort_v1_checks",
    "extended_comfort",
    "history_comfort",
    "history_comfort_checks",
    "history_states_from_log",
    "overlap_steps",
    "phase_unwrap",
    "savgol",
]


# ----------------------------------------------------------------------------------------------------------------------
# Constants (navsim_metrics.md §5.7, §5.9; nuPlan ego_*_statistics.yaml bounds; NAVSIM pdm_comfort_metrics.py)
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ComfortBounds:
    """nuPlan comfort bounds; every check is strict and applies to every sample (navsim_metrics.md §5.7)."""

    min_lon_accel: float = -4.05  # m/s²
    max_lon_accel: float = 2.40  # m/s²
    max_abs_lat_accel: float = 4.89  # m/s²
    max_abs_jerk: float = 8.37  # m/s³, jerk of the acceleration magnitude
    max_abs_lon_jerk: float = 4.13  # m/s³
    max_abs_yaw_accel: float = 1.93  # rad/s²
    max_abs_yaw_rate: float = 0.95  # rad/s


@dataclass(frozen=True)
class ExtendedComfortThresholds:
    """EC bounds on the RMS of the two-frame feature differences; inclusive (navsim_metrics.md §5.9)."""

    acceleration: float = 0.7  # m/s²
    jerk: float = 0.5  # m/s³
    yaw_rate: float = 0.1  # rad/s
    yaw_accel: float = 0.1  # rad/s²


COMFORT_BOUNDS = ComfortBounds()
EC_THRESHOLDS = ExtendedComfortThresholds()
# Order of the columns returned by the *_checks functions (NAVSIM's order).
COMFORT_CHECK_NAMES = ("lon_acceleration", "lat_acceleration", "jerk", "lon_jerk", "yaw_acceleration", "yaw_rate")

ROUND_DECIMALS = 8  # every filtered series is rounded before checking (navsim_metrics.md §5.7)
ACCEL_WINDOW = 8  # SG smoothing window of accelerations (v1 inner / v2 / EC)
JERK_WINDOW = 15  # SG derivative window of jerks (v2 / EC); v1 uses the full length n
YAW_WINDOW = 5  # SG window of yaw rate / acceleration: NAVSIM passes 15 but it is ignored, so 5 is used
POLY_ORDER = 2  # SG polynomial order of everything except the comfort yaw acceleration
YAW_ACCEL_POLY_ORDER = 3  # comfort (C, HC) yaw acceleration; EC uses POLY_ORDER (navsim_metrics.md §5.9)
EC_MAX_INTERVAL = 0.55  # s, EC requires 0 < Δt < 0.55 (NAVSIM's assertion; navsim_metrics.md §5.9)
_TIME_TOLERANCE = 1e-6  # s, timestamps closer than this are the same instant


# ----------------------------------------------------------------------------------------------------------------------
# Signal helpers
# ----------------------------------------------------------------------------------------------------------------------
def savgol(values: np.ndarray, window: int, polyorder: int, deriv: int = 0, delta: float = SIM_DT) -> np.ndarray:
    """Savitzky–Golay filter along the last axis with NAVSIM's conventions (not rounded).

    Args:
        values: ``(..., n)`` series sampled every ``delta`` seconds.
        window: nominal window; the filter uses min(window, n) (even windows are allowed, as in scipy).
        polyorder: polynomial order, must be < the effective window.
        deriv: derivative order; ``delta`` is the sample spacing used for derivatives.
    Returns:
        ``(..., n)`` filtered series (mode ``interp``).
    """
    values = np.asarray(values, dtype=np.float64)
    eff = min(int(window), values.shape[-1])
    if polyorder >= eff:
        raise ValueError(f"Savitzky-Golay needs polyorder < window, got polyorder={polyorder}, window={eff}")
    return savgol_filter(values, eff, polyorder, deriv=deriv, delta=delta, axis=-1, mode="interp")


def _rounded(values: np.ndarray) -> np.ndarray:
    return np.round(values, ROUND_DECIMALS)


def phase_unwrap(headings: np.ndarray) -> np.ndarray:
    """NAVSIM's heading unwrap along the last axis: subtract 2π times the cumulative round(Δh / 2π)."""
    headings = np.asarray(headings, dtype=np.float64)
    adjust = np.zeros_like(headings)
    adjust[..., 1:] = np.cumsum(np.round(np.diff(headings, axis=-1) / (2.0 * np.pi)), axis=-1)
    return headings - 2.0 * np.pi * adjust


def center_acceleration_x(states: np.ndarray) -> np.ndarray:
    """Longitudinal acceleration "at the geometric centre" as NAVSIM v2 computes it, ``(..., T)``.

    NAVSIM QUIRK (copied for parity, navsim_metrics.md §5.7): the rigid-body shift by d = (1.461, 0) adds both the
    centripetal term d ω² and the tangential term d α to x (physically they belong on -x and y): a_x + d ω² + d α.
    The lateral component is left as a_y.
    """
    d = EGO_VEHICLE.rear_axle_to_center
    omega = states[..., StateIndex.ANGULAR_VELOCITY]
    return states[..., StateIndex.ACCELERATION_X] + d * omega * omega + d * states[..., StateIndex.ANGULAR_ACCELERATION]


def _check_states(states: np.ndarray, name: str = "states") -> np.ndarray:
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 3 or states.shape[-1] != STATE_DIM:
        raise ValueError(f"{name} must be (K, T, {STATE_DIM}), got {states.shape}")
    if states.shape[1] < YAW_WINDOW:
        raise ValueError(f"{name} needs at least {YAW_WINDOW} time steps, got {states.shape[1]}")
    if not np.all(np.isfinite(states)):
        raise ValueError(f"{name} must be finite")
    return states


def _within(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.all((values > low) & (values < high), axis=-1)


def _six_checks(
    states: np.ndarray, lon_accel: np.ndarray, lat_accel: np.ndarray, accel_window: int, jerk_window: int
) -> np.ndarray:
    """The six nuPlan comfort checks ``(K, 6)`` (order :data:`COMFORT_CHECK_NAMES`).

    ``lon_accel`` / ``lat_accel`` are the raw ``(K, n)`` series (rear-axle for v1, "centre" for v2), smoothed with
    ``accel_window``; the jerks differentiate ACCEL_WINDOW-smoothed series with ``jerk_window``.
    """
    b = COMFORT_BOUNDS
    magnitude = np.hypot(states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y])
    headings = phase_unwrap(states[..., StateIndex.HEADING])

    lon = _rounded(savgol(lon_accel, accel_window, POLY_ORDER))
    lat = _rounded(savgol(lat_accel, accel_window, POLY_ORDER))
    jerk = _rounded(savgol(_rounded(savgol(magnitude, ACCEL_WINDOW, POLY_ORDER)), jerk_window, POLY_ORDER, deriv=1))
    lon_jerk = _rounded(savgol(_rounded(savgol(lon_accel, ACCEL_WINDOW, POLY_ORDER)), jerk_window, POLY_ORDER,
                               deriv=1))
    yaw_accel = _rounded(savgol(headings, YAW_WINDOW, YAW_ACCEL_POLY_ORDER, deriv=2))
    yaw_rate = _rounded(savgol(headings, YAW_WINDOW, POLY_ORDER, deriv=1))
    return np.stack([
        _within(lon, b.min_lon_accel, b.max_lon_accel),
        _within(lat, -b.max_abs_lat_accel, b.max_abs_lat_accel),
        _within(jerk, -b.max_abs_jerk, b.max_abs_jerk),
        _within(lon_jerk, -b.max_abs_lon_jerk, b.max_abs_lon_jerk),
        _within(yaw_accel, -b.max_abs_yaw_accel, b.max_abs_yaw_accel),
        _within(yaw_rate, -b.max_abs_yaw_rate, b.max_abs_yaw_rate),
    ], axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# C (PDMS v1.1)
# ----------------------------------------------------------------------------------------------------------------------
def comfort_v1_checks(states: np.ndarray) -> np.ndarray:
    """The six v1.1 comfort checks on simulated states (navsim_metrics.md §5.7, column "v1.1").

    Accelerations are the rear-axle ones; the acceleration smoothing and jerk derivative windows are the full
    length n; yaw signals use window 5.

    Args:
        states: ``(K, T, 11)`` simulated states at 0.1 s (T = 41).
    Returns:
        ``(K, 6)`` bool, columns :data:`COMFORT_CHECK_NAMES`.
    """
    states = _check_states(states)
    n = states.shape[1]
    return _six_checks(states, states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y],
                       accel_window=n, jerk_window=n)


def comfort_v1(states: np.ndarray) -> np.ndarray:
    """C of PDMS v1.1: ``(K,)`` bool, True iff all six checks pass on the ``(K, T, 11)`` simulated states."""
    return np.all(comfort_v1_checks(states), axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# HC (EPDMS v2)
# ----------------------------------------------------------------------------------------------------------------------
def history_comfort_checks(states: np.ndarray, history: np.ndarray | None) -> np.ndarray:
    """The six v2 checks on the human history followed by the simulated states (navsim_metrics.md §5.7, "v2").

    The history is prepended and the concatenation is treated as uniformly sampled at 0.1 s (NAVSIM does this even
    when the last history sample is 0.2 s before state 0). Longitudinal acceleration is NAVSIM's "centre" a_x
    (:func:`center_acceleration_x`); smoothing window 8, jerk derivative window 15.

    Args:
        states: ``(K, T, 11)`` simulated states; history: ``(H, 11)`` from :func:`history_states_from_log`, or None.
    Returns:
        ``(K, 6)`` bool; all True when there is no history (HC = 1).
    """
    states = _check_states(states)
    num = states.shape[0]
    if history is None or np.asarray(history).shape[0] == 0:
        return np.ones((num, len(COMFORT_CHECK_NAMES)), dtype=bool)
    history = np.asarray(history, dtype=np.float64)
    if history.ndim != 2 or history.shape[1] != STATE_DIM or not np.all(np.isfinite(history)):
        raise ValueError(f"history must be a finite (H, {STATE_DIM}) array, got {history.shape}")
    full = np.concatenate([np.broadcast_to(history, (num, *history.shape)), states], axis=1)
    return _six_checks(full, center_acceleration_x(full), full[..., StateIndex.ACCELERATION_Y],
                       accel_window=ACCEL_WINDOW, jerk_window=JERK_WINDOW)


def history_comfort(states: np.ndarray, history: np.ndarray | None) -> np.ndarray:
    """HC of EPDMS v2: ``(K,)`` bool (see :func:`history_comfort_checks`)."""
    return np.all(history_comfort_checks(states, history), axis=-1)


def history_states_from_log(
    timestamps: np.ndarray,
    ego_states7: np.ndarray,
    t0_index: int,
    history_seconds: float = HISTORY_SECONDS,
    source_step: float | None = None,
) -> np.ndarray:
    """Human history states for HC from a logged ego timeline (navsim_metrics.md §3 "Human history", §5.7 point 2).

    The logged samples in [t0 - history_seconds, t0] (optionally only those on a ``source_step`` grid back from t0,
    e.g. 0.5 for NAVSIM's 2 Hz history frames) are interpolated at t_start + k 0.1 s for every such time before t0
    (linear for x, y, velocities, accelerations; unwrapped for the heading); the last of these samples is then
    dropped, as NAVSIM does. With t_start = t0 - 1.5 s this gives 14 samples, t0 - 1.5 … t0 - 0.2 s. Steering,
    steering rate, yaw rate and yaw acceleration are 0 (the log carries none).

    Args:
        timestamps: ``(T,)`` seconds (``Scene.timestamps``), increasing.
        ego_states7: ``(T, 7)`` [x, y, heading, vx, vy, ax, ay] (``Scene.ego_states``).
        t0_index: index of the current instant.
    Returns:
        ``(H, 11)`` states, H = 0 when the log has no earlier sample in the window.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    ego_states7 = np.asarray(ego_states7, dtype=np.float64)
    if timestamps.ndim != 1 or ego_states7.shape != (timestamps.shape[0], 7):
        raise ValueError(f"need timestamps (T,) and ego_states7 (T, 7), got {timestamps.shape}, {ego_states7.shape}")
    if not 0 <= t0_index < timestamps.shape[0]:
        raise ValueError(f"t0_index {t0_index} outside [0, {timestamps.shape[0]})")
    if np.any(np.diff(timestamps) <= 0.0):
        raise ValueError("timestamps must be strictly increasing")
    t0 = timestamps[t0_index]
    since = t0 - timestamps[: t0_index + 1]  # >= 0
    keep = since <= history_seconds + _TIME_TOLERANCE
    if source_step is not None:
        keep &= np.abs(since / source_step - np.round(since / source_step)) * source_step <= _TIME_TOLERANCE
    src_t, src = timestamps[: t0_index + 1][keep], ego_states7[: t0_index + 1][keep]
    empty = np.zeros((0, STATE_DIM))
    if src_t.shape[0] < 2:
        return empty
    t_start = src_t[0]
    count = int(np.floor((t0 - _TIME_TOLERANCE - t_start) / SIM_DT)) + 1  # samples strictly before t0
    query = t_start + SIM_DT * np.arange(count)
    query = query[query < t0 - _TIME_TOLERANCE]
    query = query[:-1]  # NAVSIM drops the last history sample
    if query.shape[0] == 0:
        return empty
    out = np.zeros((query.shape[0], STATE_DIM))
    columns = (StateIndex.X, StateIndex.Y, StateIndex.VELOCITY_X, StateIndex.VELOCITY_Y, StateIndex.ACCELERATION_X,
               StateIndex.ACCELERATION_Y)
    for col in columns:  # Scene.ego_states columns 0, 1, 3..6 coincide with the StateIndex columns
        out[:, col] = np.interp(query, src_t, src[:, col])
    heading = np.interp(query, src_t, np.unwrap(src[:, StateIndex.HEADING]))
    out[:, StateIndex.HEADING] = wrap_angle(heading)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# EC (EPDMS v2, two consecutive frames)
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtendedComfortResult:
    """Two-frame extended comfort per proposal; every array is ``(K,)``.

    Attributes:
        ec: 1.0 iff all four RMS values are within :data:`EC_THRESHOLDS` (inclusive), else 0.0.
        rms_*: RMS over the overlap of (current - previous) for each feature.
    """

    ec: np.ndarray
    rms_acceleration: np.ndarray
    rms_jerk: np.ndarray
    rms_yaw_rate: np.ndarray
    rms_yaw_accel: np.ndarray


def overlap_steps(dt: float) -> int:
    """Shift k = round(Δt / 0.1) between two frames' state arrays (navsim_metrics.md §5.9)."""
    return int(round(float(dt) / SIM_DT))


def _ec_features(states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """acceleration magnitude, jerk, yaw rate, yaw acceleration ``(..., n)`` (navsim_metrics.md §5.9 step 2)."""
    accel = _rounded(savgol(np.hypot(states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y]),
                            ACCEL_WINDOW, POLY_ORDER))
    jerk = _rounded(savgol(accel, JERK_WINDOW, POLY_ORDER, deriv=1))
    headings = phase_unwrap(states[..., StateIndex.HEADING])
    yaw_rate = _rounded(savgol(headings, YAW_WINDOW, POLY_ORDER, deriv=1))
    yaw_accel = _rounded(savgol(headings, YAW_WINDOW, POLY_ORDER, deriv=2))  # p = 2 here, unlike C / HC
    return accel, jerk, yaw_rate, yaw_accel


def extended_comfort(current: np.ndarray, previous: np.ndarray, dt: float) -> ExtendedComfortResult:
    """EC between the current frame's simulated proposals and the previous frame's simulated plan.

    With k = round(Δt / 0.1), current[:, :T-k] and previous[k:] cover the same absolute times; the four features
    (all rigid-motion invariant, so world-frame states of two frames compare directly) are computed on each with a
    0.1 s axis and their differences reduced to RMS over time.

    Args:
        current: ``(K, T, 11)`` simulated states of this frame (T = 41).
        previous: ``(T, 11)`` (or ``(K, T, 11)``) simulated states of the plan chosen in the previous frame.
        dt: seconds from the previous frame to this one; must satisfy 0 < dt < 0.55.
    Returns:
        :class:`ExtendedComfortResult`.
    """
    dt = float(dt)
    if not 0.0 < dt < EC_MAX_INTERVAL:
        raise ValueError(f"extended comfort needs 0 < dt < {EC_MAX_INTERVAL} s, got dt={dt}")
    current = _check_states(current, "current")
    previous = np.asarray(previous, dtype=np.float64)
    if previous.shape not in (current.shape[1:], current.shape):
        raise ValueError(f"previous must be {current.shape[1:]} or {current.shape}, got {previous.shape}")
    if not np.all(np.isfinite(previous)):
        raise ValueError("previous must be finite")
    shift = overlap_steps(dt)
    length = current.shape[1] - shift
    cur_features = _ec_features(current[:, :length])
    prev_features = _ec_features(previous[..., shift:, :])
    rms = [np.sqrt(np.mean((c - p) ** 2, axis=-1)) for c, p in zip(cur_features, prev_features, strict=True)]
    th = EC_THRESHOLDS
    ok = (rms[0] <= th.acceleration) & (rms[1] <= th.jerk) & (rms[2] <= th.yaw_rate) & (rms[3] <= th.yaw_accel)
    return ExtendedComfortResult(ok.astype(np.float64), *rms)
