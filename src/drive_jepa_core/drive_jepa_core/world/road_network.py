"""Procedural road maps for the synthetic world: multi-lane roads, signalized T and 4-way junctions, car parks.

A map is grown along the ego's route: road → junction → road → … until the route is long enough for an episode.
Junctions get side arms (stub roads ending at the map border), so every junction offers left/straight/right choices.
Right-hand traffic; geometry follows the nuPlan map model the NAVSIM metrics read (navsim_metrics.md §3-§4):

* a ROADBLOCK is one driving direction of a road; its LANE polygons tile it exactly (shared boundary polylines);
* an INTERSECTION polygon covers the junction interior and overlaps the road ends by ``JUNCTION_OVERLAP`` so a
  point on the seam is still strictly inside some drivable polygon;
* LANE_CONNECTORs run through junctions and belong to *roadblock connectors* (one per incoming→outgoing roadblock
  pair); they carry the traffic lights;
* drivable area = ROADBLOCK ∪ INTERSECTION ∪ CARPARK_AREA.

Signals use split phasing (one approach green at a time), so vehicles released together never cross paths; yellows
follow the ITE kinematic formula and an all-red interval separates approaches.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from drive_jepa_core.constants import COMMAND_LEFT, COMMAND_RIGHT, COMMAND_STRAIGHT
from drive_jepa_core.geometry import wrap_angle
from drive_jepa_core.scene.format import MapLayer, TrafficLightStatus
from drive_jepa_core.world.polyline import (
    arclength,
    offset,
    resample,
    simplify,
    transition_curve,
)

# ---------------------------------------------------------------------------------------------------------------------
# Geometry constants
# ---------------------------------------------------------------------------------------------------------------------
LANE_WIDTH_RANGE = (3.4, 3.8)  # m; AASHTO Green Book 2018 §4.3: 3.0-3.6 m urban, 3.6 m typical; we use the wide end
#                                 (nuPlan-like city lanes) so the 2.3 m wide ego keeps >= 0.6 m each side
LANE_COUNT_WEIGHTS = (0.45, 0.4, 0.15)  # P(1, 2, 3 lanes per direction); our choice, biased to urban 1-2 lanes
SPEED_LIMITS = (30 / 3.6, 40 / 3.6, 50 / 3.6, 60 / 3.6)  # m/s; common urban limits (30-60 km/h)
SPEED_LIMIT_WEIGHTS = (0.15, 0.3, 0.4, 0.15)
ROAD_SPACING = 1.0  # m, working resolution of road reference lines
CONNECTOR_SPACING = 0.5  # m, working resolution of junction connectors
TURN_CLEARANCE = 6.5  # m, junction half-size beyond the widest arm: right-turn radius >= ~7 m (transition_curve)
JUNCTION_OVERLAP = 0.05  # m, intersection square overlaps road ends (strict point-in-polygon on the seam)
CARPARK_OVERLAP = 0.05  # m, car park reaches this far into the road
KERB_LANE_EXTRA = 0.5  # m added to the kerb-side lane of each roadblock: a "wide curb lane" (AASHTO 4.2-4.5 m);
#                         keeps the 2.3 m ego off the road edge when NAVSIM's simulation (zero initial steering,
#                         navsim_metrics.md §2.2) starts it mid-turn or mid-lane-change
FOOTPRINT_MARGIN = 4.0  # m of sidewalk/verge around every road kept free of other roads
MIN_ROAD_RADIUS = 50.0  # m, tightest curve of a road between junctions
STRAIGHT_END = 5.0  # m of straight road at both ends of a curved road
STORE_TOLERANCE = 0.02  # m, Douglas-Peucker tolerance of polylines written to scene files
STORE_MAX_SEGMENT = 5.0  # m, longest stored segment (keeps camera projection of long straights well-conditioned)
PARKED_GAP_RANGE = (6.0, 8.0)  # m, kerb-side parallel parking pitch (EU/US stalls 6.0-7.3 m)
PARKING_OCCUPANCY = (0.4, 0.9)
CARPARK_STALL_WIDTH = 2.6  # m, perpendicular stall width (EU 2.5 m, US 2.6-2.7 m)
CARPARK_STALL_DEPTH = 5.5  # m

# ---------------------------------------------------------------------------------------------------------------------
# Signal timing (split phasing)
# ---------------------------------------------------------------------------------------------------------------------
GREEN_RANGE = (7.0, 12.0)  # s per approach; short urban greens
# ITE yellow change interval Y = t_r + v / (2 a) with t_r = 1 s, a = 10 ft/s^2 (3.05 m/s^2), kept within 3-6 s
# (ITE "Traffic Signal Timing Manual", 2nd ed. 2015, §5.3).
YELLOW_REACTION = 1.0  # s
YELLOW_DECEL = 3.05  # m/s^2
YELLOW_BASE = 3.0  # s, minimum yellow
YELLOW_MAX = 6.0  # s
ALL_RED = 2.0  # s, red clearance interval between approaches (ITE: 1-2 s typical)
PED_PHASE_WALK_SPEED = 1.1  # m/s; MUTCD 4E.06 walk speed for clearance timing is 3.5 ft/s (1.07 m/s)

TURN_NAMES = {COMMAND_LEFT: "left", COMMAND_STRAIGHT: "straight", COMMAND_RIGHT: "right"}


class MapGenerationError(RuntimeError):
    """The procedural generator could not lay out a map (overlaps) after many attempts."""


@dataclass
class Lane:
    """A lane or lane connector. Polylines are dense working geometry ``(K, 2)`` in driving direction."""

    id: int
    roadblock_id: int
    is_connector: bool
    centerline: np.ndarray
    left: np.ndarray
    right: np.ndarray
    speed_limit: float
    width: float
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    left_neighbor: int | None = None  # same-direction lane to the left in the same roadblock
    right_neighbor: int | None = None
    turn: int | None = None  # COMMAND_* of a connector
    junction_id: int | None = None
    road_id: int | None = None
    light_index: int = -1  # column in RoadMap.light_lane_ids, -1 = no light

    @property
    def length(self) -> float:
        return float(arclength(self.centerline)[-1])

    @property
    def polygon(self) -> np.ndarray:
        return np.concatenate([self.left, self.right[::-1]])


@dataclass
class Road:
    """Both directions of a road between two nodes. ``ref`` is the centre dividing line ``(K, 2)``; forward lanes
    lie to its right and run along it, backward lanes to its left and run against it. Lane lists are innermost
    (next to ``ref``) first."""

    id: int
    ref: np.ndarray
    n_fwd: int
    n_bwd: int
    lane_width: float
    speed_limit: float
    fwd_roadblock: int = -1
    bwd_roadblock: int = -1
    fwd_lanes: list[int] = field(default_factory=list)
    bwd_lanes: list[int] = field(default_factory=list)
    start_junction: int | None = None
    end_junction: int | None = None

    @property
    def length(self) -> float:
        return float(arclength(self.ref)[-1])

    def boundary_offset(self, k: int) -> float:
        """Lateral offset (left positive) of lane boundary ``k`` in ``[-n_fwd, n_bwd]`` (0 = ``ref``)."""
        return _boundary_offset(k, self.n_fwd, self.n_bwd, self.lane_width)

    def boundary(self, k: int) -> np.ndarray:
        """Boundary line ``k`` (see :meth:`boundary_offset`)."""
        return offset(self.ref, self.boundary_offset(k))


@dataclass
class Junction:
    """A signalized junction: a square of half-size ``half_size`` around ``center``; ``approaches`` are the
    incoming roadblock ids in signal order (split phasing: approach k green, yellow, all-red, then k + 1)."""

    id: int
    center: np.ndarray
    heading: float
    half_size: float
    approaches: list[int] = field(default_factory=list)
    green: list[float] = field(default_factory=list)
    yellow: list[float] = field(default_factory=list)
    all_red: float = ALL_RED
    offset: float = 0.0  # s, time at which approach 0 turns green (mod cycle)
    crosswalks: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    ped_phase: float = 0.0  # s, exclusive pedestrian phase (all vehicle lights red) closing each cycle

    @property
    def polygon(self) -> np.ndarray:
        h = self.half_size + JUNCTION_OVERLAP
        corners = np.array([[h, h], [-h, h], [-h, -h], [h, -h]])
        c, s = np.cos(self.heading), np.sin(self.heading)
        return self.center + corners @ np.array([[c, s], [-s, c]])

    @property
    def cycle(self) -> float:
        return float(sum(self.green) + sum(self.yellow) + self.all_red * len(self.approaches) + self.ped_phase)

    def phase_start(self, approach: int) -> float:
        """Offset of approach ``approach``'s green within the cycle."""
        return float(sum(self.green[:approach]) + sum(self.yellow[:approach]) + self.all_red * approach)

    def set_green_start(self, approach: int, t: float) -> None:
        """Shift the cycle so approach ``approach`` turns green at time ``t``."""
        self.offset = float(t - self.phase_start(approach))

    def status(self, approach: int, t: float) -> int:
        return self.status_and_time_to_red(approach, t)[0]

    def status_and_time_to_red(self, approach: int, t: float) -> tuple[int, float]:
        """Status of ``approach`` at ``t`` and the seconds until it is red (0 when red)."""
        tau = (t - self.offset - self.phase_start(approach)) % self.cycle
        g, y = self.green[approach], self.yellow[approach]
        if tau < g:
            return int(TrafficLightStatus.GREEN), g + y - tau
        if tau < g + y:
            return int(TrafficLightStatus.YELLOW), g + y - tau
        return int(TrafficLightStatus.RED), 0.0

    def walk_time_left(self, t: float) -> float:
        """Seconds left in the pedestrian phase at time ``t`` (0 outside it)."""
        if self.ped_phase <= 0.0:
            return 0.0
        tau = (t - self.offset) % self.cycle
        start = self.cycle - self.ped_phase
        return float(self.cycle - tau) if tau >= start else 0.0


