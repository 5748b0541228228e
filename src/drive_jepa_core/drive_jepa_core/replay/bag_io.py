"""rosbag2 input/output without ROS: the ``rosbags`` library reads and writes sqlite3 and mcap bags.

Reading (:class:`BagReader`): the camera (``sensor_msgs/Image`` rgb8/bgr8/rgba8/bgra8/mono8 or
``sensor_msgs/CompressedImage`` jpeg/png), ``camera_info``, odometry (``nav_msgs/Odometry``) and driving command
(``drive_jepa_msgs/DrivingCommand``) topics, in log-time order, as small numpy events; topics are found by type when
not named. Images are decoded here with numpy (raw) and OpenCV (compressed); a frame that cannot be decoded becomes an
:class:`ImageEvent` carrying a :class:`~drive_jepa_core.replay.pairing.SkipReason` instead of pixels.

Writing (:class:`BagWriter`): sensor topics (synthetic bags, test fixtures) and the planner's outputs
(``nav_msgs/Path``, ``drive_jepa_msgs/CandidateTrajectories`` and ``SelectionState``,
``visualization_msgs/MarkerArray``) stamped with the input image stamps. :func:`write_synthetic_bag` records an
episode of the built-in world as a bag.

Message types come from rosbags' ROS 2 Kilted typestore (it matches the installed message hashes) plus the
``drive_jepa_msgs`` definitions read from their ``.msg`` files (:func:`find_msgs_dir`). Stamps are integer
nanoseconds; :func:`ns_to_seconds` converts them exactly as the ROS node does (``sec + nanosec * 1e-9``).
"""

from __future__ import annotations

import functools
import math
import os
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drive_jepa_core.constants import COMFORT_NOT_AVAILABLE, DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH, SIM_DT, TRAJ_DT
from drive_jepa_core.geometry import local_to_global
from drive_jepa_core.replay.pairing import SkipReason
from drive_jepa_core.scene.format import CameraCalibration

__all__ = [
    "BagError", "BagReader", "BagTopics", "BagWriter", "CameraInfoEvent", "CommandEvent", "ImageDecodeError",
    "ImageEvent", "OdometryEvent", "OdometryTrack", "OUTPUT_TOPICS", "SYNTHETIC_TOPICS", "SyntheticBag",
    "bag_typestore", "calibration_from_camera_info", "decode_compressed_image", "decode_raw_image", "find_msgs_dir",
    "ns_to_seconds", "quaternion_to_yaw", "seconds_to_ns", "write_synthetic_bag",
]

# --------------------------------------------------------------------------------------------------------------------
# Types and topics
# --------------------------------------------------------------------------------------------------------------------
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
ODOMETRY = "nav_msgs/msg/Odometry"
COMMAND = "drive_jepa_msgs/msg/DrivingCommand"
PATH = "nav_msgs/msg/Path"
CANDIDATES = "drive_jepa_msgs/msg/CandidateTrajectories"
SELECTION_STATE = "drive_jepa_msgs/msg/SelectionState"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
MSGS_PACKAGE = "drive_jepa_msgs"
COMMAND_UNKNOWN = 255  # DrivingCommand.UNKNOWN

# The planner node's output topics (node name drive_jepa_planner, ~/output/* and ~/debug/*), so an offline replay bag
# and a bag recorded from the node line up topic by topic.
NODE_NAMESPACE = "/drive_jepa_planner"
OUTPUT_TOPICS = {
    "path": (f"{NODE_NAMESPACE}/output/path", PATH),
    "candidates": (f"{NODE_NAMESPACE}/output/candidates", CANDIDATES),
    "selection_state": (f"{NODE_NAMESPACE}/output/selection_state", SELECTION_STATE),
    "markers": (f"{NODE_NAMESPACE}/debug/markers", MARKER_ARRAY),
}
# Topics of bags written by write_synthetic_bag.
SYNTHETIC_TOPICS = {
    "image": "/camera/front/image_raw",
    "compressed": "/camera/front/image_raw/compressed",
    "camera_info": "/camera/front/camera_info",
    "odometry": "/odom",
    "command": "/planning/driving_command",
}
ODOM_FRAME, BASE_FRAME, CAMERA_FRAME = "odom", "base_link", "camera_front_optical"

STORAGES = ("mcap", "sqlite3")
_NS = 1_000_000_000


class BagError(RuntimeError):
    """A bag cannot be used: missing, unreadable, no camera topic, ambiguous topics, unknown message types."""


