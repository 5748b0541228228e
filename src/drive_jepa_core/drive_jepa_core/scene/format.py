"""The scene format: one versioned, documented container for everything planning and scoring need.

Every producer (the built-in world, rosbag import, later NAVSIM) writes it; everything that trains or evaluates reads
it. A scene is one planning instant ``t0`` of one log with its past and future.

On disk a scene is a single ``<token>.npz`` (numpy, loaded with ``allow_pickle=False``: nothing is unpickled):

* ``meta_json``: UTF-8 JSON (as uint8) with ``format_version``, ``token``, ``log_name``, ``split``, ``source``,
  ``command``, ``route_roadblock_ids``, ``camera`` calibration, ``extra``.
* fixed-shape arrays named exactly as the :class:`Scene` fields below;
* ragged polylines as ``<name>_points (P, 2)`` + ``<name>_splits (n + 1,)`` offsets;
* camera frames as PNG bytes ``camera_png_<i>`` (lossless: the model sees what the renderer drew); a scene may be
  saved without frames (``has_frames`` false in the metadata), then it loads with ``camera_frames=None``.

Frames and units (NAVSIM/nuPlan): world coordinates in metres, heading in radians CCW, time in seconds relative to
``t0`` (``timestamps[t0_index] == 0``). Ego reference point = rear-axle centre. Timeline at 10 Hz.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from drive_jepa_core.constants import (
    COMMAND_NAMES,
    NUM_TRAJ_POSES,
    SIM_DT,
    TRAJ_DT,
)
from drive_jepa_core.geometry import global_to_local

SCENE_FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class SceneFormatError(ValueError):
    """A scene file is missing a field, has a wrong shape/dtype, or an unknown version."""


class MapLayer(IntEnum):
    """Map polygon layers NAVSIM scores against (navsim_metrics.md §3)."""

    ROADBLOCK = 0
    LANE = 1
    LANE_CONNECTOR = 2
    INTERSECTION = 3
    CARPARK_AREA = 4


class AgentType(IntEnum):
    """nuPlan tracked-object types. VEHICLE/PEDESTRIAN/BICYCLE are dynamic agents; the rest are static."""

    VEHICLE = 0
    PEDESTRIAN = 1
    BICYCLE = 2
    TRAFFIC_CONE = 3
    BARRIER = 4
    CZONE_SIGN = 5
    GENERIC_OBJECT = 6


DYNAMIC_AGENT_TYPES = (AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.BICYCLE)


class TrafficLightStatus(IntEnum):
    """nuPlan's order."""

    GREEN = 0
    YELLOW = 1
    RED = 2
    UNKNOWN = 3


# Columns of Scene.ego_states / Scene.agent_states
EGO_STATE_FIELDS = ("x", "y", "heading", "vx", "vy", "ax", "ay")  # vx..ay: body frame at the rear axle
AGENT_STATE_FIELDS = ("x", "y", "heading", "vx", "vy")  # box centre; vx, vy in the world frame


@dataclass
class CameraCalibration:
    """Pinhole camera. Optical frame is OpenCV's (x right, y down, z forward).

    Attributes:
        intrinsics: ``(3, 3)`` K for an image of ``width`` x ``height`` pixels.
        sensor2ego: ``(4, 4)`` transform from the optical frame to the ego rear-axle frame (x fwd, y left, z up).
    """

    name: str
    width: int
    height: int
    intrinsics: np.ndarray
    sensor2ego: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "width": int(self.width),
            "height": int(self.height),
            "intrinsics": np.asarray(self.intrinsics, dtype=float).tolist(),
            "sensor2ego": np.asarray(self.sensor2ego, dtype=float).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CameraCalibration:
        for key in ("name", "width", "height", "intrinsics", "sensor2ego"):
            if key not in data:
                raise SceneFormatError(f"camera calibration is missing field '{key}'")
        calib = cls(
            name=str(data["name"]),
            width=int(data["width"]),
            height=int(data["height"]),
            intrinsics=np.asarray(data["intrinsics"], dtype=np.float64),
            sensor2ego=np.asarray(data["sensor2ego"], dtype=np.float64),
        )
        _check_shape("camera.intrinsics", calib.intrinsics, (3, 3))
        _check_shape("camera.sensor2ego", calib.sensor2ego, (4, 4))
        return calib

    def ego2image(self) -> np.ndarray:
        """``(3, 4)`` projection from ego rear-axle coordinates to homogeneous pixels: ``K [R|t]`` of ego2sensor."""
        return self.intrinsics @ np.linalg.inv(self.sensor2ego)[:3, :]


