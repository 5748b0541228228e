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
    for i, t in enumerate((1.0, 1.38, 1.46, 1.62)):
        assert pairer.add_image(t, _frame(i)) is None
    pairer.add_image(2.0, _frame(9))
    result = pairer.pair(2.0)
    assert isinstance(result, PairedInput)
    assert result.prev_stamp == pytest.approx(1.46)  # |1.46 - 1.5| = 0.04 beats 0.12 (1.38, 1.62)
    assert result.frame_prev[0, 0, 0] == 2 and result.frame_now[0, 0, 0] == 9
    assert result.frame_gap == pytest.approx(0.54)
    assert result.odometry_stamp == pytest.approx(2.0) and result.odometry_age == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(result.pose, [10.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(result.ego_state7(), [10.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0], atol=1e-9)
    assert result.acceleration_valid and result.frame_id == "odom"


@pytest.mark.parametrize(("tolerance", "earlier", "expected"), [
    (0.1, 1.4, True), (0.1, 1.6, True), (0.1, 1.39, False), (0.1, 1.611, False),
    (None, 1.45, True), (None, 1.55, True), (None, 1.4, False), (None, 1.6, False),  # default 0.05 s
])
def test_frame_gap_tolerance_is_inclusive(tolerance, earlier, expected):
    pairer = InputPairer(PairingConfig() if tolerance is None else PairingConfig(frame_gap_tolerance=tolerance))
    _odometry(pairer, [2.0])
    pairer.add_image(earlier, _frame())
    pairer.add_image(2.0, _frame())
    result = pairer.pair(2.0)
    if expected:
        assert isinstance(result, PairedInput) and result.prev_stamp == pytest.approx(earlier)
    else:
        assert result is SkipReason.NO_PREVIOUS_FRAME


def test_previous_frame_ties_go_to_the_older_frame():
    pairer = InputPairer(PairingConfig(frame_gap_tolerance=0.25))
    _odometry(pairer, [2.0])
    pairer.add_image(1.25, _frame(1))
    pairer.add_image(1.75, _frame(2))  # both exactly 0.25 s from 1.5 (exact in binary)
    pairer.add_image(2.0, _frame(3))
    result = pairer.pair(2.0)
    assert isinstance(result, PairedInput) and result.prev_stamp == 1.25 and result.frame_prev[0, 0, 0] == 1


def test_odometry_missing_stale_and_non_finite():
    pairer = InputPairer(PairingConfig(odometry_max_age=0.1))
    pairer.add_image(1.0, _frame())
    pairer.add_image(1.5, _frame())
    assert pairer.pair(1.5) is SkipReason.NO_ODOMETRY
    assert pairer.describe(SkipReason.NO_ODOMETRY, 1.5) == "no odometry received"
    _odometry(pairer, [1.0, 1.1, 1.2, 1.3])
    assert pairer.pair(1.5) is SkipReason.STALE_ODOMETRY  # nearest 1.3 is 0.2 s away
    assert pairer.describe(SkipReason.STALE_ODOMETRY, 1.5) == (
        "no odometry within 0.1 s of the image stamp (nearest sample -0.200 s from it)")
    pairer.add_odometry(1.4, (0.0, 0.0, 0.0), (5.0, 0.0), "odom")
    assert isinstance(pairer.pair(1.5), PairedInput)  # exactly 0.1 s away: accepted (inclusive)
    pairer.add_odometry(1.52, (math.nan, 0.0, 0.0), (5.0, 0.0), "odom")
    assert pairer.pair(1.5) is SkipReason.NON_FINITE_ODOMETRY  # the nearest sample is the NaN one
    pairer.add_odometry(1.5, (7.5, 0.0, 0.0), (5.0, 0.0), "odom")  # out of order (older than 1.52): dropped
    assert pairer.num_odometry == 6
    assert pairer.pair(1.5) is SkipReason.NON_FINITE_ODOMETRY


def test_odometry_is_checked_before_the_previous_frame():
    """No earlier frame and no odometry: the missing input stream is named, not the transient start-up skip."""
    pairer = InputPairer()
    pairer.add_image(1.0, _frame())
    assert pairer.pair(1.0) is SkipReason.NO_ODOMETRY
    _odometry(pairer, [1.0])
    assert pairer.pair(1.0) is SkipReason.NO_PREVIOUS_FRAME
    assert pairer.describe(SkipReason.NO_PREVIOUS_FRAME, 1.0) == (
        "no frame within 0.05 s of t - 0.5 s (no earlier frame stored)")
    pairer.add_image(1.4, _frame())
    assert pairer.describe(SkipReason.NO_PREVIOUS_FRAME, 1.4) == (
        "no frame within 0.05 s of t - 0.5 s (the nearest stored frames are 0.400 s old)")


def test_nearest_odometry_may_come_after_the_image():
    pairer = InputPairer()
    _odometry(pairer, [0.9, 1.04])
    pairer.add_image(0.5, _frame())
    pairer.add_image(1.0, _frame())
    result = pairer.pair(1.0)
    assert isinstance(result, PairedInput) and result.odometry_stamp == pytest.approx(1.04)


@pytest.mark.parametrize(("last", "stamp", "expected"), [
    (None, 5.0, None),
    (10.0, 10.1, None),
    (10.0, 10.0, SkipReason.DUPLICATE_STAMP),
    (10.0, 10.0 + 5e-7, SkipReason.DUPLICATE_STAMP),  # below float64 stamp resolution at Unix-epoch magnitude
    (10.0, 9.95, SkipReason.OUT_OF_ORDER_STAMP),
    (10.0, 9.5, SkipReason.TIME_JUMP),  # exactly the threshold (0.5 s here) back
    (10.0, 10.499, None),
    (10.0, 10.5, SkipReason.TIME_JUMP_FORWARD),  # exactly the threshold forward
])
def test_classify(last, stamp, expected):
    assert InputPairer(PairingConfig(time_jump_threshold=0.5)).classify(stamp, last) is expected


def test_out_of_order_and_duplicate_images_are_dropped():
    pairer = InputPairer()
    _odometry(pairer, np.arange(0.0, 2.01, 0.1))
    pairer.add_image(1.5, _frame(1))
    pairer.add_image(2.0, _frame(2))
    assert pairer.process_image(1.9, _frame(3)) is SkipReason.OUT_OF_ORDER_STAMP
    assert not pairer.has_image(1.9)
    with pytest.raises(KeyError):
        pairer.pair(1.9)
    assert pairer.process_image(2.0, _frame(4)) is SkipReason.DUPLICATE_STAMP
    assert pairer.frame_stamps == [1.5, 2.0]
    result = pairer.pair(2.0)  # the stored (first) frame of that stamp
    assert isinstance(result, PairedInput) and result.frame_now[0, 0, 0] == 2
    assert pairer.add_odometry(1.95, (0.0, 0.0, 0.0), (0.0, 0.0), "odom") is SkipReason.OUT_OF_ORDER_STAMP
    assert pairer.add_odometry(2.0, (0.0, 0.0, 0.0), (0.0, 0.0), "odom") is SkipReason.DUPLICATE_STAMP
    assert pairer.num_odometry == 21


def test_backward_time_jump_clears_everything_and_is_reported_once():
    pairer = InputPairer(PairingConfig(time_jump_threshold=1.0))
    _odometry(pairer, np.arange(9.0, 10.01, 0.1))
    for t in np.arange(9.0, 10.01, 0.1):
        pairer.add_image(t, _frame())
    assert isinstance(pairer.pair(10.0), PairedInput)
    result = pairer.process_image(5.0, _frame())  # 5 s back: a bag loop
    assert result is SkipReason.TIME_JUMP and result.resets_momentum
    assert pairer.num_frames == 1 and pairer.num_odometry == 0 and pairer.has_image(5.0)
    assert pairer.pair(5.0) is SkipReason.NO_ODOMETRY  # reported once (by add_image); old odometry is gone
    pairer.add_image(5.5, _frame())
    assert pairer.pair(5.5) is SkipReason.NO_ODOMETRY
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
    result = pairer.process_image(5.0, _frame())
    assert result is SkipReason.TIME_JUMP_FORWARD and not result.resets_momentum
    assert pairer.frame_stamps == [5.0] and pairer.num_odometry > 2
    assert pairer.pair(5.0) is SkipReason.NO_PREVIOUS_FRAME
    pairer.add_image(5.5, _frame())
    assert isinstance(pairer.pair(5.5), PairedInput)  # the stream goes on from the jump
    # odometry: a forward step of at least the threshold drops the older samples; nothing is reported to images
    assert pairer.add_odometry(8.0, (40.0, 0.0, 0.0), (5.0, 0.0), "odom") is SkipReason.TIME_JUMP_FORWARD
    assert pairer.num_odometry == 1
    pairer.add_image(8.0, _frame())
    pairer.add_image(8.5, _frame())
    assert pairer.pair(8.5) is SkipReason.STALE_ODOMETRY


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
    assert stamps[-1] - stamps[0] <= cfg.frame_buffer_seconds + 1e-9 and len(stamps) == 7  # 2.3 … 2.9 (0.65 s)


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


def test_acceleration_is_heading_invariant():
    # heading 0.3 rad, speeding up from 4 to 4.2 m/s in 0.2 s: 1 m/s^2 forward, nothing sideways
    then = OdometrySample(10.0, np.array([0.0, 0.0, 0.3]), np.array([4.0, 0.0]), "odom")
    now = OdometrySample(10.2, np.array([1.0, 0.3, 0.3]), np.array([4.2, 0.0]), "odom")
    np.testing.assert_allclose(finite_difference_acceleration(then, now), [1.0, 0.0], atol=1e-12)


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
    assert cfg.frame_gap_tolerance == 0.05  # half a 10 Hz camera period (the PairingConfig docstring says why)
    assert cfg.frame_buffer_seconds == pytest.approx(0.65) and cfg.odometry_buffer_seconds == pytest.approx(2.0)
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
    with pytest.raises(TypeError, match="PairingConfig"):
        pairer.config = {"frame_gap_tolerance": 0.1}
    assert all(reason.description for reason in SkipReason)
    assert {r.value for r in SkipReason} >= {"no_previous_frame", "no_odometry", "stale_odometry",
                                            "non_finite_odometry", "duplicate_stamp", "out_of_order_stamp",
                                            "time_jump", "time_jump_forward", "undecodable_image", "wrong_encoding"}
    assert {r for r in SkipReason if r.resets_momentum} == {SkipReason.TIME_JUMP, SkipReason.ODOMETRY_FRAME_CHANGED}


def test_live_config_change_applies_to_the_next_pairing():
    pairer = InputPairer()
    _odometry(pairer, [2.0])
    pairer.add_image(1.4, _frame())
    pairer.add_image(2.0, _frame())
    assert pairer.pair(2.0) is SkipReason.NO_PREVIOUS_FRAME  # 0.1 s off with the default 0.05 s tolerance
    pairer.config = PairingConfig(frame_gap_tolerance=0.1)
    assert isinstance(pairer.pair(2.0), PairedInput)
