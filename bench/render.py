"""Benchmark of the built-in world's front-camera renderer on ONE CPU core.

Renders frames along a driving path through a junction map with moving traffic and traffic lights, and prints a
JSON summary on its last line: frames_per_s, ms_per_frame p50/p99, width/height, renderer build time per map and,
when the world's scene generator is importable, scenes_per_s of generation with and without frames.

    .venv/bin/python bench/render.py [--frames 300] [--width 512 --height 256] [--save /tmp/render_bench]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2
import numpy as np

from drive_jepa_core.scene.format import AgentType, CameraCalibration, Scene, TrafficLightStatus, empty_agent_fields
from drive_jepa_core.world.render import CameraRenderer, default_front_camera

REPO = Path(__file__).resolve().parents[1]
DT = 0.1  # s between frames (the scene timeline rate)


def _junction_map() -> tuple[Scene, np.ndarray]:
    """The test suite's hand-built 4-way junction (2+2 lanes per arm, 200 m arms)."""
    path = REPO / "src" / "drive_jepa_core" / "test" / "test_render.py"
    spec = importlib.util.spec_from_file_location("_render_test_map", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.make_junction_map()


def _traffic(rng: np.random.Generator, n_cars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cars in all eight lanes of the junction map plus pedestrians and cones on the sidewalks.
    Returns types (A,), boxes at t = 0 (A, 6) and velocities (A, 2)."""
    types, boxes, vel = [], [], []
    lanes = [(0.0, -1.75), (0.0, -5.25), (np.pi, 1.75), (np.pi, 5.25)]
    for i in range(n_cars):
        heading, lat = lanes[i % 4]
        along = rng.uniform(-190.0, 190.0)
        speed = rng.uniform(6.0, 13.0)
        length = rng.choice([rng.uniform(4.2, 5.2), rng.uniform(8.0, 12.0)], p=[0.85, 0.15])
        width, height = (rng.uniform(1.8, 2.0), rng.uniform(1.45, 1.8)) if length < 6 else (2.5, rng.uniform(3.0, 3.4))
        if i % 3 == 2:  # some on the north-south road
            x, y, heading = -lat, along, heading + np.pi / 2
        else:
            x, y = along, lat
        types.append(AgentType.VEHICLE)
        boxes.append([x, y, heading, length, width, height])
        vel.append([speed * np.cos(heading), speed * np.sin(heading)])
    for _ in range(8):
        side = rng.choice([-1.0, 1.0])
        x = rng.uniform(-150, -12) if rng.random() < 0.5 else rng.uniform(12, 150)
        heading = rng.choice([0.0, np.pi])
        types.append(AgentType.PEDESTRIAN)
        boxes.append([x, side * 8.2, heading, 0.5, 0.6, rng.uniform(1.6, 1.85)])
        vel.append([1.3 * np.cos(heading), 0.0])
    for k in range(5):
        types.append(AgentType.TRAFFIC_CONE)
        boxes.append([-90.0 + 3.0 * k, -7.3, 0.0, 0.4, 0.4, 0.7])
        vel.append([0.0, 0.0])
    return np.array(types, np.int64), np.array(boxes), np.array(vel)


def _ego_path(n: int) -> np.ndarray:
    """Eastbound inner lane from the west arm straight through the junction, with a gentle lane-keeping weave."""
    x = np.linspace(-185.0, 185.0, n)
    y = -1.75 + 0.25 * np.sin(x / 17.0)
    heading = np.arctan2(np.gradient(y), np.gradient(x))
    return np.stack([x, y, heading], axis=1)


def _light_status(step: int, n: int) -> np.ndarray:
    phase = (step // 40) % 3  # green, yellow, red cycling every 4 s of frames
    status = [TrafficLightStatus.GREEN, TrafficLightStatus.YELLOW, TrafficLightStatus.RED][phase]
    return np.full(n, status, np.int64)


def _map_scene(fields: dict) -> Scene:
    return Scene(token="bench", log_name="bench", split="bench", source="synthetic", command=1,
                 timestamps=np.zeros(1), t0_index=0, ego_states=np.zeros((1, 7)), **empty_agent_fields(1),
                 **fields, camera=None, camera_timestamps=np.zeros(0), camera_frames=None)


def _resample_path(points: np.ndarray, n: int) -> np.ndarray:
    """``n`` poses (x, y, heading) evenly spaced along a polyline."""
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6])
    points = points[keep]
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    s = np.linspace(0.0, cum[-1], n)
    x, y = np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])
    heading = np.arctan2(np.gradient(y), np.gradient(x))
    return np.stack([x, y, heading], axis=1)


def _route_centerline(scene: Scene) -> np.ndarray:
    """Centerline along the route: a lane of the first route roadblock, then successors in the next ones."""
    index = scene.lane_index()
    successors: dict[int, list[int]] = {}
    for a, b in scene.lane_successors:
        successors.setdefault(int(a), []).append(int(b))
    route = [int(r) for r in scene.route_roadblock_ids]
    lane = next(int(lid) for lid, rb in zip(scene.lane_ids, scene.lane_roadblock_ids, strict=True) if rb == route[0])
    pieces = [scene.lane_centerlines[index[lane]]]
    for rb in route[1:]:
        nxt = [c for c in successors.get(lane, []) if int(scene.lane_roadblock_ids[index[c]]) == rb]
        if not nxt:
            break
        lane = nxt[0]
        pieces.append(scene.lane_centerlines[index[lane]])
    return np.concatenate(pieces)


class _GeneratedWorld:
    """A map from the world's generator (road_network.generate_map) with parked cars, traffic along lanes and
    pedestrians on the sidewalks; lights follow the map's signal timing."""

    def __init__(self, seed: int, frames: int, n_cars: int) -> None:
        from drive_jepa_core.world.road_network import generate_map

        rng = np.random.default_rng(seed)
        self.road_map, route = generate_map(rng, min_route_length=400.0)
        self.scene = _map_scene(self.road_map.scene_map_fields(route))
        self.path = _resample_path(_route_centerline(self.scene), frames)
        self.lights = np.asarray(self.road_map.light_lane_ids, dtype=np.int64)
        spots = self.road_map.parking_spots[: n_cars // 2]
        lanes = [c for c, conn in zip(self.scene.lane_centerlines, self.scene.lane_is_connector, strict=True)
                 if not conn and len(c) >= 2]
        self.movers = [(lanes[int(rng.integers(len(lanes)))], rng.uniform(0.0, 1.0), rng.uniform(6.0, 13.0))
                       for _ in range(n_cars - len(spots))]
        self.walkers = [(w, rng.uniform(0.0, 1.0), 1.3) for w in self.road_map.sidewalks[:10]]
        n = len(spots) + len(self.movers) + len(self.walkers)
        self.types = np.array([AgentType.VEHICLE] * (len(spots) + len(self.movers))
                              + [AgentType.PEDESTRIAN] * len(self.walkers), np.int64)
        self.sizes = np.array([[4.6, 1.9, 1.5]] * (len(spots) + len(self.movers)) + [[0.5, 0.6, 1.75]]
                              * len(self.walkers)).reshape(n, 3)
        self.sizes[:, 0] *= rng.uniform(0.9, 1.1, n)
        self.static = np.asarray(spots[:, :3], dtype=np.float64).reshape(-1, 3)

    def boxes(self, t: float) -> np.ndarray:
        poses = [self.static]
        for polyline, u0, speed in [*self.movers, *self.walkers]:
            cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
            s = (u0 * cum[-1] + speed * t) % max(cum[-1], 1e-6)
            i = int(np.clip(np.searchsorted(cum, s) - 1, 0, len(polyline) - 2))
            d = polyline[i + 1] - polyline[i]
            p = polyline[i] + d * (s - cum[i]) / max(float(np.linalg.norm(d)), 1e-9)
            poses.append(np.array([[p[0], p[1], np.arctan2(d[1], d[0])]]))
        return np.concatenate([np.concatenate(poses), self.sizes], axis=1)

    def light_status(self, t: float) -> np.ndarray:
        return np.asarray(self.road_map.light_status(t), dtype=np.int64)


class _JunctionWorld:
    """Fallback when the generator is unavailable: the hand-built junction with traffic on all eight lanes."""

    def __init__(self, seed: int, frames: int, n_cars: int) -> None:
        self.scene, self.lights = _junction_map()
        self.road_map = None
        self.types, self._boxes0, self._vel = _traffic(np.random.default_rng(seed), n_cars)
        self.path = _ego_path(frames)

    def boxes(self, t: float) -> np.ndarray:
        boxes = self._boxes0.copy()
        boxes[:, :2] += self._vel * t
        return boxes

    def light_status(self, t: float) -> np.ndarray:
        return _light_status(int(round(t / DT)), len(self.lights))


def _generator_throughput(seconds: float, camera: CameraCalibration) -> dict[str, float]:
    """World throughput on this core, when the generator is importable.

    * ``scenes_per_s_no_frames`` / ``scenes_per_s_with_frames``: the world's scene generator
      (``drive_jepa_core.world.generate.generate_scene(seed, render_frames=...)``) when it exists;
    * ``maps_per_s_no_frames`` / ``maps_per_s_with_2_frames``: map generation (+ scene map fields) alone, and with a
      renderer built for the map and the two model frames (t - 0.5 s, t) rendered.
    """
    out: dict[str, float] = {}
    if seconds <= 0:
        return out
    try:
        from drive_jepa_core.world import generate  # type: ignore[attr-defined]
    except ImportError:
        generate = None
    fn = getattr(generate, "generate_scene", None)
    if fn is not None:
        for with_frames in (False, True):
            count, t0 = 0, time.perf_counter()
            try:
                while time.perf_counter() - t0 < seconds:
                    fn(seed=count, render_frames=with_frames)
                    count += 1
            except TypeError:  # a different signature: report what we could not measure rather than guess
                break
            key = "scenes_per_s_with_frames" if with_frames else "scenes_per_s_no_frames"
            out[key] = round(count / (time.perf_counter() - t0), 2)
    try:
        from drive_jepa_core.world.road_network import generate_map
    except ImportError:
        return out
    for with_frames in (False, True):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            road_map, route = generate_map(np.random.default_rng(1000 + count), min_route_length=400.0)
            scene = _map_scene(road_map.scene_map_fields(route))
            if with_frames:
                renderer = CameraRenderer(scene, camera, seed=count, crosswalks=road_map.crosswalks)
                path = _resample_path(_route_centerline(scene), 2)
                lights = np.asarray(road_map.light_lane_ids, dtype=np.int64)
                for pose, t in zip(path, (-0.5, 0.0), strict=True):
                    renderer.render(pose, np.zeros(0, np.int64), np.zeros((0, 6)), lights, road_map.light_status(t))
            count += 1
        key = "maps_per_s_with_2_frames" if with_frames else "maps_per_s_no_frames"
        out[key] = round(count / (time.perf_counter() - t0), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cars", type=int, default=40)
    parser.add_argument("--map", choices=("auto", "generated", "junction"), default="auto",
                        help="generated: the world's map generator (default when importable); junction: test map")
    parser.add_argument("--save", type=Path, default=None, help="write every 50th frame as PNG into this folder")
    parser.add_argument("--generator-seconds", type=float, default=5.0,
                        help="seconds per world-throughput measurement (0 skips them)")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)

    world_name = args.map
    if world_name == "auto":
        world_name = "generated" if importlib.util.find_spec("drive_jepa_core.world.road_network") else "junction"
    world = (_GeneratedWorld if world_name == "generated" else _JunctionWorld)(args.seed, args.frames, args.cars)
    scene, lit = world.scene, world.lights
    camera = default_front_camera(args.width, args.height)
    crosswalks = world.road_map.crosswalks if world.road_map is not None else None
    t0 = time.perf_counter()
    renderer = CameraRenderer(scene, camera, seed=args.seed, crosswalks=crosswalks)
    build_ms = 1e3 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    CameraRenderer(scene, camera, seed=args.seed + 1, crosswalks=crosswalks)  # per-camera caches now warm
    rebuild_ms = 1e3 * (time.perf_counter() - t0)
    for _ in range(3):  # warm-up (caches, first-call allocations)
        renderer.render(world.path[0], world.types, world.boxes(0.0), lit, world.light_status(0.0))
    times = []
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    for step in range(args.frames):
        boxes, status = world.boxes(step * DT), world.light_status(step * DT)
        t = time.perf_counter()
        img = renderer.render(world.path[step], world.types, boxes, lit, status)
        times.append(time.perf_counter() - t)
        if args.save is not None and step % 50 == 0:
            cv2.imwrite(str(args.save / f"frame_{step:04d}.png"), img[:, :, ::-1])
    ms = 1e3 * np.array(times)
    result = {
        "map": world_name, "frames": args.frames, "width": args.width, "height": args.height,
        "agents": len(world.types), "map_polygons": len(scene.map_polygons), "lanes": len(scene.lane_ids),
        "lights": len(lit), "ground_polygons": int(len(renderer._ground.starts)),
        "ground_vertices": int(len(renderer._ground.vertices)),
        "renderer_build_ms": round(build_ms, 2), "renderer_build_ms_warm": round(rebuild_ms, 2),
        "frames_per_s": round(float(1e3 / ms.mean()), 1),
        "ms_per_frame_p50": round(float(np.percentile(ms, 50)), 3),
        "ms_per_frame_p99": round(float(np.percentile(ms, 99)), 3),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    result.update(_generator_throughput(args.generator_seconds, camera))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
