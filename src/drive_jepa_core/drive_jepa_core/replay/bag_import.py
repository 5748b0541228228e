"""``drive-jepa bag import``: camera + odometry recordings → scene files (:mod:`drive_jepa_core.scene.format`).

One scene per planning instant ``t0`` (a camera stamp, every ``stride`` seconds where the data allow).

Anchors are the camera stamps nearest to ``first stamp + k * stride``; an anchor is skipped (and counted by reason)
when the odometry does not cover its window or a keyframe is missing.

* timeline at 10 Hz from ``t0 - 1.5 s`` to ``t0 + 5.0 s`` (the built-in world's scene window): pose and body velocity
  linearly interpolated from the odometry (yaw unwrapped), body acceleration from the same finite-difference
  estimator the runtime pairing uses (:func:`~drive_jepa_core.replay.pairing.estimate_acceleration`, applied at the
  odometry sample nearest each timeline step), so the t0 ego status a model trains on is computed like the one it sees
  on the vehicle;
* camera frames at 2 Hz from -1.5 s to +4.0 s (12 frames; each the nearest image within ``frame_tolerance`` of the
  nominal time, its true offset stored in ``camera_timestamps``);
* the driving command last received at or before ``t0`` (straight without one);
* camera calibration from ``camera_info`` (intrinsics) with the built-in world's front camera mount as extrinsics;
* no map, agents or traffic lights (empty fields).

Without a map the simulator-based scores and pseudo-teachers cannot be computed: such scenes train only the imitation
terms (the human-trajectory losses); mix them with generated scenes for the scoring heads.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drive_jepa_core.constants import (
    COMMAND_NAMES,
    COMMAND_STRAIGHT,
    HISTORY_SECONDS,
    NUM_TRAJ_POSES,
    SCENE_FUTURE_SECONDS,
    SIM_DT,
    TRAJ_DT,
)
from drive_jepa_core.preprocess import resize_pixel_transform
from drive_jepa_core.replay.bag_io import (
    BagReader,
    CameraInfoEvent,
    CommandEvent,
    ImageEvent,
    OdometryEvent,
    OdometryTrack,
    ns_to_seconds,
)
from drive_jepa_core.replay.pairing import OdometrySample, PairingConfig, estimate_acceleration
from drive_jepa_core.scene.format import CameraCalibration, Scene, empty_agent_fields, empty_map_fields, save_scene

__all__ = ["CAMERA_OFFSETS", "ImportConfig", "SOURCE", "import_bag"]

SOURCE = "rosbag"
CAMERA_PERIOD = 0.5  # s, 2 Hz keyframes as in NAVSIM/OpenScene and the built-in world's scenes
CAMERA_OFFSETS = np.round(np.arange(-HISTORY_SECONDS, NUM_TRAJ_POSES * TRAJ_DT + 1e-9, CAMERA_PERIOD), 6)  # (12,)
SKIP_REASONS = ("no_odometry_coverage", "missing_camera_frame", "undecodable_camera_frame")


@dataclass(frozen=True)
class ImportConfig:
    """How scenes are cut from a bag.

    Attributes:
        stride: seconds between consecutive scene anchors t0 (at least; the next camera stamp after it is used).
        frame_tolerance: seconds; a keyframe is the nearest image within this of its nominal time. 0.05 s = half a
            10 Hz camera period, and inside the 0.051 s that ``Scene.frame_at`` (training) accepts.
        odometry_max_gap: seconds; odometry must cover the scene window with samples at most this far apart
            (interpolating across longer gaps would invent the trajectory).
        acceleration_window: seconds, the runtime pairing's finite-difference window (PairingConfig default).
        split: the scenes' ``split`` field.
        width: downscale frames to this width (height keeps the aspect ratio; intrinsics scaled); None = as recorded.
        default_command: command before any is received or when UNKNOWN.
    """

    stride: float = 1.0
    frame_tolerance: float = 0.05
    odometry_max_gap: float = 0.25
    acceleration_window: float = PairingConfig().acceleration_window
    split: str = "train"
    width: int | None = None
    default_command: int = COMMAND_STRAIGHT

    def __post_init__(self) -> None:
        if not self.stride > 0:
            raise ValueError(f"stride must be > 0, got {self.stride}")
        if not 0 < self.frame_tolerance < CAMERA_PERIOD / 2:
            raise ValueError(f"frame_tolerance must be in (0, {CAMERA_PERIOD / 2}), got {self.frame_tolerance}")
        if not self.odometry_max_gap > 0:
            raise ValueError(f"odometry_max_gap must be > 0, got {self.odometry_max_gap}")
        if self.width is not None and self.width < 16:
            raise ValueError(f"width must be >= 16 pixels, got {self.width}")
        if not 0 <= self.default_command < len(COMMAND_NAMES):
            raise ValueError(f"default_command must be 0, 1 or 2, got {self.default_command}")


def _log_name(bag: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", bag.name if bag.is_dir() else bag.stem).strip("_")
    return name or "rosbag"


def _nearest(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of ``sorted_values`` (N >= 1) for each query."""
    idx = np.clip(np.searchsorted(sorted_values, queries), 1, max(len(sorted_values) - 1, 1))
    if len(sorted_values) == 1:
        return np.zeros(len(queries), dtype=np.int64)
    left = sorted_values[idx - 1]
    right = sorted_values[idx]
    return np.where(np.abs(queries - left) <= np.abs(right - queries), idx - 1, idx)


