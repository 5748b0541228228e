"""The built-in world end to end: determinism, split seeds, scene validity and round trip, ego kinematics, the
expert staying on the drivable area (DAC), obeying red lights and not colliding, commands, closed-loop stepping,
camera frames, BEV picture, CLI."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import shapely

from drive_jepa_core.constants import COMMAND_NAMES, EGO_VEHICLE, SIM_DT
from drive_jepa_core.geometry import box_corners, ego_corners, wrap_angle
from drive_jepa_core.scene.format import MapLayer, TrafficLightStatus, load_scene, save_scene
from drive_jepa_core.world.bev import plot_scene_bev
from drive_jepa_core.world.generate import SPLIT_SEED_BASE, SPLIT_SEED_RANGE, generate_split, log_seeds
from drive_jepa_core.world.log import WorldConfig, WorldSim, simulate_log
from drive_jepa_core.world.scenes import CAMERA_OFFSETS, cut_scene, cut_scenes, scene_t0_indices

LOG_SEEDS = tuple(range(8))


@pytest.fixture(scope="module")
def logs():
    return {seed: simulate_log(seed) for seed in LOG_SEEDS}


def _drivable(log):
    return [shapely.Polygon(p) for p in log.road_map.drivable_polygons()]


def test_same_seed_same_log_and_scenes(logs):
    a, b = logs[3], simulate_log(3)
    for name in ("ego_states", "agent_ids", "agent_states", "agent_valid", "light_status", "ego_lane_ids"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    sa, sb = cut_scene(a, 45, "test"), cut_scene(b, 45, "test")
    assert np.array_equal(sa.ego_states, sb.ego_states) and np.array_equal(sa.agent_states, sb.agent_states)
    assert sa.token == sb.token and sa.command == sb.command


def test_split_seed_ranges_are_disjoint():
    bases = sorted(SPLIT_SEED_BASE.values())
    assert all(hi - lo >= SPLIT_SEED_RANGE for lo, hi in itertools.pairwise(bases))
    train, val, test = (set(log_seeds(s, 1000)) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    with pytest.raises(ValueError, match="seed range"):
        log_seeds("val", 10, SPLIT_SEED_RANGE - 5)
    with pytest.raises(ValueError, match="unknown split"):
        log_seeds("dev", 1)


def test_scene_validates_and_round_trips(logs, tmp_path):
    scene = cut_scenes(logs[0], "train")[1]
    scene.validate()
    assert scene.num_steps == 66 and scene.t0_index == 15 and scene.timestamps[0] == pytest.approx(-1.5)
    assert scene.future_trajectory().shape == (8, 3)
    assert len(scene.route_lane_ids()) > 0
    loaded = load_scene(save_scene(scene, tmp_path / scene.token))
    for name in ("ego_states", "agent_ids", "agent_states", "agent_valid", "lane_ids", "lane_successors",
                 "map_polygon_layers", "traffic_light_status"):
        assert np.array_equal(getattr(scene, name), getattr(loaded, name)), name
    assert all(np.array_equal(x, y) for x, y in zip(scene.map_polygons, loaded.map_polygons, strict=True))
    assert loaded.route_roadblock_ids == scene.route_roadblock_ids and loaded.extra == scene.extra


def test_ego_states_are_kinematically_consistent(logs):
    for log in logs.values():
        e = log.ego_states
        # longitudinal acceleration is the applied one: v[k+1] = v[k] + a[k] dt
        assert np.allclose(e[1:, 3], e[:-1, 3] + e[:-1, 5] * SIM_DT, atol=1e-9)
        assert np.all(e[:, 3] >= 0.0) and np.all(e[:, 4] == 0.0)  # rear axle: no side slip
        step = np.hypot(*np.diff(e[:, :2], axis=0).T)
        assert np.allclose(step, (e[1:, 3] + e[:-1, 3]) / 2 * SIM_DT, atol=0.02)
        moving = step > 0.05
        motion_heading = np.arctan2(*np.diff(e[:, :2], axis=0)[:, ::-1].T)
        assert np.all(np.abs(wrap_angle(motion_heading - e[:-1, 2]))[moving] < 0.05)  # heading along the path
        yaw_rate = wrap_angle(e[2:, 2] - e[:-2, 2]) / (2 * SIM_DT)  # central difference
        assert np.allclose(e[1:-1, 6], e[1:-1, 3] * yaw_rate, atol=0.25)  # a_lat = v * yaw rate
        assert np.abs(e[:, 6]).max() < 2.5 and np.abs(yaw_rate).max() < 0.95  # comfortable (nuPlan yaw bound)
        assert np.all(e[:, 5] > -4.05) and np.all(e[:, 5] < 2.4)  # nuPlan comfort bounds


def test_expert_stays_on_drivable_area(logs):
    """NAVSIM DAC on the logged ego: every corner strictly inside some ROADBLOCK/INTERSECTION/CARPARK polygon."""
    for seed, log in logs.items():
        corners = ego_corners(log.ego_states[:, :3])
        inside = np.zeros(corners.shape[:2], dtype=bool)
        for poly in _drivable(log):
            inside |= shapely.contains_xy(poly, corners[..., 0], corners[..., 1])
        assert inside.all(), f"seed {seed}: ego leaves the drivable area at steps {np.nonzero(~inside.all(1))[0]}"


def test_expert_never_collides(logs):
    for seed, log in logs.items():
        ego = [shapely.Polygon(c) for c in ego_corners(log.ego_states[:, :3])]
        for a in range(len(log.agent_ids)):
            st = log.agent_states[:, a]
            near = log.agent_valid[:, a] & (np.hypot(st[:, 0] - log.ego_states[:, 0], st[:, 1] - log.ego_states[:, 1])
                                            < 12.0)
            for k in np.nonzero(near)[0]:
                box = shapely.Polygon(box_corners(st[k, :2], st[k, 2], *log.agent_sizes[a, :2]))
                assert not ego[k].intersects(box), f"seed {seed} step {k}: ego hits agent {log.agent_ids[a]}"


def _inside_red_connector(log) -> list[tuple[int, int]]:
    """(step, connector) pairs where the ego box overlaps an on-route connector whose light is red (NAVSIM TLC)."""
    route = set(log.route.roadblock_ids)
    ego = [shapely.Polygon(c) for c in ego_corners(log.ego_states[:, :3])]
    hits = []
    for i, lid in enumerate(log.light_lane_ids):
        lane = log.road_map.lanes[int(lid)]
        if lane.roadblock_id in route:
            poly = shapely.Polygon(lane.polygon)
            hits += [(int(k), int(lid)) for k in np.nonzero(log.light_status[:, i] == TrafficLightStatus.RED)[0]
                     if ego[k].intersects(poly)]
    return hits


def test_expert_never_enters_red_connectors(logs):
    for seed, log in logs.items():
        assert not _inside_red_connector(log), f"seed {seed}"


def test_expert_stops_at_red_light():
    """Empty roads and the ego's approach turning green only well after it arrives: it must wait at the line."""
    config = WorldConfig(traffic_density_range=(0.0, 0.0), ego_green_window=(20.0, 25.0))
    stopped = 0
    for seed in (1, 2, 3):
        log = simulate_log(seed, config)
        assert not _inside_red_connector(log)
        junction_lanes = {int(lid): i for i, lid in enumerate(log.light_lane_ids)}
        first = next(s.lane_id for s in WorldSim(seed, config).ego.path.spans if s.lane_id in junction_lanes)
        red = log.light_status[:, junction_lanes[first]] == TrafficLightStatus.RED
        e = log.ego_states
        front = e[:, :2] + EGO_VEHICLE.front_length * np.stack([np.cos(e[:, 2]), np.sin(e[:, 2])], axis=-1)
        dist = np.hypot(*(front - log.road_map.lanes[first].centerline[0]).T)
        stopped += int(np.any(red & (e[:, 3] < 0.05) & (dist < 5.0)))
    assert stopped >= 2


