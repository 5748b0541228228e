"""Input time alignment of the planner node: stamp-ordered ring buffers, stamp checks, and the one-slot mailbox.

Pure Python + numpy (no rclpy), unit-tested without a ROS graph.

* :class:`StampedRing` keeps the last few decoded camera frames (or odometry samples) by stamp, so the node can pick
  the frame closest to ``t - 0.5 s`` and the odometry sample nearest the image stamp.
* :func:`classify_stamp` tells an in-order stamp from a duplicate, an out-of-order one, and a time jump (bag loop).
* :class:`LatestSlot` hands work from the executor thread to the inference thread with "latest frame wins": a put
  replaces an unconsumed item instead of queueing behind it, so a model slower than the camera never builds a queue.
* :func:`body_acceleration` estimates the ego acceleration that ``nav_msgs/Odometry`` does not carry.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterator
from enum import Enum
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds (rounded)."""
    return round(float(seconds) * NS_PER_S)


class StampedRing(Generic[T]):
    """At most ``capacity`` items with strictly increasing integer-nanosecond stamps; the oldest fall out first.

    Not thread-safe: the node guards it with its own lock.
    """

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._capacity = int(capacity)
        self._stamps: list[int] = []
        self._items: list[T] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"capacity must be >= 1, got {value}")
        self._capacity = int(value)
        self._trim()

    def __len__(self) -> int:
        return len(self._stamps)

    def __iter__(self) -> Iterator[tuple[int, T]]:
        return iter(list(zip(self._stamps, self._items, strict=True)))

    def clear(self) -> None:
        self._stamps.clear()
        self._items.clear()

    def push(self, stamp_ns: int, item: T) -> None:
        """Append an item newer than every stored one.

        Raises:
            ValueError: ``stamp_ns`` is not newer than the latest stored stamp (check it with :func:`classify_stamp`).
        """
        stamp_ns = int(stamp_ns)
        if self._stamps and stamp_ns <= self._stamps[-1]:
            raise ValueError(f"stamp {stamp_ns} ns is not newer than the latest stored stamp {self._stamps[-1]} ns")
        self._stamps.append(stamp_ns)
        self._items.append(item)
        self._trim()

    def _trim(self) -> None:
        excess = len(self._stamps) - self._capacity
        if excess > 0:
            del self._stamps[:excess]
            del self._items[:excess]

    def latest(self) -> tuple[int, T] | None:
        return (self._stamps[-1], self._items[-1]) if self._stamps else None

    def oldest(self) -> tuple[int, T] | None:
        return (self._stamps[0], self._items[0]) if self._stamps else None

    def get(self, stamp_ns: int) -> T | None:
        """The item stored with exactly ``stamp_ns``."""
        i = bisect.bisect_left(self._stamps, int(stamp_ns))
        return self._items[i] if i < len(self._stamps) and self._stamps[i] == int(stamp_ns) else None

    def nearest(self, target_ns: int, tolerance_ns: int, before_ns: int | None = None) -> tuple[int, T] | None:
        """The item whose stamp is closest to ``target_ns`` and at most ``tolerance_ns`` away (ties: the older).

        Args:
            before_ns: when given, only items stamped strictly before it are considered.
        """
        target_ns, tolerance_ns = int(target_ns), int(tolerance_ns)
        end = len(self._stamps) if before_ns is None else bisect.bisect_left(self._stamps, int(before_ns))
        i = bisect.bisect_left(self._stamps, target_ns, 0, end)
        candidates = [j for j in (i - 1, i) if 0 <= j < end]
        if not candidates:
            return None
        best = min(candidates, key=lambda j: abs(self._stamps[j] - target_ns))  # ties: the first, i.e. the older
        if abs(self._stamps[best] - target_ns) > tolerance_ns:
            return None
        return self._stamps[best], self._items[best]

    def drop_older_than(self, stamp_ns: int) -> int:
        """Remove items stamped before ``stamp_ns``; returns how many were removed."""
        i = bisect.bisect_left(self._stamps, int(stamp_ns))
        del self._stamps[:i]
        del self._items[:i]
        return i


