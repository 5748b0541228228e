"""drive_jepa_ros.frame_buffer without ROS: the latest-wins mailbox between the executor and the inference thread.

Frame pairing (ring buffers, stamp classification, the acceleration estimate) is the core's InputPairer, shared with
the offline replay and tested in src/drive_jepa_core/test/test_replay_pairing.py."""

from __future__ import annotations

import threading
import time

from drive_jepa_ros.frame_buffer import LatestSlot


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
