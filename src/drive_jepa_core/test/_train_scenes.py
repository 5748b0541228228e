"""Hand-built scenes for the training tests: a straight two-lane road along +x, the ego in the right lane at a
constant speed, optionally one vehicle ahead, a forward camera and small random frames. Everything is hand-derivable:
the human future at 0.5 s spacing is ``(speed · 0.5 k, 0, 0)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drive_jepa_core.scene import CameraCalibration, MapLayer, Scene, empty_agent_fields, save_scene

ROAD_X = (-60.0, 160.0)
LANE_WIDTH = 4.0
IMAGE_W, IMAGE_H = 160, 96  # camera size; the tests crop/resize it to 128x64


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def make_scene(index: int = 0, speed: float = 8.0, command: int = 1, with_agent: bool = False,
               agent_speed: float | None = None, t0_offset: float = 0.0, log_name: str | None = None) -> Scene:
    """Scene ``index`` (frames seeded by it). With ``with_agent`` a 4.5 m car drives in the ego lane at
    ``agent_speed`` (default 1.5 × speed), 25 m ahead of the ego at log time 0. ``t0_offset``: log time of t0 (the
    ego's x there is ``speed · t0_offset``; ``extra["log_time"]``); consecutive frames use offsets 0, 0.5, …"""
    t = np.round(np.arange(-15, 51) * 0.1, 10)
    ego = np.zeros((len(t), 7))
    ego[:, 0] = speed * (t + t0_offset)
    ego[:, 3] = speed
    rng = np.random.default_rng(index)
    x0, x1 = ROAD_X
    polygons = [_rect(x0, x1, -LANE_WIDTH / 2, 1.5 * LANE_WIDTH),  # roadblock
                _rect(x0, x1, -LANE_WIDTH / 2, LANE_WIDTH / 2),  # lane 1 (ego lane)
                _rect(x0, x1, LANE_WIDTH / 2, 1.5 * LANE_WIDTH)]  # lane 2
    xs = np.linspace(x0, x1, 23)
    centre = [np.stack([xs, np.full_like(xs, y)], 1) for y in (0.0, LANE_WIDTH)]
    left = [np.stack([xs, np.full_like(xs, y + LANE_WIDTH / 2)], 1) for y in (0.0, LANE_WIDTH)]
    right = [np.stack([xs, np.full_like(xs, y - LANE_WIDTH / 2)], 1) for y in (0.0, LANE_WIDTH)]
    agents = empty_agent_fields(len(t))
    if with_agent:
        states = np.zeros((len(t), 1, 5))
        v = 1.5 * speed if agent_speed is None else agent_speed
        states[:, 0, 0] = 25.0 + v * (t + t0_offset)
        states[:, 0, 3] = v
        agents.update(agent_ids=np.array([7]), agent_types=np.array([0]), agent_sizes=np.array([[4.5, 2.0, 1.6]]),
                      agent_states=states, agent_valid=np.ones((len(t), 1), bool))
    # Optical frame (x right, y down, z forward) -> ego (x forward, y left, z up), camera 1.5 m ahead, 1.5 m up.
    sensor2ego = np.eye(4)
    sensor2ego[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    sensor2ego[:3, 3] = (1.5, 0.0, 1.5)
    K = np.array([[80.0, 0.0, IMAGE_W / 2], [0.0, 80.0, IMAGE_H / 2], [0.0, 0.0, 1.0]])
    cam_t = np.arange(-3, 9) * 0.5
    frames = rng.integers(0, 256, (len(cam_t), IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    return Scene(
        token=f"scene{index:03d}", log_name=log_name or f"log{index:03d}", split="train", source="synthetic",
        command=command, timestamps=t, t0_index=15, ego_states=ego, **agents,
        map_polygon_ids=np.array([100, 1, 2]),
        map_polygon_layers=np.array([MapLayer.ROADBLOCK, MapLayer.LANE, MapLayer.LANE]), map_polygons=polygons,
        lane_ids=np.array([1, 2]), lane_roadblock_ids=np.array([100, 100]), lane_is_connector=np.zeros(2, bool),
        lane_speed_limits=np.array([15.0, 15.0]), lane_centerlines=centre, lane_left_boundaries=left,
        lane_right_boundaries=right, lane_successors=np.zeros((0, 2), np.int64), route_roadblock_ids=[100],
        camera=CameraCalibration("front", IMAGE_W, IMAGE_H, K, sensor2ego), camera_timestamps=cam_t,
        camera_frames=frames, extra={"log_time": float(t0_offset)})


def write_scenes(folder: Path, count: int, with_agent: bool = False) -> list[Path]:
    """``count`` scenes with speeds 6, 7, 8, … m/s and commands cycling left/straight/right."""
    folder.mkdir(parents=True, exist_ok=True)
    return [save_scene(make_scene(i, speed=6.0 + i, command=i % 3, with_agent=with_agent), folder / f"scene{i:03d}")
            for i in range(count)]