@dataclass
class Scene:
    """One planning instant with its past and future. Shapes: T timeline steps (10 Hz), A agents, L lights,
    F camera frames, N_p map polygons, N_l lanes."""

    token: str
    log_name: str
    split: str
    source: str  # "synthetic" | "rosbag" | …
    command: int  # index into COMMAND_NAMES
    timestamps: np.ndarray  # (T,) float64 seconds, relative to t0
    t0_index: int
    ego_states: np.ndarray  # (T, 7) EGO_STATE_FIELDS
    # --- agents (may be empty: A = 0) ---
    agent_ids: np.ndarray  # (A,) int64
    agent_types: np.ndarray  # (A,) int64 AgentType
    agent_sizes: np.ndarray  # (A, 3) length, width, height
    agent_states: np.ndarray  # (T, A, 5) AGENT_STATE_FIELDS
    agent_valid: np.ndarray  # (T, A) bool
    # --- map (may be empty for rosbag imports) ---
    map_polygon_ids: np.ndarray  # (N_p,) int64
    map_polygon_layers: np.ndarray  # (N_p,) int64 MapLayer
    map_polygons: list[np.ndarray]  # N_p exteriors, each (K, 2), not closed (first != last)
    lane_ids: np.ndarray  # (N_l,) int64; a lane's polygon has the same id in map_polygon_ids
    lane_roadblock_ids: np.ndarray  # (N_l,) int64
    lane_is_connector: np.ndarray  # (N_l,) bool
    lane_speed_limits: np.ndarray  # (N_l,) float64 m/s, NaN = unknown
    lane_centerlines: list[np.ndarray]  # N_l polylines (K, 2) in driving direction
    lane_left_boundaries: list[np.ndarray]  # N_l polylines (K, 2)
    lane_right_boundaries: list[np.ndarray]  # N_l polylines (K, 2)
    lane_successors: np.ndarray  # (E, 2) int64 pairs (lane_id, successor_lane_id)
    route_roadblock_ids: list[int]  # ordered along the route
    # --- traffic lights on lane connectors ---
    traffic_light_lane_ids: np.ndarray  # (L,) int64 lane-connector ids
    traffic_light_status: np.ndarray  # (T, L) int64 TrafficLightStatus
    # --- camera ---
    camera: CameraCalibration | None
    camera_timestamps: np.ndarray  # (F,) float64 seconds relative to t0
    camera_frames: np.ndarray | None  # (F, H, W, 3) uint8 RGB, None when loaded without frames
    extra: dict[str, Any] = field(default_factory=dict)

    # ---------------------------------------------------------------------------------------------------------------
    # Convenience views
    # ---------------------------------------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def has_map(self) -> bool:
        return len(self.map_polygons) > 0

    @property
    def command_name(self) -> str:
        return COMMAND_NAMES[self.command]

    @property
    def ego_pose(self) -> np.ndarray:
        """``(3,)`` world rear-axle pose at t0."""
        return self.ego_states[self.t0_index, :3].copy()

    def step_index(self, t: float) -> int:
        """Timeline index of time ``t`` (seconds from t0); raises if outside the scene."""
        idx = self.t0_index + int(round(t / SIM_DT))
        if not 0 <= idx < self.num_steps:
            raise IndexError(f"t={t:+.2f}s is outside scene {self.token} "
                             f"[{self.timestamps[0]:+.2f}, {self.timestamps[-1]:+.2f}]s")
        return idx

    def future_trajectory(self, num_poses: int = NUM_TRAJ_POSES, dt: float = TRAJ_DT) -> np.ndarray:
        """Logged ("human") future ``(num_poses, 3)`` at ``dt`` spacing in the t0 rear-axle frame."""
        idx = [self.step_index(dt * (k + 1)) for k in range(num_poses)]
        return global_to_local(self.ego_states[idx, :3], self.ego_pose)

    def lane_index(self) -> dict[int, int]:
        """Lane id -> row in the lane arrays."""
        return {int(lid): i for i, lid in enumerate(self.lane_ids)}

    def route_lane_ids(self) -> np.ndarray:
        """Ids of all lanes/lane connectors belonging to route roadblocks."""
        on_route = np.isin(self.lane_roadblock_ids, np.asarray(self.route_roadblock_ids, dtype=np.int64))
        return self.lane_ids[on_route]

    def frame_at(self, t: float, tolerance: float = 0.051) -> np.ndarray:
        """Camera frame ``(H, W, 3)`` whose stamp is closest to ``t`` (within ``tolerance`` seconds)."""
        if self.camera_frames is None or len(self.camera_timestamps) == 0:
            raise SceneFormatError(f"scene {self.token} was loaded without camera frames")
        i = int(np.argmin(np.abs(self.camera_timestamps - t)))
        if abs(self.camera_timestamps[i] - t) > tolerance:
            raise IndexError(f"scene {self.token} has no camera frame within {tolerance}s of t={t:+.2f}s")
        return self.camera_frames[i]

    def validate(self) -> None:
        """Check shapes and dtypes; raise SceneFormatError naming the first bad field."""
        T = self.num_steps
        A = int(self.agent_ids.shape[0])
        L = int(self.traffic_light_lane_ids.shape[0])
        n_poly = int(self.map_polygon_ids.shape[0])
        n_lane = int(self.lane_ids.shape[0])
        _check_shape("timestamps", self.timestamps, (T,))
        if not 0 <= self.t0_index < T or abs(float(self.timestamps[self.t0_index])) > 1e-6:
            raise SceneFormatError(f"t0_index={self.t0_index} does not point at timestamp 0")
        if not 0 <= self.command < len(COMMAND_NAMES):
            raise SceneFormatError(f"command={self.command} is not one of 0..{len(COMMAND_NAMES) - 1}")
        _check_shape("ego_states", self.ego_states, (T, len(EGO_STATE_FIELDS)))
        _check_shape("agent_types", self.agent_types, (A,))
        _check_shape("agent_sizes", self.agent_sizes, (A, 3))
        _check_shape("agent_states", self.agent_states, (T, A, len(AGENT_STATE_FIELDS)))
        _check_shape("agent_valid", self.agent_valid, (T, A))
        _check_shape("map_polygon_layers", self.map_polygon_layers, (n_poly,))
        _check_len("map_polygons", self.map_polygons, n_poly)
        for name in ("lane_roadblock_ids", "lane_is_connector", "lane_speed_limits"):
            _check_shape(name, getattr(self, name), (n_lane,))
        for name in ("lane_centerlines", "lane_left_boundaries", "lane_right_boundaries"):
            _check_len(name, getattr(self, name), n_lane)
        if self.lane_successors.ndim != 2 or self.lane_successors.shape[1] != 2:
            raise SceneFormatError(f"field 'lane_successors' must have shape (E, 2), got {self.lane_successors.shape}")
        _check_shape("traffic_light_status", self.traffic_light_status, (T, L))
        if not np.all(np.isfinite(self.ego_states)):
            raise SceneFormatError("field 'ego_states' contains NaN/inf")
        if self.camera_frames is not None:
            F = int(self.camera_timestamps.shape[0])
            if self.camera_frames.ndim != 4 or self.camera_frames.shape[0] != F or self.camera_frames.shape[3] != 3:
                raise SceneFormatError(
                    f"field 'camera_frames' must have shape ({F}, H, W, 3), got {self.camera_frames.shape}")
            if self.camera_frames.dtype != np.uint8:
                raise SceneFormatError(f"field 'camera_frames' must be uint8, got {self.camera_frames.dtype}")
            if self.camera is not None and self.camera_frames.shape[1:3] != (self.camera.height, self.camera.width):
                raise SceneFormatError(
                    f"field 'camera_frames' is {self.camera_frames.shape[2]}x{self.camera_frames.shape[1]} but the "
                    f"calibration says {self.camera.width}x{self.camera.height}")


