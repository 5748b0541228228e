"""Pair camera frames with the earlier frame and the ego state the planner needs: THE shared input pairing.

Both the offline replay (:mod:`drive_jepa_core.replay.replay`) and the ROS node use :class:`InputPairer`, so a bag
replayed offline and through the node produces the same planner inputs. Pure Python + numpy: no ROS.

For an image at stamp ``t`` (seconds)::

    ego pose/vel.   = the odometry sample nearest to t, at most odometry_max_age away (no interpolation)
    ego accel.      = finite difference of body velocity over ~acceleration_window seconds (see estimate_acceleration)
    previous frame  = the stored frame closest to t - frame_gap (0.5 s) with |stamp - (t - 0.5)| <= frame_gap_tolerance

(checked in that order, so a missing odometry topic is named before the transient "no earlier frame yet").

Stamps must grow within each stream (:meth:`InputPairer.classify`):

* the same stamp again is a duplicate and a small step back is out of order: the message is dropped;
* a step back of at least ``time_jump_threshold`` is a time jump (a bag looping, a simulator reset): every buffer is
  cleared and the caller resets the planner's momentum (an image reports it from :meth:`InputPairer.add_image`, an
  odometry sample through the next :meth:`InputPairer.pair`), so is an odometry ``frame_id`` change;
* a step forward of at least ``time_jump_threshold`` (a pause, a skipped segment) clears that stream's buffer: its
  samples are useless; an image that does so is reported as :attr:`SkipReason.TIME_JUMP_FORWARD`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np

from drive_jepa_core.constants import CAMERA_FRAME_GAP

__all__ = [
    "OdometrySample",
    "PairedInput",
    "PairingConfig",
    "InputPairer",
    "SkipReason",
    "estimate_acceleration",
    "finite_difference_acceleration",
]

# Stamps closer than this are the same instant (float64 seconds at Unix-epoch magnitude resolve ~0.24 us).
_SAME_STAMP = 1e-6
_FRAME_BUFFER_MARGIN = 0.1  # s beyond frame_gap + tolerance kept in the frame buffer: one 10 Hz camera period
_MIN_ODOMETRY_SECONDS = 2.0  # s of odometry kept at least (200 samples at 100 Hz)


class SkipReason(str, Enum):
    """Why an image produced no plan. The value is the stable machine name used in metrics and diagnostics."""

    NO_PREVIOUS_FRAME = "no_previous_frame"
    NO_ODOMETRY = "no_odometry"
    STALE_ODOMETRY = "stale_odometry"
    NON_FINITE_ODOMETRY = "non_finite_odometry"
    DUPLICATE_STAMP = "duplicate_stamp"
    OUT_OF_ORDER_STAMP = "out_of_order_stamp"
    TIME_JUMP = "time_jump"
    TIME_JUMP_FORWARD = "time_jump_forward"
    ODOMETRY_FRAME_CHANGED = "odometry_frame_changed"
    UNDECODABLE_IMAGE = "undecodable_image"  # produced by the caller (decoding happens outside the pairer)
    WRONG_ENCODING = "wrong_encoding"  # produced by the caller

    @property
    def description(self) -> str:
        """Human-readable explanation (diagnostics, reports)."""
        return _DESCRIPTIONS[self]

    @property
    def resets_momentum(self) -> bool:
        """True when the caller must reset the planner (time or the world frame jumped)."""
        return self in (SkipReason.TIME_JUMP, SkipReason.ODOMETRY_FRAME_CHANGED)


_DESCRIPTIONS = {
    SkipReason.NO_PREVIOUS_FRAME: "no stored camera frame close enough to 0.5 s before this one",
    SkipReason.NO_ODOMETRY: "no odometry received yet",
    SkipReason.STALE_ODOMETRY: "the odometry sample nearest the image stamp is too far from it",
    SkipReason.NON_FINITE_ODOMETRY: "the odometry sample nearest the image stamp contains NaN/inf",
    SkipReason.DUPLICATE_STAMP: "the stamp repeats the previous one of its stream (dropped)",
    SkipReason.OUT_OF_ORDER_STAMP: "the stamp is older than the previous one of its stream (dropped)",
    SkipReason.TIME_JUMP: "time jumped backwards (bag loop / reset): buffers cleared, momentum reset",
    SkipReason.TIME_JUMP_FORWARD: "time jumped forward (pause / skipped segment): earlier frames cleared",
    SkipReason.ODOMETRY_FRAME_CHANGED: "the odometry frame_id changed: buffers cleared, momentum reset",
    SkipReason.UNDECODABLE_IMAGE: "the image data could not be decoded",
    SkipReason.WRONG_ENCODING: "the image encoding / compression format is not supported",
}


@dataclass(frozen=True)
class PairingConfig:
    """Every threshold of the input pairing (the ROS node exposes the same names as parameters).

    Attributes:
        frame_gap: seconds between the two frames the model sees (drive_jepa.md §2.1: t-0.5 s and t).
        frame_gap_tolerance: seconds; the earlier frame must lie within this of ``t - frame_gap``. 0.05 s = half a
            period of a 10 Hz camera (the rate of the training logs): such a camera, and any faster one whose period
            divides 0.5 s, always pairs the exact t - 0.5 s frame despite up to 50 ms of stamp jitter, and when that
            frame is missing (dropped, or the first 0.5 s of a stream) the image is skipped instead of feeding a
            0.4 or 0.6 s pair, 20 % off the fixed 0.5 s gap the model was trained on (drive_jepa.md §2.1). Slower or
            odd-rate cameras need a larger value (the node allows up to frame_gap / 2).
        frame_buffer_size: decoded frames kept at most (64: >= 1 s at 60 Hz).
        frame_buffer_seconds: frames older than this behind the newest are dropped; must cover
            ``frame_gap + frame_gap_tolerance``. None (default) = that plus one 10 Hz period of margin (0.65 s with
            the default tolerance).
        odometry_max_age: seconds; the odometry sample nearest the image must be this close to its stamp. 0.1 s = one
            period of a 10 Hz odometry source, twice the worst offset of a healthy 10 Hz stream.
        odometry_buffer_size: odometry samples kept (200 = 2 s at 100 Hz).
        odometry_buffer_seconds: samples older than this behind the newest are dropped; must cover
            ``2 * acceleration_window + odometry_max_age``. None (default) = max(2 s, that).
        acceleration_window: seconds between the two odometry samples whose velocity difference estimates the ego
            acceleration (see :func:`estimate_acceleration`); 0 feeds zero acceleration. 0.2 s averages 20 samples of
            50 Hz odometry noise while lagging only 0.1 s.
        time_jump_threshold: seconds; a stamp this far behind the newest of its stream is a time jump, smaller steps
            back are out of order; a forward step this large clears that stream's buffer. 1 s: ten periods of a 10 Hz
            stream, far beyond transport reordering, and a bag loop jumps back by the bag's length.
    """

    frame_gap: float = CAMERA_FRAME_GAP
    frame_gap_tolerance: float = 0.05
    frame_buffer_size: int = 64
    frame_buffer_seconds: float | None = None
    odometry_max_age: float = 0.1
    odometry_buffer_size: int = 200
    odometry_buffer_seconds: float | None = None
    acceleration_window: float = 0.2
    time_jump_threshold: float = 1.0

    def __post_init__(self) -> None:
        # derived defaults (frozen dataclass: set through object.__setattr__)
        if self.frame_buffer_seconds is None:
            object.__setattr__(self, "frame_buffer_seconds",
                               float(self.frame_gap) + float(self.frame_gap_tolerance) + _FRAME_BUFFER_MARGIN)
        if self.odometry_buffer_seconds is None:
            object.__setattr__(self, "odometry_buffer_seconds",
                               max(_MIN_ODOMETRY_SECONDS,
                                   2.0 * float(self.acceleration_window) + float(self.odometry_max_age)))
        positive = ("frame_gap", "frame_buffer_seconds", "odometry_max_age", "odometry_buffer_seconds",
                    "time_jump_threshold")
        for name in positive:
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0.0:
                raise ValueError(f"PairingConfig.{name} must be a finite number > 0, got {value}")
        for name in ("frame_gap_tolerance", "acceleration_window"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0.0:
                raise ValueError(f"PairingConfig.{name} must be a finite number >= 0, got {value}")
        if self.frame_gap_tolerance >= self.frame_gap:
            raise ValueError(f"frame_gap_tolerance ({self.frame_gap_tolerance}) must be < frame_gap "
                             f"({self.frame_gap})")
        if self.frame_buffer_seconds < self.frame_gap + self.frame_gap_tolerance:
            raise ValueError(f"frame_buffer_seconds ({self.frame_buffer_seconds}) must cover frame_gap + "
                             f"frame_gap_tolerance ({self.frame_gap + self.frame_gap_tolerance})")
        if self.odometry_buffer_seconds < 2.0 * self.acceleration_window + self.odometry_max_age:
            raise ValueError(f"odometry_buffer_seconds ({self.odometry_buffer_seconds}) must cover 2 * "
                             f"acceleration_window + odometry_max_age "
                             f"({2.0 * self.acceleration_window + self.odometry_max_age})")
        if self.frame_buffer_size < 2 or self.odometry_buffer_size < 2:
            raise ValueError(f"buffer sizes must be >= 2, got frames {self.frame_buffer_size}, odometry "
                             f"{self.odometry_buffer_size}")


@dataclass(frozen=True)
class OdometrySample:
    """One odometry message: ``pose`` (3,) world (x, y, yaw) in ``frame_id``; ``velocity`` (2,) body (vx, vy)."""

    stamp: float
    pose: np.ndarray
    velocity: np.ndarray
    frame_id: str

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.pose)) and np.all(np.isfinite(self.velocity)))


@dataclass(frozen=True)
class PairedInput:
    """Everything :meth:`Planner.plan` needs for one image.

    Attributes:
        stamp: image stamp (s).
        frame_now, frame_prev: uint8 RGB ``(H, W, 3)`` at ``stamp`` and ``prev_stamp`` (as given to add_image).
        prev_stamp: stamp of ``frame_prev`` (within tolerance of ``stamp - frame_gap``).
        pose: ``(3,)`` world (x, y, yaw) of the odometry sample used, in ``frame_id``.
        velocity: ``(2,)`` body-frame (vx, vy) m/s.
        acceleration: ``(2,)`` body-frame (ax, ay) m/s² (zeros when ``acceleration_valid`` is False).
        acceleration_valid: the finite difference could be formed.
        odometry_stamp: stamp of the odometry sample used.
        frame_id: world frame of ``pose`` (the odometry header frame_id).
    """

    stamp: float
    frame_now: np.ndarray
    frame_prev: np.ndarray
    prev_stamp: float
    pose: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    acceleration_valid: bool
    odometry_stamp: float
    frame_id: str

    @property
    def frame_gap(self) -> float:
        return self.stamp - self.prev_stamp

    @property
    def odometry_age(self) -> float:
        """|image stamp - odometry stamp| in seconds."""
        return abs(self.stamp - self.odometry_stamp)

    def ego_state7(self) -> np.ndarray:
        """``(7,)`` float64 ``[x, y, yaw, vx, vy, ax, ay]`` (a ``Scene.ego_states`` row; ``Planner.plan`` input)."""
        return np.concatenate([self.pose, self.velocity, self.acceleration]).astype(np.float64)


def finite_difference_acceleration(earlier: OdometrySample, later: OdometrySample) -> np.ndarray:
    """Body-frame acceleration ``(2,)`` of ``later`` from two samples' body velocities.

    The earlier velocity is rotated into the later body frame before differencing, so the result is the inertial
    acceleration expressed in the current body frame: driving a circle at constant speed v and yaw rate w gives
    (0, v w), the centripetal term that ``Scene.ego_states`` carries as ``ay``.
    """
    dt = later.stamp - earlier.stamp
    if dt <= 0.0:
        raise ValueError(f"need later.stamp > earlier.stamp, got dt={dt}")
    dyaw = float(earlier.pose[2] - later.pose[2])
    c, s = math.cos(dyaw), math.sin(dyaw)
    vx, vy = float(earlier.velocity[0]), float(earlier.velocity[1])
    v0 = np.array([c * vx - s * vy, s * vx + c * vy])
    return (np.asarray(later.velocity, dtype=np.float64) - v0) / dt


def estimate_acceleration(samples: list[OdometrySample] | deque[OdometrySample], index: int,
                          window: float) -> tuple[np.ndarray, bool]:
    """Acceleration at ``samples[index]`` by a backward finite difference over about ``window`` seconds.

    The partner is the finite sample (same frame) whose stamp is closest to ``t - window`` among those in
    ``[t - 2 window, t - window / 2]``: the window adapts to any odometry rate down to ``1 / window`` Hz (at 10 Hz and
    0.2 s the partner is two samples back) and the estimate lags by about ``window / 2``.

    Args:
        samples: odometry samples in increasing stamp order.
        index: the sample the acceleration is wanted at (must be finite).
        window: seconds; 0 disables the estimate.
    Returns:
        ``((2,) acceleration, valid)``; ``(zeros, False)`` when no partner exists or ``window`` is 0.
    """
    zero = np.zeros(2)
    if window <= 0.0:
        return zero, False
    current = samples[index]
    lo, hi, target = current.stamp - 2.0 * window, current.stamp - 0.5 * window, current.stamp - window
    best: OdometrySample | None = None
    for j in range(index - 1, -1, -1):
        cand = samples[j]
        if cand.stamp < lo - _SAME_STAMP:
            break
        if cand.stamp > hi + _SAME_STAMP or not cand.finite or cand.frame_id != current.frame_id:
            continue
        if best is None or abs(cand.stamp - target) < abs(best.stamp - target):
            best = cand
    if best is None:
        return zero, False
    accel = finite_difference_acceleration(best, current)
    if not np.all(np.isfinite(accel)):
        return zero, False
    return accel, True


class InputPairer:
    """Bounded buffers of decoded frames and odometry samples, and the pairing rule (module docstring).

    Typical use, once per message in arrival order::

        pairer.add_odometry(stamp, pose, velocity, frame_id)        # every odometry message
        result = pairer.process_image(stamp, frame)                 # every decoded image: PairedInput | SkipReason
        if isinstance(result, SkipReason) and result.resets_momentum:
            planner.reset()

    A consumer that stores images in one thread and plans in another (the ROS node) calls :meth:`add_image` on
    arrival (its non-None result is that image's outcome) and :meth:`pair` when it plans the image.
    Frames are stored by reference (the caller must not modify them afterwards). Not thread-safe: guard it with a lock.
    """

    def __init__(self, config: PairingConfig | None = None) -> None:
        self.config = config if config is not None else PairingConfig()
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self._odometry: deque[OdometrySample] = deque()
        self._last_image_stamp: float | None = None
        self._last_odometry_stamp: float | None = None
        self._frame_id: str | None = None
        self._pending_reset: SkipReason | None = None

    # ------------------------------------------------------------------------------------------------------ state
    @property
    def config(self) -> PairingConfig:
        return self._config

    @config.setter
    def config(self, config: PairingConfig) -> None:
        """Replace the thresholds (live parameter changes); the buffers shrink to the new bounds on the next add."""
        if not isinstance(config, PairingConfig):
            raise TypeError(f"config must be a PairingConfig, got {type(config).__name__}")
        self._config = config

    @property
    def num_frames(self) -> int:
        return len(self._frames)

    @property
    def num_odometry(self) -> int:
        return len(self._odometry)

    @property
    def frame_stamps(self) -> list[float]:
        return [s for s, _ in self._frames]

    @property
    def frame_id(self) -> str | None:
        """The odometry frame_id of the stored samples (None before the first one)."""
        return self._frame_id

    def has_image(self, stamp: float) -> bool:
        """Whether an image with this stamp is stored (a time jump may have cleared it since it was added)."""
        return self._find_frame(self._check_stamp(stamp)) is not None

    def clear(self) -> None:
        """Forget every frame and odometry sample and any pending reset (a new stream starts)."""
        self._frames.clear()
        self._odometry.clear()
        self._last_image_stamp = None
        self._last_odometry_stamp = None
        self._frame_id = None
        self._pending_reset = None

    @staticmethod
    def _check_stamp(stamp: float) -> float:
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        return stamp

    def classify(self, stamp: float, last: float | None) -> SkipReason | None:
        """A new stamp of a stream against the newest one of that stream: None (in order), DUPLICATE_STAMP,
        OUT_OF_ORDER_STAMP, TIME_JUMP (at least ``time_jump_threshold`` back) or TIME_JUMP_FORWARD (at least that
        far ahead)."""
        if last is None:
            return None
        step = stamp - last
        if abs(step) <= _SAME_STAMP:
            return SkipReason.DUPLICATE_STAMP
        threshold = self.config.time_jump_threshold
        if step < 0.0:
            return SkipReason.TIME_JUMP if -step >= threshold else SkipReason.OUT_OF_ORDER_STAMP
        return SkipReason.TIME_JUMP_FORWARD if step >= threshold else None

    def _find_frame(self, stamp: float) -> np.ndarray | None:
        return next((f for s, f in reversed(self._frames) if abs(s - stamp) <= _SAME_STAMP), None)

    # ------------------------------------------------------------------------------------------------------ input
    def add_odometry(self, stamp: float, pose: np.ndarray, velocity_body: np.ndarray,
                     frame_id: str = "") -> SkipReason | None:
        """Store one odometry sample.

        Args:
            stamp: header stamp, seconds.
            pose: ``(3,)`` world (x, y, yaw) in ``frame_id`` (NaN allowed: the sample is kept and reported as
                non-finite when it is the one nearest an image).
            velocity_body: ``(2,)`` body-frame (vx, vy) m/s.
            frame_id: the odometry header frame_id; a change clears the buffers and resets momentum.
        Returns:
            None when stored; DUPLICATE_STAMP / OUT_OF_ORDER_STAMP when dropped; TIME_JUMP / ODOMETRY_FRAME_CHANGED
            when every buffer was cleared (the sample is stored afterwards, and the next :meth:`pair` reports the
            reason); TIME_JUMP_FORWARD when the older samples were dropped (the sample is stored).
        """
        stamp = self._check_stamp(stamp)
        pose = np.asarray(pose, dtype=np.float64).reshape(-1)
        velocity = np.asarray(velocity_body, dtype=np.float64).reshape(-1)
        if pose.shape != (3,) or velocity.shape != (2,):
            raise ValueError(f"odometry needs pose (3,) and velocity_body (2,), got {pose.shape} and {velocity.shape}")
        frame_id = str(frame_id)
        event = self.classify(stamp, self._last_odometry_stamp)
        if event in (SkipReason.DUPLICATE_STAMP, SkipReason.OUT_OF_ORDER_STAMP):
            return event
        if event is not SkipReason.TIME_JUMP and self._frame_id is not None and frame_id != self._frame_id:
            event = SkipReason.ODOMETRY_FRAME_CHANGED
        if event in (SkipReason.TIME_JUMP, SkipReason.ODOMETRY_FRAME_CHANGED):
            self.clear()
            self._pending_reset = event
        elif event is SkipReason.TIME_JUMP_FORWARD:
            self._odometry.clear()
        self._frame_id = frame_id
        self._last_odometry_stamp = stamp
        self._odometry.append(OdometrySample(stamp, pose, velocity, frame_id))
        cfg = self.config
        while self._odometry and (len(self._odometry) > cfg.odometry_buffer_size
                                  or self._odometry[0].stamp < stamp - cfg.odometry_buffer_seconds):
            self._odometry.popleft()
        return event

    def add_image(self, stamp: float, frame_rgb: np.ndarray) -> SkipReason | None:
        """Store one decoded frame.

        Returns:
            None when stored and ready for :meth:`pair`; otherwise the image's outcome (it is not to be paired):
            DUPLICATE_STAMP / OUT_OF_ORDER_STAMP when dropped; TIME_JUMP when the stamp jumped back (every buffer
            cleared, the frame stored: the caller resets momentum); TIME_JUMP_FORWARD when it jumped ahead (earlier
            frames cleared, the frame stored).
        """
        stamp = self._check_stamp(stamp)
        if not isinstance(frame_rgb, np.ndarray) or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 \
                or frame_rgb.dtype != np.uint8:
            desc = f"{frame_rgb.dtype} {frame_rgb.shape}" if isinstance(frame_rgb, np.ndarray) else type(frame_rgb)
            raise ValueError(f"frame_rgb must be a uint8 (H, W, 3) array, got {desc}")
        event = self.classify(stamp, self._last_image_stamp)
        if event in (SkipReason.DUPLICATE_STAMP, SkipReason.OUT_OF_ORDER_STAMP):
            return event
        if event is SkipReason.TIME_JUMP:
            self.clear()  # this return value is the report: no pending reset for the next pair()
        elif event is SkipReason.TIME_JUMP_FORWARD:
            self._frames.clear()
        self._last_image_stamp = stamp
        self._frames.append((stamp, frame_rgb))
        cfg = self.config
        while self._frames and (len(self._frames) > cfg.frame_buffer_size
                                or self._frames[0][0] < stamp - cfg.frame_buffer_seconds - _SAME_STAMP):
            self._frames.popleft()
        return event

    # ---------------------------------------------------------------------------------------------------- pairing
    def pair(self, image_stamp: float) -> PairedInput | SkipReason:
        """Inputs for the stored image at ``image_stamp``, or why there are none (module docstring for the rule).

        A reset caused by the odometry stream (TIME_JUMP, ODOMETRY_FRAME_CHANGED) is reported once, by the first
        pair() after it.

        Raises:
            KeyError: no image with this stamp is stored (never added, dropped, or cleared by a time jump).
        """
        stamp = self._check_stamp(image_stamp)
        now = self._find_frame(stamp)
        if now is None:
            raise KeyError(f"no image with stamp {stamp:.6f} is stored in the pairer")
        if self._pending_reset is not None:
            reason, self._pending_reset = self._pending_reset, None
            return reason
        cfg = self.config
        if not self._odometry:
            return SkipReason.NO_ODOMETRY
        index = min(range(len(self._odometry)), key=lambda i: abs(self._odometry[i].stamp - stamp))
        sample = self._odometry[index]
        if abs(sample.stamp - stamp) > cfg.odometry_max_age + _SAME_STAMP:
            return SkipReason.STALE_ODOMETRY
        if not sample.finite:
            return SkipReason.NON_FINITE_ODOMETRY
        target = stamp - cfg.frame_gap
        prev = min(((s, f) for s, f in self._frames if s < stamp - _SAME_STAMP),
                   key=lambda item: abs(item[0] - target), default=None)
        if prev is None or abs(prev[0] - target) > cfg.frame_gap_tolerance + _SAME_STAMP:
            return SkipReason.NO_PREVIOUS_FRAME
        accel, valid = estimate_acceleration(self._odometry, index, cfg.acceleration_window)
        return PairedInput(stamp=stamp, frame_now=now, frame_prev=prev[1], prev_stamp=prev[0],
                           pose=sample.pose.copy(), velocity=sample.velocity.copy(), acceleration=accel,
                           acceleration_valid=valid, odometry_stamp=sample.stamp, frame_id=sample.frame_id)

    def process_image(self, stamp: float, frame_rgb: np.ndarray) -> PairedInput | SkipReason:
        """:meth:`add_image`, then :meth:`pair` when the image was stored in order (a streaming consumer's step)."""
        event = self.add_image(stamp, frame_rgb)
        return event if event is not None else self.pair(stamp)

    def describe(self, reason: SkipReason, image_stamp: float) -> str:
        """Why ``reason`` happened for the image at ``image_stamp``, with the numbers (diagnostics, logs)."""
        stamp = self._check_stamp(image_stamp)
        cfg = self.config
        if reason is SkipReason.NO_ODOMETRY:
            return "no odometry received"
        if reason is SkipReason.STALE_ODOMETRY and self._odometry:
            nearest = min(self._odometry, key=lambda o: abs(o.stamp - stamp))
            return (f"no odometry within {cfg.odometry_max_age:g} s of the image stamp (nearest sample "
                    f"{nearest.stamp - stamp:+.3f} s from it)")
        if reason is SkipReason.NO_PREVIOUS_FRAME:
            older = [s for s, _ in self._frames if s < stamp - _SAME_STAMP]
            held = (f"the nearest stored frames are {', '.join(f'{stamp - s:.3f}' for s in older[-3:])} s old"
                    if older else "no earlier frame stored")
            return f"no frame within {cfg.frame_gap_tolerance:g} s of t - {cfg.frame_gap:g} s ({held})"
        return reason.description
