"""Cut :class:`~drive_jepa_core.scene.format.Scene` objects out of a :class:`~drive_jepa_core.world.log.WorldLog`.

A scene at log step ``k`` spans ``k - 15 … k + 50`` (1.5 s history, 5.0 s future at 10 Hz), carries the whole map,
the agents seen within ``AGENT_RADIUS`` of the ego, the lights, the route, a driving command derived from the route
ahead and (optionally) 12 camera frames at 2 Hz from -1.5 s to +4.0 s rendered by the world's camera renderer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drive_jepa_core.constants import (
    COMMAND_STRAIGHT,
    HISTORY_SECONDS,
    NUM_TRAJ_POSES,
    SCENE_FUTURE_SECONDS,
    SIM_DT,
    TRAJ_DT,
)
from drive_jepa_core.scene.format import CameraCalibration, Scene, empty_agent_fields
from drive_jepa_core.world.log import WorldLog
from drive_jepa_core.world.polyline import arclength, project_point
from drive_jepa_core.world.road_network import RoadMap, Route

HISTORY_STEPS = int(round(HISTORY_SECONDS / SIM_DT))  # 15
FUTURE_STEPS = int(round(SCENE_FUTURE_SECONDS / SIM_DT))  # 50
CAMERA_PERIOD = 0.5  # s, 2 Hz keyframes (NAVSIM/OpenScene sensor rate)
CAMERA_FIRST = -HISTORY_SECONDS  # s, first frame relative to t0
CAMERA_LAST = NUM_TRAJ_POSES * TRAJ_DT  # s, last frame: end of the 4 s planning horizon
CAMERA_OFFSETS = np.round(np.arange(CAMERA_FIRST, CAMERA_LAST + 1e-9, CAMERA_PERIOD), 6)  # (12,)
AGENT_RADIUS = 100.0  # m; NAVSIM keeps objects within 100 m of the ego (navsim_metrics.md §5.5)
COMMAND_LOOKAHEAD_MIN = 30.0  # m of route ahead searched for a turn even when slow
COMMAND_LOOKAHEAD_TIME = NUM_TRAJ_POSES * TRAJ_DT  # s: a turn the ego reaches within the planning horizon counts
T0_STRIDE = 3.0  # s between scene anchors in a log
EC_PAIR_GAP = 0.5  # s: each anchor also gets a scene this much later (Extended Comfort pairs, navsim_metrics.md §5.9)
SOURCE = "synthetic"


def scene_t0_indices(num_steps: int, stride: float = T0_STRIDE, pair_gap: float | None = EC_PAIR_GAP) -> list[int]:
    """Log steps usable as t0 (full history and future inside the log), on the camera grid: anchors every
    ``stride`` seconds, each followed by a partner ``pair_gap`` later."""
    period = int(round(CAMERA_PERIOD / SIM_DT))
    first, last = HISTORY_STEPS, num_steps - 1 - FUTURE_STEPS
    step = int(round(stride / SIM_DT))
    out: list[int] = []
    for k in range(first, last + 1, step):
        out.append(k)
        if pair_gap is not None:
            partner = k + int(round(pair_gap / SIM_DT))
            if partner <= last:
                out.append(partner)
    return [k for k in out if k % period == 0]


def command_at(road_map: RoadMap, route: Route, lane_id: int, position: np.ndarray, speed: float) -> int:
    """Driving command from the route: the turn of the first junction connector on the route within
    ``max(COMMAND_LOOKAHEAD_MIN, speed * COMMAND_LOOKAHEAD_TIME)`` metres ahead, else straight."""
    if lane_id < 0 or lane_id not in road_map.lanes:
        return COMMAND_STRAIGHT
    lane = road_map.lanes[lane_id]
    if lane.is_connector:
        return int(lane.turn)
    if lane.roadblock_id not in route.roadblock_ids:
        return COMMAND_STRAIGHT
    s = arclength(lane.centerline)
    s_ego, _ = project_point(lane.centerline, s, position)
    dist = float(s[-1] - s_ego)
    lookahead = max(COMMAND_LOOKAHEAD_MIN, speed * COMMAND_LOOKAHEAD_TIME)
    for rb in route.roadblock_ids[route.roadblock_ids.index(lane.roadblock_id) + 1:]:
        if dist > lookahead:
            break
        first = road_map.lanes[road_map.roadblock_lanes(rb)[0]]
        if first.is_connector and first.turn != COMMAND_STRAIGHT:
            return int(first.turn)
        dist += first.length
    return COMMAND_STRAIGHT


def log_name(seed: int) -> str:
    return f"synworld_{seed:09d}"


def scene_token(seed: int, step: int) -> str:
    return f"{log_name(seed)}_t{step:03d}"


def map_scene(road_map: RoadMap, route: Route, camera: CameraCalibration | None = None) -> Scene:
    """A one-step Scene that carries only the map (what the camera renderer reads)."""
    return Scene(
        token="map", log_name="map", split="map", source=SOURCE, command=COMMAND_STRAIGHT,
        timestamps=np.zeros(1), t0_index=0, ego_states=np.zeros((1, 7)), **empty_agent_fields(1),
        **road_map.scene_map_fields(route), camera=camera, camera_timestamps=np.zeros(0), camera_frames=None)


def agent_boxes_at(log: WorldLog, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid agents at ``step``: ids ``(A,)``, types ``(A,)`` and boxes ``(A, 6)``
    [x, y, heading, length, width, height]."""
    valid = log.agent_valid[step]
    st = log.agent_states[step, valid]
    boxes = np.concatenate([st[:, :3], log.agent_sizes[valid]], axis=1)
    return log.agent_ids[valid].copy(), log.agent_types[valid].copy(), boxes