# -------------------------------------------------------------------------------------------------------------------
# Serialization
# -------------------------------------------------------------------------------------------------------------------
_ARRAY_FIELDS: dict[str, Any] = {
    "timestamps": np.float64,
    "ego_states": np.float64,
    "agent_ids": np.int64,
    "agent_types": np.int64,
    "agent_sizes": np.float64,
    "agent_states": np.float64,
    "agent_valid": bool,
    "map_polygon_ids": np.int64,
    "map_polygon_layers": np.int64,
    "lane_ids": np.int64,
    "lane_roadblock_ids": np.int64,
    "lane_is_connector": bool,
    "lane_speed_limits": np.float64,
    "lane_successors": np.int64,
    "traffic_light_lane_ids": np.int64,
    "traffic_light_status": np.int64,
    "camera_timestamps": np.float64,
}
_RAGGED_FIELDS = ("map_polygons", "lane_centerlines", "lane_left_boundaries", "lane_right_boundaries")
_META_FIELDS = ("token", "log_name", "split", "source", "command", "t0_index", "route_roadblock_ids")


def save_scene(scene: Scene, path: str | Path, png_cache: dict[tuple[str, int], np.ndarray] | None = None) -> Path:
    """Write ``scene`` to ``path`` (``.npz`` appended if missing). Validates first.

    ``png_cache``: optional dict shared by the scenes of one log; a frame already encoded for an earlier scene (same
    ``log_name`` and absolute log time ``t0 + camera_timestamps[i]``, with ``extra["log_time"]`` = the scene's t0 in
    its log) is reused instead of encoded again. Scenes without ``log_time`` are always encoded.
    """
    scene.validate()
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    meta = {name: getattr(scene, name) for name in _META_FIELDS}
    meta["route_roadblock_ids"] = [int(r) for r in scene.route_roadblock_ids]
    meta["format_version"] = SCENE_FORMAT_VERSION
    meta["camera"] = scene.camera.to_json() if scene.camera is not None else None
    meta["extra"] = scene.extra
    meta["has_frames"] = scene.camera_frames is not None
    arrays: dict[str, np.ndarray] = {
        "meta_json": np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
    }
    for name, dtype in _ARRAY_FIELDS.items():
        arrays[name] = np.ascontiguousarray(getattr(scene, name), dtype=dtype)
    for name in _RAGGED_FIELDS:
        points, splits = _pack_ragged(getattr(scene, name))
        arrays[f"{name}_points"], arrays[f"{name}_splits"] = points, splits
    if scene.camera_frames is not None:
        log_time = scene.extra.get("log_time") if png_cache is not None else None
        for i, frame in enumerate(scene.camera_frames):
            key = None
            if isinstance(log_time, (int, float)):
                # frames are on a 10 Hz grid: key by the log step so float noise cannot split one frame in two
                key = (scene.log_name, int(round((float(log_time) + float(scene.camera_timestamps[i])) / SIM_DT)))
            encoded = png_cache.get(key) if key is not None else None
            if encoded is None:
                encoded = _encode_png(frame, f"camera frame {i} of scene {scene.token}")
                if key is not None:
                    png_cache[key] = encoded
            arrays[f"camera_png_{i}"] = encoded
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)  # atomic: a crashed writer never leaves a half scene behind
    return path


