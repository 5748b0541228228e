"""Everything the PDM scorer needs about one scene, built once (NAVSIM's "metric cache", navsim_metrics.md §3).

* the current ego state and the simulation's initial state;
* the map: polygons within 100 m tagged by layer, one exact :class:`~drive_jepa_core.metrics.map_query.PolygonIndex`
  over them, bitmasks of the layer groups each predicate needs (§4), the route lanes;
* the centerline: Dijkstra over lane successors within the route lanes, from the lane the ego is on to the last of
  the next 30 route roadblocks, concatenated lane centerlines (§3);
* observation frames: v1 log replay with 51 frames (t = 0 … 5 s), v2 log replay with 41 frames and the objects that
  overlap the ego at t0 removed; red-light connector polygons per frame, status held per 0.5 s (§3);
* the human history (HC) and the human future (v2 filter);
* lazily, the PDM-Closed reference of each version (:mod:`drive_jepa_core.metrics.pdm_closed`, §5.5) and the
  human trajectory's own v2 scores.

Deviations from NAVSIM (inputs it gets from nuPlan that our scene format carries differently):

* Object frames come straight from the scene's 10 Hz agent states and validity; NAVSIM interpolates 2 Hz annotations
  (so its "object seen in one keyframe is present in every frame" artefact cannot occur here).
* The route is the scene's ``route_roadblock_ids`` as given (PDM-Closed's roadblock-correction step is not applied).
* When the centerline search cannot reach the target roadblock, the path to the reached lane furthest along the
  route is used. A scene without route lanes has no centerline: EP progress is then 0 (so EP = 1 by the < 5 m
  rule) and LK is 1.
* Every map predicate (including NAVSIM's full-map ``is_in_layer`` intersection test) uses the polygons within
  100 m of the ego centre; red-light connectors are looked up by id at any distance.
* Traffic-light statuses past the end of the scene read its last step.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from drive_jepa_core.constants import EGO_VEHICLE, NUM_TRAJ_POSES, TRAJ_DT
from drive_jepa_core.geometry import box_corners, ego_center, ego_corners, wrap_angle
from drive_jepa_core.metrics.comfort import history_states_from_log
from drive_jepa_core.metrics.map_query import (
    BoxGrid,
    PolygonIndex,
    PolylineThresholdIndex,
    polygons_from_corners,
)
from drive_jepa_core.metrics.params import (
    DRIVABLE_LAYERS,
    KEYFRAME_STEPS,
    LANE_KEEPING_DEVIATION,
    LANE_LAYERS,
    MAP_RADIUS,
    POLYGON_GRID_HALF_EXTENT,
    ROUTE_ROADBLOCK_LOOKAHEAD,
    V1_OBSERVATION_FRAMES,
    V2_OBSERVATION_FRAMES,
    VERSIONS,
)
from drive_jepa_core.scene.format import DYNAMIC_AGENT_TYPES, MapLayer, Scene, TrafficLightStatus
from drive_jepa_core.sim import initial_state

if TYPE_CHECKING:  # pragma: no cover
    from drive_jepa_core.metrics.pdm_closed import PDMClosedResult

EGO_RADIUS: float = float(np.hypot(EGO_VEHICLE.half_length, EGO_VEHICLE.half_width))  # bounding disc of the ego box
_EDGE_PIECE: float = 2.0  # m, red-light polygon edges are split into pieces this long for the broad phase


def check_version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    return version


# ----------------------------------------------------------------------------------------------------------------------
# Map
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class MapContext:
    """Map data of one scene in the form the scorers query.

    Attributes:
        polygon_ids, polygon_layers: ``(N,)`` of every scene polygon (index positions).
        index: exact point-in-polygon index over all N polygons.
        drivable, lanes, route_lanes, intersections: ``(W,)`` bitmasks over index positions, restricted to the
            polygons within :data:`MAP_RADIUS` of the ego centre (§3, §4).
        route_connectors: ``(W,)`` on-route lane connectors (any distance), the candidates for red lights.
        centerline: ``(P, 2)`` or None; centerline_geom: its shapely LineString; lane_keeping: LK threshold index.
        start_lane_id: the lane the centerline starts on (-1 if none); speed_limit: its limit in m/s (NaN unknown).
    """

    polygon_ids: np.ndarray
    polygon_layers: np.ndarray
    in_radius: np.ndarray
    index: PolygonIndex
    drivable: np.ndarray
    lanes: np.ndarray
    route_lanes: np.ndarray
    intersections: np.ndarray
    route_connectors: np.ndarray
    centerline: np.ndarray | None
    centerline_geom: Any
    lane_keeping: PolylineThresholdIndex | None
    start_lane_id: int
    speed_limit: float
    lane_positions: dict[int, int] = field(default_factory=dict)  # lane id -> polygon position

    @property
    def geoms(self) -> np.ndarray:
        return self.index.geoms

    def positions(self, mask: np.ndarray) -> np.ndarray:
        """Index positions whose bit is set in ``mask``."""
        bits = ((mask[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(bool).reshape(-1)
        return np.flatnonzero(bits[: self.index.num])


def build_map_context(scene: Scene, ego_pose: np.ndarray) -> MapContext:
    """Polygons, layer masks, route lanes and centerline of ``scene`` around the rear-axle pose ``ego_pose``.

    Only the polygons within :data:`MAP_RADIUS` of the ego centre are kept (NAVSIM's drivable-area map), plus the
    on-route lane connectors that carry a traffic light (red-light polygons are looked up by id, at any distance).
    """
    all_ids = np.asarray(scene.map_polygon_ids, dtype=np.int64)
    all_layers = np.asarray(scene.map_polygon_layers, dtype=np.int64)
    centre = ego_center(ego_pose)
    route_rb = np.asarray(scene.route_roadblock_ids, dtype=np.int64)
    route_lane_ids = set(int(i) for i in scene.lane_ids[np.isin(scene.lane_roadblock_ids, route_rb)])
    lit = set(int(i) for i in scene.traffic_light_lane_ids)
    if len(scene.map_polygons):
        geoms = np.array([shapely.Polygon(np.asarray(p, dtype=np.float64)) for p in scene.map_polygons])
        near = shapely.distance(geoms, shapely.Point(float(centre[0]), float(centre[1]))) <= MAP_RADIUS
    else:
        near = np.zeros(0, dtype=bool)
    lit_connector = np.array([(int(i) in lit and int(i) in route_lane_ids) for i in all_ids], dtype=bool)
    lit_connector &= all_layers == MapLayer.LANE_CONNECTOR
    keep = np.flatnonzero(near | lit_connector)
    ids, layers, in_radius = all_ids[keep], all_layers[keep], near[keep]
    half = POLYGON_GRID_HALF_EXTENT
    index = PolygonIndex([scene.map_polygons[j] for j in keep], bounds=(centre - half, centre + half))
    on_route = np.array([int(i) in route_lane_ids for i in ids], dtype=bool)
    is_lane = np.isin(layers, [int(x) for x in LANE_LAYERS])

    def mask(sel: np.ndarray) -> np.ndarray:
        return index.mask(np.flatnonzero(sel))

    lane_positions = {int(pid): j for j, pid in enumerate(ids) if is_lane[j]}
    centerline, start_lane, speed_limit = _centerline(scene, ego_pose, lane_positions, index)
    line = shapely.LineString(centerline) if centerline is not None else None
    return MapContext(
        polygon_ids=ids,
        polygon_layers=layers,
        in_radius=in_radius,
        index=index,
        drivable=mask(np.isin(layers, [int(x) for x in DRIVABLE_LAYERS]) & in_radius),
        lanes=mask(is_lane & in_radius),
        route_lanes=mask(is_lane & on_route & in_radius),
        intersections=mask((layers == MapLayer.INTERSECTION) & in_radius),
        route_connectors=mask((layers == MapLayer.LANE_CONNECTOR) & on_route),
        centerline=centerline,
        centerline_geom=line,
        lane_keeping=PolylineThresholdIndex(centerline, LANE_KEEPING_DEVIATION) if centerline is not None else None,
        start_lane_id=start_lane,
        speed_limit=speed_limit,
        lane_positions=lane_positions,
    )


def _polyline_heading_at(line: np.ndarray, xy: np.ndarray) -> float:
    """Heading of the segment of ``line`` nearest to ``xy``."""
    a, b = line[:-1], line[1:]
    ab = b - a
    denom = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    t = np.clip(np.einsum("ij,ij->i", xy - a, ab) / denom, 0.0, 1.0)
    d = np.hypot(*(a + t[:, None] * ab - xy).T)
    i = int(np.argmin(d))
    return float(np.arctan2(ab[i, 1], ab[i, 0]))


def _centerline(scene: Scene, ego_pose: np.ndarray, lane_positions: dict[int, int], index: PolygonIndex
                ) -> tuple[np.ndarray | None, int, float]:
    """Route centerline (§3): start lane, Dijkstra over successors within route lanes, concatenated centerlines."""
    route = [int(r) for r in scene.route_roadblock_ids]
    lane_row = scene.lane_index()
    route_lanes = [int(lid) for lid, rb in zip(scene.lane_ids, scene.lane_roadblock_ids, strict=True)
                   if int(rb) in route and len(scene.lane_centerlines[lane_row[int(lid)]]) >= 2]
    if not route_lanes:
        return None, -1, float("nan")
    rear = shapely.Point(float(ego_pose[0]), float(ego_pose[1]))
    # 1. Route lane under the rear axle with the baseline heading closest to the ego's; else the closest route lane.
    best, best_err = None, np.inf
    for lid in route_lanes:
        pos = lane_positions.get(lid)
        if pos is None or not shapely.intersects(index.geoms[pos], rear):
            continue
        err = abs(float(wrap_angle(_polyline_heading_at(scene.lane_centerlines[lane_row[lid]], ego_pose[:2])
                                   - ego_pose[2])))
        if err < best_err:
            best, best_err = lid, err
    if best is None:
        dists = []
        for lid in route_lanes:
            pos = lane_positions.get(lid)
            geom = index.geoms[pos] if pos is not None else shapely.LineString(scene.lane_centerlines[lane_row[lid]])
            dists.append(shapely.distance(geom, rear))
        best = route_lanes[int(np.argmin(dists))]
    # 2. Dijkstra over successors restricted to route lanes, cost = lane length.
    rb_of = {int(lid): int(rb) for lid, rb in zip(scene.lane_ids, scene.lane_roadblock_ids, strict=True)}
    route_pos = {rb: i for i, rb in enumerate(route)}
    start_idx = route_pos.get(rb_of[best], 0)
    target_rb = route[min(start_idx + ROUTE_ROADBLOCK_LOOKAHEAD - 1, len(route) - 1)]
    allowed = set(route_lanes)
    succ: dict[int, list[int]] = {}
    for a, b in np.asarray(scene.lane_successors, dtype=np.int64).reshape(-1, 2):
        if int(a) in allowed and int(b) in allowed:
            succ.setdefault(int(a), []).append(int(b))

    def length(lid: int) -> float:
        pts = scene.lane_centerlines[lane_row[lid]]
        return float(np.hypot(*np.diff(pts, axis=0).T).sum())

    cost = {best: length(best)}
    parent: dict[int, int | None] = {best: None}
    heap = [(cost[best], best)]
    done: set[int] = set()
    goal = None
    while heap:
        c, lid = heapq.heappop(heap)
        if lid in done:
            continue
        done.add(lid)
        if rb_of[lid] == target_rb:
            goal = lid
            break
        for nxt in succ.get(lid, []):
            nc = c + length(nxt)
            if nc < cost.get(nxt, np.inf):
                cost[nxt], parent[nxt] = nc, lid
                heapq.heappush(heap, (nc, nxt))
    if goal is None:  # deviation: furthest reached lane along the route (ties: cheapest)
        goal = max(done, key=lambda lid: (route_pos.get(rb_of[lid], -1), -cost[lid]))
    path = []
    node: int | None = goal
    while node is not None:
        path.append(node)
        node = parent[node]
    path.reverse()
    # 3. Concatenate the baseline paths (consecutive duplicate points dropped).
    pts = np.concatenate([np.asarray(scene.lane_centerlines[lane_row[lid]], dtype=np.float64) for lid in path])
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(pts[1:] != pts[:-1], axis=1)
    pts = pts[keep]
    if len(pts) < 2:
        return None, best, float(scene.lane_speed_limits[lane_row[best]])
    return pts, best, float(scene.lane_speed_limits[lane_row[best]])


# ----------------------------------------------------------------------------------------------------------------------
# Observations
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class RedLightEdges:
    """Edges of red-light polygons split into short pieces, as degenerate boxes in a per-frame broad phase.

    Attributes:
        segments: ``(E, 2, 2)`` pieces; polygon: ``(E,)`` index position of each piece's polygon;
        grid: :class:`BoxGrid` whose entry ``obj`` is the piece index (present in the frames the polygon is red).
    """

    segments: np.ndarray
    polygon: np.ndarray
    grid: BoxGrid


@dataclass
class Observation:
    """Objects per 0.1 s frame as the scorer sees them (F frames, A objects).

    Attributes:
        ids, types: ``(A,)``; is_agent: ``(A,)`` VEHICLE / PEDESTRIAN / BICYCLE (nuPlan AGENT_TYPES).
        centres ``(F, A, 2)``, headings ``(F, A)``, lengths/widths ``(A,)``, valid ``(F, A)``.
        corners: ``(F, A, 4, 2)`` box corners (FL, RL, RR, FR); zeros where invalid.
        first_speed: ``(A,)`` speed at the object's first appearance (NaN if never present).
        red: ``(F, N_poly)`` bool, map polygons that are red-light connectors at each frame.
    """

    ids: np.ndarray
    types: np.ndarray
    is_agent: np.ndarray
    centres: np.ndarray
    headings: np.ndarray
    lengths: np.ndarray
    widths: np.ndarray
    valid: np.ndarray
    corners: np.ndarray
    first_speed: np.ndarray
    red: np.ndarray
    _grid: BoxGrid | None = None
    _red_edges: RedLightEdges | None = None
    _centroids: np.ndarray | None = None
    _shapely_boxes: dict[int, list[tuple[int, Any]]] | None = None

    def shapely_boxes(self, frame: int) -> list[tuple[int, Any]]:
        """``[(object index, shapely box polygon)]`` of the objects present in ``frame`` (built once per frame)."""
        if self._shapely_boxes is None:
            self._shapely_boxes = {}
        if frame not in self._shapely_boxes:
            present = np.flatnonzero(self.valid[frame])
            self._shapely_boxes[frame] = [(int(a), shapely.Polygon(self.corners[frame, a])) for a in present]
        return self._shapely_boxes[frame]

    @property
    def num_frames(self) -> int:
        return int(self.valid.shape[0])

    def grid(self) -> BoxGrid:
        """Broad phase of the object boxes against ego boxes (built on first use)."""
        if self._grid is None:
            self._grid = BoxGrid(self.centres, self.headings, self.lengths / 2.0, self.widths / 2.0, self.valid,
                                 EGO_RADIUS)
        return self._grid

    def centroids(self) -> np.ndarray:
        """``(F, A, 2)`` shapely centroids of the object box polygons (NAVSIM's relative-angle reference point)."""
        if self._centroids is None:
            out = np.zeros(self.centres.shape)
            f_idx, a_idx = np.nonzero(self.valid)
            if f_idx.size:
                polys = polygons_from_corners(self.corners[f_idx, a_idx])
                out[f_idx, a_idx] = shapely.get_coordinates(shapely.centroid(polys))
            self._centroids = out
        return self._centroids

    def red_edges(self, map_ctx: MapContext) -> RedLightEdges:
        """Red-light polygon edge pieces and their broad phase (built on first use)."""
        if self._red_edges is None:
            positions = np.flatnonzero(self.red.any(axis=0))
            segs, owner = [], []
            for pos in positions:
                ring = map_ctx.index.rings[pos]
                for a, b in itertools.pairwise(np.concatenate([ring, ring[:1]])):
                    n = max(1, int(np.ceil(np.hypot(*(b - a)) / _EDGE_PIECE)))
                    for i in range(n):
                        segs.append([a + (b - a) * (i / n), a + (b - a) * ((i + 1) / n)])
                        owner.append(pos)
            segments = np.asarray(segs, dtype=np.float64).reshape(-1, 2, 2)
            owner_arr = np.asarray(owner, dtype=np.int64)
            direction = segments[:, 1] - segments[:, 0]
            centres = np.broadcast_to(0.5 * (segments[:, 0] + segments[:, 1]), (self.num_frames, len(segments), 2))
            headings = np.broadcast_to(np.arctan2(direction[:, 1], direction[:, 0]), centres.shape[:2])
            half_len = 0.5 * np.hypot(direction[:, 0], direction[:, 1])
            valid = self.red[:, owner_arr] if len(owner_arr) else np.zeros((self.num_frames, 0), dtype=bool)
            grid = BoxGrid(centres, headings, half_len, np.zeros_like(half_len), valid, EGO_RADIUS)
            self._red_edges = RedLightEdges(segments, owner_arr, grid)
        return self._red_edges


def make_observation(ids: np.ndarray, types: np.ndarray, sizes: np.ndarray, centres: np.ndarray,
                     headings: np.ndarray, velocities: np.ndarray, valid: np.ndarray, red: np.ndarray
                     ) -> Observation:
    """Observation from per-frame object arrays (invalid entries may hold anything, they are zeroed).

    Args:
        ids, types: ``(A,)``; sizes: ``(A, 2+)`` length, width; centres ``(F, A, 2)``; headings ``(F, A)``;
        velocities ``(F, A, 2)`` world frame; valid ``(F, A)``; red ``(F, N_poly)``.
    """
    valid = np.asarray(valid, dtype=bool)
    centres = np.where(valid[..., None], centres, 0.0)
    headings = np.where(valid, headings, 0.0)
    velocities = np.where(valid[..., None], velocities, 0.0)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, sizes.shape[-1] if sizes.ndim == 2 else 3)
    lengths, widths = sizes[:, 0].copy(), sizes[:, 1].copy()
    corners = box_corners(centres, headings, lengths[None, :], widths[None, :])
    corners = np.where(valid[..., None, None], corners, 0.0)
    speed = np.hypot(velocities[..., 0], velocities[..., 1])
    first = np.argmax(valid, axis=0) if valid.shape[0] else np.zeros(valid.shape[1], dtype=np.int64)
    ever = valid.any(axis=0) if valid.shape[0] else np.zeros(valid.shape[1], dtype=bool)
    first_speed = np.where(ever, speed[first, np.arange(valid.shape[1])] if valid.shape[1] else 0.0, np.nan)
    types = np.asarray(types, dtype=np.int64)
    return Observation(
        ids=np.asarray(ids, dtype=np.int64), types=types,
        is_agent=np.isin(types, [int(t) for t in DYNAMIC_AGENT_TYPES]),
        centres=centres, headings=headings, lengths=lengths, widths=widths, valid=valid, corners=corners,
        first_speed=np.asarray(first_speed, dtype=np.float64), red=np.asarray(red, dtype=bool),
    )


def red_light_frames(scene: Scene, map_ctx: MapContext, num_frames: int, hold: bool = True) -> np.ndarray:
    """``(F, N_poly)`` bool: on-route lane-connector polygons whose light is RED at each frame (§3 "Red lights").

    With ``hold`` the status of frame i is read at the preceding 2 Hz keyframe, t0 + 0.5 s · floor(i / 5); frames
    past the end of the scene read its last step. Without ``hold`` every frame uses t0's status.
    """
    red = np.zeros((num_frames, map_ctx.index.num), dtype=bool)
    if scene.traffic_light_lane_ids.shape[0] == 0 or map_ctx.index.num == 0:
        return red
    connectors = set(map_ctx.positions(map_ctx.route_connectors).tolist())
    pos_of = {int(pid): j for j, pid in enumerate(map_ctx.polygon_ids)}
    lights = [(col, pos_of[int(lid)]) for col, lid in enumerate(scene.traffic_light_lane_ids)
              if pos_of.get(int(lid)) in connectors]
    if not lights:
        return red
    frames = np.arange(num_frames)
    keys = scene.t0_index + (KEYFRAME_STEPS * (frames // KEYFRAME_STEPS) if hold else 0 * frames)
    status = scene.traffic_light_status[np.minimum(keys, scene.num_steps - 1)]  # (F, L)
    for col, pos in lights:
        red[:, pos] |= status[:, col] == TrafficLightStatus.RED
    return red


def log_replay_observation(scene: Scene, map_ctx: MapContext, num_frames: int, remove_t0_overlap: bool
                           ) -> Observation:
    """Log-replay observation (§3): frames t0 … t0 + (F - 1) · 0.1 s of the scene's agents.

    Frames past the end of the scene hold no objects. With ``remove_t0_overlap`` (v2), objects whose box
    intersects the ego box at t0 are removed from every frame.
    """
    steps = scene.t0_index + np.arange(num_frames)
    inside = steps < scene.num_steps
    idx = np.minimum(steps, scene.num_steps - 1)
    states = scene.agent_states[idx]  # (F, A, 5)
    valid = scene.agent_valid[idx] & inside[:, None]
    valid = valid & np.all(np.isfinite(states), axis=-1)
    if remove_t0_overlap and valid.shape[1]:
        ego_box = shapely.Polygon(ego_corners(scene.ego_pose))
        present = np.flatnonzero(valid[0])
        if present.size:
            boxes = box_corners(states[0, present, :2], states[0, present, 2], scene.agent_sizes[present, 0],
                                scene.agent_sizes[present, 1])
            hit = shapely.intersects(ego_box, polygons_from_corners(boxes))
            valid[:, present[hit]] = False
    return make_observation(scene.agent_ids, scene.agent_types, scene.agent_sizes, states[..., :2], states[..., 2],
                            states[..., 3:5], valid, red_light_frames(scene, map_ctx, num_frames))


# ----------------------------------------------------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ScoringContext:
    """What one scoring call sees: the map, an observation and the human history (None: HC = 1)."""

    map: MapContext
    observation: Observation
    history: np.ndarray | None


@dataclass
class MetricCache:
    """Per-scene scoring inputs (see module docstring). Build with :meth:`from_scene`."""

    token: str
    log_name: str
    source: str
    ego_state7: np.ndarray  # (7,)
    initial_state: np.ndarray  # (11,)
    map: MapContext
    observations: dict[str, Observation]
    human_history: np.ndarray | None  # (H, 11)
    human_future: np.ndarray | None  # (8, 3) local
    scene: Scene | None = field(default=None, repr=False)  # kept for PDM-Closed (lazy)
    _pdm: dict[str, PDMClosedResult] = field(default_factory=dict, repr=False)
    _human: dict[str, Any] = field(default_factory=dict, repr=False)
    _reference: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)  # (raw0, mult0) per version
    _oracle: dict[str, Any] = field(default_factory=dict, repr=False)  # the reference scorer's own per-scene memo

    @classmethod
    def from_scene(cls, scene: Scene, reference_memo: dict[str, tuple[float, float]] | None = None) -> MetricCache:
        """Build the cache of ``scene`` (map index, centerline, observations, history, human future).

        ``reference_memo``: a dict to hold the PDM-Closed reference progress of each version (see
        :attr:`reference_progress`); passing the same dict to a rebuild of the same scene lets it skip PDM-Closed.
        """
        if not isinstance(scene, Scene):
            raise TypeError(f"expected a Scene, got {type(scene).__name__}")
        if reference_memo is not None and not isinstance(reference_memo, dict):
            raise TypeError(f"reference_memo must be a dict, got {type(reference_memo).__name__}")
        scene.validate()
        ego7 = np.asarray(scene.ego_states[scene.t0_index], dtype=np.float64).copy()
        map_ctx = build_map_context(scene, ego7[:3])
        observations = {
            "v1": log_replay_observation(scene, map_ctx, V1_OBSERVATION_FRAMES, remove_t0_overlap=False),
            "v2": log_replay_observation(scene, map_ctx, V2_OBSERVATION_FRAMES, remove_t0_overlap=True),
        }
        history = history_states_from_log(scene.timestamps, scene.ego_states, scene.t0_index, source_step=TRAJ_DT)
        try:
            future = scene.future_trajectory(NUM_TRAJ_POSES, TRAJ_DT)
        except IndexError:
            future = None
        return cls(
            token=scene.token, log_name=scene.log_name, source=scene.source, ego_state7=ego7,
            initial_state=initial_state(ego7), map=map_ctx, observations=observations,
            human_history=history if history.shape[0] else None, human_future=future, scene=scene,
            _reference=reference_memo if reference_memo is not None else {},
        )

    @property
    def reference_progress(self) -> Mapping[str, tuple[float, float]]:
        """Read-only view of the PDM-Closed reference progress computed so far: version -> (raw progress, EP
        multiplier) of the reference (filled by :func:`drive_jepa_core.metrics.scorer.reference_progress`)."""
        return MappingProxyType(self._reference)

    def context(self, version: str) -> ScoringContext:
        """Scoring context of the log-replay observation of ``version`` with the human history."""
        return ScoringContext(self.map, self.observations[check_version(version)], self.human_history)

    def pdm_reference(self, version: str) -> PDMClosedResult:
        """The PDM-Closed reference of ``version`` (computed on first use, then kept)."""
        check_version(version)
        if version not in self._pdm:
            from drive_jepa_core.metrics.pdm_closed import run_pdm_closed

            self._pdm[version] = run_pdm_closed(self, version)
        return self._pdm[version]

    def human_scores(self, version: str = "v2") -> Any:
        """The logged human future scored alone (no reference, no history, no EC) — input of the v2 filter."""
        check_version(version)
        if self.human_future is None:
            raise ValueError(f"scene {self.token} has no 4 s logged future: the human filter is unavailable")
        if version not in self._human:
            from drive_jepa_core.metrics.scorer import score_human

            self._human[version] = score_human(self, version)
        return self._human[version]