def make_renderer(log: WorldLog, camera: CameraCalibration) -> Any:
    """The world's camera renderer for ``log``'s map (appearance seeded by the log seed)."""
    from drive_jepa_core.world.render import CameraRenderer

    return CameraRenderer(map_scene(log.road_map, log.route, camera), camera, seed=log.seed,
                          crosswalks=log.road_map.crosswalks)


def render_frames(log: WorldLog, steps: list[int], renderer: Any) -> dict[int, np.ndarray]:
    """Render the camera at each log step in ``steps`` with a renderer exposing ``render(...)``."""
    out = {}
    for k in sorted(set(steps)):
        ids, types, boxes = agent_boxes_at(log, k)
        out[k] = renderer.render(log.ego_states[k, :3], types, boxes, log.light_lane_ids, log.light_status[k],
                                 agent_ids=ids)
    return out


def camera_steps(t0_index: int) -> list[int]:
    return [t0_index + int(round(o / SIM_DT)) for o in CAMERA_OFFSETS]


def agents_near_ego(log: WorldLog, window: slice, ego: np.ndarray) -> np.ndarray:
    """``(A,)`` bool: agents seen within ``AGENT_RADIUS`` of the ego (``ego`` = ``log.ego_states[window]``) at any
    step of ``window``."""
    valid = log.agent_valid[window]
    dist = np.hypot(log.agent_states[window, :, 0] - ego[:, None, 0], log.agent_states[window, :, 1] - ego[:, None, 1])
    return np.any(valid & (dist < AGENT_RADIUS), axis=0)


def cut_scene(log: WorldLog, t0_index: int, split: str, camera: CameraCalibration | None = None,
              frames: dict[int, np.ndarray] | None = None) -> Scene:
    """The scene at log step ``t0_index``; ``frames`` maps log steps to rendered images (None = no camera)."""
    lo, hi = t0_index - HISTORY_STEPS, t0_index + FUTURE_STEPS
    if lo < 0 or hi >= log.num_steps:
        raise ValueError(f"t0_index={t0_index} needs steps {lo}..{hi} but the log has 0..{log.num_steps - 1}")
    window = slice(lo, hi + 1)
    ego = log.ego_states[window].copy()
    keep = agents_near_ego(log, window, ego)
    command = command_at(log.road_map, log.route, int(log.ego_lane_ids[t0_index]), ego[HISTORY_STEPS, :2],
                         float(ego[HISTORY_STEPS, 3]))
    cam_steps = camera_steps(t0_index)
    if frames is not None:
        missing = [k for k in cam_steps if k not in frames]
        if missing:
            raise ValueError(f"frames for log steps {missing} were not rendered")
        cam_frames = np.stack([frames[k] for k in cam_steps])
        cam_times = CAMERA_OFFSETS.astype(np.float64).copy()
    else:
        cam_frames, cam_times = None, np.zeros(0)
    scene = Scene(
        token=scene_token(log.seed, t0_index), log_name=log_name(log.seed), split=split, source=SOURCE,
        command=int(command),
        timestamps=np.round((np.arange(lo, hi + 1) - t0_index) * SIM_DT, 6), t0_index=HISTORY_STEPS,
        ego_states=ego,
        agent_ids=log.agent_ids[keep].copy(), agent_types=log.agent_types[keep].copy(),
        agent_sizes=log.agent_sizes[keep].copy(), agent_states=log.agent_states[window][:, keep].copy(),
        agent_valid=log.agent_valid[window][:, keep].copy(),
        **log.road_map.scene_map_fields(log.route),
        traffic_light_lane_ids=log.light_lane_ids.copy(), traffic_light_status=log.light_status[window].copy(),
        camera=camera if frames is not None else None, camera_timestamps=cam_times, camera_frames=cam_frames,
        extra={"world_seed": int(log.seed), "log_step": int(t0_index), "log_time": float(log.timestamps[t0_index]),
               "traffic_density": float(log.info.get("density", 0.0)),
               "route_turns": [int(t) for t in log.route.turns],
               "expert_lane_changes": int(log.info.get("lane_changes", 0))},
    )
    scene.validate()
    return scene


def cut_scenes(log: WorldLog, split: str, renderer: Any | None = None, camera: CameraCalibration | None = None,
               t0_indices: list[int] | None = None) -> list[Scene]:
    """All scenes of ``log`` (default t0 grid from :func:`scene_t0_indices`); frames only when ``renderer`` is
    given (then ``camera`` is its calibration)."""
    idx = scene_t0_indices(log.num_steps) if t0_indices is None else list(t0_indices)
    frames = None
    if renderer is not None:
        if camera is None:
            raise ValueError("cut_scenes with a renderer needs its camera calibration")
        frames = render_frames(log, [k for t0 in idx for k in camera_steps(t0)], renderer)
    return [cut_scene(log, k, split, camera, frames) for k in idx]
