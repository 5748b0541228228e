"""InputPairer: the frame/odometry pairing shared by the offline replay and the ROS node, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drive_jepa_core.replay.pairing import (
    InputPairer,
    OdometrySample,
    PairedInput,
    PairingConfig,
    SkipReason,
    estimate_acceleration,
    finite_difference_acceleration,
)


def _frame(value: int = 0) -> np.ndarray:
    return np.full((4, 6, 3), value, dtype=np.uint8)


def _odometry(pairer: InputPairer, stamps, speed: float = 5.0, frame_id: str = "odom") -> None:
    for t in stamps:
        pairer.add_odometry(t, (speed * t, 0.0, 0.0), (speed, 0.0), frame_id)


def test_previous_frame_is_the_one_closest_to_half_a_second_before():
    pairer = InputPairer()
    _odometry(pairer, np.arange(0.0, 2.01, 0.02))
    for i, t in enumerate((1.0, 1.38, 1.45, 1.62)):
        assert pairer.add_image(t, _frame(i)) is None
    pairer.add_image(2.0, _frame(9))
    result = pairer.pair(2.0)
    assert isinstance(result, PairedInput)
    assert result.prev_stamp == pytest.approx(1.45)  # |1.45 - 1.5| = 0.05 beats 0.12 (1.38, 1.62)
    assert result.frame_prev[0, 0, 0] == 2 and result.frame_now[0, 0, 0] == 9
    assert result.frame_gap == pytest.approx(0.55)
    assert result.odometry_stamp == pytest.approx(2.0) and result.odometry_age == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(result.pose, [10.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(result.ego_state7(), [10.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0], atol=1e-9)
    assert result.acceleration_valid and result.frame_id == "odom"


@pytest.mark.parametrize(("earlier", "expected"), [(1.4, True), (1.6, True), (1.39, False), (1.611, False)])
def test_frame_gap_tolerance_is_inclusive(earlier, expected):
    pairer = InputPairer(PairingConfig(frame_gap_tolerance=0.1))
    _odometry(pairer, [2.0])
    pairer.add_image(earlier, _frame())
    pairer.add_image(2.0, _frame())
    result = pairer.pair(2.0)
    if expected:
        assert isinstance(result, PairedInput) and result.prev_stamp == pytest.approx(earlier)
    else:
        assert result is SkipReason.NO_PREVIOUS_FRAME


def test_odometry_missing_stale_and_non_finite():
    pairer = InputPairer(PairingConfig(odometry_max_age=0.1))
    pairer.add_image(1.0, _frame())
    pairer.add_image(1.5, _frame())
    assert pairer.pair(1.5) is SkipReason.NO_ODOMETRY
    _odometry(pairer, [1.0, 1.1, 1.2, 1.3])
    assert pairer.pair(1.5) is SkipReason.STALE_ODOMETRY  # nearest 1.3 is 0.2 s away
    pairer.add_odometry(1.4, (0.0, 0.0, 0.0), (5.0, 0.0), "odom")
    assert isinstance(pairer.pair(1.5), PairedInput)  # exactly 0.1 s away: accepted (inclusive)
    pairer.add_odometry(1.52, (math.nan, 0.0, 0.0), (5.0, 0.0), "odom")
    assert pairer.pair(1.5) is SkipReason.NON_FINITE_ODOMETRY  # the nearest sample is the NaN one
    pairer.add_odometry(1.5, (7.5, 0.0, 0.0), (5.0, 0.0), "odom")  # out of order (older than 1.52): dropped
    assert pairer.num_odometry == 6
    assert pairer.pair(1.5) is SkipReason.NON_FINITE_ODOMETRY


def test_nearest_odometry_may_come_after_the_image():
    pairer = InputPairer()
    _odometry(pairer, [0.9, 1.04])
    pairer.add_image(0.5, _frame())
    pairer.add_image(1.0, _frame())
    result = pairer.pair(1.0)
    assert isinstance(result, PairedInput) and result.odometry_stamp == pytest.approx(1.04)


def test_out_of_order_and_duplicate_images_are_dropped():
    pairer = InputPairer()
    _odometry(pairer, np.arange(0.0, 2.01, 0.1))
    pairer.add_image(1.5, _frame(1))
    pairer.add_image(2.0, _frame(2))
    assert pairer.add_image(1.9, _frame(3)) is SkipReason.OUT_OF_ORDER_STAMP
    assert pairer.pair(1.9) is SkipReason.OUT_OF_ORDER_STAMP
    assert pairer.add_image(2.0, _frame(4)) is SkipReason.OUT_OF_ORDER_STAMP  # duplicate stamp
    assert pairer.pair(2.0) is SkipReason.OUT_OF_ORDER_STAMP  # the duplicate's own pair()
    assert pairer.frame_stamps == [1.5, 2.0]
    result = pairer.pair(2.0)  # the stored (first) frame of that stamp
    assert isinstance(result, PairedInput) and result.frame_now[0, 0, 0] == 2
    assert pairer.add_odometry(1.95, (0.0, 0.0, 0.0), (0.0, 0.0), "odom") is SkipReason.OUT_OF_ORDER_STAMP


def test_backward_time_jump_clears_everything_and_is_reported_once():
    pairer = InputPairer(PairingConfig(time_jump_threshold=1.0))
    _odometry(pairer, np.arange(9.0, 10.01, 0.1))
    for t in np.arange(9.0, 10.01, 0.1):
        pairer.add_image(t, _frame())
    assert isinstance(pairer.pair(10.0), PairedInput)
    assert pairer.add_image(5.0, _frame()) is SkipReason.TIME_JUMP  # 5 s back: a bag loop
    assert pairer.num_frames == 1 and pairer.num_odometry == 0
    result = pairer.pair(5.0)
    assert result is SkipReason.TIME_JUMP and result.resets_momentum
    pairer.add_image(5.5, _frame())
    assert pairer.pair(5.5) is SkipReason.NO_ODOMETRY  # reported once; old odometry is gone
    _odometry(pairer, [5.5])
    assert isinstance(pairer.pair(5.5), PairedInput)


def test_odometry_time_jump_is_reported_by_the_next_pair():
    pairer = InputPairer()
    _odometry(pairer, np.arange(3.0, 4.01, 0.1))
    assert pairer.add_odometry(1.0, (0.0, 0.0, 0.0), (1.0, 0.0), "odom") is SkipReason.TIME_JUMP
    pairer.add_image(1.0, _frame())
    assert pairer.pair(1.0) is SkipReason.TIME_JUMP
    pairer.add_image(1.5, _frame())
    assert pairer.pair(1.5) is SkipReason.STALE_ODOMETRY  # only the post-jump sample at 1.0 is left
    pairer.add_odometry(1.5, (1.5, 0.0, 0.0), (1.0, 0.0), "odom")
    assert isinstance(pairer.pair(1.5), PairedInput)


def test_small_backward_step_is_out_of_order_not_a_jump():
    pairer = InputPairer(PairingConfig(time_jump_threshold=1.0))
    pairer.add_image(5.0, _frame())
    assert pairer.add_image(4.2, _frame()) is SkipReason.OUT_OF_ORDER_STAMP  # 0.8 s < threshold
    assert pairer.num_frames == 1


def test_forward_jump_clears_that_stream_only():
    pairer = InputPairer()
    _odometry(pairer, np.arange(0.0, 6.01, 0.1))
    pairer.add_image(0.5, _frame())
    pairer.add_image(1.0, _frame())
    assert pairer.add_image(5.0, _frame()) is None
    assert pairer.frame_stamps == [5.0] and pairer.num_odometry > 2
    assert pairer.pair(5.0) is SkipReason.NO_PREVIOUS_FRAME


def test_odometry_frame_change_resets():
    pairer = InputPairer()
    _odometry(pairer, [1.0, 1.1])
    assert pairer.add_odometry(1.2, (0, 0, 0), (0, 0), "map") is SkipReason.ODOMETRY_FRAME_CHANGED
    assert pairer.num_odometry == 1
    pairer.add_image(1.2, _frame())
    reason = pairer.pair(1.2)
    assert reason is SkipReason.ODOMETRY_FRAME_CHANGED and reason.resets_momentum


def test_buffers_are_bounded_by_count_and_seconds():
    cfg = PairingConfig(frame_buffer_size=10, frame_buffer_seconds=0.7, odometry_buffer_size=50,
                        odometry_buffer_seconds=2.0)
    pairer = InputPairer(cfg)
    for t in np.arange(0.0, 3.0, 0.01):  # 100 Hz camera and odometry
        pairer.add_image(t, _frame())
        pairer.add_odometry(t, (0, 0, 0), (0, 0), "odom")
    assert pairer.num_frames == 10
    assert pairer.num_odometry == 50
    cfg = PairingConfig()
    pairer = InputPairer(cfg)
    for t in np.arange(0.0, 3.0, 0.1):
        pairer.add_image(t, _frame())
        pairer.add_odometry(t, (0, 0, 0), (0, 0), "odom")
    stamps = pairer.frame_stamps
    assert stamps[-1] - stamps[0] <= cfg.frame_buffer_seconds + 1e-9 and len(stamps) == 8  # 2.2 … 2.9


def test_acceleration_on_a_circle_is_centripetal():
    v, omega, rate = 10.0, 0.5, 50.0
    samples = [OdometrySample(t, np.array([0.0, 0.0, omega * t]), np.array([v, 0.0]), "odom")
               for t in np.arange(0.0, 1.0 + 1e-9, 1.0 / rate)]
    accel, valid = estimate_acceleration(samples, len(samples) - 1, window=0.2)
    dt = 0.2  # the partner 0.2 s back exists at 50 Hz
    assert valid
    np.testing.assert_allclose(accel, [v * (1 - math.cos(omega * dt)) / dt, v * math.sin(omega * dt) / dt],
                               rtol=1e-9)
    assert accel[1] == pytest.approx(v * omega, rel=0.01)  # v * omega = 5 m/s² centripetal


def test_acceleration_longitudinal_and_partner_rules():
    samples = [OdometrySample(t, np.zeros(3), np.array([2.0 * t, 0.0]), "odom") for t in np.arange(0.0, 1.01, 0.1)]
    accel, valid = estimate_acceleration(samples, 10, window=0.2)
    assert valid and accel == pytest.approx([2.0, 0.0])
    assert estimate_acceleration(samples, 10, window=0.0) == (pytest.approx([0.0, 0.0]), False)
    assert estimate_acceleration(samples, 0, window=0.2)[1] is False  # no earlier sample
    sparse = [samples[0], samples[10]]  # partner 1.0 s back, outside [t - 0.4, t - 0.1]
    assert estimate_acceleration(sparse, 1, window=0.2)[1] is False
    nan = OdometrySample(0.8, np.full(3, np.nan), np.full(2, np.nan), "odom")
    with_nan = [*samples[:8], nan, samples[9], samples[10]]
    accel, valid = estimate_acceleration(with_nan, 10, window=0.2)  # skips the NaN sample, takes 0.9 s
    assert valid and accel == pytest.approx([2.0, 0.0])
    with pytest.raises(ValueError, match=r"later\.stamp"):
        finite_difference_acceleration(samples[3], samples[3])


def test_acceleration_flag_when_unavailable():
    pairer = InputPairer()
    pairer.add_odometry(1.0, (0, 0, 0), (3.0, 0.0), "odom")
    pairer.add_image(0.5, _frame())
    pairer.add_image(1.0, _frame())
    result = pairer.pair(1.0)
    assert isinstance(result, PairedInput)
    assert not result.acceleration_valid and np.all(result.acceleration == 0.0)


def test_config_validation_and_bad_input():
    cfg = PairingConfig()
    assert cfg.frame_buffer_seconds == pytest.approx(0.7) and cfg.odometry_buffer_seconds == pytest.approx(2.0)
    wide = PairingConfig(frame_gap_tolerance=0.25, acceleration_window=2.0)  # the node's parameter maxima
    assert wide.frame_buffer_seconds >= 0.75 and wide.odometry_buffer_seconds >= 4.1
    with pytest.raises(ValueError, match="frame_buffer_seconds"):
        PairingConfig(frame_buffer_seconds=0.5)
    with pytest.raises(ValueError, match="frame_gap_tolerance"):
        PairingConfig(frame_gap_tolerance=0.6)
    with pytest.raises(ValueError, match="odometry_max_age"):
        PairingConfig(odometry_max_age=0.0)
    pairer = InputPairer()
    with pytest.raises(ValueError, match="uint8"):
        pairer.add_image(0.0, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="finite"):
        pairer.add_image(math.nan, _frame())
    with pytest.raises(ValueError, match="pose"):
        pairer.add_odometry(0.0, (0.0, 0.0), (0.0, 0.0))
    with pytest.raises(KeyError):
        pairer.pair(3.0)
    assert all(reason.description for reason in SkipReason)
    assert {r.value for r in SkipReason} >= {"no_previous_frame", "no_odometry", "stale_odometry",
                                            "non_finite_odometry", "out_of_order_stamp", "time_jump",
                                            "undecodable_image", "wrong_encoding"}
