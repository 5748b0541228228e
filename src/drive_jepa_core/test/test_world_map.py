"""Procedural maps of the built-in world: determinism, lanes tiling roadblocks, drivable-area consistency, lane
graph, connectors' turn types, signal timing."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from drive_jepa_core.constants import COMMAND_LEFT, COMMAND_RIGHT, COMMAND_STRAIGHT
from drive_jepa_core.geometry import wrap_angle
from drive_jepa_core.scene.format import MapLayer, TrafficLightStatus
from drive_jepa_core.world.road_network import YELLOW_BASE, generate_map

SEEDS = (0, 1, 2, 3, 7)


@pytest.fixture(scope="module")
def maps():
    return {seed: generate_map(np.random.default_rng(seed), 400.0) for seed in SEEDS}


def test_same_seed_same_map():
    a = generate_map(np.random.default_rng(11), 300.0)[0].scene_map_fields(generate_map(np.random.default_rng(11),
                                                                                       300.0)[1])
    m, r = generate_map(np.random.default_rng(11), 300.0)
    b = m.scene_map_fields(r)
    for key, value in a.items():
        if isinstance(value, list):
            assert len(value) == len(b[key])
            assert all(np.array_equal(x, y) for x, y in zip(value, b[key], strict=True)), key
        else:
            assert np.array_equal(value, b[key]), key


def test_lanes_tile_their_roadblocks(maps):
    for road_map, route in maps.values():
        f = road_map.scene_map_fields(route)
        polys = {int(i): shapely.Polygon(p) for i, p in zip(f["map_polygon_ids"], f["map_polygons"], strict=True)}
        for rb in {int(r) for r, c in zip(f["lane_roadblock_ids"], f["lane_is_connector"], strict=True) if not c}:
            lanes = [int(i) for i, r in zip(f["lane_ids"], f["lane_roadblock_ids"], strict=True) if r == rb]
            block = polys[rb]
            total = sum(polys[lid].area for lid in lanes)
            assert total == pytest.approx(block.area, rel=1e-6)  # no overlap, no gap
            assert shapely.unary_union([polys[lid] for lid in lanes]).symmetric_difference(block).area < 1e-6


def test_centerlines_strictly_inside_drivable_area(maps):
    for road_map, route in maps.values():
        f = road_map.scene_map_fields(route)
        drivable = shapely.unary_union([
            shapely.Polygon(p) for p, layer in zip(f["map_polygons"], f["map_polygon_layers"], strict=True)
            if layer in (MapLayer.ROADBLOCK, MapLayer.INTERSECTION)])
        succ = {int(a) for a, _ in f["lane_successors"]}
        pred = {int(b) for _, b in f["lane_successors"]}
        for lid, cl in zip(f["lane_ids"], f["lane_centerlines"], strict=True):
            pts = cl
            if int(lid) not in pred:  # map-border start: on the polygon's end cap
                pts = pts[1:]
            if int(lid) not in succ:
                pts = pts[:-1]
            assert shapely.contains_xy(drivable, pts[:, 0], pts[:, 1]).all(), f"lane {lid} leaves the drivable area"


def test_lane_graph_is_connected_and_continuous(maps):
    for road_map, route in maps.values():
        for lane in road_map.lanes.values():
            for s in lane.successors:
                gap = np.hypot(*(lane.centerline[-1] - road_map.lanes[s].centerline[0]))
                assert gap < 1e-6
            if lane.is_connector:
                assert len(lane.predecessors) == 1 and len(lane.successors) == 1
                assert lane.light_index >= 0 and lane.junction_id is not None
        # consecutive route roadblocks are linked by lane successors
        for a, b in zip(route.roadblock_ids[:-1], route.roadblock_ids[1:], strict=True):
            assert any(road_map.lanes[s].roadblock_id == b for lid in road_map.roadblock_lanes(a)
                       for s in road_map.lanes[lid].successors)
        assert len(route.turns) == len(route.junction_ids) == (len(route.roadblock_ids) - 1) // 2


def test_connector_turn_types_match_heading_change(maps):
    turns = set()
    for road_map, _ in maps.values():
        for lane in road_map.lanes.values():
            if not lane.is_connector:
                continue
            d0 = lane.centerline[1] - lane.centerline[0]
            d1 = lane.centerline[-1] - lane.centerline[-2]
            dh = float(wrap_angle(np.arctan2(d1[1], d1[0]) - np.arctan2(d0[1], d0[0])))
            expected = COMMAND_STRAIGHT if abs(dh) < np.pi / 4 else (COMMAND_LEFT if dh > 0 else COMMAND_RIGHT)
            assert lane.turn == expected
            turns.add(lane.turn)
    assert turns == {COMMAND_LEFT, COMMAND_STRAIGHT, COMMAND_RIGHT}


def test_split_phasing_one_green_at_a_time(maps):
    for road_map, _ in maps.values():
        for junction in road_map.junctions:
            assert all(y >= YELLOW_BASE for y in junction.yellow)
            seen_green = set()
            for t in np.arange(0.0, 2 * junction.cycle, 0.25):
                status = [junction.status(k, t) for k in range(len(junction.approaches))]
                assert status.count(TrafficLightStatus.GREEN) + status.count(TrafficLightStatus.YELLOW) <= 1
                if junction.walk_time_left(t) > 0:
                    assert all(s == TrafficLightStatus.RED for s in status)
                seen_green |= {k for k, s in enumerate(status) if s == TrafficLightStatus.GREEN}
            assert seen_green == set(range(len(junction.approaches)))


def test_light_status_follows_connector_approach(maps):
    road_map, _ = maps[SEEDS[0]]
    status = road_map.light_status(3.0)
    assert status.shape == road_map.light_lane_ids.shape
    for lid, st in zip(road_map.light_lane_ids, status, strict=True):
        lane = road_map.lanes[int(lid)]
        junction = next(j for j in road_map.junctions if j.id == lane.junction_id)
        k = junction.approaches.index(road_map.lanes[lane.predecessors[0]].roadblock_id)
        assert st == junction.status(k, 3.0)


def test_bad_route_length_raises():
    with pytest.raises(ValueError, match="min_route_length"):
        generate_map(np.random.default_rng(0), 0.0)
