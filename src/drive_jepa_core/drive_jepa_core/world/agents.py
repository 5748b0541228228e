"""Traffic participants of the synthetic world: lane-following vehicles (IDM), parked cars, pedestrians.

Every moving vehicle, the ego included, drives along a :class:`~drive_jepa_core.world.polyline.Path` built from a
lane sequence; lane changes rebuild the path with a smooth lateral blend into the neighbour lane. Longitudinal
control is IDM against the most restrictive of: obstacles found in a corridor along the path ahead (vehicles, the
ego, parked cars, pedestrians), the stop line of a red/yellow light, the end of the path, and the speed that
curvature and speed limits ahead allow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from drive_jepa_core.constants import EGO_VEHICLE, SIM_DT
from drive_jepa_core.scene.format import AgentType, TrafficLightStatus
from drive_jepa_core.world.idm import IDMParameters, idm_acceleration
from drive_jepa_core.world.polyline import (
    LaneSpan,
    Path,
    arclength,
    left_normals,
    project_point,
    resample,
    smootherstep,
)
from drive_jepa_core.world.road_network import RoadMap

PATH_STEP = 0.5  # m, uniform vertex spacing of driving paths
WINDOW_STRIDE = 4  # path vertices between corridor samples (2 m)
WINDOW_POINTS = 31  # corridor samples: 60 m lookahead (stopping distance from 60 km/h at 2 m/s^2 is ~70 m of
#                     IDM approach; obstacles beyond are handled when they enter)
CORRIDOR_MARGIN = 0.3  # m of lateral clearance counted as "in my way"
LANE_CHANGE_DURATION = 6.0  # s; lane changes last 3-7 s, mean ~4.6 s (Toledo & Zohar, TRR 1999, 2007): the calm end
LANE_CHANGE_LENGTH_RANGE = (30.0, 80.0)  # m, clip of speed x duration
CURVE_LAT_ACCEL_AGENT = 2.5  # m/s^2, comfortable lateral acceleration of ordinary drivers on curves
CURVE_BRAKE_ONSET = 0.3  # m/s^2: start braking for a curve/limit ahead once it needs this much deceleration
PEDESTRIAN_SPEED_RANGE = (1.1, 1.6)  # m/s; mean walking speeds 1.25-1.5 m/s (Knoblauch et al., TRR 1538, 1996)
PEDESTRIAN_GAP = 4.5  # s, accepted gap before stepping onto a road (pedestrian gap acceptance ~ 4-6 s)
PEDESTRIAN_LOOKAHEAD = 1.5  # s, vehicles also yield to where a walking pedestrian will be this soon
CROSSING_YIELD_HORIZON = 4.0  # s: drivers yield to the stretch of crosswalk a crossing pedestrian covers this soon

# Vehicle body sizes [length, width, height] ranges per class (typical EU/US passenger cars, vans, buses)
VEHICLE_CLASSES = (
    # (probability, type, length range, width range, height range, desired speed factor range)
    (0.70, AgentType.VEHICLE, (4.1, 5.0), (1.72, 1.95), (1.40, 1.70), (0.85, 1.10)),
    (0.16, AgentType.VEHICLE, (4.7, 5.4), (1.90, 2.05), (1.75, 2.05), (0.85, 1.05)),
    (0.08, AgentType.VEHICLE, (8.0, 12.0), (2.45, 2.55), (3.0, 3.6), (0.75, 0.95)),
    (0.06, AgentType.BICYCLE, (1.7, 1.9), (0.55, 0.7), (1.6, 1.8), (0.0, 0.0)),
)
BICYCLE_SPEED_RANGE = (4.0, 6.5)  # m/s; urban cycling 15-23 km/h


@dataclass
class Vehicle:
    """A vehicle driving along ``path``. ``u`` is the arclength of its reference point (agents: box centre;
    ego: rear axle, ``center_offset`` ahead of it lies the box centre)."""

    id: int
    type: int
    length: float
    width: float
    height: float
    params: IDMParameters
    speed_factor: float  # desired speed = factor x lane speed limit
    path: Path
    u: float
    v: float
    a: float = 0.0
    center_offset: float = 0.0
    front: float = 0.0  # reference point -> front bumper
    fixed_speed: float = 0.0  # > 0: desired speed independent of limits (bicycles)
    lat_accel: float = CURVE_LAT_ACCEL_AGENT
    stop_at_path_end: bool = False
    yellow_go_light: int = -1  # light index this vehicle decided to pass on yellow
    lane_change_end: float = -1.0  # arclength where the current lane-change blend ends
    alive: bool = True
    stop_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # arclength of light-controlled stop lines
    stop_light: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stop_clear: np.ndarray = field(default_factory=lambda: np.zeros(0))  # connector length after each stop line
    stop_vmax: np.ndarray = field(default_factory=lambda: np.zeros(0))  # curve speed on that connector
    limits: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) speed limit at each path vertex
    packed: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # (K, 5) x, y, heading, kappa, limit
    _cache: tuple = (None, None, None)

    def pose(self) -> tuple[float, float, float, float]:
        """Reference-point ``(x, y, heading, curvature)`` (memoized per path and arclength)."""
        path, u, pose = self._cache
        if path is not self.path or u != self.u:
            pose = self.path.pose(self.u)
            self._cache = (self.path, self.u, pose)
        return pose

    def center(self) -> tuple[float, float, float]:
        x, y, h, _ = self.pose()
        return x + self.center_offset * math.cos(h), y + self.center_offset * math.sin(h), h

    def lane_id(self) -> int:
        return self.path.lane_at(self.u)


def make_vehicle_path(road_map: RoadMap, lanes: list[int], start_s: float = 0.0, lateral: float = 0.0,
                      blend: float = 0.0, end_cut: float = 0.0) -> Path:
    """Path along ``lanes`` starting at arclength ``start_s`` of the first lane, optionally starting ``lateral``
    metres left of it and blending onto it over ``blend`` metres (a lane change), ending ``end_cut`` metres
    before the end of the last lane."""
    pts, spans, base = [], [], 0.0
    for k, lid in enumerate(lanes):
        cl = road_map.lanes[lid].centerline
        if k == 0 and start_s > 0.0:
            s = arclength(cl)
            first = np.array([np.interp(start_s, s, cl[:, 0]), np.interp(start_s, s, cl[:, 1])])
            cl = np.concatenate([first[None], cl[s > start_s + 1e-6]])
        if pts:
            cl = np.concatenate([pts[-1][-1:], cl])  # measure from the previous joint vertex
            seg = float(arclength(cl)[-1])
            cl = cl[1:]
        else:
            seg = float(arclength(cl)[-1])
        pts.append(cl)
        spans.append((lid, base, base + seg))
        base += seg
    points = np.concatenate(pts)
    s_base = arclength(points)
    if end_cut > 0.0:
        keep = s_base <= max(s_base[-1] - end_cut, min(2.0, s_base[-1]))
        keep[:2] = True
        points, s_base = points[keep], s_base[keep]
        spans = [(lid, a, min(b, s_base[-1])) for lid, a, b in spans if a < s_base[-1]]
    if blend > 0.0 and lateral != 0.0:
        d = lateral * (1.0 - smootherstep(s_base / blend))
        points = points + d[:, None] * left_normals(points)
    s_final = arclength(points)
    out = resample(points, PATH_STEP)
    path = Path.from_points(out)
    path.spans = [LaneSpan(lid, float(np.interp(a, s_base, s_final)), float(np.interp(b, s_base, s_final)))
                  for lid, a, b in spans]
    return path


def attach_path(vehicle: Vehicle, road_map: RoadMap, path: Path, u: float = 0.0) -> None:
    """Give ``vehicle`` a new path and precompute its stop lines and per-vertex speed limits."""
    vehicle.path, vehicle.u = path, u
    stops, lights, clear, vmax = [], [], [], []
    limits = np.full(len(path.s), np.inf)
    for span in path.spans:
        lane = road_map.lanes[span.lane_id]
        if lane.light_index >= 0:
            stops.append(span.s_start)
            lights.append(lane.light_index)
            clear.append(span.s_end - span.s_start)
            sel = (path.s >= span.s_start) & (path.s <= span.s_end)
            kmax = float(np.max(np.abs(path.kappa[sel]))) if sel.any() else 0.0
            vmax.append(min(lane.speed_limit, float(np.sqrt(vehicle.lat_accel / max(kmax, 1e-6)))))
        sel = (path.s >= span.s_start - 1e-6) & (path.s <= span.s_end + 1e-6)
        limits[sel] = lane.speed_limit
    vehicle.stop_s = np.asarray(stops, dtype=np.float64)
    vehicle.stop_light = np.asarray(lights, dtype=np.int64)
    vehicle.stop_clear = np.asarray(clear, dtype=np.float64)
    vehicle.stop_vmax = np.asarray(vmax, dtype=np.float64)
    limits[~np.isfinite(limits)] = np.nanmax(limits[np.isfinite(limits)]) if np.isfinite(limits).any() else 10.0
    vehicle.limits = limits
    vehicle.packed = np.stack([path.xy[:, 0], path.xy[:, 1], path.heading, path.kappa, limits], axis=1)


def random_lane_sequence(road_map: RoadMap, first: int, rng: np.random.Generator,
                         max_length: float = 900.0) -> list[int]:
    """``first`` followed by random successors until a dead end (or ``max_length`` metres)."""
    seq, total = [first], road_map.lanes[first].length
    while road_map.lanes[seq[-1]].successors and total < max_length:
        succ = road_map.lanes[seq[-1]].successors
        seq.append(int(succ[int(rng.integers(len(succ)))]))
        total += road_map.lanes[seq[-1]].length
    return seq


def sample_vehicle_body(rng: np.random.Generator) -> tuple[int, float, float, float, float, float]:
    """``(type, length, width, height, speed_factor, fixed_speed)`` of a random road user."""
    probs = np.array([c[0] for c in VEHICLE_CLASSES])
    _, vtype, lr, wr, hr, fr = VEHICLE_CLASSES[int(rng.choice(len(VEHICLE_CLASSES), p=probs / probs.sum()))]
    fixed = float(rng.uniform(*BICYCLE_SPEED_RANGE)) if vtype == AgentType.BICYCLE else 0.0
    factor = float(rng.uniform(*fr)) if fr[1] > 0 else 1.0
    return int(vtype), float(rng.uniform(*lr)), float(rng.uniform(*wr)), float(rng.uniform(*hr)), factor, fixed


# =====================================================================================================================
# Obstacles and longitudinal control
# =====================================================================================================================
@dataclass
class Obstacles:
    """Everything a driver may have to stop for, as box centres. Shapes ``(M,)`` / ``(M, 2)``."""

    xy: np.ndarray
    heading: np.ndarray
    half_length: np.ndarray
    half_width: np.ndarray
    speed: np.ndarray  # along ``heading``
    owner: np.ndarray  # id of the object (a vehicle skips its own entries)

    @classmethod
    def concat(cls, parts: list[Obstacles]) -> Obstacles:
        parts = [p for p in parts if len(p.xy)]
        if not parts:
            z = np.zeros(0)
            return cls(np.zeros((0, 2)), z, z, z, z, np.zeros(0, np.int64))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("xy", "heading", "half_length", "half_width", "speed", "owner")))


def path_windows(vehicles: list[Vehicle]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Corridor samples ahead of each vehicle's reference point.

    Returns ``xy (N, K, 2)``, ``heading (N, K)``, ``s (N, K)`` (arclength ahead of the reference point),
    ``kappa (N, K)``, ``limit (N, K)``; past the path end the last vertex is extrapolated straight.
    """
    n, k = len(vehicles), WINDOW_POINTS
    steps = np.arange(k) * WINDOW_STRIDE
    u = np.array([veh.u for veh in vehicles])
    last = np.array([len(veh.packed) - 1 for veh in vehicles])
    i0 = np.minimum((u / PATH_STEP).astype(np.int64), last)
    idx = i0[:, None] + steps[None, :]
    over = np.maximum(idx - last[:, None], 0) * PATH_STEP  # metres past the path end (extrapolated straight)
    idx = np.minimum(idx, last[:, None])
    rows = np.stack([veh.packed[ix] for veh, ix in zip(vehicles, idx, strict=True)]) if n else np.zeros((0, k, 5))
    s_at = np.stack([veh.path.s[ix] for veh, ix in zip(vehicles, idx, strict=True)]) if n else np.zeros((0, k))
    hd = rows[..., 2]
    xy = rows[..., :2] + over[..., None] * np.stack([np.cos(hd), np.sin(hd)], axis=-1)
    ss = s_at + over - u[:, None]
    kap = np.where(over > 0, 0.0, rows[..., 3])
    return xy, hd, ss, kap, rows[..., 4]


