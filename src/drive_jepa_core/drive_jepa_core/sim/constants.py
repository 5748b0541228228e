"""State layout and tracker / motion-model constants of NAVSIM's batch LQR + kinematic bicycle simulation.

Every number here follows shared/reference/navsim_metrics.md §2.4-§2.5 (NAVSIM ``BatchLQRTracker`` and
``BatchKinematicBicycleModel`` defaults, themselves nuPlan's ``LQRTracker`` / ``KinematicBicycleModel``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from drive_jepa_core.constants import EGO_VEHICLE, SIM_DT


class StateIndex(IntEnum):
    """Columns of a simulated ego state ``(..., 11)`` (navsim_metrics.md §1; NAVSIM ``pdm_enums.StateIndex``).

    Velocity and acceleration are body-frame vectors at the rear axle (x longitudinal, y lateral).
    """

    X = 0
    Y = 1
    HEADING = 2
    VELOCITY_X = 3
    VELOCITY_Y = 4
    ACCELERATION_X = 5
    ACCELERATION_Y = 6
    STEERING_ANGLE = 7
    STEERING_RATE = 8
    ANGULAR_VELOCITY = 9  # yaw rate
    ANGULAR_ACCELERATION = 10  # yaw acceleration


STATE_DIM: int = len(StateIndex)  # 11


@dataclass(frozen=True)
class TrackerParameters:
    """LQR tracker + kinematic bicycle constants (navsim_metrics.md §2.3-§2.5 summary table)."""

    dt: float = SIM_DT  # s, discretization of tracker and motion model
    q_longitudinal: float = 10.0  # weight on the velocity error at the lookahead
    r_longitudinal: float = 1.0  # weight on the acceleration command
    q_lateral: tuple[float, float, float] = (1.0, 10.0, 0.0)  # weights on [lateral error, heading error, steering]
    r_lateral: float = 1.0  # weight on the steering-rate command
    tracking_horizon: int = 10  # steps of the lookahead (1.0 s)
    jerk_penalty: float = 1e-4  # velocity-profile fit regularizer lambda_j
    curvature_rate_penalty: float = 1e-2  # curvature-profile fit regularizer
    initial_curvature_penalty: float = 1e-10  # keeps the curvature fit well-posed at zero speed
    stopping_proportional_gain: float = 0.5  # P gain of the stopping controller
    stopping_velocity: float = 0.2  # m/s, below which (ref and current) the stopping controller is used
    accel_time_constant: float = 0.2  # s, first-order lag on acceleration
    steering_angle_time_constant: float = 0.05  # s, first-order lag on steering angle
    max_steering_angle: float = float(np.pi / 3.0)  # rad, steering clip
    wheel_base: float = EGO_VEHICLE.wheel_base  # m, nuPlan Pacifica (3.089 m)


TRACKER_PARAMETERS = TrackerParameters()