def test_commands_cover_left_straight_right(logs):
    commands = {sc.command_name for log in logs.values() for sc in cut_scenes(log, "test")}
    assert commands == set(COMMAND_NAMES)


def test_scene_t0_grid():
    idx = scene_t0_indices(201)
    assert idx[:4] == [15, 20, 45, 50] and idx[-1] <= 200 - 50
    assert all(k % 5 == 0 for k in idx)


def test_external_ego_is_respected_by_traffic():
    """Closed loop: a parked external ego in its lane; followers stop behind it instead of driving through."""
    sim = WorldSim(5)
    held = sim.ego_state()
    held[3:] = 0.0
    ego_box = shapely.Polygon(ego_corners(held[:3]))
    for _ in range(120):
        frame = sim.step(held)
        for aid, st in zip(frame.agent_ids, frame.agent_states, strict=True):
            _, length, width, _ = sim.agent_meta[int(aid)]
            assert not ego_box.intersects(shapely.Polygon(box_corners(st[:2], st[2], length, width))), aid
    assert np.array_equal(sim.ego_state(), held)
    with pytest.raises(ValueError, match="shape"):
        sim.step(np.zeros(3))


def test_scene_with_camera_frames(logs):
    from drive_jepa_core.world.render import default_front_camera
    from drive_jepa_core.world.scenes import make_renderer

    camera = default_front_camera(128, 64)
    log = logs[1]
    scene = cut_scenes(log, "val", renderer=make_renderer(log, camera), camera=camera, t0_indices=[20])[0]
    assert scene.camera_frames.shape == (12, 64, 128, 3) and scene.camera_frames.dtype == np.uint8
    assert np.allclose(scene.camera_timestamps, CAMERA_OFFSETS) and scene.camera_timestamps[0] == -1.5
    assert scene.frame_at(0.0).std() > 5.0  # a real picture, not a blank
    scene.validate()