def corridor_conflicts(win_xy: np.ndarray, win_h: np.ndarray, win_s: np.ndarray, half_width: np.ndarray,
                       front: np.ndarray, ids: np.ndarray, obstacles: Obstacles,
                       ref_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Obstacles inside each vehicle's corridor ahead.

    Args:
        win_xy ``(N, K, 2)``, win_h ``(N, K)``, win_s ``(N, K)``: corridor samples (see :func:`path_windows`).
        half_width, front, ids ``(N,)``; ref_xy ``(N, 2)`` reference points.
    Returns:
        ``(veh_index (P,), gap (P,), obstacle speed along the path (P,))`` for every conflicting pair.
    """
    if len(obstacles.xy) == 0 or len(win_xy) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    lookahead = float(win_s[:, -1].max()) + 10.0
    dx = obstacles.xy[None, :, 0] - ref_xy[:, None, 0]
    dy = obstacles.xy[None, :, 1] - ref_xy[:, None, 1]
    h0 = win_h[:, :1]
    ahead = dx * np.cos(h0) + dy * np.sin(h0) > -5.0  # paths never bend back within the lookahead
    cand = ahead & (dx * dx + dy * dy < lookahead**2) & (ids[:, None] != obstacles.owner[None, :])
    vi, oi = np.nonzero(cand)
    if len(vi) == 0:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    diff = obstacles.xy[oi][:, None, :] - win_xy[vi]  # (P, K, 2)
    dist2 = np.einsum("pkc,pkc->pk", diff, diff)
    k = np.argmin(dist2, axis=1)
    rows = np.arange(len(vi))
    h = win_h[vi, k]
    dx, dy = diff[rows, k, 0], diff[rows, k, 1]
    lon = dx * np.cos(h) + dy * np.sin(h)
    lat = -dx * np.sin(h) + dy * np.cos(h)
    dpsi = obstacles.heading[oi] - h
    c, s = np.abs(np.cos(dpsi)), np.abs(np.sin(dpsi))
    hl, hw = obstacles.half_length[oi], obstacles.half_width[oi]
    lat_extent = hl * s + hw * c
    lon_extent = hl * c + hw * s
    along = win_s[vi, k] + lon
    inside = (np.abs(lat) < half_width[vi] + lat_extent + CORRIDOR_MARGIN) & (along > 0.0)
    inside &= (k < win_s.shape[1] - 1) | (lon < 2.0)
    gap = along - front[vi] - lon_extent
    speed = obstacles.speed[oi] * np.cos(dpsi)
    return vi[inside], gap[inside], speed[inside]


def longitudinal_control(vehicles: list[Vehicle], obstacles: Obstacles, light_status: np.ndarray,
                         light_time_left: np.ndarray, windows: tuple | None = None) -> np.ndarray:
    """IDM acceleration ``(N,)`` of every vehicle against corridor obstacles, lights, path ends and curves.

    Updates each vehicle's yellow-light decision as a side effect.
    """
    n = len(vehicles)
    if n == 0:
        return np.zeros(0)
    win_xy, win_h, win_s, win_k, win_lim = windows if windows is not None else path_windows(vehicles)
    v = np.array([veh.v for veh in vehicles])
    half_w = np.array([veh.width / 2.0 for veh in vehicles])
    front = np.array([veh.front for veh in vehicles])
    ids = np.array([veh.id for veh in vehicles], dtype=np.int64)
    T = np.array([veh.params.time_headway for veh in vehicles])
    s0 = np.array([veh.params.min_gap for veh in vehicles])
    a_max = np.array([veh.params.max_accel for veh in vehicles])
    b = np.array([veh.params.comfortable_decel for veh in vehicles])
    delta = np.array([veh.params.exponent for veh in vehicles])
    d_max = np.array([veh.params.max_decel for veh in vehicles])
    factor = np.array([veh.speed_factor for veh in vehicles])
    fixed = np.array([veh.fixed_speed for veh in vehicles])
    lat = np.array([veh.lat_accel for veh in vehicles])
    # desired speed: limits and curvature ahead, reachable by braking at b from here
    v_curve = np.sqrt(lat[:, None] / np.maximum(np.abs(win_k), 1e-6))
    v_cap = np.where(fixed[:, None] > 0, fixed[:, None], win_lim * factor[:, None])
    v_cap = np.minimum(v_cap, v_curve)
    v0 = np.min(np.sqrt(v_cap**2 + 2.0 * b[:, None] * np.maximum(win_s, 0.0)), axis=1)
    acc = idm_acceleration(v, v0, np.full(n, np.inf), np.zeros(n), T, s0, a_max, b, delta, d_max)
    # IDM's free-road term slows down only gently above v0; to be at the curve/limit speed on time, brake at the
    # constant deceleration that reaches every capped speed ahead where it applies
    needed = (v[:, None] ** 2 - v_cap**2) / (2.0 * np.maximum(win_s, PATH_STEP))
    needed = np.max(np.where(v_cap < v[:, None], needed, 0.0), axis=1)
    acc = np.where(needed > CURVE_BRAKE_ONSET, np.minimum(acc, -np.minimum(needed, d_max)), acc)
    # corridor obstacles
    ref_xy = win_xy[:, 0, :]
    vi, gap, speed = corridor_conflicts(win_xy, win_h, win_s, half_w, front, ids, obstacles, ref_xy)
    # stop lines and path ends (virtual standing obstacles)
    sv, sg = [], []
    for i, veh in enumerate(vehicles):
        g = _stop_line_gap(veh, light_status, light_time_left)
        if g is not None:
            sv.append(i), sg.append(g)
        if veh.stop_at_path_end:
            sv.append(i), sg.append(veh.path.length - veh.u - veh.front)
    if sv:
        vi = np.concatenate([vi, np.asarray(sv, np.int64)])
        gap = np.concatenate([gap, np.asarray(sg)])
        speed = np.concatenate([speed, np.zeros(len(sv))])
    if len(vi):
        a_pair = idm_acceleration(v[vi], v0[vi], gap, v[vi] - speed, T[vi], s0[vi], a_max[vi], b[vi], delta[vi],
                                  d_max[vi])
        np.minimum.at(acc, vi, a_pair)
    return acc


def clearing_time(distance: float, speed: float, accel: float, v_max: float) -> float:
    """Seconds to cover ``distance`` from ``speed`` accelerating at ``accel`` up to ``v_max``."""
    v_max = max(v_max, 0.5)
    if speed >= v_max:
        return distance / speed
    d_acc = (v_max**2 - speed**2) / (2.0 * accel)
    if distance <= d_acc:
        return (-speed + math.sqrt(speed**2 + 2.0 * accel * distance)) / accel
    return (v_max - speed) / accel + (distance - d_acc) / v_max


def _stop_line_gap(veh: Vehicle, light_status: np.ndarray, time_to_red: np.ndarray) -> float | None:
    """Gap to the next stop line the vehicle must respect, or None.

    Red: stop. Otherwise go if the vehicle is out of the connector before it turns red (speed limited by the
    connector's curve); if not, stop if it can (up to 90 % of its braking limit), else commit to going.
    """
    if len(veh.stop_s) == 0:
        return None
    front_s = veh.u + veh.front
    j = int(np.searchsorted(veh.stop_s, front_s - 0.5))
    if j >= len(veh.stop_s):
        return None
    gap = float(veh.stop_s[j] - front_s)
    if gap > WINDOW_POINTS * WINDOW_STRIDE * PATH_STEP + 20.0:
        return None
    light = int(veh.stop_light[j])
    status = int(light_status[light])
    if veh.yellow_go_light == light:  # committed: keep going
        if status == TrafficLightStatus.GREEN and gap > 0.0:
            veh.yellow_go_light = -1
        return None
    if status == TrafficLightStatus.RED:
        return gap
    distance = max(gap, 0.0) + float(veh.stop_clear[j]) + veh.length
    if clearing_time(distance, veh.v, 0.8 * veh.params.max_accel, float(veh.stop_vmax[j])) <= time_to_red[light]:
        return None
    need = veh.v**2 / (2.0 * max(gap, 0.1))
    if gap > 0.0 and need <= 0.9 * veh.params.max_decel:
        return gap
    veh.yellow_go_light = light
    return None


def integrate(veh: Vehicle, acc: float, dt: float = SIM_DT) -> None:
    """Advance ``veh`` by ``dt`` with constant acceleration ``acc``; never reverses (``acc`` is cut to stop)."""
    if veh.v + acc * dt < 0.0:
        acc = -veh.v / dt
    veh.a = acc
    veh.u += veh.v * dt + 0.5 * acc * dt * dt
    veh.v = max(veh.v + acc * dt, 0.0)


def vehicles_as_obstacles(vehicles: list[Vehicle]) -> Obstacles:
    if not vehicles:
        return Obstacles.concat([])
    poses = np.array([veh.center() for veh in vehicles])
    return Obstacles(
        poses[:, :2], poses[:, 2], np.array([veh.length / 2 for veh in vehicles]),
        np.array([veh.width / 2 for veh in vehicles]), np.array([veh.v for veh in vehicles]),
        np.array([veh.id for veh in vehicles], dtype=np.int64))


# =====================================================================================================================
# Lane changes
# =====================================================================================================================
def lane_change_length(speed: float) -> float:
    return float(np.clip(speed * LANE_CHANGE_DURATION, *LANE_CHANGE_LENGTH_RANGE))


def try_lane_change(veh: Vehicle, road_map: RoadMap, target_lane: int, next_lanes: list[int],
                    obstacles: Obstacles, safe_decel: float = 2.0, end_cut: float = 0.0) -> bool:
    """Switch ``veh`` onto ``target_lane`` (then ``next_lanes``) if the gaps there are safe; True on success.

    Safe = the new leader is at least a 1 s headway (and 6 m) ahead, and the new follower needs no more than
    ``safe_decel`` of braking (MOBIL's safety criterion, Kesting, Treiber & Helbing, TRR 1999, 2007).
    """
    lane = road_map.lanes[target_lane]
    x, y, _, _ = veh.pose()
    cx, cy, _ = veh.center()
    s_lane = arclength(lane.centerline)
    s_proj, lateral = project_point(lane.centerline, s_lane, np.array([x, y]))
    s_center, _ = project_point(lane.centerline, s_lane, np.array([cx, cy]))
    blend = lane_change_length(veh.v)
    if s_proj + blend + 10.0 > s_lane[-1] or abs(lateral) > 1.5 * lane.width:
        return False
    # gaps in the target lane: project obstacles onto the lane around our position
    near = (obstacles.owner != veh.id) & (np.hypot(obstacles.xy[:, 0] - cx, obstacles.xy[:, 1] - cy) < 90.0)
    if np.any(near):
        rel = np.array([project_point(lane.centerline, s_lane, p) for p in obstacles.xy[near]])
        half_l, half_w, sp = obstacles.half_length[near], obstacles.half_width[near], obstacles.speed[near]
        in_lane = np.abs(rel[:, 1]) < lane.width / 2 + half_w
        ds = rel[:, 0] - s_center
        ahead = in_lane & (ds >= 0) & (ds < 80.0)
        if np.any(ahead) and np.min(ds[ahead] - veh.length / 2 - half_l[ahead]) < max(6.0, veh.v * 1.0):
            return False
        behind = in_lane & (ds < 0) & (ds > -60.0)
        if np.any(behind):
            gap_b = -ds[behind] - veh.length / 2 - half_l[behind]
            if np.min(gap_b) < 2.0:
                return False
            a_f = idm_acceleration(sp[behind], np.maximum(sp[behind], 1.0) * 1.2, gap_b, sp[behind] - veh.v,
                                   1.5, 2.0, 1.0, 2.0)
            if np.min(a_f) < -safe_decel:
                return False
    path = make_vehicle_path(road_map, [target_lane, *next_lanes], start_s=s_proj, lateral=lateral, blend=blend,
                             end_cut=end_cut)
    attach_path(veh, road_map, path, 0.0)
    veh.lane_change_end = blend
    return True


# =====================================================================================================================
# Pedestrians
# =====================================================================================================================
@dataclass
class Pedestrian:
    """A walker following ``waypoints``; if ``crossing`` is set it waits at waypoint ``wait_index`` for a gap
    (or for the junction's pedestrian phase) before stepping onto the road."""

    id: int
    length: float
    width: float
    height: float
    speed: float
    waypoints: np.ndarray  # (W, 2)
    xy: np.ndarray
    heading: float
    target: int = 1
    wait_index: int = -1
    junction: object | None = None  # junction with a pedestrian phase, or None (unsignalized crossing)
    crossing_length: float = 0.0
    walking: bool = True
    at_kerb: bool = False  # waiting at waypoint ``wait_index`` for permission to cross
    alive: bool = True

    @property
    def velocity(self) -> np.ndarray:
        if not self.walking:
            return np.zeros(2)
        return np.array([self.speed * math.cos(self.heading), self.speed * math.sin(self.heading)])


def step_pedestrian(ped: Pedestrian, t: float, vehicles: list[Vehicle], windows: tuple | None,
                    dt: float = SIM_DT) -> None:
    """Walk towards the next waypoint; at a crossing wait for the pedestrian phase or an accepted gap."""
    if not ped.alive:
        return
    if ped.at_kerb:
        if not _may_cross(ped, t, vehicles, windows):
            ped.walking = False
            return
        ped.at_kerb = False
    ped.walking = True
    goal = ped.waypoints[ped.target]
    dx, dy = goal[0] - ped.xy[0], goal[1] - ped.xy[1]
    dist = math.hypot(dx, dy)
    step = ped.speed * dt
    if dist > 1e-9:
        ped.heading = math.atan2(dy, dx)
    if dist <= step:
        ped.xy = goal.copy()
        ped.target += 1
        if ped.target >= len(ped.waypoints):
            ped.alive = False
        elif ped.target == ped.wait_index + 1:
            ped.at_kerb = True  # arrived at the kerb: cross only when allowed
            ped.walking = False
    else:
        ped.xy = ped.xy + np.array([dx, dy]) / dist * step


def _may_cross(ped: Pedestrian, t: float, vehicles: list[Vehicle], windows: tuple | None) -> bool:
    if ped.junction is not None:  # signalized: only during the pedestrian phase, if there is time to finish
        return ped.junction.walk_time_left(t) > ped.crossing_length / ped.speed + 1.0
    if not vehicles or windows is None:
        return True
    a, b = ped.waypoints[ped.wait_index], ped.waypoints[ped.wait_index + 1]
    win_xy, _, win_s, _, _ = windows
    ab = b - a
    t_ = np.clip(np.einsum("nkc,c->nk", win_xy - a, ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    foot = a + t_[..., None] * ab
    dist = np.hypot(*(win_xy - foot).transpose(2, 0, 1))
    half_w = np.array([veh.width / 2 for veh in vehicles])
    hit = dist < half_w[:, None] + 1.0
    speeds = np.array([veh.v for veh in vehicles])
    for i in np.nonzero(hit.any(axis=1))[0]:
        k = int(np.argmax(hit[i]))
        if speeds[i] > 0.5 and win_s[i, k] / speeds[i] < PEDESTRIAN_GAP:
            return False
    return True


def pedestrians_as_obstacles(peds: list[Pedestrian]) -> Obstacles:
    """Current boxes, where walking pedestrians will be in ``PEDESTRIAN_LOOKAHEAD`` s, and, for pedestrians on a
    crosswalk, the stretch ahead of them they will cover within ``CROSSING_YIELD_HORIZON`` (drivers yield to it)."""
    rows = []
    for p in peds:
        if not p.alive:
            continue
        rows.append((p.xy[0], p.xy[1], p.heading, p.length / 2, p.width / 2, p.speed if p.walking else 0.0, p.id))
        if not p.walking:
            continue
        vel = p.velocity
        f = p.xy + PEDESTRIAN_LOOKAHEAD * vel
        rows.append((f[0], f[1], p.heading, p.length / 2, p.width / 2, p.speed, p.id))
        if p.wait_index >= 0 and p.target == p.wait_index + 1:
            goal = p.waypoints[p.target]
            reach = min(float(np.hypot(*(goal - p.xy))), p.speed * CROSSING_YIELD_HORIZON)
            direction = vel / max(p.speed, 1e-6)
            for d in np.arange(0.75, reach + 1e-9, 0.75):
                q = p.xy + d * direction
                rows.append((q[0], q[1], p.heading, p.length / 2, p.width / 2, 0.0, p.id))
    if not rows:
        return Obstacles.concat([])
    arr = np.array(rows)
    return Obstacles(arr[:, :2], arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5], arr[:, 6].astype(np.int64))


def static_obstacles(spots: np.ndarray, sizes: np.ndarray, ids: np.ndarray) -> Obstacles:
    """Parked cars ``spots (P, >=3)`` [x, y, heading], ``sizes (P, 3)``."""
    if len(spots) == 0:
        return Obstacles.concat([])
    return Obstacles(spots[:, :2].copy(), spots[:, 2].copy(), sizes[:, 0] / 2, sizes[:, 1] / 2,
                     np.zeros(len(spots)), ids.astype(np.int64))


EGO_CENTER_OFFSET = EGO_VEHICLE.rear_axle_to_center
