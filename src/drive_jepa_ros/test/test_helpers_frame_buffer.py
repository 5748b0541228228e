"""drive_jepa_ros.frame_buffer without ROS: ring buffer look-ups, stamp classification, the latest-wins mailbox and the
odometry acceleration estimate, all with hand-derived expectations."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from drive_jepa_ros.frame_buffer import (
    NS_PER_S,
    LatestSlot,
    StampedRing,
    StampEvent,
    body_acceleration,
    classify_stamp,
    seconds_to_ns,
)

MS = 1_000_000  # ns


def ring_of(stamps_ms: list[int], capacity: int = 100) -> StampedRing[str]:
    ring: StampedRing[str] = StampedRing(capacity)
    for s in stamps_ms:
        ring.push(s * MS, f"f{s}")
    return ring


def test_push_keeps_order_and_capacity_drops_the_oldest() -> None:
    ring = ring_of([0, 100, 200, 300], capacity=3)
    assert len(ring) == 3
    assert [s for s, _ in ring] == [100 * MS, 200 * MS, 300 * MS]
    assert ring.latest() == (300 * MS, "f300") and ring.oldest() == (100 * MS, "f100")
    with pytest.raises(ValueError, match="not newer"):
        ring.push(300 * MS, "again")
    ring.capacity = 2
    assert [s for s, _ in ring] == [200 * MS, 300 * MS]


def test_nearest_within_tolerance() -> None:
    ring = ring_of([0, 100, 200, 300, 400, 500])
    # 0.5 s before 500 ms is 0 ms: exact
    assert ring.nearest(0, 50 * MS) == (0, "f0")
    # 240 ms: 200 is 40 ms away, 300 is 60 ms away
    assert ring.nearest(240 * MS, 50 * MS) == (200 * MS, "f200")
    # 250 ms: a tie, the older frame wins
    assert ring.nearest(250 * MS, 50 * MS) == (200 * MS, "f200")
    # nothing within 30 ms of 250 ms
    assert ring.nearest(250 * MS, 30 * MS) is None
    # beyond both ends
    assert ring.nearest(-60 * MS, 50 * MS) is None
    assert ring.nearest(560 * MS, 50 * MS) is None
    assert ring.nearest(540 * MS, 50 * MS) == (500 * MS, "f500")


def test_nearest_before_excludes_the_frame_itself() -> None:
    ring = ring_of([0, 100])
    assert ring.nearest(100 * MS, 10 * MS) == (100 * MS, "f100")
    assert ring.nearest(100 * MS, 10 * MS, before_ns=100 * MS) is None
    assert ring.nearest(100 * MS, 100 * MS, before_ns=100 * MS) == (0, "f0")
    assert StampedRing(1).nearest(0, 1) is None


def test_get_and_drop_older_than() -> None:
    ring = ring_of([0, 100, 200])
    assert ring.get(100 * MS) == "f100" and ring.get(150 * MS) is None
    assert ring.drop_older_than(150 * MS) == 2
    assert [s for s, _ in ring] == [200 * MS]
    ring.clear()
    assert len(ring) == 0 and ring.latest() is None


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StampedRing(0)


@pytest.mark.parametrize(("previous", "stamp", "expected"), [
    (None, 5, StampEvent.FIRST),
    (1000, 1100, StampEvent.IN_ORDER),
    (1000, 1000, StampEvent.DUPLICATE),
    (1000, 950, StampEvent.OUT_OF_ORDER),  # 50 back, threshold 500
    (1000, 500, StampEvent.JUMP_BACKWARD),  # exactly the threshold back
    (1000, 1500, StampEvent.IN_ORDER),  # exactly the threshold forward is still in order
    (1000, 1501, StampEvent.JUMP_FORWARD),
])
def test_classify_stamp(previous, stamp, expected) -> None:
    assert classify_stamp(previous, stamp, 500) is expected


def test_seconds_to_ns() -> None:
    assert seconds_to_ns(0.5) == NS_PER_S // 2
    assert seconds_to_ns(1e-9) == 1


def test_latest_slot_overwrites_instead_of_queueing() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.depth == 0
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: dropped
    assert slot.put(3) is True
    assert slot.depth == 1 and slot.dropped == 2
    assert slot.take(0.0) == 3
    assert slot.take(0.0) is None  # empty: times out at once
    assert slot.delivered == 1


def test_latest_slot_close_wakes_a_waiting_taker() -> None:
    slot: LatestSlot[int] = LatestSlot()
    got: list[object] = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    time.sleep(0.05)
    slot.close()
    taker.join(2.0)
    assert not taker.is_alive() and got == [None]
    assert slot.put(1) is False and slot.take(0.0) is None  # closed: discarded
    slot.reopen()
    slot.put(7)
    assert slot.take(0.0) == 7


def test_slow_consumer_never_builds_a_queue() -> None:
    """A producer at ~1 kHz against a consumer 10x slower: depth stays <= 1, the consumer always gets the newest."""
    slot: LatestSlot[int] = LatestSlot()
    taken: list[int] = []
    max_depth = 0

    def consumer() -> None:
        while True:
            item = slot.take()
            if item is None:
                return
            taken.append(item)
            time.sleep(0.01)

    thread = threading.Thread(target=consumer)
    thread.start()
    for i in range(300):
        slot.put(i)
        max_depth = max(max_depth, slot.depth)
        time.sleep(0.001)
    time.sleep(0.05)
    slot.close()
    thread.join(2.0)
    assert max_depth <= 1
    assert taken == sorted(taken) and taken[-1] == 299  # in order, and the last frame was processed
    assert len(taken) + slot.dropped == 300
    assert slot.dropped > 100


def test_body_acceleration_straight_line() -> None:
    # heading 0.3 rad, speeding up from 4 to 4.2 m/s in 0.2 s: 1 m/s^2 forward, nothing sideways
    then = np.array([0.0, 0.0, 0.3, 4.0, 0.0, 0.0, 0.0])
    now = np.array([1.0, 0.3, 0.3, 4.2, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(body_acceleration(then, 10.0, now, 10.2), [1.0, 0.0], atol=1e-12)


def test_body_acceleration_turning_at_constant_speed_is_centripetal() -> None:
    # v = 10 m/s, yaw rate 0.5 rad/s: over a small dt the body-frame acceleration tends to (0, v * omega) = (0, 5)
    v, omega, dt = 10.0, 0.5, 1e-4
    then = np.array([0.0, 0.0, 0.0, v, 0.0, 0.0, 0.0])
    now = np.array([0.0, 0.0, omega * dt, v, 0.0, 0.0, 0.0])
    ax, ay = body_acceleration(then, 0.0, now, dt)
    assert ax == pytest.approx(0.0, abs=1e-3) and ay == pytest.approx(v * omega, rel=1e-3)


def test_body_acceleration_rejects_bad_input() -> None:
    s = np.zeros(7)
    with pytest.raises(ValueError, match="positive interval"):
        body_acceleration(s, 1.0, s, 1.0)
    bad = s.copy()
    bad[3] = math.nan
    with pytest.raises(ValueError, match="finite"):
        body_acceleration(s, 0.0, bad, 0.1)
