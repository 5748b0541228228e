"""Pure numpy helpers between ROS messages and the planner's arrays.

No rclpy import: messages are duck-typed (anything with the fields of ``sensor_msgs/Image``, ``nav_msgs/Odometry``,
...), so these functions are unit-testable without a ROS graph. The few helpers that *build* messages import the
message classes lazily.

Frames follow REP-103/105 and NAVSIM: x forward, y left, yaw counter-clockwise, metres, seconds, radians. The ego
reference point is the rear-axle centre, which is ``base_link`` on cars (Autoware) and the odometry child frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from drive_jepa_core.geometry import local_to_global

# sensor_msgs/image_encodings: name -> (channels, bytes per channel, index of R, G, B in the pixel or None for mono)
_ENCODINGS: dict[str, tuple[int, int, tuple[int, int, int] | None]] = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, None),
    "rgb16": (3, 2, (0, 1, 2)),
    "bgr16": (3, 2, (2, 1, 0)),
    "mono16": (1, 2, None),
}
SUPPORTED_IMAGE_ENCODINGS: tuple[str, ...] = tuple(_ENCODINGS)

_NS_PER_S = 1_000_000_000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def image_to_rgb(msg: Any) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` as an ``(H, W, 3)`` uint8 RGB array.

    rgb8 and rgba8 return a read-only *view* of ``msg.data`` (zero copy; rows may be strided when ``step`` has
    padding, so call ``np.ascontiguousarray`` if a consumer needs C order). Encodings that need channel reordering or
    expansion (bgr8, bgra8, mono8) and 16-bit encodings (scaled to 8 bit by dropping the low byte, with the byte
    order from ``is_bigendian``) return a new C-contiguous array. All results have positive strides, so
    ``torch.from_numpy`` and OpenCV accept them.

    Raises:
        ValueError: unknown encoding, zero or inconsistent size, ``step`` shorter than a row, or too few data bytes.
    """
    encoding = str(msg.encoding).strip().lower()
    if encoding not in _ENCODINGS:
        raise ValueError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_IMAGE_ENCODINGS)}"
        )
    channels, depth, rgb_index = _ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(f"image has no pixels: {width}x{height}")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ValueError(f"image step {step} is shorter than one {encoding} row of {width} pixels ({row_bytes} bytes)")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    # The last row may legally omit its padding; anything shorter is truncated data.
    needed = step * (height - 1) + row_bytes
    if buffer.size < needed:
        raise ValueError(
            f"image data has {buffer.size} bytes, {encoding} {width}x{height} with step {step} needs {needed}"
        )
    rows = np.lib.stride_tricks.as_strided(buffer, shape=(height, row_bytes), strides=(step, 1), writeable=False)
    if depth == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pixels = (rows.copy().view(dtype).reshape(height, width, channels) >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels)  # a view: the row stride is kept
    if rgb_index is None:
        return np.repeat(pixels, 3, axis=2)
    if rgb_index == (0, 1, 2):
        return pixels[..., :3]  # read-only view for 8 bit (as_strided above), drops alpha without copying
    return np.ascontiguousarray(pixels[..., list(rgb_index)])


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png, or any format OpenCV reads) to ``(H, W, 3)`` uint8 RGB.

    ``msg.format`` is informational (e.g. ``"jpeg"`` or ``"rgb8; jpeg compressed bgr8"``): OpenCV detects the codec
    from the bytes. Depth images (``compressedDepth``) are refused because they decode to a meaningless picture.

    Raises:
        ValueError: empty data, a depth image, or bytes OpenCV cannot decode.
    """
    import cv2  # imported here: only compressed inputs need OpenCV

    fmt = str(getattr(msg, "format", ""))
    if "compresseddepth" in fmt.replace(" ", "").lower():
        raise ValueError(f"compressed depth images are not camera frames (format {fmt!r})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ValueError("compressed image has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"could not decode compressed image (format {fmt!r}, {data.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z, radians in [-pi, pi]) of a quaternion; scale-invariant, so it need not be unit length.

    Raises:
        ValueError: a zero or non-finite quaternion.
    """
    q = np.array([x, y, z, w], dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise ValueError(f"quaternion is not finite: {q.tolist()}")
    if float(q @ q) < 1e-12:
        raise ValueError("quaternion has zero length")
    return math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """Unit quaternion ``(x, y, z, w)`` of a rotation by ``yaw`` radians about z."""
    half = 0.5 * float(yaw)
    return 0.0, 0.0, math.sin(half), math.cos(half)


def odometry_to_ego_state(msg: Any, acceleration: Sequence[float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Ego pose and planner ego state from a ``nav_msgs/Odometry``.

    The pose is in ``msg.header.frame_id`` (the world frame, e.g. odom/map). The twist is in ``msg.child_frame_id``,
    the body frame (REP-105), which is exactly the ego frame the planner's velocity features use, so it is taken as
    is; the child frame should be the rear axle. Odometry carries no acceleration: pass the body-frame
    ``acceleration`` (ax, ay) if the caller estimates it (e.g. by differencing velocities), else zeros are used.

    Returns:
        pose: ``(3,)`` float64 ``(x, y, yaw)`` in the world frame.
        state: ``(7,)`` float64 ``(x, y, yaw, vx, vy, ax, ay)``; velocities and accelerations in the body frame.

    Raises:
        ValueError: any NaN/inf in the used fields, or a zero quaternion.
    """
    position = msg.pose.pose.position
    orientation = msg.pose.pose.orientation
    linear = msg.twist.twist.linear
    ax, ay = (float(a) for a in acceleration)
    values = np.array([position.x, position.y, linear.x, linear.y, ax, ay], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"odometry has non-finite values (x, y, vx, vy, ax, ay) = {values.tolist()}")
    yaw = quaternion_to_yaw(orientation.x, orientation.y, orientation.z, orientation.w)
    pose = np.array([values[0], values[1], yaw], dtype=np.float64)
    state = np.concatenate([pose, values[2:]])
    return pose, state


def stamp_to_nanoseconds(stamp: Any) -> int:
    """Exact integer nanoseconds of a ``builtin_interfaces/Time`` (use for ordering and equality)."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def stamp_to_seconds(stamp: Any) -> float:
    """Seconds of a ``builtin_interfaces/Time`` as float64 (sub-microsecond resolution at Unix-epoch magnitudes)."""
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def seconds_to_stamp(seconds: float) -> Any:
    """``builtin_interfaces/Time`` for ``seconds`` (rounded to the nearest nanosecond; nanosec in [0, 1e9)).

    Raises:
        ValueError: non-finite seconds or seconds outside the int32 ``sec`` range.
    """
    from builtin_interfaces.msg import Time

    seconds = float(seconds)
    if not math.isfinite(seconds):
        raise ValueError(f"cannot convert non-finite time {seconds} to a stamp")
    sec = math.floor(seconds)
    nanosec = round((seconds - sec) * _NS_PER_S)
    if nanosec >= _NS_PER_S:  # rounding carried into the next second
        sec, nanosec = sec + 1, nanosec - _NS_PER_S
    if not _INT32_MIN <= sec <= _INT32_MAX:
        raise ValueError(f"time {seconds} s is outside the int32 range of builtin_interfaces/Time.sec")
    return Time(sec=int(sec), nanosec=int(nanosec))


def trajectory_to_path_poses(
    trajectory: np.ndarray, frame_pose: np.ndarray, z: float = 0.0
) -> list[tuple[float, float, float, float, float, float, float]]:
    """Planner waypoints in the ego frame -> poses in the output (world) frame.

    Args:
        trajectory: ``(M, 3)`` waypoints ``(x, y, heading)`` relative to the ego pose at planning time.
        frame_pose: ``(3,)`` ego pose ``(x, y, yaw)`` in the output frame at planning time (from odometry).
        z: height given to every pose.
    Returns:
        M tuples ``(x, y, z, qx, qy, qz, qw)``, ready for ``geometry_msgs/Pose``.

    Raises:
        ValueError: wrong shapes or non-finite values.
    """
    trajectory = np.asarray(trajectory, dtype=np.float64)
    frame_pose = np.asarray(frame_pose, dtype=np.float64)
    if trajectory.ndim != 2 or trajectory.shape[1] != 3:
        raise ValueError(f"trajectory must be (M, 3), got {trajectory.shape}")
    if frame_pose.shape != (3,):
        raise ValueError(f"frame_pose must be (3,), got {frame_pose.shape}")
    if not (np.all(np.isfinite(trajectory)) and np.all(np.isfinite(frame_pose)) and math.isfinite(z)):
        raise ValueError("trajectory, frame_pose and z must be finite")
    world = local_to_global(trajectory, frame_pose)
    half = 0.5 * world[:, 2]
    qz, qw = np.sin(half), np.cos(half)
    return [
        (float(x), float(y), float(z), 0.0, 0.0, float(sz), float(cw))
        for (x, y, _), sz, cw in zip(world, qz, qw, strict=True)
    ]


def trajectory_to_path(trajectory: np.ndarray, frame_pose: np.ndarray, header: Any, z: float = 0.0) -> Any:
    """A ``nav_msgs/Path`` whose poses are :func:`trajectory_to_path_poses`, each stamped with ``header``."""
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Path

    path = Path(header=header)
    for x, y, pz, qx, qy, qz, qw in trajectory_to_path_poses(trajectory, frame_pose, z):
        pose = PoseStamped(header=header)
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = x, y, pz
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        path.poses.append(pose)
    return path