def _encode_png(frame: np.ndarray, what: str) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".png", frame[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise SceneFormatError(f"could not PNG-encode {what}")
    return buf.reshape(-1)


def load_scene(path: str | Path, load_frames: bool = True) -> Scene:
    """Read a scene written by :func:`save_scene`; errors name the file and the offending field."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return _scene_from_npz(data, load_frames)
    except SceneFormatError as exc:
        raise SceneFormatError(f"{path}: {exc}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise SceneFormatError(f"{path}: not a readable scene file ({exc})") from exc


def _scene_from_npz(data: Any, load_frames: bool) -> Scene:
    import cv2

    files = set(data.files)
    if "meta_json" not in files:
        raise SceneFormatError("missing field 'meta_json'")
    meta = json.loads(bytes(data["meta_json"]).decode("utf-8"))
    version = meta.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise SceneFormatError(f"unknown scene format_version {version!r} (supported: {SUPPORTED_VERSIONS})")
    for name in _META_FIELDS:
        if name not in meta:
            raise SceneFormatError(f"missing field '{name}' in meta_json")
    kwargs: dict[str, Any] = {name: meta[name] for name in _META_FIELDS}
    kwargs["command"] = int(kwargs["command"])
    kwargs["t0_index"] = int(kwargs["t0_index"])
    kwargs["camera"] = CameraCalibration.from_json(meta["camera"]) if meta.get("camera") else None
    kwargs["extra"] = meta.get("extra", {})
    for name, dtype in _ARRAY_FIELDS.items():
        if name not in files:
            raise SceneFormatError(f"missing field '{name}'")
        arr = data[name]
        if arr.dtype != np.dtype(dtype):
            raise SceneFormatError(f"field '{name}' has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        kwargs[name] = arr
    for name in _RAGGED_FIELDS:
        for suffix in ("_points", "_splits"):
            if name + suffix not in files:
                raise SceneFormatError(f"missing field '{name}{suffix}'")
        kwargs[name] = _unpack_ragged(name, data[f"{name}_points"], data[f"{name}_splits"])
    frames = None
    if load_frames and meta.get("has_frames", True):
        n_frames = int(kwargs["camera_timestamps"].shape[0])
        decoded = []
        for i in range(n_frames):
            key = f"camera_png_{i}"
            if key not in files:
                raise SceneFormatError(f"missing field '{key}'")
            img = cv2.imdecode(data[key], cv2.IMREAD_COLOR)
            if img is None:
                raise SceneFormatError(f"field '{key}' is not a decodable PNG")
            decoded.append(img[:, :, ::-1])
        if decoded:
            frames = np.ascontiguousarray(np.stack(decoded))
        else:
            frames = np.zeros((0, 0, 0, 3), dtype=np.uint8) if kwargs["camera"] is None else np.zeros(
                (0, kwargs["camera"].height, kwargs["camera"].width, 3), dtype=np.uint8)
    kwargs["camera_frames"] = frames
    scene = Scene(**kwargs)
    scene.validate()
    return scene


def _pack_ragged(items: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    splits = np.zeros(len(items) + 1, dtype=np.int64)
    for i, item in enumerate(items):
        splits[i + 1] = splits[i] + len(item)
    points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in items]) if items else np.zeros(
        (0, 2))
    return points.astype(np.float64), splits


def _unpack_ragged(name: str, points: np.ndarray, splits: np.ndarray) -> list[np.ndarray]:
    if points.ndim != 2 or points.shape[1] != 2:
        raise SceneFormatError(f"field '{name}_points' must have shape (P, 2), got {points.shape}")
    if splits.ndim != 1 or len(splits) < 1 or splits[0] != 0 or splits[-1] != len(points) or np.any(
            np.diff(splits) < 0):
        raise SceneFormatError(f"field '{name}_splits' is not a valid offset array for {len(points)} points")
    return [points[splits[i]:splits[i + 1]] for i in range(len(splits) - 1)]


def _check_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    arr = np.asarray(arr)
    if arr.shape != shape:
        raise SceneFormatError(f"field '{name}' must have shape {shape}, got {arr.shape}")


def _check_len(name: str, items: list, n: int) -> None:
    if len(items) != n:
        raise SceneFormatError(f"field '{name}' must have {n} entries, got {len(items)}")


def list_scenes(root: str | Path) -> list[Path]:
    """All scene files under ``root`` (a split directory or a single file), sorted for determinism."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.exists():
        raise FileNotFoundError(f"scene directory {root} does not exist")
    return sorted(root.rglob("*.npz"))


def empty_map_fields() -> dict[str, Any]:
    """Keyword arguments for a Scene without a map (e.g. imported from a rosbag)."""
    return dict(
        map_polygon_ids=np.zeros(0, np.int64), map_polygon_layers=np.zeros(0, np.int64), map_polygons=[],
        lane_ids=np.zeros(0, np.int64), lane_roadblock_ids=np.zeros(0, np.int64),
        lane_is_connector=np.zeros(0, bool), lane_speed_limits=np.zeros(0), lane_centerlines=[],
        lane_left_boundaries=[], lane_right_boundaries=[], lane_successors=np.zeros((0, 2), np.int64),
        route_roadblock_ids=[],
    )


def empty_agent_fields(num_steps: int) -> dict[str, Any]:
    """Keyword arguments for a Scene without agents or traffic lights."""
    return dict(
        agent_ids=np.zeros(0, np.int64), agent_types=np.zeros(0, np.int64), agent_sizes=np.zeros((0, 3)),
        agent_states=np.zeros((num_steps, 0, 5)), agent_valid=np.zeros((num_steps, 0), bool),
        traffic_light_lane_ids=np.zeros(0, np.int64), traffic_light_status=np.zeros((num_steps, 0), np.int64),
    )


__all__ = [
    "AGENT_STATE_FIELDS", "AgentType", "CameraCalibration", "DYNAMIC_AGENT_TYPES", "EGO_STATE_FIELDS", "MapLayer",
    "SCENE_FORMAT_VERSION", "Scene", "SceneFormatError", "TrafficLightStatus", "empty_agent_fields",
    "empty_map_fields", "list_scenes", "load_scene", "save_scene",
]