class ImageDecodeError(ValueError):
    """An image message could not be turned into pixels; ``reason`` says how to count it."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------------------------------------------------
# Time
# --------------------------------------------------------------------------------------------------------------------
def ns_to_seconds(ns: int) -> float:
    """Integer nanoseconds → float seconds as ``sec + nanosec * 1e-9`` (bit-identical to the node's conversion)."""
    ns = int(ns)
    return ns // _NS + (ns % _NS) * 1e-9


def seconds_to_ns(seconds: float) -> int:
    """Float seconds → integer nanoseconds (rounded)."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot convert non-finite time {seconds}")
    sec = math.floor(seconds)
    return int(sec) * _NS + int(round((seconds - sec) * _NS))


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * _NS + int(stamp.nanosec)


# --------------------------------------------------------------------------------------------------------------------
# Typestore
# --------------------------------------------------------------------------------------------------------------------
def find_msgs_dir() -> Path:
    """The ``drive_jepa_msgs/msg`` folder with the ``.msg`` definitions.

    Looked up in order: ``$DRIVE_JEPA_MSGS_DIR``; ``share/drive_jepa_msgs/msg`` under each ``$AMENT_PREFIX_PATH``
    entry (colcon install); the source tree next to this package (``src/drive_jepa_msgs/msg``).
    """
    candidates: list[Path] = []
    if os.environ.get("DRIVE_JEPA_MSGS_DIR"):
        candidates.append(Path(os.environ["DRIVE_JEPA_MSGS_DIR"]))
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / MSGS_PACKAGE / "msg")
    candidates.append(Path(__file__).resolve().parents[3] / MSGS_PACKAGE / "msg")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.msg")):
            return folder
    raise BagError(f"cannot find the {MSGS_PACKAGE} .msg definitions (looked in {[str(c) for c in candidates]}); "
                   f"set DRIVE_JEPA_MSGS_DIR")


@functools.lru_cache(maxsize=1)
def bag_typestore() -> Any:
    """rosbags typestore: ROS 2 Kilted + ``drive_jepa_msgs`` (cached)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(find_msgs_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{MSGS_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


_NUMPY_BASE = {"bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
               "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
               "uint64": np.uint64, "float32": np.float32, "float64": np.float64}


def _default_value(store: Any, desc: tuple[Any, Any]) -> Any:
    from rosbags.typesys.base import Nodetype

    kind, rest = desc
    if kind == Nodetype.BASE:
        name = rest[0]
        if name in ("string", "wstring"):
            return ""
        if name == "bool":
            return False
        return 0.0 if name.startswith("float") else 0
    if kind == Nodetype.NAME:
        return make_message(rest, store=store)
    inner, size = rest
    if inner[0] == Nodetype.BASE and inner[1][0] in _NUMPY_BASE:
        return np.zeros(size if kind == Nodetype.ARRAY else 0, dtype=_NUMPY_BASE[inner[1][0]])
    if kind == Nodetype.ARRAY:
        return [_default_value(store, inner) for _ in range(size)]
    return []


def make_message(msgtype: str, store: Any | None = None, **values: Any) -> Any:
    """A message instance of ``msgtype`` with ROS default values (zeros, empty strings and sequences), then
    ``values`` set. Unknown field names raise ValueError."""
    store = store if store is not None else bag_typestore()
    if msgtype not in store.fielddefs:
        raise BagError(f"unknown message type {msgtype}")
    _, fields = store.fielddefs[msgtype]
    names = [name for name, _ in fields]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"{msgtype} has no fields {unknown}; fields are {names}")
    kwargs = {name: values[name] if name in values else _default_value(store, desc) for name, desc in fields}
    return store.types[msgtype](**kwargs)


def _time(ns: int) -> Any:
    ns = int(ns)
    return make_message("builtin_interfaces/msg/Time", sec=ns // _NS, nanosec=ns % _NS)


def _header(stamp_ns: int, frame_id: str) -> Any:
    return make_message("std_msgs/msg/Header", stamp=_time(stamp_ns), frame_id=str(frame_id))


def _duration(seconds: float) -> Any:
    ns = seconds_to_ns(seconds)
    return make_message("builtin_interfaces/msg/Duration", sec=ns // _NS, nanosec=ns % _NS)


def _pose(x: float, y: float, yaw: float, z: float = 0.0) -> Any:
    point = make_message("geometry_msgs/msg/Point", x=float(x), y=float(y), z=float(z))
    quat = make_message("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=math.sin(0.5 * yaw), w=math.cos(0.5 * yaw))
    return make_message("geometry_msgs/msg/Pose", position=point, orientation=quat)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rad) of a quaternion (scale-invariant); NaN for a zero or non-finite quaternion."""
    q = np.array([x, y, z, w], dtype=np.float64)
    if not np.all(np.isfinite(q)) or float(q @ q) < 1e-12:
        return math.nan
    return math.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)


# --------------------------------------------------------------------------------------------------------------------
# Image decoding (numpy for raw, OpenCV for compressed)
# --------------------------------------------------------------------------------------------------------------------
# sensor_msgs/image_encodings name -> (channels, indices of R, G, B in a pixel; None = grey)
RAW_ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


def decode_raw_image(encoding: str, height: int, width: int, step: int, data: Any) -> np.ndarray:
    """``sensor_msgs/Image`` fields → uint8 RGB ``(H, W, 3)`` (a new C-contiguous array).

    Raises:
        ImageDecodeError: WRONG_ENCODING for an encoding outside :data:`RAW_ENCODINGS`; UNDECODABLE_IMAGE for zero
            size, a ``step`` shorter than a row, or too few data bytes.
    """
    enc = str(encoding).strip().lower()
    if enc not in RAW_ENCODINGS:
        raise ImageDecodeError(SkipReason.WRONG_ENCODING, f"unsupported image encoding {encoding!r}; supported: "
                               f"{', '.join(RAW_ENCODINGS)}")
    channels, rgb = RAW_ENCODINGS[enc]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(SkipReason.UNDECODABLE_IMAGE, f"image has no pixels: {width}x{height}")
    row = width * channels
    if step < row:
        raise ImageDecodeError(SkipReason.UNDECODABLE_IMAGE, f"step {step} is shorter than a {enc} row of {row} bytes")
    buf = np.frombuffer(memoryview(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    needed = step * (height - 1) + row  # the last row may omit its padding
    if buf.size < needed:
        raise ImageDecodeError(SkipReason.UNDECODABLE_IMAGE,
                               f"{enc} {width}x{height} (step {step}) needs {needed} bytes, got {buf.size}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1), writeable=False)
    pixels = rows.reshape(height, width, channels)
    if rgb is None:
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    return np.ascontiguousarray(pixels[..., list(rgb)])


def decode_compressed_image(fmt: str, data: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` → uint8 RGB ``(H, W, 3)``.

    ``fmt`` must name jpeg/jpg/png (e.g. ``"jpeg"``, ``"rgb8; jpeg compressed bgr8"``) or be empty (then the codec is
    sniffed from the bytes); depth images and other codecs are WRONG_ENCODING, bytes OpenCV cannot read are
    UNDECODABLE_IMAGE.
    """
    import cv2

    text = str(fmt).strip().lower()
    if "compresseddepth" in text.replace(" ", ""):
        raise ImageDecodeError(SkipReason.WRONG_ENCODING, f"compressed depth images are not camera frames ({fmt!r})")
    if text and not any(name in text for name in COMPRESSED_FORMATS):
        raise ImageDecodeError(SkipReason.WRONG_ENCODING, f"unsupported compressed format {fmt!r}; supported: "
                               f"{', '.join(COMPRESSED_FORMATS)}")
    buf = np.frombuffer(memoryview(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    if buf.size == 0:
        raise ImageDecodeError(SkipReason.UNDECODABLE_IMAGE, "compressed image has no data")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(SkipReason.UNDECODABLE_IMAGE, f"could not decode {buf.size} bytes of {fmt!r}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def calibration_from_camera_info(width: int, height: int, k: np.ndarray, name: str = "camera",
                                 sensor2ego: np.ndarray | None = None) -> CameraCalibration | None:
    """Calibration from ``camera_info`` intrinsics; extrinsics default to the built-in world's front camera mount
    (camera_info has none; the node's ``camera.x/y/z/roll/pitch/yaw`` defaults are the same mount). None when the
    message carries no usable intrinsics (zero size or K)."""
    from drive_jepa_core.world.render import default_front_camera

    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    if int(width) <= 0 or int(height) <= 0 or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        return None
    if sensor2ego is None:
        sensor2ego = default_front_camera(int(width), int(height)).sensor2ego
    return CameraCalibration(name=name or "camera", width=int(width), height=int(height), intrinsics=k,
                             sensor2ego=np.asarray(sensor2ego, dtype=np.float64))


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageEvent:
    """A camera message. ``frame`` is uint8 RGB ``(H, W, 3)``, or None with ``skip`` + ``error`` set."""

    stamp_ns: int
    log_time_ns: int
    frame: np.ndarray | None
    skip: SkipReason | None = None
    error: str = ""

    @property
    def stamp(self) -> float:
        return ns_to_seconds(self.stamp_ns)


@dataclass(frozen=True)
class OdometryEvent:
    """A ``nav_msgs/Odometry``: ``pose`` (3,) world (x, y, yaw) in ``frame_id`` (NaN yaw for a bad quaternion),
    ``velocity`` (2,) body (vx, vy), ``yaw_rate`` (rad/s)."""

    stamp_ns: int
    log_time_ns: int
    pose: np.ndarray
    velocity: np.ndarray
    yaw_rate: float
    frame_id: str
    child_frame_id: str

    @property
    def stamp(self) -> float:
        return ns_to_seconds(self.stamp_ns)


@dataclass(frozen=True)
class CommandEvent:
    """A ``DrivingCommand``: 0 left, 1 straight, 2 right, 255 unknown."""

    stamp_ns: int
    log_time_ns: int
    command: int


@dataclass(frozen=True)
class CameraInfoEvent:
    stamp_ns: int
    log_time_ns: int
    width: int
    height: int
    k: np.ndarray  # (3, 3)
    frame_id: str

    def calibration(self) -> CameraCalibration | None:
        return calibration_from_camera_info(self.width, self.height, self.k, self.frame_id)


BagEvent = ImageEvent | OdometryEvent | CommandEvent | CameraInfoEvent


@dataclass(frozen=True)
class BagTopics:
    """The topics a replay/import reads (None = absent). ``camera_type`` is IMAGE or COMPRESSED_IMAGE."""

    camera: str | None
    camera_type: str | None
    camera_info: str | None
    odometry: str | None
    command: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"camera": self.camera, "camera_type": self.camera_type, "camera_info": self.camera_info,
                "odometry": self.odometry, "command": self.command}


_CAMERA_HINTS = ("front", "cam_f0", "image_raw", "image")


def _pick(kind: str, topics: dict[str, str], types: Sequence[str], given: str | None,
          hints: Sequence[str] = ()) -> str | None:
    """The topic of ``kind``: ``given`` (must exist with one of ``types``), else the only topic of those types, else
    the first candidate matching a hint; ambiguity without a hint is an error naming the candidates."""
    if given:
        if given not in topics:
            raise BagError(f"{kind} topic {given!r} is not in the bag; topics: {sorted(topics)}")
        if topics[given] not in types:
            raise BagError(f"{kind} topic {given!r} has type {topics[given]}, expected one of {list(types)}")
        return given
    for typ in types:  # earlier types win (raw images before compressed ones)
        found = sorted(t for t, ty in topics.items() if ty == typ)
        if len(found) == 1:
            return found[0]
        if found:
            for hint in hints:
                hinted = [t for t in found if hint in t.lower()]
                if len(hinted) == 1:
                    return hinted[0]
            raise BagError(f"several {kind} topics of type {typ}: {found}; choose one with --{kind}-topic")
    return None


@dataclass
class OdometryTrack:
    """All finite odometry samples of a bag, sorted by stamp: ``stamps`` (N,) s, ``poses`` (N, 3) with the yaw
    unwrapped, ``velocities`` (N, 2) body frame, ``frame_id`` of the first sample (others must match)."""

    stamps: np.ndarray
    poses: np.ndarray
    velocities: np.ndarray
    frame_id: str = ""

    def __len__(self) -> int:
        return int(self.stamps.shape[0])

    @classmethod
    def from_events(cls, events: Sequence[OdometryEvent]) -> OdometryTrack:
        good = [e for e in events if np.all(np.isfinite(e.pose)) and np.all(np.isfinite(e.velocity))]
        frame = good[0].frame_id if good else ""
        good = sorted((e for e in good if e.frame_id == frame), key=lambda e: e.stamp_ns)
        dedup: list[OdometryEvent] = []
        for e in good:
            if not dedup or e.stamp_ns > dedup[-1].stamp_ns:
                dedup.append(e)
        if not dedup:
            return cls(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 2)), frame)
        stamps = np.array([e.stamp for e in dedup])
        poses = np.stack([e.pose for e in dedup]).astype(np.float64)
        poses[:, 2] = np.unwrap(poses[:, 2])
        return cls(stamps, poses, np.stack([e.velocity for e in dedup]).astype(np.float64), frame)

    def covered(self, times: np.ndarray, max_gap: float) -> np.ndarray:
        """``(K,)`` bool: each time lies within the track and between samples at most ``max_gap`` apart."""
        times = np.asarray(times, dtype=np.float64)
        if len(self) < 2:
            return np.zeros(times.shape, dtype=bool)
        inside = (times >= self.stamps[0] - 1e-6) & (times <= self.stamps[-1] + 1e-6)
        idx = np.clip(np.searchsorted(self.stamps, times), 1, len(self) - 1)
        gap = self.stamps[idx] - self.stamps[idx - 1]
        exact = np.abs(self.stamps[np.clip(np.searchsorted(self.stamps, times), 0, len(self) - 1)] - times) < 1e-6
        return inside & ((gap <= max_gap + 1e-9) | exact)

    def interpolate(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Poses ``(K, 3)`` (yaw wrapped to [-pi, pi]) and body velocities ``(K, 2)``, linear in time (times outside
        the track are clamped; check :meth:`covered` first)."""
        from drive_jepa_core.geometry import wrap_angle

        times = np.asarray(times, dtype=np.float64)
        if len(self) == 0:
            raise ValueError("cannot interpolate an empty odometry track")
        poses = np.stack([np.interp(times, self.stamps, self.poses[:, i]) for i in range(3)], axis=-1)
        poses[..., 2] = wrap_angle(poses[..., 2])
        vel = np.stack([np.interp(times, self.stamps, self.velocities[:, i]) for i in range(2)], axis=-1)
        return poses, vel


class BagReader:
    """A rosbag2 (sqlite3 or mcap) opened for replay/import; use as a context manager.

    Args:
        path: the bag directory (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` file.
        camera_topic, odometry_topic, command_topic, camera_info_topic: explicit topics; by default each is found by
            its type (:func:`_pick`). A bag without a camera topic is refused; the others may be absent.

    Attributes:
        topics: :class:`BagTopics`; ``errors``: Counter of messages that could not be deserialized, by topic.
    """

    def __init__(self, path: str | Path, camera_topic: str | None = None, odometry_topic: str | None = None,
                 command_topic: str | None = None, camera_info_topic: str | None = None) -> None:
        from rosbags.rosbag2 import Reader

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag {self.path} does not exist")
        self.store = bag_typestore()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except Exception as exc:  # rosbags raises its own error types for broken metadata / storage
            raise BagError(f"cannot open bag {self.path}: {exc}") from exc
        self.errors: Counter[str] = Counter()
        all_topics = {c.topic: c.msgtype for c in self._reader.connections}
        try:
            camera = _pick("camera", all_topics, (IMAGE, COMPRESSED_IMAGE), camera_topic, _CAMERA_HINTS)
            if camera is None:
                raise BagError(f"bag {self.path} has no sensor_msgs/Image or CompressedImage topic; topics: "
                               f"{ {t: ty for t, ty in sorted(all_topics.items())} }")
            self.topics = BagTopics(
                camera=camera, camera_type=all_topics[camera],
                camera_info=_pick("camera-info", all_topics, (CAMERA_INFO,), camera_info_topic, ("front", "camera")),
                odometry=_pick("odom", all_topics, (ODOMETRY,), odometry_topic, ("odom", "kinematic")),
                command=_pick("command", all_topics, (COMMAND,), command_topic),
            )
        except BagError:
            self.close()
            raise
        self.all_topics = all_topics

    # -------------------------------------------------------------------------------------------------- metadata
    @property
    def storage(self) -> str:
        """``"mcap"`` or ``"sqlite3"``, from the storage files on disk."""
        files = [self.path] if self.path.is_file() else list(self.path.iterdir())
        suffixes = {f.suffix for f in files}
        return "mcap" if ".mcap" in suffixes else "sqlite3" if ".db3" in suffixes else "unknown"

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time)

    def message_count(self, topic: str | None) -> int:
        if topic is None:
            return 0
        return sum(c.msgcount for c in self._reader.connections if c.topic == topic)

    def close(self) -> None:
        if getattr(self, "_reader", None) is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -------------------------------------------------------------------------------------------------- messages
    def _connections(self, kinds: Sequence[str]) -> list[Any]:
        wanted = {getattr(self.topics, k) for k in kinds} - {None}
        return [c for c in self._reader.connections if c.topic in wanted]

    def messages(self, kinds: Sequence[str] = ("camera", "camera_info", "odometry", "command"),
                 decode_images: bool = True, image_filter: Any = None) -> Iterator[BagEvent]:
        """Events of the selected topics in log-time order.

        Args:
            kinds: any of ``camera``, ``camera_info``, ``odometry``, ``command``.
            decode_images: False yields camera events with ``frame=None`` and no skip (stamps only).
            image_filter: optional ``callable(stamp_ns) -> bool``; images it rejects are yielded undecoded.
        """
        conns = self._connections(kinds)
        if not conns:
            return
        for conn, log_time, raw in self._reader.messages(connections=conns):
            try:
                msg = self.store.deserialize_cdr(raw, conn.msgtype)
            except Exception:  # a corrupt message must not end the replay
                self.errors[conn.topic] += 1
                if conn.topic == self.topics.camera:
                    yield ImageEvent(-1, int(log_time), None, SkipReason.UNDECODABLE_IMAGE,
                                     "message could not be deserialized")
                continue
            if conn.topic == self.topics.camera:
                yield self._image_event(msg, conn.msgtype, int(log_time), decode_images, image_filter)
            elif conn.topic == self.topics.odometry:
                yield _odometry_event(msg, int(log_time))
            elif conn.topic == self.topics.command:
                yield CommandEvent(_stamp_ns(msg.header.stamp), int(log_time), int(msg.command))
            elif conn.topic == self.topics.camera_info:
                yield CameraInfoEvent(_stamp_ns(msg.header.stamp), int(log_time), int(msg.width), int(msg.height),
                                      np.asarray(msg.k, dtype=np.float64).reshape(3, 3), str(msg.header.frame_id))

    @staticmethod
    def _image_event(msg: Any, msgtype: str, log_time: int, decode: bool, image_filter: Any) -> ImageEvent:
        stamp = _stamp_ns(msg.header.stamp)
        if not decode or (image_filter is not None and not image_filter(stamp)):
            return ImageEvent(stamp, log_time, None)
        try:
            if msgtype == IMAGE:
                frame = decode_raw_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)
            else:
                frame = decode_compressed_image(msg.format, msg.data)
        except ImageDecodeError as exc:
            return ImageEvent(stamp, log_time, None, exc.reason, str(exc))
        return ImageEvent(stamp, log_time, frame)

    def odometry_track(self) -> OdometryTrack:
        """Every finite odometry sample of the bag (empty without an odometry topic)."""
        if self.topics.odometry is None:
            return OdometryTrack.from_events([])
        return OdometryTrack.from_events([e for e in self.messages(("odometry",)) if isinstance(e, OdometryEvent)])


def _odometry_event(msg: Any, log_time: int) -> OdometryEvent:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    yaw = quaternion_to_yaw(q.x, q.y, q.z, q.w)
    twist = msg.twist.twist
    return OdometryEvent(_stamp_ns(msg.header.stamp), log_time, np.array([p.x, p.y, yaw], dtype=np.float64),
                         np.array([twist.linear.x, twist.linear.y], dtype=np.float64), float(twist.angular.z),
                         str(msg.header.frame_id), str(msg.child_frame_id))


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------
def _rgba(r: float, g: float, b: float, a: float = 1.0) -> Any:
    return make_message("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b), a=float(a))


# ResetReason value -> SelectionState constant (drive_jepa_msgs/SelectionState.msg)
_RESET_CODES = {"none": 0, "first_frame": 1, "gap": 2, "time_backwards": 3, "requested": 4, "input_fault": 5}


class BagWriter:
    """A new rosbag2 (mcap or sqlite3) written with the project's typestore; use as a context manager.

    Topics are registered on first use. ``log_time_ns`` defaults to the message stamp.
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; rosbag2 bags are never overwritten")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.store = bag_typestore()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self.generator_id = np.frombuffer(uuid.uuid4().bytes, dtype=np.uint8).copy()

    def set_custom_data(self, key: str, value: str) -> None:
        self._writer.set_custom_data(key, str(value))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def write(self, topic: str, msgtype: str, msg: Any, log_time_ns: int) -> None:
        """Serialize ``msg`` (a typestore instance of ``msgtype``) onto ``topic`` at ``log_time_ns``."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.store)
            self._connections[topic] = conn
        elif conn.msgtype != msgtype:
            raise BagError(f"topic {topic} was registered with {conn.msgtype}, not {msgtype}")
        self._writer.write(conn, int(log_time_ns), self.store.serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    # -------------------------------------------------------------------------------------------------- sensors
    def write_image(self, topic: str, stamp_ns: int, frame: np.ndarray | None = None, encoding: str = "rgb8",
                    frame_id: str = CAMERA_FRAME, log_time_ns: int | None = None, data: bytes | None = None,
                    width: int | None = None, height: int | None = None, step: int | None = None) -> None:
        """A ``sensor_msgs/Image``. ``frame`` (uint8 RGB) is converted to ``encoding`` (rgb8, bgr8, rgba8, bgra8,
        mono8); ``data`` + ``width``/``height``/``step`` write raw bytes as they are (encodings we do not decode)."""
        if data is None:
            if frame is None:
                raise ValueError("write_image needs frame or data")
            pixels = _encode_raw(frame, encoding)
            height, width = frame.shape[:2]
            step = pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1)
            payload = np.ascontiguousarray(pixels).reshape(-1)
        else:
            if width is None or height is None:
                raise ValueError("raw data needs width and height")
            payload = np.frombuffer(bytes(data), dtype=np.uint8).copy()
            step = int(step if step is not None else (payload.size // max(int(height), 1)))
        msg = make_message(IMAGE, header=_header(stamp_ns, frame_id), height=int(height), width=int(width),
                           encoding=str(encoding), is_bigendian=0, step=int(step), data=payload)
        self.write(topic, IMAGE, msg, stamp_ns if log_time_ns is None else log_time_ns)

    def write_compressed(self, topic: str, stamp_ns: int, frame: np.ndarray | None = None, fmt: str = "jpeg",
                         frame_id: str = CAMERA_FRAME, log_time_ns: int | None = None, data: bytes | None = None,
                         quality: int = 90) -> None:
        """A ``sensor_msgs/CompressedImage``: ``frame`` encoded as jpeg/png, or ``data`` written as given."""
        import cv2

        if data is None:
            if frame is None:
                raise ValueError("write_compressed needs frame or data")
            ext = ".png" if "png" in fmt else ".jpg"
            params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
            ok, buf = cv2.imencode(ext, np.ascontiguousarray(frame[:, :, ::-1]), params)
            if not ok:
                raise ValueError(f"could not encode a {frame.shape} frame as {fmt}")
            payload = buf.reshape(-1)
        else:
            payload = np.frombuffer(bytes(data), dtype=np.uint8).copy()
        msg = make_message(COMPRESSED_IMAGE, header=_header(stamp_ns, frame_id), format=str(fmt), data=payload)
        self.write(topic, COMPRESSED_IMAGE, msg, stamp_ns if log_time_ns is None else log_time_ns)

    def write_camera_info(self, topic: str, stamp_ns: int, calibration: CameraCalibration,
                          frame_id: str = CAMERA_FRAME, log_time_ns: int | None = None) -> None:
        """A ``sensor_msgs/CameraInfo`` (pinhole, no distortion) of ``calibration``."""
        k = np.asarray(calibration.intrinsics, dtype=np.float64)
        p = np.zeros((3, 4))
        p[:, :3] = k
        msg = make_message(CAMERA_INFO, header=_header(stamp_ns, frame_id), height=int(calibration.height),
                           width=int(calibration.width), distortion_model="plumb_bob", d=np.zeros(5),
                           k=k.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=p.reshape(-1))
        self.write(topic, CAMERA_INFO, msg, stamp_ns if log_time_ns is None else log_time_ns)

    def write_odometry(self, topic: str, stamp_ns: int, pose: Sequence[float], velocity: Sequence[float],
                       yaw_rate: float = 0.0, frame_id: str = ODOM_FRAME, child_frame_id: str = BASE_FRAME,
                       log_time_ns: int | None = None) -> None:
        """A ``nav_msgs/Odometry``: ``pose`` (x, y, yaw) in ``frame_id``, body ``velocity`` (vx, vy) and yaw rate."""
        x, y, yaw = (float(v) for v in pose)
        pose_cov = make_message("geometry_msgs/msg/PoseWithCovariance",
                                pose=_pose(x, y, yaw if math.isfinite(yaw) else 0.0))
        if not math.isfinite(yaw):  # a deliberately broken orientation (tests of non-finite input)
            pose_cov.pose.orientation.z = math.nan
            pose_cov.pose.orientation.w = math.nan
        linear = make_message("geometry_msgs/msg/Vector3", x=float(velocity[0]), y=float(velocity[1]), z=0.0)
        angular = make_message("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=float(yaw_rate))
        twist = make_message("geometry_msgs/msg/TwistWithCovariance",
                             twist=make_message("geometry_msgs/msg/Twist", linear=linear, angular=angular))
        msg = make_message(ODOMETRY, header=_header(stamp_ns, frame_id), child_frame_id=str(child_frame_id),
                           pose=pose_cov, twist=twist)
        self.write(topic, ODOMETRY, msg, stamp_ns if log_time_ns is None else log_time_ns)

    def write_command(self, topic: str, stamp_ns: int, command: int, log_time_ns: int | None = None) -> None:
        msg = make_message(COMMAND, header=_header(stamp_ns, BASE_FRAME), command=int(command))
        self.write(topic, COMMAND, msg, stamp_ns if log_time_ns is None else log_time_ns)

    # -------------------------------------------------------------------------------------------------- planner
    def write_plan(self, plan: Any, stamp_ns: int, frame_id: str = ODOM_FRAME, generator_name: str = "drive_jepa",
                   momentum: Any = None, topics: dict[str, tuple[str, str]] | None = None,
                   marker_lifetime: float = 0.5, line_width: float = 0.15) -> None:
        """The four planner outputs of one :class:`~drive_jepa_core.runtime.planner.PlanResult` at ``stamp_ns``.

        Args:
            plan: PlanResult (proposals ``(Np, M, 3)`` ego frame, scores, selection bookkeeping, ``ego_state``).
            frame_id: ``"base_link"`` (or any ego frame name) writes ego-frame paths; anything else places them in
                that world frame with the plan's odometry pose ``plan.ego_state[:3]``.
            momentum: the selector's :class:`~drive_jepa_core.selection.MomentumConfig` (reported in SelectionState;
                default: the reference 7/8 weight and 0.55 s gap).
        """
        from drive_jepa_core.selection import MomentumConfig

        topics = topics or OUTPUT_TOPICS
        momentum = momentum if momentum is not None else MomentumConfig()
        ego_frame = frame_id == BASE_FRAME
        origin = np.zeros(3) if ego_frame else np.asarray(plan.ego_state[:3], dtype=np.float64)
        header = _header(stamp_ns, frame_id)
        proposals = np.asarray(plan.proposals, dtype=np.float64)
        world = local_to_global(proposals, origin)  # (Np, M, 3)
        selected = int(plan.selected_index)
        paths = [_path_message(world[i], header) for i in range(len(world))]

        # No published float is NaN (CandidateTrajectory.msg / SelectionState.msg, as the node): a comfort score that
        # does not exist (no momentum this cycle) is -1.0, a missing interval 0.0.
        comfort = np.asarray(plan.comfort_scores, dtype=np.float32)
        comfort = np.where(np.isfinite(comfort), comfort, np.float32(COMFORT_NOT_AVAILABLE)).astype(np.float32)
        interval = float(plan.interval) if math.isfinite(float(plan.interval)) else 0.0
        state = make_message(
            SELECTION_STATE, header=header, momentum_valid=bool(plan.valid),
            reset_reason=int(_RESET_CODES.get(str(getattr(plan.reset_reason, "value", plan.reset_reason)), 0)),
            interval=interval, previous_index=int(plan.previous_index), selected_index=selected,
            momentum_weight=float(momentum.comfort_weight), max_gap=float(momentum.max_gap),
            comfort_scores=comfort.copy())
        candidates = [make_message("drive_jepa_msgs/msg/CandidateTrajectory", path=paths[i],
                                   learned_score=float(plan.scores[i]), comfort_score=float(comfort[i]),
                                   final_score=float(plan.final_scores[i]), time_step=float(TRAJ_DT), index=i)
                      for i in range(len(paths))]
        cands = make_message(CANDIDATES, header=header, generator_name=str(generator_name),
                             generator_id=self.generator_id.copy(), candidates=candidates, selected_index=selected,
                             selection=state)
        self.write(topics["path"][0], PATH, paths[selected], stamp_ns)
        self.write(topics["candidates"][0], CANDIDATES, cands, stamp_ns)
        self.write(topics["selection_state"][0], SELECTION_STATE, state, stamp_ns)
        self.write(topics["markers"][0], MARKER_ARRAY,
                   _markers_message(world, np.asarray(plan.final_scores), selected, header, marker_lifetime,
                                    line_width), stamp_ns)


def _encode_raw(frame: np.ndarray, encoding: str) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    enc = encoding.lower()
    if enc == "rgb8":
        return frame
    if enc == "bgr8":
        return frame[:, :, ::-1]
    if enc == "rgba8":
        return np.concatenate([frame, np.full((*frame.shape[:2], 1), 255, np.uint8)], axis=2)
    if enc == "bgra8":
        return np.concatenate([frame[:, :, ::-1], np.full((*frame.shape[:2], 1), 255, np.uint8)], axis=2)
    if enc == "mono8":
        grey = np.round(frame.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        return np.clip(grey, 0, 255).astype(np.uint8)
    raise ValueError(f"cannot encode frames as {encoding!r}; pass raw data instead")


def _path_message(poses: np.ndarray, header: Any) -> Any:
    stamped = [make_message("geometry_msgs/msg/PoseStamped", header=header, pose=_pose(x, y, h))
               for x, y, h in poses]
    return make_message(PATH, header=header, poses=stamped)


def _markers_message(world: np.ndarray, scores: np.ndarray, selected: int, header: Any, lifetime: float,
                     line_width: float) -> Any:
    """One LINE_STRIP per candidate (grey → green by final score) and the selected one twice as wide in red."""
    delete_all = 3  # visualization_msgs/Marker.DELETEALL: drop the previous cycle's lines first
    markers = [make_message("visualization_msgs/msg/Marker", header=header, ns="candidates", id=0, action=delete_all)]
    lo, hi = float(np.min(scores)), float(np.max(scores))
    for i, traj in enumerate(world):
        s = 0.0 if hi <= lo else (float(scores[i]) - lo) / (hi - lo)
        markers.append(_line_marker(header, "candidates", i, traj, line_width, _rgba(0.6 - 0.5 * s, 0.6 + 0.3 * s,
                                                                                     0.6 - 0.5 * s, 0.6),
                                    lifetime))
    markers.append(_line_marker(header, "selected", 0, world[selected], 2.0 * line_width, _rgba(0.9, 0.1, 0.1, 1.0),
                                lifetime))
    return make_message(MARKER_ARRAY, markers=markers)


def _line_marker(header: Any, ns: str, mid: int, traj: np.ndarray, width: float, color: Any, lifetime: float) -> Any:
    points = [make_message("geometry_msgs/msg/Point", x=float(x), y=float(y), z=0.0) for x, y in traj[:, :2]]
    return make_message("visualization_msgs/msg/Marker", header=header, ns=ns, id=int(mid), type=4, action=0,
                        pose=_pose(0.0, 0.0, 0.0), scale=make_message("geometry_msgs/msg/Vector3", x=float(width)),
                        color=color, lifetime=_duration(lifetime), points=points)


# --------------------------------------------------------------------------------------------------------------------
# Synthetic bags from the built-in world
# --------------------------------------------------------------------------------------------------------------------
SYNTHETIC_START_NS = 1_700_000_000 * _NS  # bags start at a realistic Unix time (exercises float stamp precision)
IMAGE_LOG_DELAY_NS = 5_000_000  # images are logged 5 ms after their stamp (camera transport latency): odometry at the
# same stamp is always read first, as on a vehicle
CAMERA_INFO_LOG_DELAY_NS = 4_000_000
DEFAULT_ODOMETRY_RATE = 50.0  # Hz, a typical localization output rate (Autoware kinematic_state: 50 Hz)


@dataclass
class SyntheticBag:
    """What :func:`write_synthetic_bag` wrote: ``image_stamps_ns`` (F,), the world log, the camera, topics."""

    path: Path
    storage: str
    topics: dict[str, str]
    image_stamps_ns: np.ndarray
    odometry_stamps_ns: np.ndarray
    camera: CameraCalibration
    log: Any
    commands: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def write_synthetic_bag(out: str | Path, seed: int = 0, seconds: float = 10.0, storage: str = "mcap",
                        image_format: str = "raw", width: int = DEFAULT_IMAGE_WIDTH,
                        height: int = DEFAULT_IMAGE_HEIGHT, odometry_rate: float = DEFAULT_ODOMETRY_RATE,
                        start_ns: int = SYNTHETIC_START_NS) -> SyntheticBag:
    """Drive the built-in world (an expert-driven :class:`~drive_jepa_core.world.log.WorldSim` episode) and record
    it as a rosbag2.

    Topics (:data:`SYNTHETIC_TOPICS`): the front camera at 10 Hz (the world's log rate) rendered by
    :class:`~drive_jepa_core.world.render.CameraRenderer` as raw rgb8 ``Image`` or ``CompressedImage`` jpeg;
    ``camera_info`` with every frame; odometry (frame ``odom``, child ``base_link`` = rear axle) at
    ``odometry_rate`` Hz, linearly interpolated between the 10 Hz log states (heading unwrapped); the route's driving
    command at 10 Hz.

    Args:
        out: bag directory to create (must not exist).
        seed: world seed (map, traffic, appearance).
        seconds: recorded duration (frames at 0, 0.1, ..., seconds).
        storage: ``"mcap"`` or ``"sqlite3"``.
        image_format: ``"raw"`` or ``"jpeg"``.
        width, height: image size (small images keep tests fast).
        odometry_rate: Hz; must be a multiple of 10 so odometry samples fall on the camera stamps.
    """
    from drive_jepa_core.world.log import WorldConfig, simulate_log
    from drive_jepa_core.world.render import default_front_camera
    from drive_jepa_core.world.scenes import command_at, make_renderer, render_frames

    if image_format not in ("raw", "jpeg"):
        raise ValueError(f"image_format must be 'raw' or 'jpeg', got {image_format!r}")
    if not (math.isfinite(seconds) and seconds >= 1.0):
        raise ValueError(f"seconds must be >= 1, got {seconds}")
    per_step = odometry_rate * SIM_DT
    if odometry_rate <= 0 or abs(per_step - round(per_step)) > 1e-9:
        raise ValueError(f"odometry_rate must be a positive multiple of {1 / SIM_DT:g} Hz, got {odometry_rate}")
    log = simulate_log(int(seed), WorldConfig(duration=float(seconds)))
    camera = default_front_camera(int(width), int(height))
    renderer = make_renderer(log, camera)
    times = np.asarray(log.timestamps, dtype=np.float64)
    ego = log.ego_states
    heading = np.unwrap(ego[:, 2])
    yaw_rate = np.gradient(heading, times)
    odo_t = np.round(np.arange(0, int(round(times[-1] * odometry_rate)) + 1) / odometry_rate, 9)
    odo = np.stack([np.interp(odo_t, times, ego[:, 0]), np.interp(odo_t, times, ego[:, 1]),
                    np.interp(odo_t, times, heading), np.interp(odo_t, times, ego[:, 3]),
                    np.interp(odo_t, times, ego[:, 4]), np.interp(odo_t, times, yaw_rate)], axis=-1)
    commands = np.array([command_at(log.road_map, log.route, int(log.ego_lane_ids[k]), ego[k, :2], float(ego[k, 3]))
                         for k in range(log.num_steps)], dtype=np.int64)
    to_ns = np.vectorize(lambda t: int(start_ns) + int(round(float(t) * _NS)), otypes=[np.int64])
    img_ns, odo_ns = to_ns(times), to_ns(odo_t)
    topic_image = SYNTHETIC_TOPICS["image" if image_format == "raw" else "compressed"]
    out = Path(out)
    with BagWriter(out, storage) as bag:
        bag.set_custom_data("drive_jepa.synthetic_seed", str(int(seed)))
        j = 0
        for k in range(log.num_steps):
            while j < len(odo_t) and odo_ns[j] <= img_ns[k]:  # odometry up to and including this camera stamp
                bag.write_odometry(SYNTHETIC_TOPICS["odometry"], int(odo_ns[j]), odo[j, :3], odo[j, 3:5], odo[j, 5])
                j += 1
            bag.write_command(SYNTHETIC_TOPICS["command"], int(img_ns[k]), int(commands[k]))
            frame = render_frames(log, [k], renderer)[k]
            bag.write_camera_info(SYNTHETIC_TOPICS["camera_info"], int(img_ns[k]), camera,
                                  log_time_ns=int(img_ns[k]) + CAMERA_INFO_LOG_DELAY_NS)
            if image_format == "raw":
                bag.write_image(topic_image, int(img_ns[k]), frame, log_time_ns=int(img_ns[k]) + IMAGE_LOG_DELAY_NS)
            else:
                bag.write_compressed(topic_image, int(img_ns[k]), frame,
                                     log_time_ns=int(img_ns[k]) + IMAGE_LOG_DELAY_NS)
        while j < len(odo_t):
            bag.write_odometry(SYNTHETIC_TOPICS["odometry"], int(odo_ns[j]), odo[j, :3], odo[j, 3:5], odo[j, 5])
            j += 1
    topics = {"camera": topic_image, "camera_info": SYNTHETIC_TOPICS["camera_info"],
              "odometry": SYNTHETIC_TOPICS["odometry"], "command": SYNTHETIC_TOPICS["command"]}
    return SyntheticBag(path=out, storage=storage, topics=topics, image_stamps_ns=img_ns, odometry_stamps_ns=odo_ns,
                        camera=camera, log=log, commands=commands)