def test_generate_split_and_bev(tmp_path):
    paths = generate_split("test", 3, tmp_path / "test", frames=False, progress=False)
    assert len(paths) == 3 and all(p.exists() for p in paths)
    assert (tmp_path / "test" / "index.json").exists()
    scene = load_scene(paths[0])
    assert scene.split == "test" and scene.extra["world_seed"] == SPLIT_SEED_BASE["test"]
    layers = set(scene.map_polygon_layers.tolist())
    assert {MapLayer.ROADBLOCK, MapLayer.LANE} <= layers
    trajs = np.cumsum(np.ones((4, 8, 3)) * [[[2.0, 0.0, 0.0]], [[2.0, 0.2, 0.0]], [[2.0, -0.2, 0.0]],
                                             [[1.0, 0.0, 0.0]]], axis=1)
    png = plot_scene_bev(scene, tmp_path / "bev.png", trajectories=trajs, scores=np.array([0.9, 0.5, 0.2, 0.7]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    with pytest.raises(ValueError, match="scores"):
        plot_scene_bev(scene, tmp_path / "bad.png", trajectories=trajs, scores=np.zeros(3))


def test_cli_generate_and_show(tmp_path):
    import argparse

    from drive_jepa_core.world.cli import register

    def main(argv: list[str]) -> int:  # only this module's commands: independent of other features' state
        parser = argparse.ArgumentParser(prog="drive-jepa")
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        return int(args.func(args))

    out = tmp_path / "val"
    assert main(["world", "generate", "--split", "val", "--scenes", "2", "--out", str(out), "--no-frames"]) == 0
    scene_file = sorted(out.glob("*.npz"))[0]
    assert main(["world", "show", str(scene_file), "--out", str(tmp_path / "bev.png")]) == 0
    assert (tmp_path / "bev.png").exists()
    assert main(["world", "show", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x.png")]) == 2