def _resize(frame: np.ndarray, width: int | None) -> np.ndarray:
    import cv2

    if width is None or frame.shape[1] == width:
        return frame
    height = max(1, int(round(frame.shape[0] * width / frame.shape[1])))
    interp = cv2.INTER_AREA if width < frame.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(frame, (width, height), interpolation=interp)


def _calibration(info: CameraInfoEvent | None, src_w: int, src_h: int, out_w: int, out_h: int) -> CameraCalibration:
    """camera_info intrinsics (or the built-in world camera) for the source size, scaled to the stored size."""
    from drive_jepa_core.world.render import default_front_camera

    calib = info.calibration() if info is not None else None
    if calib is None or (calib.width, calib.height) != (src_w, src_h):
        calib = default_front_camera(src_w, src_h)
    if (out_w, out_h) == (src_w, src_h):
        return calib
    to_stored = resize_pixel_transform((src_w, src_h), (out_w, out_h))  # the same pixel map as the cv2.resize
    return CameraCalibration(name=calib.name, width=out_w, height=out_h, intrinsics=to_stored @ calib.intrinsics,
                             sensor2ego=calib.sensor2ego.copy())


def _ego_states(track: OdometryTrack, samples: list[OdometrySample], times: np.ndarray, window: float) -> np.ndarray:
    """``(T, 7)`` [x, y, yaw, vx, vy, ax, ay] at ``times`` (module docstring)."""
    poses, vel = track.interpolate(times)
    accel = np.zeros((len(times), 2))
    nearest = _nearest(track.stamps, times)
    for row, j in enumerate(nearest):
        accel[row], _ = estimate_acceleration(samples, int(j), window)
    return np.concatenate([poses, vel, accel], axis=1)


