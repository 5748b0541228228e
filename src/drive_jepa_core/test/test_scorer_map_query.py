"""Exact geometric queries of the batch scorer against shapely (metrics/map_query.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import shapely
from scene_builders import busy_road, curved_road, junction

from drive_jepa_core.geometry import box_corners
from drive_jepa_core.metrics.map_query import (
    BoxGrid,
    PolygonIndex,
    PolylineThresholdIndex,
    RankBitmap,
    polygons_from_corners,
    popcount,
    rect_gap,
    relative_angle,
)

ALL_BITS = np.iinfo(np.uint64).max


def _membership(index: PolygonIndex, pts: np.ndarray) -> np.ndarray:
    """``(N, num)`` bool from the index."""
    sets = index.query(pts)
    bits = sets.bits(np.full(index.words, ALL_BITS, dtype=np.uint64)).reshape(-1, index.words)
    return np.stack([((bits[:, j // 64] >> np.uint64(j % 64)) & np.uint64(1)).astype(bool)
                     for j in range(index.num)], axis=1)


def _adversarial_points(rings: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Vertices, points exactly on edges, and points within 1e-9 m / 1e-3 m of edges."""
    out = []
    for ring in rings:
        for a, b in itertools.pairwise(np.concatenate([ring, ring[:1]])):
            f = rng.uniform(0.0, 1.0, (8, 1))
            e = a + f * (b - a)
            out += [a[None], e, e + rng.normal(0.0, 1e-9, e.shape), e + rng.normal(0.0, 1e-3, e.shape)]
    return np.concatenate(out)


def test_polygon_index_matches_shapely_on_scene_maps():
    rng = np.random.default_rng(0)
    for builder in (busy_road(), junction(), curved_road()):
        scene = builder.build()
        index = PolygonIndex(scene.map_polygons)
        allp = np.concatenate(scene.map_polygons)
        pts = np.concatenate([rng.uniform(allp.min(0) - 5.0, allp.max(0) + 5.0, (20000, 2)),
                              _adversarial_points(scene.map_polygons, rng)])
        truth = np.stack([shapely.contains_xy(g, pts[:, 0], pts[:, 1]) for g in index.geoms], axis=1)
        np.testing.assert_array_equal(_membership(index, pts), truth)


def test_polygon_index_many_polygons_bounded_grid():
    """> 64 overlapping polygons (multi-word bitmasks) and a grid clipped to a window (points beyond stay exact)."""
    rng = np.random.default_rng(1)
    rings = []
    for _ in range(150):
        c = rng.uniform(-40.0, 40.0, 2)
        ang = np.sort(rng.uniform(0.0, 2 * np.pi, 7))
        rad = rng.uniform(2.0, 12.0, 7)
        rings.append(c + np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1))
    index = PolygonIndex(rings, resolution=0.5, bounds=(np.array([-20.0, -20.0]), np.array([20.0, 20.0])))
    assert index.words == 3
    pts = np.concatenate([rng.uniform(-60.0, 60.0, (20000, 2)), _adversarial_points(rings[:40], rng)])
    truth = np.stack([shapely.contains_xy(g, pts[:, 0], pts[:, 1]) for g in index.geoms], axis=1)
    np.testing.assert_array_equal(_membership(index, pts), truth)
    # group predicates
    group = index.mask([3, 70, 149])
    np.testing.assert_array_equal(index.query(pts).any_of(group), truth[:, [3, 70, 149]].any(axis=1))
    assert popcount(index.mask(range(0, 150, 2))[None])[0] == 75


def test_polygon_index_relevance_keeps_relevant_memberships_exact():
    rng = np.random.default_rng(2)
    scene = busy_road().build()
    index = PolygonIndex(scene.map_polygons)
    pts = rng.uniform([-10.0, -6.0], [80.0, 6.0], (20000, 2))
    relevant = index.mask([0, 1, 2])
    sets = index.query(pts, relevant, any_groups=(index.mask([0, 1]),))
    truth = np.stack([shapely.contains_xy(g, pts[:, 0], pts[:, 1]) for g in index.geoms], axis=1)
    np.testing.assert_array_equal(sets.any_of(index.mask([0, 1])), truth[:, [0, 1]].any(axis=1))
    np.testing.assert_array_equal(sets.any_of(index.mask([2])), truth[:, 2])


