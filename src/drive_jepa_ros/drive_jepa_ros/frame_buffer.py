"""The node-specific half of the input handling: a one-slot mailbox between the executor and the inference thread.

Frame pairing itself (ring buffers of frames and odometry, stamp checks, the t - 0.5 s frame, the odometry look-up and
the acceleration estimate) is :class:`drive_jepa_core.replay.pairing.InputPairer`, shared with the offline replay, so
a bag replayed offline pairs frames exactly as the node does.

:class:`LatestSlot` hands work from the executor thread to the inference thread with "latest frame wins": a put
replaces an unconsumed item instead of queueing behind it, so a model slower than the camera never builds a queue.
Pure Python (no rclpy), unit-tested without a ROS graph.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


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


__all__ = ["LatestSlot"]