def import_bag(bag: str | Path, out: str | Path, config: ImportConfig | None = None, camera_topic: str | None = None,
               odometry_topic: str | None = None, command_topic: str | None = None,
               camera_info_topic: str | None = None, log_name: str | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Cut scenes out of ``bag`` into ``out`` (module docstring).

    Returns:
        ``{"scenes": n, "paths": [...], "skipped": {reason: count}, "anchors": n, "topics": {...}, ...}``; an
        anchor t0 is skipped when odometry does not cover its window (``no_odometry_coverage``), a keyframe is
        missing (``missing_camera_frame``) or cannot be decoded (``undecodable_camera_frame``).
    """
    config = config if config is not None else ImportConfig()
    bag = Path(bag)
    out = Path(out)
    name = log_name or _log_name(bag)
    skipped: Counter[str] = Counter()
    with BagReader(bag, camera_topic=camera_topic, odometry_topic=odometry_topic, command_topic=command_topic,
                   camera_info_topic=camera_info_topic) as reader:
        topics = reader.topics.to_json()
        # pass 1: stamps, odometry, commands, camera_info (images not decoded)
        image_ns: list[int] = []
        odometry: list[OdometryEvent] = []
        commands: list[CommandEvent] = []
        info: CameraInfoEvent | None = None
        for event in reader.messages(decode_images=False):
            if isinstance(event, ImageEvent):
                if event.stamp_ns >= 0:
                    image_ns.append(event.stamp_ns)
            elif isinstance(event, OdometryEvent):
                odometry.append(event)
            elif isinstance(event, CommandEvent):
                commands.append(event)
            elif isinstance(event, CameraInfoEvent) and info is None and event.calibration() is not None:
                info = event
        track = OdometryTrack.from_events(odometry)
        samples = [OdometrySample(float(t), p, v, track.frame_id)
                   for t, p, v in zip(track.stamps, track.poses, track.velocities, strict=True)]
        stamps_ns = np.unique(np.asarray(image_ns, dtype=np.int64))
        stamps = np.array([ns_to_seconds(int(s)) for s in stamps_ns])
        # choose anchors
        history = int(round(HISTORY_SECONDS / SIM_DT))
        future = int(round(SCENE_FUTURE_SECONDS / SIM_DT))
        offsets = np.round(np.arange(-history, future + 1) * SIM_DT, 6)
        anchors: list[tuple[int, np.ndarray]] = []  # (t0 index into stamps, keyframe indices)
        nominal = stamps[0] + config.stride * np.arange(int((stamps[-1] - stamps[0]) // config.stride) + 1) \
            if len(stamps) else np.zeros(0)
        for i in np.unique(_nearest(stamps, nominal)) if len(stamps) else []:
            t0 = stamps[i]
            if not np.all(track.covered(t0 + offsets, config.odometry_max_gap)):
                skipped["no_odometry_coverage"] += 1
                continue
            keys = _nearest(stamps, t0 + CAMERA_OFFSETS)
            if np.any(np.abs(stamps[keys] - (t0 + CAMERA_OFFSETS)) > config.frame_tolerance + 1e-6):
                skipped["missing_camera_frame"] += 1
                continue
            anchors.append((int(i), keys))
        num_anchors = len(anchors) + sum(skipped.values())
        # pass 2: decode the keyframes only
        needed = {int(stamps_ns[k]) for _, keys in anchors for k in keys}
        frames: dict[int, tuple[np.ndarray, tuple[int, int]] | None] = {}  # stamp -> (stored frame, source w, h)
        if needed:
            for event in reader.messages(("camera",), image_filter=lambda ns: ns in needed):
                if isinstance(event, ImageEvent) and event.stamp_ns in needed and event.stamp_ns not in frames:
                    frames[event.stamp_ns] = None if event.frame is None else (
                        _resize(event.frame, config.width), (event.frame.shape[1], event.frame.shape[0]))
    command_stamps = np.array([c.stamp_ns for c in commands], dtype=np.int64)
    command_order = np.argsort(command_stamps, kind="stable")
    written: list[str] = []
    bar = None
    if progress and anchors:
        from tqdm import tqdm

        bar = tqdm(total=len(anchors), desc="bag import", unit="scene")
    for i, keys in anchors:
        if bar is not None:
            bar.update(1)
        decoded = [frames.get(int(stamps_ns[k])) for k in keys]
        if any(d is None for d in decoded) or len({(d[0].shape, d[1]) for d in decoded if d is not None}) != 1:
            skipped["undecodable_camera_frame"] += 1  # a keyframe failed to decode (or the image size changed)
            continue
        stack = np.stack([d[0] for d in decoded if d is not None])
        src_w, src_h = decoded[0][1]  # type: ignore[index]
        t0_ns, t0 = int(stamps_ns[i]), float(stamps[i])
        cmd = config.default_command
        before = command_order[command_stamps[command_order] <= t0_ns]
        if len(before):
            value = commands[int(before[-1])].command
            cmd = value if 0 <= value < len(COMMAND_NAMES) else config.default_command
        calib = _calibration(info, src_w, src_h, stack.shape[2], stack.shape[1])
        scene = Scene(
            token=f"{name}_{t0_ns}", log_name=name, split=config.split, source=SOURCE, command=int(cmd),
            timestamps=offsets.copy(), t0_index=history,
            ego_states=_ego_states(track, samples, t0 + offsets, config.acceleration_window),
            **empty_agent_fields(len(offsets)), **empty_map_fields(),
            camera=calib, camera_timestamps=np.round(stamps[keys] - t0, 9), camera_frames=stack,
            extra={"bag": str(bag), "t0_stamp_ns": t0_ns, "odometry_frame": track.frame_id, "has_map": False,
                   "note": "imported from a rosbag: no map or agents, so only the imitation terms train"},
        )
        written.append(str(save_scene(scene, out / f"{scene.token}.npz")))
    if bar is not None:
        bar.close()
    return {"scenes": len(written), "paths": written, "anchors": num_anchors,
            "skipped": {r: int(skipped.get(r, 0)) for r in SKIP_REASONS}, "topics": topics,
            "config": asdict(config), "log_name": name}