def test_polyline_threshold_matches_shapely_distance():
    rng = np.random.default_rng(3)
    t = np.linspace(0.0, 3.0, 40)
    line = np.stack([20.0 * t, 5.0 * np.sin(t * 2.0)], axis=1)
    index = PolylineThresholdIndex(line, 0.5)
    pts = np.concatenate([rng.uniform([-5.0, -8.0], [65.0, 8.0], (50000, 2)),
                          line + np.array([0.0, 0.5]), line[:-1] + 0.5 * np.diff(line, axis=0)])
    truth = shapely.distance(shapely.LineString(line), shapely.points(pts)) > 0.5
    np.testing.assert_array_equal(index.exceeds(pts), truth)


def test_rect_gap_sign_matches_shapely_intersects():
    rng = np.random.default_rng(4)
    n = 20000
    a = rng.uniform(-3.0, 3.0, (n, 2))
    b = rng.uniform(-3.0, 3.0, (n, 2))
    ha, hb = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    la, wa, lb, wb = rng.uniform(0.5, 5.0, (4, n))
    gap = rect_gap(a[:, 0], a[:, 1], np.cos(ha), np.sin(ha), la / 2, wa / 2,
                   b[:, 0], b[:, 1], np.cos(hb), np.sin(hb), lb / 2, wb / 2)
    truth = shapely.intersects(polygons_from_corners(box_corners(a, ha, la, wa)),
                               polygons_from_corners(box_corners(b, hb, lb, wb)))
    np.testing.assert_array_equal(gap <= 0.0, truth)
    # a zero half width is a segment: the box's front edge
    seg_gap = rect_gap(a[:, 0] + la / 2 * np.cos(ha), a[:, 1] + la / 2 * np.sin(ha), np.cos(ha), np.sin(ha), 0.0,
                       wa / 2, b[:, 0], b[:, 1], np.cos(hb), np.sin(hb), lb / 2, wb / 2)
    front = box_corners(a, ha, la, wa)[:, [0, 3]]
    np.testing.assert_array_equal(seg_gap <= 0.0, shapely.intersects(
        shapely.linestrings(front), polygons_from_corners(box_corners(b, hb, lb, wb))))


def test_box_grid_finds_every_overlapping_disc():
    rng = np.random.default_rng(5)
    frames, objs = 6, 30
    centres = rng.uniform(-50.0, 50.0, (frames, objs, 2))
    valid = rng.random((frames, objs)) < 0.8
    half_l, half_w = rng.uniform(0.3, 6.0, objs), rng.uniform(0.3, 1.5, objs)
    grid = BoxGrid(centres, np.zeros((frames, objs)), half_l, half_w, valid, query_radius=2.8)
    q_frame = rng.integers(0, frames, 5000)
    q_xy = rng.uniform(-60.0, 60.0, (5000, 2))
    q, e = grid.candidates(q_frame, q_xy[:, 0], q_xy[:, 1])
    found = {(int(i), int(grid.obj[j])) for i, j in zip(q, e, strict=True)}
    assert np.all(grid.frame[e] == q_frame[q])
    radius = np.hypot(half_l, half_w)
    d = np.linalg.norm(q_xy[:, None, :] - centres[q_frame], axis=-1)
    expected = {(int(i), int(a)) for i, a in zip(*np.nonzero((d <= 2.8 + radius[None]) & valid[q_frame]),
                                                  strict=True)}
    assert expected <= found


def test_relative_angle_ahead_behind_and_coincident():
    pose = np.array([1.0, 2.0, np.pi / 2])
    assert relative_angle(pose, np.array([1.0, 5.0])) == 0.0
    np.testing.assert_allclose(relative_angle(pose, np.array([1.0, -5.0])), np.pi)
    np.testing.assert_allclose(relative_angle(pose, np.array([4.0, 2.0])), np.pi / 2)
    assert np.isnan(relative_angle(pose, pose[:2]))


def test_rank_bitmap_membership_and_rank():
    members = np.array([0, 3, 63, 64, 65, 200])
    bitmap = RankBitmap(members, 201)
    values = np.array([0, 1, 3, 63, 64, 65, 66, 199, 200])
    present, rank = bitmap.contains(values), bitmap.rank(values)
    assert present.tolist() == [True, False, True, True, True, True, False, False, True]
    # rank = number of members below the value (a member's position in the sorted list)
    assert rank[present].tolist() == [0, 1, 2, 3, 4, 5]
    assert rank[~present].tolist() == [1, 5, 5]
    with pytest.raises(IndexError):
        RankBitmap(np.array([201]), 201)
    with pytest.raises(ValueError):
        RankBitmap(np.array([5, 5]), 10)