class StampEvent(str, Enum):
    """How a new stamp relates to the previous one of the same stream."""

    FIRST = "first"  # no previous stamp
    IN_ORDER = "in_order"
    DUPLICATE = "duplicate"  # same stamp again
    OUT_OF_ORDER = "out_of_order"  # slightly older than the previous one: a reordered message, dropped
    JUMP_BACKWARD = "jump_backward"  # much older: a bag loop or a simulator reset
    JUMP_FORWARD = "jump_forward"  # much newer: a pause, a skipped segment


def classify_stamp(previous_ns: int | None, stamp_ns: int, jump_threshold_ns: int) -> StampEvent:
    """Classify ``stamp_ns`` against the previous stamp of its stream.

    A step back of at least ``jump_threshold_ns`` is a time jump; a smaller step back is out of order. A step forward
    larger than ``jump_threshold_ns`` is a forward jump.
    """
    if previous_ns is None:
        return StampEvent.FIRST
    delta = int(stamp_ns) - int(previous_ns)
    if delta == 0:
        return StampEvent.DUPLICATE
    if delta < 0:
        return StampEvent.JUMP_BACKWARD if -delta >= int(jump_threshold_ns) else StampEvent.OUT_OF_ORDER
    return StampEvent.JUMP_FORWARD if delta > int(jump_threshold_ns) else StampEvent.IN_ORDER


class LatestSlot(Generic[T]):
    """A one-item mailbox between threads: :meth:`put` overwrites, :meth:`take` blocks until an item or close.

    Attributes:
        dropped: items overwritten before anyone took them ("latest frame wins" drops).
        delivered: items handed to :meth:`take`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self._closed = False
        self.dropped = 0
        self.delivered = 0

    @property
    def depth(self) -> int:
        """0 or 1: items waiting (never more, by construction)."""
        with self._cond:
            return int(self._full)

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def put(self, item: T) -> bool:
        """Offer ``item``; returns True when it replaced an item nobody had taken (that one is dropped).

        Items put after :meth:`close` are discarded (returns False).
        """
        with self._cond:
            if self._closed:
                return False
            replaced = self._full
            if replaced:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting item (emptying the slot), blocking up to ``timeout`` s; ``None`` on timeout or when closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._full or self._closed, timeout):
                return None
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            self.delivered += 1
            return item

    def clear(self) -> None:
        """Forget a waiting item without counting it as dropped."""
        with self._cond:
            self._item, self._full = None, False

    def close(self) -> None:
        """Wake every waiter; later puts are discarded and takes return None at once."""
        with self._cond:
            self._closed = True
            self._item, self._full = None, False
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False


def body_acceleration(state_then: np.ndarray, t_then: float, state_now: np.ndarray, t_now: float) -> np.ndarray:
    """Ego acceleration ``(ax, ay)`` in the body frame at ``t_now`` from two odometry states.

    Each state is ``(7,)`` ``[x, y, yaw, vx, vy, ...]`` with body-frame velocity (``odometry_to_ego_state``). Both
    velocities are rotated into the world frame, differenced over the interval, and the result rotated into the body
    frame at ``t_now``, so turning at constant speed gives the centripetal acceleration, not zero.

    Raises:
        ValueError: a non-positive interval or non-finite values.
    """
    dt = float(t_now) - float(t_then)
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"acceleration needs a positive interval, got {dt} s")
    a, b = np.asarray(state_then, np.float64), np.asarray(state_now, np.float64)
    if not (np.all(np.isfinite(a[:5])) and np.all(np.isfinite(b[:5]))):
        raise ValueError("odometry states must be finite")

    def world_velocity(s: np.ndarray) -> np.ndarray:
        c, si = math.cos(s[2]), math.sin(s[2])
        return np.array([c * s[3] - si * s[4], si * s[3] + c * s[4]])

    dv = (world_velocity(b) - world_velocity(a)) / dt
    c, si = math.cos(b[2]), math.sin(b[2])
    return np.array([c * dv[0] + si * dv[1], -si * dv[0] + c * dv[1]])


__all__ = [
    "NS_PER_S", "LatestSlot", "StampEvent", "StampedRing", "body_acceleration", "classify_stamp", "seconds_to_ns",
]
