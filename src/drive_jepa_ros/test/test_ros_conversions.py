"""drive_jepa_ros.conversions against real ROS message objects (pure Python classes; no rclpy.init needed)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from drive_jepa_ros.conversions import (
    SUPPORTED_IMAGE_ENCODINGS,
    compressed_to_rgb,
    image_to_rgb,
    odometry_to_ego_state,
    quaternion_to_yaw,
    seconds_to_stamp,
    stamp_to_nanoseconds,
    stamp_to_seconds,
    trajectory_to_path,
    trajectory_to_path_poses,
    yaw_to_quaternion,
)

# A 2x3 RGB test picture; every channel value distinct so any channel or row mix-up shows.
RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10 + 5


def make_image(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Image message with ``pad`` padding bytes (value 0xEE) after every row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, pad), 0xEE, np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def assert_positive_strides(array: np.ndarray) -> None:
    assert all(s > 0 for s in array.strides), array.strides


# ----------------------------------------------------------------------------------------------------------------
# image_to_rgb
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pad", [0, 3])
def test_rgb8_is_a_read_only_zero_copy_view(pad: int) -> None:
    msg = make_image(RGB, "rgb8", pad=pad)
    out = image_to_rgb(msg)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert not out.flags.writeable
    assert out.strides[0] == 9 + pad


def test_bgr8_is_reordered_into_a_contiguous_copy() -> None:
    out = image_to_rgb(make_image(RGB[..., ::-1].copy(), "bgr8", pad=1))
    np.testing.assert_array_equal(out, RGB)
    assert out.flags.c_contiguous
    assert_positive_strides(out)


@pytest.mark.parametrize("encoding,order", [("rgba8", [0, 1, 2]), ("bgra8", [2, 1, 0])])
def test_four_channel_encodings_drop_alpha(encoding: str, order: list[int]) -> None:
    alpha = np.full((2, 3, 1), 255, np.uint8)
    pixels = np.concatenate([RGB[..., order], alpha], axis=2)
    out = image_to_rgb(make_image(pixels, encoding, pad=4))
    np.testing.assert_array_equal(out, RGB)
    assert out.shape == (2, 3, 3)
    assert_positive_strides(out)


def test_mono8_is_replicated_to_three_channels() -> None:
    gray = RGB[..., 0]
    out = image_to_rgb(make_image(gray, "mono8", pad=2))
    assert out.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)


@pytest.mark.parametrize("bigendian", [False, True])
def test_16_bit_encodings_respect_byte_order_and_keep_the_high_byte(bigendian: bool) -> None:
    # 0x1234 -> 0x12 whatever the byte order, if is_bigendian is honoured.
    dtype = ">u2" if bigendian else "<u2"
    rgb16 = (RGB.astype(np.uint16) << 8 | 0x34).astype(dtype)
    out = image_to_rgb(make_image(rgb16, "rgb16", bigendian=bigendian))
    np.testing.assert_array_equal(out, RGB)
    mono = image_to_rgb(make_image(rgb16[..., :1].copy(), "mono16", bigendian=bigendian))
    np.testing.assert_array_equal(mono[..., 2], RGB[..., 0])
    bgr = image_to_rgb(make_image(rgb16[..., ::-1].copy(), "bgr16", bigendian=bigendian))
    np.testing.assert_array_equal(bgr, RGB)


def test_last_row_may_omit_its_padding() -> None:
    msg = make_image(RGB, "rgb8", pad=3)
    msg.data = bytes(msg.data)[:-3]
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


def test_image_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        image_to_rgb(make_image(RGB, "yuv422"))
    short = make_image(RGB, "rgb8")
    short.data = bytes(short.data)[:-1]
    with pytest.raises(ValueError, match="needs 18"):
        image_to_rgb(short)
    narrow = make_image(RGB, "rgb8")
    narrow.step = 8
    with pytest.raises(ValueError, match="shorter than one rgb8 row"):
        image_to_rgb(narrow)
    with pytest.raises(ValueError, match="no pixels"):
        image_to_rgb(Image(encoding="rgb8"))
    assert set(SUPPORTED_IMAGE_ENCODINGS) >= {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"}


# ----------------------------------------------------------------------------------------------------------------
# compressed_to_rgb
# ----------------------------------------------------------------------------------------------------------------
def test_png_round_trip_is_exact() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="png")
    msg.data = encoded.tobytes()
    np.testing.assert_array_equal(compressed_to_rgb(msg), picture)


def test_jpeg_decodes_to_rgb_order() -> None:
    # A flat pure-red picture survives JPEG almost unchanged; a swapped channel order would give blue.
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(red, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
    msg.data = encoded.tobytes()
    out = compressed_to_rgb(msg)
    assert out.shape == (16, 16, 3)
    assert out[..., 0].min() > 240 and out[..., 2].max() < 15


def test_compressed_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="no data"):
        compressed_to_rgb(CompressedImage(format="jpeg"))
    garbage = CompressedImage(format="jpeg")
    garbage.data = b"\x00not an image" * 4
    with pytest.raises(ValueError, match="could not decode"):
        compressed_to_rgb(garbage)
    depth = CompressedImage(format="16UC1; compressedDepth png")
    depth.data = b"\x89PNG"
    with pytest.raises(ValueError, match="depth"):
        compressed_to_rgb(depth)


# ----------------------------------------------------------------------------------------------------------------
# odometry_to_ego_state, quaternions
# ----------------------------------------------------------------------------------------------------------------
def make_odometry(x: float, y: float, yaw: float, vx: float, vy: float) -> Odometry:
    msg = Odometry()
    msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = x, y, 0.3
    q = msg.pose.pose.orientation
    q.x, q.y, q.z, q.w = yaw_to_quaternion(yaw)
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = vx, vy
    return msg


def test_odometry_gives_world_pose_and_body_frame_velocity() -> None:
    pose, state = odometry_to_ego_state(make_odometry(1.0, 2.0, 0.5, 3.0, 0.2))
    np.testing.assert_allclose(pose, [1.0, 2.0, 0.5])
    # The twist is already in the body frame (REP-105): it must not be rotated by the yaw.
    np.testing.assert_allclose(state, [1.0, 2.0, 0.5, 3.0, 0.2, 0.0, 0.0])
    assert pose.shape == (3,) and state.shape == (7,) and state.dtype == np.float64
    _, state = odometry_to_ego_state(make_odometry(1.0, 2.0, 0.5, 3.0, 0.2), acceleration=(0.4, -0.1))
    np.testing.assert_allclose(state[5:], [0.4, -0.1])


@pytest.mark.parametrize("field", ["x", "vx", "yaw"])
def test_odometry_rejects_non_finite_values(field: str) -> None:
    values = {"x": 1.0, "y": 2.0, "yaw": 0.1, "vx": 1.0, "vy": 0.0}
    values[field] = math.nan
    with pytest.raises(ValueError, match="finite"):
        odometry_to_ego_state(make_odometry(**values))
    with pytest.raises(ValueError, match="finite"):
        odometry_to_ego_state(make_odometry(1.0, 2.0, 0.1, 1.0, 0.0), acceleration=(math.inf, 0.0))


def test_odometry_rejects_a_zero_quaternion() -> None:
    msg = make_odometry(0.0, 0.0, 0.0, 0.0, 0.0)
    msg.pose.pose.orientation.w = 0.0
    with pytest.raises(ValueError, match="zero length"):
        odometry_to_ego_state(msg)


@pytest.mark.parametrize("yaw", [0.0, 0.3, -1.2, math.pi / 2, 3.0, -3.0])
def test_yaw_quaternion_round_trip(yaw: float) -> None:
    q = yaw_to_quaternion(yaw)
    assert math.isclose(sum(c * c for c in q), 1.0)
    assert math.isclose(quaternion_to_yaw(*q), yaw, abs_tol=1e-12)
    # Scale does not matter (odometry sources do not always normalize).
    assert math.isclose(quaternion_to_yaw(*(2.0 * c for c in q)), yaw, abs_tol=1e-12)


def test_yaw_of_a_tilted_vehicle() -> None:
    # q = q_yaw(0.4) * q_pitch(0.1) (ZYX order): the heading is still 0.4.
    qy = np.array([0.0, 0.0, math.sin(0.2), math.cos(0.2)])
    qp = np.array([0.0, math.sin(0.05), 0.0, math.cos(0.05)])
    x1, y1, z1, w1 = qy
    x2, y2, z2, w2 = qp
    q = (
        w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
        w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
        w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
    )
    assert math.isclose(quaternion_to_yaw(*q), 0.4, abs_tol=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# stamps
# ----------------------------------------------------------------------------------------------------------------
def test_stamp_to_seconds_and_nanoseconds() -> None:
    stamp = Time(sec=5, nanosec=250_000_000)
    assert stamp_to_seconds(stamp) == 5.25
    assert stamp_to_nanoseconds(stamp) == 5_250_000_000


@pytest.mark.parametrize(
    "seconds,sec,nanosec",
    [
        (5.25, 5, 250_000_000),
        (0.0, 0, 0),
        (-0.25, -1, 750_000_000),
        (1.9999999999, 2, 0),  # rounds up into the next second
        (1_700_000_000.5, 1_700_000_000, 500_000_000),
    ],
)
def test_seconds_to_stamp(seconds: float, sec: int, nanosec: int) -> None:
    stamp = seconds_to_stamp(seconds)
    assert isinstance(stamp, Time)
    assert (stamp.sec, stamp.nanosec) == (sec, nanosec)
    assert math.isclose(stamp_to_seconds(stamp), seconds, abs_tol=1e-9)


def test_seconds_to_stamp_rejects_unrepresentable_times() -> None:
    for bad in (math.nan, math.inf, 2.0**31):
        with pytest.raises(ValueError):
            seconds_to_stamp(bad)


# ----------------------------------------------------------------------------------------------------------------
# trajectories -> poses / Path
# ----------------------------------------------------------------------------------------------------------------
def test_trajectory_is_placed_at_the_frame_pose() -> None:
    # Ego at (10, 5) facing +y: 1 m ahead is (10, 6); (2, 1) in the ego frame is (9, 7).
    poses = trajectory_to_path_poses(np.array([[1.0, 0.0, 0.0], [2.0, 1.0, 0.1]]), np.array([10.0, 5.0, math.pi / 2]))
    assert len(poses) == 2
    np.testing.assert_allclose(poses[0][:3], [10.0, 6.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(poses[1][:3], [9.0, 7.0, 0.0], atol=1e-12)
    assert math.isclose(quaternion_to_yaw(*poses[0][3:]), math.pi / 2)
    assert math.isclose(quaternion_to_yaw(*poses[1][3:]), math.pi / 2 + 0.1)
    assert all(isinstance(v, float) for v in poses[1])


def test_trajectory_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(M, 3\)"):
        trajectory_to_path_poses(np.zeros((8, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        trajectory_to_path_poses(np.zeros((8, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        trajectory_to_path_poses(np.full((8, 3), np.nan), np.zeros(3))


def test_trajectory_to_path_message() -> None:
    header = Header(frame_id="odom", stamp=Time(sec=3, nanosec=7))
    traj = np.stack([np.arange(1, 9) * 2.0, np.zeros(8), np.zeros(8)], axis=1)
    path = trajectory_to_path(traj, np.array([1.0, -1.0, 0.0]), header)
    assert path.header.frame_id == "odom" and len(path.poses) == 8
    assert path.poses[-1].header.stamp.nanosec == 7
    assert path.poses[-1].pose.position.x == 17.0 and path.poses[-1].pose.position.y == -1.0
    assert path.poses[-1].pose.orientation.w == 1.0
