"""What a closed-loop episode is judged by: route progress and completion, at-fault collisions, off-road driving,
red-light violations, comfort of the driven trajectory, and the EPDMS of the plan selected at each scored step.

Rules (numbers cited where they are defined):

* **Route progress** is the arclength gained along the route reference line (the centre lines of one lane sequence
  through the route's roadblocks, :class:`RouteReference`) between the take-over and the end of the episode.
  **Route completion** divides it by the *free-flow distance*: how far the ego would get along the same line in the
  episode time from its take-over speed, accelerating at the expert's ``a_max`` up to each lane's speed limit and
  ignoring traffic, lights and curves. It is an upper bound no driver reaches exactly; compare agents on the same
  seeds (the summary also reports progress relative to the expert's).
* **Collisions** follow NAVSIM's NC classification (navsim_metrics.md §5.1) applied to the driven states: an object
  counts once, at its first contact; stopped ego, rear-end and lateral contacts while the ego stays in one lane and
  on the road are not the ego's fault. Closed-loop deviation: "stopped track" reads the object's speed at the contact
  (NAVSIM reads it at the object's first appearance in a 4 s scene).
* **Off-road** is NAVSIM's NON_DRIVABLE flag (§4): a corner of the ego box outside every ROADBLOCK / INTERSECTION /
  CARPARK_AREA polygon. *Fully off-road* (all four corners out) ends an episode.
* **Red-light violation**: the ego box enters the on-route lane connectors (the junction behind the stop line) at a
  step where an entered connector's light is RED. Being caught inside the junction when the light turns red is not
  a violation (NAVSIM's TLC, which the per-step EPDMS includes, flags any overlap).
* **Route deviation**: distance from the rear axle to the route reference line; beyond
  :data:`ROUTE_DEVIATION_LIMIT` the episode ends (the car left its route).
* **Comfort** of the driven trajectory: the six nuPlan checks with EPDMS v2's filters over the whole driven series
  (navsim_metrics.md §5.7), NAVSIM v1.1's C on every 4 s window, and the peak values.
* **Per-step EPDMS**: every ``score_every`` seconds the plan selected at that step is scored with the vectorized
  NAVSIM v2 scorer on a :class:`~drive_jepa_core.scene.format.Scene` cut from the episode's own closed-loop log at
  that step (1.5 s of driven history, the 4 s that then actually happened around it as observation; EC against the
  previous scored plan when the steps are < 0.55 s apart). It is NAVSIM's non-reactive log-replay scoring, where the
  log is this closed-loop run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import shapely

from drive_jepa_core.constants import (
    HISTORY_SECONDS,
    NUM_SIM_POSES,
    NUM_TRAJ_POSES,
    SIM_DT,
    TRAJ_DT,
)
from drive_jepa_core.geometry import box_corners, ego_corners, global_to_local
from drive_jepa_core.metrics.comfort import (
    ACCEL_WINDOW,
    COMFORT_CHECK_NAMES,
    EC_MAX_INTERVAL,
    JERK_WINDOW,
    POLY_ORDER,
    YAW_WINDOW,
    center_acceleration_x,
    comfort_v1_checks,
    history_comfort_checks,
    phase_unwrap,
    savgol,
)
from drive_jepa_core.metrics.params import BEHIND_ANGLE, DRIVABLE_LAYERS, LANE_LAYERS, STOPPED_SPEED_THRESHOLD
from drive_jepa_core.scene.format import DYNAMIC_AGENT_TYPES, AgentType, MapLayer, Scene, TrafficLightStatus
from drive_jepa_core.sim.constants import STATE_DIM, StateIndex
from drive_jepa_core.world.idm import EXPERT_IDM
from drive_jepa_core.world.log import WorldFrame, WorldLog
from drive_jepa_core.world.polyline import arclength, closest_segment_point
from drive_jepa_core.world.road_network import RoadMap, Route
from drive_jepa_core.world.scenes import SOURCE, agents_near_ego, command_at, log_name

ROUTE_DEVIATION_LIMIT = 30.0  # m; CARLA leaderboard's route-deviation test (scenario_runner InRouteTest offroad_max)
PROJECTION_WINDOW = (-10.0, 40.0)  # m around the last route position searched when projecting (no jumps to a
#                                    later pass of the route nearby; 40 m covers 4 steps at 100 m/s)
FREE_FLOW_ACCEL = EXPERT_IDM.max_accel  # m/s^2, acceleration of the free-flow reference driver (the expert's a_max)
SCORE_HISTORY_STEPS = int(round(HISTORY_SECONDS / SIM_DT))  # 15: a scored scene carries 1.5 s of history
SCORE_FUTURE_STEPS = NUM_SIM_POSES  # 40: v2 scoring observes t0 … t0 + 4 s
CONTACT_RADIUS = 15.0  # m between box centres beyond which two boxes cannot touch (ego ~5.2 m, a bus 12 m long)
COLLISION_KINDS = ("stopped_ego", "stopped_track", "active_rear", "active_front", "active_lateral")
EPDMS_COLUMNS = ("nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc", "ec", "epdms", "progress")


# --------------------------------------------------------------------------------------------------------------------
# Route reference line
# --------------------------------------------------------------------------------------------------------------------
def route_lane_sequence(road_map: RoadMap, route: Route, start_lane: int) -> list[int]:
    """One lane per route roadblock from ``start_lane`` on, each a successor of the previous where possible.

    Where the current lane has no successor in the next route roadblock (a lane change is due), it is replaced by
    the lane of its roadblock that has one, the one whose end is nearest (the reference line then jumps sideways by
    a lane width at that roadblock's start, which adds that width to the arclength once).
    """
    lanes = road_map.lanes
    if start_lane not in lanes:
        raise ValueError(f"lane {start_lane} is not in the map")
    order = {rb: i for i, rb in enumerate(route.roadblock_ids)}
    if lanes[start_lane].roadblock_id not in order:
        raise ValueError(f"lane {start_lane} is not on the route")
    seq = [start_lane]
    for nxt in route.roadblock_ids[order[lanes[start_lane].roadblock_id] + 1:]:
        cur = seq[-1]
        cand = [s for s in lanes[cur].successors if lanes[s].roadblock_id == nxt]
        if not cand:
            options = [lid for lid in road_map.roadblock_lanes(lanes[cur].roadblock_id)
                       if any(lanes[s].roadblock_id == nxt for s in lanes[lid].successors)]
            if not options:
                break
            end = lanes[cur].centerline[-1]
            cur = min(options, key=lambda lid: float(np.hypot(*(lanes[lid].centerline[-1] - end))))
            seq[-1] = cur
            cand = [s for s in lanes[cur].successors if lanes[s].roadblock_id == nxt]
        seq.append(cand[0])
    return seq


@dataclass
class RouteReference:
    """The route as one polyline. Shapes: P points, P - 1 segments.

    Attributes:
        points: ``(P, 2)`` world xy; s: ``(P,)`` arclength; segment_lane: ``(P - 1,)`` lane id of each segment;
        segment_limit: ``(P - 1,)`` its speed limit (m/s); lane_ids: the lane sequence.
    """

    points: np.ndarray
    s: np.ndarray
    segment_lane: np.ndarray
    segment_limit: np.ndarray
    lane_ids: list[int]

    @classmethod
    def build(cls, road_map: RoadMap, route: Route, start_lane: int, position: np.ndarray) -> RouteReference:
        """Reference line from the lane under the ego (``start_lane``; the route lane nearest ``position`` when
        ``start_lane`` is not a route lane, e.g. -1)."""
        on_route = set(route.roadblock_ids)
        if start_lane not in road_map.lanes or road_map.lanes[start_lane].roadblock_id not in on_route:
            best, start_lane = np.inf, -1
            xy = np.asarray(position, dtype=np.float64)[:2]
            for lid, lane in road_map.lanes.items():
                if lane.roadblock_id in on_route and not lane.is_connector:
                    d = float(np.min(np.hypot(*(lane.centerline - xy).T)))
                    if d < best:
                        best, start_lane = d, lid
            if start_lane < 0:
                raise ValueError("the route has no lanes")
        seq = route_lane_sequence(road_map, route, start_lane)
        pts: list[np.ndarray] = []
        seg_lane: list[int] = []
        for lid in seq:
            line = np.asarray(road_map.lanes[lid].centerline, dtype=np.float64)
            if pts and np.hypot(*(line[0] - pts[-1][-1])) < 1e-6:
                line = line[1:]
            pts.append(line)
            seg_lane += [lid] * len(line)
        points = np.concatenate(pts)
        lane_of_segment = np.asarray(seg_lane[1:], dtype=np.int64)  # segment i ends at point i + 1
        limits = np.array([road_map.lanes[int(lid)].speed_limit for lid in lane_of_segment], dtype=np.float64)
        return cls(points, arclength(points), lane_of_segment, limits, seq)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def project(self, xy: np.ndarray, s_hint: float | None = None) -> tuple[float, float]:
        """Arclength and distance of ``xy`` ``(2,)`` on the line; with ``s_hint`` only segments within
        :data:`PROJECTION_WINDOW` of it are searched."""
        xy = np.asarray(xy, dtype=np.float64)[:2]
        idx = np.arange(len(self.points) - 1)
        if s_hint is not None:
            keep = (self.s[1:] >= s_hint + PROJECTION_WINDOW[0]) & (self.s[:-1] <= s_hint + PROJECTION_WINDOW[1])
            if np.any(keep):
                idx = np.flatnonzero(keep)
        k, t, seg_len, dist = closest_segment_point(self.points[idx], self.points[idx + 1], xy)
        return float(self.s[idx[k]] + t * seg_len), dist

    def segment_at(self, s: float) -> int:
        return int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.segment_lane) - 1))

    def lane_at(self, s: float) -> int:
        """Lane id of the reference line at arclength ``s``."""
        return int(self.segment_lane[self.segment_at(s)])

    def free_flow_distance(self, s0: float, v0: float, seconds: float, accel: float = FREE_FLOW_ACCEL,
                           dt: float = SIM_DT) -> float:
        """Distance covered along the line in ``seconds`` from ``s0`` at ``v0``: speed rises at ``accel`` up to the
        speed limit under the ego (and drops to it at once where it is lower), capped at the end of the line."""
        s, v = float(s0), max(float(v0), 0.0)
        for _ in range(int(round(seconds / dt))):
            limit = float(self.segment_limit[self.segment_at(s)])
            v = min(v + accel * dt, limit) if np.isfinite(limit) else v + accel * dt
            s = min(s + v * dt, self.length)
        return s - float(s0)


def route_command(road_map: RoadMap, route: Route, reference: RouteReference, ego_state: np.ndarray,
                  s: float) -> int:
    """The driving command at route position ``s``, exactly as scenes of the world derive it
    (:func:`drive_jepa_core.world.scenes.command_at`), with the lane read from the reference line."""
    return command_at(road_map, route, reference.lane_at(s), np.asarray(ego_state[:2], np.float64),
                      float(np.hypot(ego_state[3], ego_state[4])))


# --------------------------------------------------------------------------------------------------------------------
# Map predicates on the driven ego box
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AreaFlags:
    non_drivable: bool  # NAVSIM NON_DRIVABLE: a corner outside every drivable polygon
    fully_offroad: bool  # all four corners outside
    multiple_lanes: bool  # NAVSIM MULTIPLE_LANES (§4)


class MapGeometry:
    """The map polygons the rules read (the simplified polygons scenes store, as the scorer reads them)."""

    def __init__(self, road_map: RoadMap, route: Route) -> None:
        fields = road_map.scene_map_fields(route)
        ids = np.asarray(fields["map_polygon_ids"], dtype=np.int64)
        layers = np.asarray(fields["map_polygon_layers"], dtype=np.int64)
        geoms = np.array([shapely.Polygon(p) for p in fields["map_polygons"]])
        drivable = np.isin(layers, [int(x) for x in DRIVABLE_LAYERS])
        lane = np.isin(layers, [int(x) for x in LANE_LAYERS])
        self.drivable = geoms[drivable]
        self.drivable_tree = shapely.STRtree(self.drivable)
        self.lanes = geoms[lane]
        self.lane_tree = shapely.STRtree(self.lanes)
        on_route = set(route.roadblock_ids)
        route_lanes = {lid for lid, ln in road_map.lanes.items() if ln.roadblock_id in on_route}
        by_id = {int(i): g for i, g, lay in zip(ids, geoms, layers, strict=True) if lay == MapLayer.LANE_CONNECTOR}
        lit = [(col, by_id[int(lid)]) for col, lid in enumerate(road_map.light_lane_ids)
               if int(lid) in route_lanes and int(lid) in by_id]
        self.route_connector_cols = np.array([c for c, _ in lit], dtype=np.int64)
        self.route_connectors = np.array([g for _, g in lit])

    @staticmethod
    def _inside(tree: shapely.STRtree, geoms: np.ndarray, box: Any, corners: np.ndarray) -> np.ndarray:
        """``(4, n)`` bool: corner strictly inside candidate polygon (candidates = bounding-box hits of ``box``)."""
        cand = tree.query(box)
        if cand.size == 0:
            return np.zeros((4, 0), dtype=bool)
        return np.stack([shapely.contains_xy(geoms[cand], float(x), float(y)) for x, y in corners])

    def area_flags(self, corners: np.ndarray) -> AreaFlags:
        """Flags of the ego box with ``corners (4, 2)``."""
        box = shapely.Polygon(corners)
        inside = self._inside(self.drivable_tree, self.drivable, box, corners)
        corner_ok = inside.any(axis=1)
        lanes = self._inside(self.lane_tree, self.lanes, box, corners)
        touched = lanes.any(axis=0)
        multiple = bool(touched.sum() > 1 and not np.any(lanes.all(axis=0)))
        return AreaFlags(non_drivable=not bool(corner_ok.all()), fully_offroad=not bool(corner_ok.any()),
                         multiple_lanes=multiple)

    def route_connector_status(self, ego_box: Any, light_status: np.ndarray) -> tuple[bool, bool]:
        """Whether the ego box overlaps any on-route lit connector, and whether one of those it overlaps is RED."""
        if self.route_connectors.size == 0:
            return False, False
        hit = shapely.intersects(self.route_connectors, ego_box)
        if not np.any(hit):
            return False, False
        red = np.asarray(light_status)[self.route_connector_cols[hit]] == TrafficLightStatus.RED
        return True, bool(np.any(red))


# --------------------------------------------------------------------------------------------------------------------
# Collisions (NAVSIM NC classification, navsim_metrics.md §5.1)
# --------------------------------------------------------------------------------------------------------------------
def classify_collision(ego_pose: np.ndarray, ego_speed: float, object_corners: np.ndarray, object_speed: float,
                       object_is_agent: bool) -> str:
    """NAVSIM's collision class of a contact: one of :data:`COLLISION_KINDS`.

    Args:
        ego_pose: ``(3,)`` rear-axle pose; object_corners: ``(4, 2)`` object box; speeds in m/s.
    """
    if ego_speed <= STOPPED_SPEED_THRESHOLD:
        return "stopped_ego"
    if not object_is_agent or object_speed <= STOPPED_SPEED_THRESHOLD:
        return "stopped_track"
    centroid = np.asarray(object_corners, dtype=np.float64).mean(axis=0)
    d = centroid - ego_pose[:2]
    norm = float(np.hypot(*d))
    if norm > 0.0:
        cos = (math.cos(ego_pose[2]) * d[0] + math.sin(ego_pose[2]) * d[1]) / norm
        if math.acos(max(-1.0, min(1.0, cos))) > BEHIND_ANGLE:
            return "active_rear"
    corners = ego_corners(np.asarray(ego_pose, dtype=np.float64))
    bumper = shapely.LineString([corners[0], corners[3]])  # FL -> FR
    if shapely.intersects(bumper, shapely.Polygon(object_corners)):
        return "active_front"
    return "active_lateral"


def collision_at_fault(kind: str, ego_multiple_lanes_or_offroad: bool) -> bool:
    """NAVSIM: active-front and stopped-track contacts are the ego's fault; lateral ones only while the ego straddles
    lanes or leaves the drivable area."""
    return kind in ("active_front", "stopped_track") or (kind == "active_lateral" and ego_multiple_lanes_or_offroad)


@dataclass(frozen=True)
class CollisionEvent:
    step: int
    time: float
    agent_id: int
    agent_type: str
    kind: str
    at_fault: bool
    ego_speed: float
    x: float
    y: float


# --------------------------------------------------------------------------------------------------------------------
# The per-step monitor
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class EpisodeMonitor:
    """Checks every driven state of an episode against the rules of the module docstring.

    ``agent_meta`` maps agent id -> (type, length, width, height) (``WorldSim.agent_meta``, which grows as agents
    spawn: pass the live dict).
    """

    geometry: MapGeometry
    route: RouteReference
    agent_meta: dict[int, tuple[int, float, float, float]]
    deviation_limit: float = ROUTE_DEVIATION_LIMIT
    steps: list[int] = field(default_factory=list)
    route_s: list[float] = field(default_factory=list)
    deviation: list[float] = field(default_factory=list)
    non_drivable: list[bool] = field(default_factory=list)
    multiple_lanes: list[bool] = field(default_factory=list)
    collisions: list[CollisionEvent] = field(default_factory=list)
    red_light_steps: list[int] = field(default_factory=list)
    termination: str | None = None
    _contacted: set[int] = field(default_factory=set)
    _in_junction: bool | None = None

    def observe(self, step: int, frame: WorldFrame) -> str | None:
        """Record the state at ``step``; returns a termination reason ("at_fault_collision", "off_road",
        "route_deviation") or None. Termination is reported once; later calls keep recording."""
        ego = np.asarray(frame.ego_state, dtype=np.float64)
        pose, speed = ego[:3], float(np.hypot(ego[3], ego[4]))
        s, dev = self.route.project(pose[:2], self.route_s[-1] if self.route_s else None)
        corners = ego_corners(pose)
        box = shapely.Polygon(corners)
        flags = self.geometry.area_flags(corners)
        self.steps.append(int(step))
        self.route_s.append(s)
        self.deviation.append(dev)
        self.non_drivable.append(flags.non_drivable)
        self.multiple_lanes.append(flags.multiple_lanes)
        reason = None
        # --- collisions
        if len(frame.agent_ids):
            centre = corners.mean(axis=0)
            near = np.flatnonzero(np.hypot(*(frame.agent_states[:, :2] - centre).T) < CONTACT_RADIUS)
            for j in near:
                aid = int(frame.agent_ids[j])
                if aid in self._contacted:
                    continue
                atype, length, width, _ = self.agent_meta[aid]
                st = frame.agent_states[j]
                obj = box_corners(st[:2], st[2], length, width)
                if not shapely.intersects(box, shapely.Polygon(obj)):
                    continue
                self._contacted.add(aid)
                kind = classify_collision(pose, speed, obj, float(np.hypot(st[3], st[4])),
                                          AgentType(int(atype)) in DYNAMIC_AGENT_TYPES)
                fault = collision_at_fault(kind, flags.multiple_lanes or flags.non_drivable)
                self.collisions.append(CollisionEvent(int(step), round(float(frame.time), 6), aid,
                                                      AgentType(int(atype)).name, kind, fault, speed,
                                                      float(pose[0]), float(pose[1])))
                if fault:
                    reason = reason or "at_fault_collision"
        # --- red light: entering the on-route junction connectors while an entered one is red
        inside, red = self.geometry.route_connector_status(box, frame.light_status)
        if self._in_junction is not None and inside and not self._in_junction and red:
            self.red_light_steps.append(int(step))
        self._in_junction = inside
        if flags.fully_offroad:
            reason = reason or "off_road"
        if dev > self.deviation_limit:
            reason = reason or "route_deviation"
        if reason is not None and self.termination is None:
            self.termination = reason
            return reason
        return None

    # ----------------------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        n = max(len(self.steps), 1)
        at_fault = [c for c in self.collisions if c.at_fault]
        return {
            "at_fault_collisions": len(at_fault),
            "other_collisions": len(self.collisions) - len(at_fault),
            "collision_events": [asdict(c) for c in self.collisions],
            "off_road": bool(any(self.non_drivable)),
            "off_road_fraction": float(np.mean(self.non_drivable)) if self.non_drivable else 0.0,
            "multiple_lanes_fraction": float(np.mean(self.multiple_lanes)) if self.multiple_lanes else 0.0,
            "red_light_violations": len(self.red_light_steps),
            "red_light_steps": list(self.red_light_steps),
            "max_route_deviation_m": float(max(self.deviation)) if self.deviation else 0.0,
            "steps_checked": n if self.steps else 0,
        }


# --------------------------------------------------------------------------------------------------------------------
# Comfort of the driven trajectory
# --------------------------------------------------------------------------------------------------------------------
def driven_states(ego_states: np.ndarray, dt: float = SIM_DT) -> np.ndarray:
    """``(T, 11)`` simulator-layout states from driven ``(T, 7)`` ego states: yaw rate and yaw acceleration by
    differentiating the unwrapped heading (so every agent, tracker-driven or not, is measured the same way)."""
    ego_states = np.asarray(ego_states, dtype=np.float64)
    out = np.zeros((len(ego_states), STATE_DIM))
    out[:, :7] = ego_states
    heading = phase_unwrap(ego_states[:, 2])
    if len(ego_states) > 1:
        out[:, StateIndex.ANGULAR_VELOCITY] = np.gradient(heading, dt)
        out[:, StateIndex.ANGULAR_ACCELERATION] = np.gradient(out[:, StateIndex.ANGULAR_VELOCITY], dt)
    return out


def comfort_summary(ego_states: np.ndarray, dt: float = SIM_DT) -> dict[str, Any]:
    """Comfort of a driven ``(T, 7)`` series (T >= 5): the six v2 checks over all of it, the fraction of 4 s windows
    (every 0.5 s) passing v1.1's C, and the peak filtered values."""
    states = driven_states(ego_states, dt)
    if len(states) < YAW_WINDOW:
        raise ValueError(f"comfort needs at least {YAW_WINDOW} driven states, got {len(states)}")
    checks = history_comfort_checks(states[None, 1:], states[:1])[0]  # history + states = the whole series
    window = NUM_SIM_POSES + 1
    starts = range(0, len(states) - window + 1, int(round(TRAJ_DT / dt)))
    windows = np.stack([states[i:i + window] for i in starts]) if len(states) >= window else None
    lon = savgol(center_acceleration_x(states), ACCEL_WINDOW, POLY_ORDER, delta=dt)
    lon_jerk = savgol(savgol(center_acceleration_x(states), ACCEL_WINDOW, POLY_ORDER, delta=dt), JERK_WINDOW,
                      POLY_ORDER, deriv=1, delta=dt)
    yaw_rate = savgol(phase_unwrap(states[:, StateIndex.HEADING]), YAW_WINDOW, POLY_ORDER, deriv=1, delta=dt)
    lat = states[:, StateIndex.VELOCITY_X] * yaw_rate
    return {
        "comfortable": bool(np.all(checks)),
        "checks": {name: bool(ok) for name, ok in zip(COMFORT_CHECK_NAMES, checks, strict=True)},
        "window_pass_rate": (float(np.mean(np.all(comfort_v1_checks(windows), axis=-1)))
                             if windows is not None else None),
        "max_decel": float(max(-lon.min(), 0.0)),
        "max_accel": float(max(lon.max(), 0.0)),
        "max_abs_lat_accel": float(np.abs(lat).max()),
        "max_abs_lon_jerk": float(np.abs(lon_jerk).max()),
        "max_abs_yaw_rate": float(np.abs(yaw_rate).max()),
    }


# --------------------------------------------------------------------------------------------------------------------
# Per-step EPDMS
# --------------------------------------------------------------------------------------------------------------------
def episode_scene(log: WorldLog, step: int, command: int, split: str = "closedloop") -> Scene:
    """The scene at ``step`` of a (closed-loop) log: up to 1.5 s of history, exactly 4 s of future, the agents seen
    within ``AGENT_RADIUS`` of the ego, the whole map and the route; no camera."""
    lo, hi = max(step - SCORE_HISTORY_STEPS, 0), step + SCORE_FUTURE_STEPS
    if step < 0 or hi >= log.num_steps:
        raise ValueError(f"step {step} needs log steps up to {hi} but the log has 0..{log.num_steps - 1}")
    window = slice(lo, hi + 1)
    ego = log.ego_states[window].copy()
    keep = agents_near_ego(log, window, ego)
    scene = Scene(
        token=f"{log_name(log.seed)}_closedloop_t{step:04d}", log_name=log_name(log.seed), split=split,
        source=SOURCE, command=int(command),
        timestamps=np.round((np.arange(lo, hi + 1) - step) * SIM_DT, 6), t0_index=step - lo, ego_states=ego,
        agent_ids=log.agent_ids[keep].copy(), agent_types=log.agent_types[keep].copy(),
        agent_sizes=log.agent_sizes[keep].copy(), agent_states=log.agent_states[window][:, keep].copy(),
        agent_valid=log.agent_valid[window][:, keep].copy(), **log.road_map.scene_map_fields(log.route),
        traffic_light_lane_ids=log.light_lane_ids.copy(), traffic_light_status=log.light_status[window].copy(),
        camera=None, camera_timestamps=np.zeros(0), camera_frames=None,
        extra={"world_seed": int(log.seed), "log_step": int(step), "closed_loop": True},
    )
    scene.validate()
    return scene


def realized_future(log: WorldLog, step: int) -> np.ndarray:
    """What the ego actually drove after ``step``: ``(8, 3)`` poses at 0.5 s in the rear-axle frame at ``step``."""
    idx = step + int(round(TRAJ_DT / SIM_DT)) * np.arange(1, NUM_TRAJ_POSES + 1)
    if idx[-1] >= log.num_steps:
        raise ValueError(f"step {step} has no 4 s future in a log of {log.num_steps} steps")
    return global_to_local(log.ego_states[idx, :3], log.ego_states[step, :3])


def score_steps(log: WorldLog, trajectories: dict[int, np.ndarray], commands: dict[int, int],
                score_dt: float) -> list[dict[str, float]]:
    """EPDMS v2 of each step's ``(8, 3)`` plan (steps in increasing order, each with a 4 s future in ``log``).

    EC compares a plan with the previous scored one when they are ``score_dt`` < 0.55 s apart (else NaN, and EPDMS
    drops its weight, navsim_metrics.md §6.2).
    """
    from drive_jepa_core.metrics.metric_cache import MetricCache
    from drive_jepa_core.metrics.scorer import score_trajectories

    rows: list[dict[str, float]] = []
    previous: tuple[int, np.ndarray] | None = None
    gap = int(round(score_dt / SIM_DT))
    for step in sorted(trajectories):
        scene = episode_scene(log, step, commands.get(step, 1))
        cache = MetricCache.from_scene(scene)
        prev = previous[1] if previous is not None and step - previous[0] == gap and score_dt < EC_MAX_INTERVAL \
            else None
        res = score_trajectories(cache, np.asarray(trajectories[step], np.float64)[None], "v2",
                                 previous_states=prev, dt=score_dt if prev is not None else None)
        row = res.row(0)
        rows.append({"step": int(step), "time": float(log.timestamps[step]),
                     **{k: row[k] for k in EPDMS_COLUMNS}})
        previous = (step, res.states[0])
    return rows


def mean_scores(rows: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean of every EPDMS column over the scored steps (NaN entries, e.g. EC without a partner, skipped)."""
    out: dict[str, float | None] = {"scored_steps": len(rows)}
    for k in EPDMS_COLUMNS:
        vals = np.array([r[k] for r in rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[k] = float(vals.mean()) if vals.size else None
    return out