@dataclass
class Route:
    """The ego's route: ordered roadblock ids (roadblocks and roadblock connectors), the turn taken at each
    junction, and where the ego starts (arclength along the first road's reference line)."""

    roadblock_ids: list[int]
    turns: list[int]
    junction_ids: list[int]
    approach_indices: list[int]  # index of the route's approach in each junction's signal order
    start_road: int
    ego_start_s: float


@dataclass
class RoadMap:
    """A whole procedural map. Dense working geometry lives in :class:`Lane`; :meth:`scene_map_fields` gives the
    simplified arrays a :class:`~drive_jepa_core.scene.format.Scene` stores."""

    lanes: dict[int, Lane]
    roads: list[Road]
    junctions: list[Junction]
    roadblock_polygons: dict[int, np.ndarray]
    roadblock_connectors: dict[int, list[int]]
    carparks: dict[int, np.ndarray]
    parking_spots: np.ndarray  # (P, 4) x, y, heading, max length of kerb-side / car-park stalls (box centres)
    crosswalks: list[tuple[np.ndarray, np.ndarray]]  # (start, end) of pedestrian crossings across roads
    sidewalks: list[np.ndarray]  # walking polylines beside roads
    light_lane_ids: np.ndarray  # (L,) connector ids carrying a light
    _stored: dict | None = None
    _light_groups: list | None = None

    # ----------------------------------------------------------------------------------------------------------------
    def light_status(self, t: float) -> np.ndarray:
        """``(L,)`` TrafficLightStatus of every light at time ``t``."""
        return self.light_state(t)[0]

    def light_state(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """``(L,)`` TrafficLightStatus and ``(L,)`` seconds until each light is red, at time ``t``."""
        if self._light_groups is None:
            index = {int(lid): i for i, lid in enumerate(self.light_lane_ids)}
            groups = []
            for junction in self.junctions:
                for k, rb in enumerate(junction.approaches):
                    cols = [index[lid] for lid, lane in self.lanes.items() if lane.is_connector
                            and lane.junction_id == junction.id
                            and self.lanes[lane.predecessors[0]].roadblock_id == rb]
                    groups.append((junction, k, np.asarray(cols, dtype=np.int64)))
            self._light_groups = groups
        out = np.full(len(self.light_lane_ids), int(TrafficLightStatus.UNKNOWN), dtype=np.int64)
        left = np.full(len(self.light_lane_ids), np.inf)
        for junction, k, cols in self._light_groups:
            out[cols], left[cols] = junction.status_and_time_to_red(k, t)
        return out, left

    def roadblock_of(self, lane_id: int) -> int:
        return self.lanes[lane_id].roadblock_id

    def roadblock_lanes(self, roadblock_id: int) -> list[int]:
        return [lid for lid, lane in self.lanes.items() if lane.roadblock_id == roadblock_id]

    def drivable_polygons(self) -> list[np.ndarray]:
        """Exteriors of every ROADBLOCK, INTERSECTION and CARPARK_AREA polygon (dense working geometry)."""
        return ([*self.roadblock_polygons.values()] + [j.polygon for j in self.junctions]
                + [*self.carparks.values()])

    def scene_map_fields(self, route: Route) -> dict:
        """Keyword arguments of :class:`Scene` for the map (polygons, lanes, successors, route)."""
        if self._stored is None:
            self._stored = self._build_stored()
        fields = dict(self._stored)
        fields["route_roadblock_ids"] = [int(r) for r in route.roadblock_ids]
        return fields

    def _build_stored(self) -> dict:
        def store(line: np.ndarray) -> np.ndarray:
            return simplify(line, STORE_TOLERANCE, STORE_MAX_SEGMENT)

        left_b, right_b, centers = {}, {}, {}
        rb_poly: dict[int, np.ndarray] = {}
        for road in self.roads:  # boundaries are shared between neighbouring lanes: simplify each line once
            lines = {k: store(road.boundary(k)) for k in range(-road.n_fwd, road.n_bwd + 1)}
            for i, lid in enumerate(road.fwd_lanes):
                left_b[lid], right_b[lid] = lines[-i], lines[-i - 1]
            for i, lid in enumerate(road.bwd_lanes):
                left_b[lid], right_b[lid] = lines[i][::-1], lines[i + 1][::-1]
            rb_poly[road.fwd_roadblock] = np.concatenate([lines[0], lines[-road.n_fwd][::-1]])
            rb_poly[road.bwd_roadblock] = np.concatenate([lines[road.n_bwd], lines[0][::-1]])
        for lid, lane in self.lanes.items():
            centers[lid] = store(lane.centerline)
            if lane.is_connector:
                left_b[lid], right_b[lid] = store(lane.left), store(lane.right)
        lane_ids = np.array(sorted(self.lanes), dtype=np.int64)
        poly_ids, poly_layers, polys = [], [], []
        for rb, poly in rb_poly.items():
            poly_ids.append(rb), poly_layers.append(MapLayer.ROADBLOCK), polys.append(poly)
        for lid in lane_ids:
            lane = self.lanes[int(lid)]
            poly_ids.append(int(lid))
            poly_layers.append(MapLayer.LANE_CONNECTOR if lane.is_connector else MapLayer.LANE)
            polys.append(np.concatenate([left_b[int(lid)], right_b[int(lid)][::-1]]))
        for junction in self.junctions:
            poly_ids.append(junction.id), poly_layers.append(MapLayer.INTERSECTION), polys.append(junction.polygon)
        for cid, poly in self.carparks.items():
            poly_ids.append(cid), poly_layers.append(MapLayer.CARPARK_AREA), polys.append(poly)
        successors = [(lid, succ) for lid in lane_ids for succ in self.lanes[int(lid)].successors]
        return dict(
            map_polygon_ids=np.asarray(poly_ids, dtype=np.int64),
            map_polygon_layers=np.asarray([int(x) for x in poly_layers], dtype=np.int64),
            map_polygons=[_open_ring(p) for p in polys],
            lane_ids=lane_ids,
            lane_roadblock_ids=np.array([self.lanes[int(i)].roadblock_id for i in lane_ids], dtype=np.int64),
            lane_is_connector=np.array([self.lanes[int(i)].is_connector for i in lane_ids], dtype=bool),
            lane_speed_limits=np.array([self.lanes[int(i)].speed_limit for i in lane_ids], dtype=np.float64),
            lane_centerlines=[centers[int(i)] for i in lane_ids],
            lane_left_boundaries=[left_b[int(i)] for i in lane_ids],
            lane_right_boundaries=[right_b[int(i)] for i in lane_ids],
            lane_successors=np.asarray(successors, dtype=np.int64).reshape(-1, 2),
        )


def _boundary_offset(k: int, n_fwd: int, n_bwd: int, lane_width: float) -> float:
    if k <= -n_fwd:
        return -(n_fwd * lane_width + KERB_LANE_EXTRA)
    if k >= n_bwd:
        return n_bwd * lane_width + KERB_LANE_EXTRA
    return k * lane_width


def _edge(n_lanes: int, lane_width: float) -> float:
    """Distance from ``ref`` to the kerb of a side with ``n_lanes`` lanes."""
    return n_lanes * lane_width + KERB_LANE_EXTRA


def _open_ring(poly: np.ndarray) -> np.ndarray:
    poly = np.asarray(poly, dtype=np.float64)
    keep = np.concatenate([[True], np.hypot(*np.diff(poly, axis=0).T) > 1e-9])
    poly = poly[keep]
    if len(poly) > 1 and np.allclose(poly[0], poly[-1]):
        poly = poly[:-1]
    return poly


# =====================================================================================================================
# Generation
# =====================================================================================================================
@dataclass
class _RoadSpec:
    n_fwd: int
    n_bwd: int
    lane_width: float
    speed_limit: float


@dataclass
class _Arm:
    """A junction arm: ``angle`` points away from the centre; ``outward`` when the road's ref starts at the
    junction (its forward lanes leave the junction)."""

    angle: float
    spec: _RoadSpec
    road: Road | None = None
    outward: bool = True

    @property
    def n_in(self) -> int:
        return self.spec.n_bwd if self.outward else self.spec.n_fwd

    @property
    def n_out(self) -> int:
        return self.spec.n_fwd if self.outward else self.spec.n_bwd

    def in_lanes(self) -> list[int]:
        return self.road.bwd_lanes if self.outward else self.road.fwd_lanes

    def out_lanes(self) -> list[int]:
        return self.road.fwd_lanes if self.outward else self.road.bwd_lanes

    def in_roadblock(self) -> int:
        return self.road.bwd_roadblock if self.outward else self.road.fwd_roadblock

    def out_roadblock(self) -> int:
        return self.road.fwd_roadblock if self.outward else self.road.bwd_roadblock


class _RetryError(Exception):
    pass


class _Builder:
    def __init__(self, rng: np.random.Generator) -> None:
        import shapely

        self._shapely = shapely
        self.rng = rng
        self._next = 1
        self.roads: list[Road] = []
        self.junctions: list[Junction] = []
        self.junction_arms: dict[int, list[_Arm]] = {}
        self.lanes: dict[int, Lane] = {}
        self.roadblock_polygons: dict[int, np.ndarray] = {}
        self.footprints: list[tuple[object, set[int]]] = []  # (shapely polygon, ids it may touch)

    def new_id(self) -> int:
        self._next += 1
        return self._next - 1

    # ---------------------------------------------------------------------------------------------------------- specs
    def random_spec(self, n_fwd: int | None = None, n_bwd: int | None = None) -> _RoadSpec:
        rng = self.rng
        counts = (1, 2, 3)
        n_f = n_fwd if n_fwd is not None else int(rng.choice(counts, p=LANE_COUNT_WEIGHTS))
        if n_bwd is not None:
            n_b = n_bwd
        else:  # mostly symmetric roads
            n_b = n_f if rng.random() < 0.7 else int(rng.choice(counts, p=LANE_COUNT_WEIGHTS))
        return _RoadSpec(n_f, n_b, float(rng.uniform(*LANE_WIDTH_RANGE)),
                         float(rng.choice(SPEED_LIMITS, p=SPEED_LIMIT_WEIGHTS)))

    # ------------------------------------------------------------------------------------------------------- geometry
    def reference_line(self, start: np.ndarray, heading: float, length: float, curvy: bool,
                       max_turn: float = np.pi / 2) -> np.ndarray:
        """Straight, single-arc or S-curve reference line of ``length`` metres, sampled every ROAD_SPACING."""
        rng = self.rng
        pieces: list[tuple[float, float]] = []  # (length, curvature)
        kind = rng.choice(["straight", "arc", "s"], p=[0.45, 0.4, 0.15]) if curvy else "straight"
        if kind == "straight" or length < 40.0:
            pieces = [(length, 0.0)]
        else:
            n_arcs = 1 if kind == "arc" else 2
            angle = float(rng.uniform(np.deg2rad(15), max_turn))
            radius = float(rng.uniform(MIN_ROAD_RADIUS, 250.0))
            arc_len = min(radius * angle, 0.7 * length / n_arcs)
            radius = max(arc_len / angle, MIN_ROAD_RADIUS)
            arc_len = radius * angle
            sign = float(rng.choice([-1.0, 1.0]))
            rest = max(length - n_arcs * arc_len, 2 * STRAIGHT_END)
            # straight ends: lanes meet the junction square edge at right angles (no wedge-shaped gaps)
            lead = STRAIGHT_END + float(rng.uniform(0.0, 1.0)) * (rest - 2 * STRAIGHT_END)
            pieces = [(lead, 0.0), (arc_len, sign / radius)]
            if n_arcs == 2:
                pieces.append((arc_len, -sign / radius))
            pieces.append((rest - lead, 0.0))
        pts = [np.asarray(start, float)]
        h = heading
        for plen, kappa in pieces:
            n = int(np.ceil(plen / ROAD_SPACING))
            if n == 0:
                continue
            ds = plen / n
            for _ in range(n):
                if kappa == 0.0:
                    step = ds * np.array([np.cos(h), np.sin(h)])
                else:
                    dh = kappa * ds
                    chord = 2.0 * np.sin(dh / 2.0) / kappa
                    step = chord * np.array([np.cos(h + dh / 2.0), np.sin(h + dh / 2.0)])
                    h += dh
                pts.append(pts[-1] + step)
        return np.asarray(pts)

    def footprint(self, ref: np.ndarray, spec: _RoadSpec):
        left = offset(ref, _edge(spec.n_bwd, spec.lane_width) + FOOTPRINT_MARGIN)
        right = offset(ref, -_edge(spec.n_fwd, spec.lane_width) - FOOTPRINT_MARGIN)
        return self._shapely.Polygon(np.concatenate([left, right[::-1]])).buffer(0)

    def fits(self, poly, touching: set[int]) -> bool:
        for other, ids in self.footprints:
            if ids & touching:
                continue
            if poly.intersects(other):
                return False
        return True

    def add_road(self, ref: np.ndarray, spec: _RoadSpec, start_junction: int | None,
                 end_junction: int | None) -> Road:
        road = Road(self.new_id(), ref, spec.n_fwd, spec.n_bwd, spec.lane_width, spec.speed_limit,
                    start_junction=start_junction, end_junction=end_junction)
        road.fwd_roadblock, road.bwd_roadblock = self.new_id(), self.new_id()
        lines = {k: road.boundary(k) for k in range(-spec.n_fwd, spec.n_bwd + 1)}
        bo = road.boundary_offset
        for i in range(spec.n_fwd):
            a, b = bo(-i), bo(-i - 1)
            lane = Lane(self.new_id(), road.fwd_roadblock, False, offset(ref, (a + b) / 2), lines[-i],
                        lines[-i - 1], spec.speed_limit, a - b, road_id=road.id)
            road.fwd_lanes.append(lane.id)
            self.lanes[lane.id] = lane
        for i in range(spec.n_bwd):
            a, b = bo(i), bo(i + 1)
            lane = Lane(self.new_id(), road.bwd_roadblock, False, offset(ref, (a + b) / 2)[::-1],
                        lines[i][::-1], lines[i + 1][::-1], spec.speed_limit, b - a, road_id=road.id)
            road.bwd_lanes.append(lane.id)
            self.lanes[lane.id] = lane
        for group in (road.fwd_lanes, road.bwd_lanes):
            for a, b in itertools.pairwise(group):  # index 0 = innermost = leftmost in driving direction
                self.lanes[a].right_neighbor, self.lanes[b].left_neighbor = b, a
        self.roadblock_polygons[road.fwd_roadblock] = np.concatenate([lines[0], lines[-spec.n_fwd][::-1]])
        self.roadblock_polygons[road.bwd_roadblock] = np.concatenate([lines[spec.n_bwd], lines[0][::-1]])
        touching = {road.id} | {j for j in (start_junction, end_junction) if j is not None}
        self.footprints.append((self.footprint(ref, spec), touching))
        self.roads.append(road)
        return road

    # ------------------------------------------------------------------------------------------------------ junction
    def build(self, min_route_length: float) -> tuple[RoadMap, Route]:
        rng = self.rng
        heading = float(rng.uniform(-np.pi, np.pi))
        spec = self.random_spec()
        ego_start_s = float(rng.uniform(50.0, 90.0))
        first_len = ego_start_s + float(rng.uniform(20.0, 130.0))
        if rng.random() < 0.12:  # no junction at all: one long (curvy) road
            first_len = ego_start_s + min_route_length
        ref = self.reference_line(np.zeros(2), heading, first_len, curvy=True)
        route_road = self.add_road(ref, spec, None, None)
        route = Route([route_road.fwd_roadblock], [], [], [], route_road.id, ego_start_s)
        covered = first_len - ego_start_s
        while covered < min_route_length:
            junction, arms, route_arm = self.add_junction(route_road, spec)
            turn = self.turn_of(arms[0], route_arm)
            spec = route_arm.spec
            remaining = min_route_length - covered
            length = float(rng.uniform(50.0, 170.0))
            if remaining < length + 60.0 or rng.random() < 0.2:
                length = remaining + 10.0  # last road: long enough to end the route
            start = junction.center + junction.half_size * _unit(route_arm.angle)
            for attempt in range(6):
                ref = self.reference_line(start, route_arm.angle, length, curvy=attempt < 3)
                poly = self.footprint(ref, spec)
                if self.fits(poly, {junction.id}):
                    break
                length = max(length * 0.7, 40.0)
            else:
                raise _RetryError
            route_road = self.add_road(ref, spec, junction.id, None)
            route_arm.road, route_arm.outward = route_road, True
            self.finish_junction(junction, arms)
            approach = junction.approaches.index(arms[0].in_roadblock())
            rbc = self.connector_roadblock(junction, arms[0].in_roadblock(), route_road.fwd_roadblock)
            route.roadblock_ids += [rbc, route_road.fwd_roadblock]
            route.turns.append(turn)
            route.junction_ids.append(junction.id)
            route.approach_indices.append(approach)
            covered += self.road_length_through(junction) + route_road.length
        self.add_carparks_and_parking(route)
        self.add_pedestrian_paths()
        return self.finish(), route

    def turn_of(self, arm_in: _Arm, arm_out: _Arm) -> int:
        delta = float(wrap_angle(arm_out.angle - (arm_in.angle + np.pi)))
        if abs(delta) < np.pi / 4:
            return COMMAND_STRAIGHT
        return COMMAND_LEFT if delta > 0 else COMMAND_RIGHT

    @staticmethod
    def road_length_through(junction: Junction) -> float:
        return 2.0 * junction.half_size

    def add_junction(self, incoming: Road, spec: _RoadSpec) -> tuple[Junction, list[_Arm], _Arm]:
        """Junction at the end of ``incoming`` (the route road). Returns arms (arms[0] = incoming) and the route arm.

        Side arms are built as stubs here; the route's continuing arm is built by the caller."""
        rng = self.rng
        end = incoming.ref[-1]
        d = incoming.ref[-1] - incoming.ref[-2]
        h = float(np.arctan2(d[1], d[0]))
        kind = str(rng.choice(["4way", "T_stem", "T_left", "T_right"], p=[0.55, 0.15, 0.15, 0.15]))
        if kind == "T_stem" and spec.n_fwd > 2:
            kind = "4way"  # a T stem serves two movements (left, right): at most two incoming lanes
        side = self.random_spec()
        if kind == "T_left":  # the side arm is a stem: at most two lanes towards the junction
            side.n_bwd = min(side.n_bwd, 2)
        elif kind == "T_right":
            side.n_fwd = min(side.n_fwd, 2)
        # opposite arms share lane counts so straight-through lanes map one to one
        arms = [_Arm(h + np.pi, spec, incoming, outward=False)]
        rel = {"4way": ("straight", "left", "right"), "T_stem": ("left", "right"),
               "T_left": ("straight", "left"), "T_right": ("straight", "right")}[kind]
        if "straight" in rel:
            arms.append(_Arm(h, spec))
        if "left" in rel:
            arms.append(_Arm(h + np.pi / 2, _RoadSpec(side.n_fwd, side.n_bwd, side.lane_width, side.speed_limit)))
        if "right" in rel:
            arms.append(_Arm(h - np.pi / 2, _RoadSpec(side.n_bwd, side.n_fwd, side.lane_width, side.speed_limit)))
        half = max(_edge(max(a.spec.n_fwd, a.spec.n_bwd), a.spec.lane_width) for a in arms) + TURN_CLEARANCE
        center = end + half * np.array([np.cos(h), np.sin(h)])
        junction = Junction(self.new_id(), center, h, half)
        square = self._shapely.Polygon(junction.polygon).buffer(FOOTPRINT_MARGIN, join_style="mitre")
        if not self.fits(square, {incoming.id}):
            raise _RetryError
        self.footprints.append((square, {junction.id}))
        incoming.end_junction = junction.id
        self.junctions.append(junction)
        # route choice among the exits (balanced so commands cover left/straight/right)
        exits = arms[1:]
        route_arm = exits[int(rng.integers(len(exits)))]
        for arm in exits:
            if arm is route_arm:
                continue
            start = center + half * _unit(arm.angle)
            length = float(rng.uniform(50.0, 120.0))
            for _ in range(4):
                ref = self.reference_line(start, arm.angle, length, curvy=rng.random() < 0.3, max_turn=np.pi / 6)
                if self.fits(self.footprint(ref, arm.spec), {junction.id}):
                    break
                length *= 0.6
                if length < 30.0:
                    raise _RetryError
            else:
                raise _RetryError
            arm.road = self.add_road(ref, arm.spec, junction.id, None)
        return junction, arms, route_arm

    def finish_junction(self, junction: Junction, arms: list[_Arm]) -> None:
        """Connectors (left from the innermost lane, straight lane i -> i, right from the outermost lane), their
        roadblock connectors, signal order and timing, crosswalks."""
        rng = self.rng
        junction_arms = sorted(arms, key=lambda a: wrap_angle(a.angle - junction.heading))
        self.junction_arms[junction.id] = junction_arms
        for arm_in in junction_arms:
            if arm_in.n_in == 0:
                continue
            in_lanes = arm_in.in_lanes()
            for arm_out in junction_arms:
                if arm_out is arm_in or arm_out.n_out == 0:
                    continue
                turn = self.turn_of(arm_in, arm_out)
                out_lanes = arm_out.out_lanes()
                if turn == COMMAND_LEFT:
                    pairs = [(in_lanes[0], out_lanes[0])]
                elif turn == COMMAND_RIGHT:
                    pairs = [(in_lanes[-1], out_lanes[-1])]
                else:
                    pairs = list(zip(in_lanes, out_lanes, strict=False))  # opposite arms: equal counts
                if not pairs:
                    continue
                rbc = self.new_id()
                for a, b in pairs:
                    self.add_connector(junction, rbc, self.lanes[a], self.lanes[b], turn)
        junction.approaches = [a.in_roadblock() for a in junction_arms if a.n_in > 0]
        junction.green = [float(rng.uniform(*GREEN_RANGE)) for _ in junction.approaches]
        junction.yellow = []
        for arm in junction_arms:
            if arm.n_in > 0:
                y = YELLOW_REACTION + arm.spec.speed_limit / (2.0 * YELLOW_DECEL)
                junction.yellow.append(float(np.clip(y, YELLOW_BASE, YELLOW_MAX)))
        for arm in junction_arms:  # zebra crossings just inside the junction square
            if rng.random() < 0.5:
                u, n = _unit(arm.angle), _unit(arm.angle + np.pi / 2)
                base = junction.center + (junction.half_size - 2.5) * u
                # incoming lanes lie on the left of the outward direction, outgoing ones on its right
                p0 = base + (_edge(arm.n_in, arm.spec.lane_width) + 2.0) * n
                p1 = base - (_edge(arm.n_out, arm.spec.lane_width) + 2.0) * n
                junction.crosswalks.append((p0, p1) if rng.random() < 0.5 else (p1, p0))
        if junction.crosswalks:  # scramble phase long enough to cross the widest arm at a slow walk
            widest = max(float(np.hypot(*(b - a))) for a, b in junction.crosswalks)
            junction.ped_phase = widest / PED_PHASE_WALK_SPEED + ALL_RED
        junction.offset = float(rng.uniform(0.0, junction.cycle))

    def connector_roadblock(self, junction: Junction, rb_in: int, rb_out: int) -> int:
        for lane in self.lanes.values():
            if (lane.is_connector and lane.junction_id == junction.id
                    and self.lanes[lane.predecessors[0]].roadblock_id == rb_in
                    and self.lanes[lane.successors[0]].roadblock_id == rb_out):
                return lane.roadblock_id
        raise _RetryError

    def add_connector(self, junction: Junction, rbc: int, a: Lane, b: Lane, turn: int) -> None:
        p0, p1 = a.centerline[-1], b.centerline[0]
        d0, d1 = a.centerline[-1] - a.centerline[-2], b.centerline[1] - b.centerline[0]
        center = transition_curve(p0, np.arctan2(d0[1], d0[0]), p1, np.arctan2(d1[1], d1[0]), CONNECTOR_SPACING)
        s = arclength(center)
        width = a.width + (b.width - a.width) * s / s[-1]
        lane = Lane(self.new_id(), rbc, True, center, offset(center, width / 2), offset(center, -width / 2),
                    a.speed_limit, float(a.width), successors=[b.id], predecessors=[a.id], turn=turn,
                    junction_id=junction.id)
        a.successors.append(lane.id)
        b.predecessors.append(lane.id)
        self.lanes[lane.id] = lane

    # ------------------------------------------------------------------------------------------- parking & walking
    def drivable_union(self):
        shp = self._shapely
        polys = [shp.Polygon(p).buffer(0) for p in self.roadblock_polygons.values()]
        polys += [shp.Polygon(j.polygon) for j in self.junctions]
        polys += [shp.Polygon(p) for p in self.carparks.values()]
        return shp.unary_union(polys)

    def add_carparks_and_parking(self, route: Route) -> None:
        shp, rng = self._shapely, self.rng
        self.carparks: dict[int, np.ndarray] = {}
        spots: list[tuple[float, float, float, float]] = []
        first = next(r for r in self.roads if r.id == route.start_road)
        # car park beside a straight stretch of a road near the ego start
        if rng.random() < 0.35:
            for road in [first, *[r for r in self.roads if r is not first]][:4]:
                cp = self.try_carpark(road)
                if cp is not None:
                    cid = self.new_id()
                    self.carparks[cid] = cp[0]
                    spots += cp[1]
                    break
        blocked = self.drivable_union().buffer(0.3)
        crosswalk_zone = shp.unary_union([shp.LineString(c).buffer(6.0) for j in self.junctions
                                          for c in j.crosswalks]) if any(j.crosswalks for j in self.junctions) else None
        occupied = [shp.Polygon(p) for p in self.carparks.values()]
        for road in self.roads:
            for side in (-1, 1):  # -1: right of ref (outside the forward lanes), +1: left (outside backward lanes)
                if rng.random() > 0.45:
                    continue
                edge_lanes = road.n_fwd if side < 0 else road.n_bwd
                length = float(rng.uniform(4.4, 5.0))
                width = 1.9
                lateral = side * (_edge(edge_lanes, road.lane_width) + 0.25 + width / 2)
                s_ref = arclength(road.ref)
                occupancy = float(rng.uniform(*PARKING_OCCUPANCY))
                s = 12.0
                while s < s_ref[-1] - 12.0:
                    pitch = float(rng.uniform(*PARKED_GAP_RANGE))
                    s += pitch
                    if rng.random() > occupancy:
                        continue
                    i = int(np.searchsorted(s_ref, s))
                    if i >= len(s_ref) - 1:
                        break
                    d = road.ref[i + 1] - road.ref[i]
                    h = float(np.arctan2(d[1], d[0]))
                    n = np.array([-np.sin(h), np.cos(h)])
                    c = road.ref[i] + lateral * n
                    heading = h if side < 0 else h + np.pi
                    box = shp.Polygon(_box(c, heading, length + 0.6, width + 0.2))
                    if box.intersects(blocked) or (crosswalk_zone is not None and box.intersects(crosswalk_zone)):
                        continue
                    if any(box.intersects(o) for o in occupied):
                        continue
                    spots.append((float(c[0]), float(c[1]), float(wrap_angle(heading)), length))
        self.parking_spots = np.asarray(spots, dtype=np.float64).reshape(-1, 4)

    def try_carpark(self, road: Road) -> tuple[np.ndarray, list] | None:
        shp, rng = self._shapely, self.rng
        s_ref = arclength(road.ref)
        d = np.diff(road.ref, axis=0)
        h = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        cp_len = float(rng.uniform(30.0, 50.0))
        depth = float(rng.uniform(14.0, 20.0))
        side = -1 if rng.random() < 0.7 else 1
        edge = _edge(road.n_fwd if side < 0 else road.n_bwd, road.lane_width) - CARPARK_OVERLAP
        for _ in range(8):
            s0 = float(rng.uniform(15.0, max(s_ref[-1] - cp_len - 15.0, 16.0)))
            i0, i1 = int(np.searchsorted(s_ref, s0)), int(np.searchsorted(s_ref, s0 + cp_len))
            if i1 >= len(h) or np.ptp(h[i0:i1 + 1]) > 1e-3:
                continue  # needs a straight stretch
            n = np.array([-np.sin(h[i0]), np.cos(h[i0])])
            a, b = road.ref[i0] + side * edge * n, road.ref[i1] + side * edge * n
            poly = np.array([a, b, b + side * depth * n, a + side * depth * n])
            shape = shp.Polygon(poly)
            if not self.fits(shape.buffer(1.0), {road.id}):
                continue
            # perpendicular stalls along the far edge, cars facing the road
            t = (b - a) / np.hypot(*(b - a))
            spots = []
            n_stalls = int(cp_len // CARPARK_STALL_WIDTH)
            occupancy = float(rng.uniform(0.5, 0.9))
            for k in range(n_stalls):
                if rng.random() > occupancy:
                    continue
                c = a + (k + 0.5) * CARPARK_STALL_WIDTH * t + side * (depth - CARPARK_STALL_DEPTH / 2 - 0.3) * n
                heading = float(np.arctan2(-side * n[1], -side * n[0]))
                spots.append((float(c[0]), float(c[1]), heading, 4.8))
            self.footprints.append((shape, {road.id}))
            return poly, spots
        return None

    def add_pedestrian_paths(self) -> None:
        rng = self.rng
        self.crosswalks: list[tuple[np.ndarray, np.ndarray]] = [c for j in self.junctions for c in j.crosswalks]
        self.sidewalks: list[np.ndarray] = []
        for road in self.roads:
            s_ref = arclength(road.ref)
            if s_ref[-1] > 80.0 and rng.random() < 0.3:  # mid-block crossing
                s = float(rng.uniform(30.0, s_ref[-1] - 30.0))
                i = int(np.searchsorted(s_ref, s))
                d = road.ref[min(i + 1, len(road.ref) - 1)] - road.ref[i - 1]
                n = np.array([-d[1], d[0]]) / np.hypot(*d)
                p0 = road.ref[i] + (_edge(road.n_bwd, road.lane_width) + 2.0) * n
                p1 = road.ref[i] - (_edge(road.n_fwd, road.lane_width) + 2.0) * n
                self.crosswalks.append((p0, p1) if rng.random() < 0.5 else (p1, p0))
            for side in (-1, 1):
                lanes = road.n_fwd if side < 0 else road.n_bwd
                walk = offset(road.ref, side * (_edge(lanes, road.lane_width) + 3.2))
                self.sidewalks.append(resample(walk, 2.0) if side < 0 else resample(walk[::-1], 2.0))

    # -------------------------------------------------------------------------------------------------------- finish
    def finish(self) -> RoadMap:
        conns = sorted(lid for lid, lane in self.lanes.items() if lane.is_connector)
        for i, lid in enumerate(conns):
            self.lanes[lid].light_index = i
        rbcs: dict[int, list[int]] = {}
        for lid in conns:
            rbcs.setdefault(self.lanes[lid].roadblock_id, []).append(lid)
        return RoadMap(
            lanes=self.lanes, roads=self.roads, junctions=self.junctions,
            roadblock_polygons=self.roadblock_polygons, roadblock_connectors=rbcs, carparks=self.carparks,
            parking_spots=self.parking_spots, crosswalks=self.crosswalks, sidewalks=self.sidewalks,
            light_lane_ids=np.asarray(conns, dtype=np.int64),
        )


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)])


def _box(center: np.ndarray, heading: float, length: float, width: float) -> np.ndarray:
    c, s = np.cos(heading), np.sin(heading)
    f, l_ = np.array([c, s]) * length / 2, np.array([-s, c]) * width / 2
    return np.array([center + f + l_, center - f + l_, center - f - l_, center + f - l_])


def generate_map(rng: np.random.Generator, min_route_length: float, max_attempts: int = 50) -> tuple[RoadMap, Route]:
    """Lay out a map whose route runs at least ``min_route_length`` metres beyond the ego start.

    Deterministic given the state of ``rng``. Raises :class:`MapGenerationError` if no layout fits.
    """
    if min_route_length <= 0:
        raise ValueError(f"min_route_length must be positive, got {min_route_length}")
    for _ in range(max_attempts):
        try:
            return _Builder(rng).build(min_route_length)
        except _RetryError:
            continue
    raise MapGenerationError(f"no overlap-free map layout in {max_attempts} attempts")
