"""A step-able world simulation and the 10 Hz episode log it records.

``WorldSim(seed).step()`` advances everything by ``SIM_DT`` with the expert driving the ego;
``step(ego_state)`` instead places the ego where an external planner/simulator put it and lets the traffic react
to it (IDM followers brake for it, lane changers check gaps to it) - the hook for closed-loop evaluation. The same
seed reproduces the same world, so a closed-loop run can replay a logged scene up to its ``t0`` with the expert
(``extra["log_step"]`` of a generated scene) and take over from there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drive_jepa_core.constants import EGO_VEHICLE, SIM_DT
from drive_jepa_core.scene.format import AgentType
from drive_jepa_core.world.agents import (
    PEDESTRIAN_SPEED_RANGE,
    Obstacles,
    Pedestrian,
    Vehicle,
    _stop_line_gap,
    attach_path,
    corridor_conflicts,
    integrate,
    lane_change_length,
    longitudinal_control,
    make_vehicle_path,
    path_windows,
    pedestrians_as_obstacles,
    random_lane_sequence,
    sample_vehicle_body,
    static_obstacles,
    step_pedestrian,
    try_lane_change,
    vehicles_as_obstacles,
)
from drive_jepa_core.world.expert import EGO_ID, ExpertDriver
from drive_jepa_core.world.idm import sample_agent_parameters
from drive_jepa_core.world.polyline import arclength, project_point
from drive_jepa_core.world.road_network import RoadMap, Route, generate_map

ARRIVAL_SPEED_FACTOR = 0.7  # mean speed / limit of the expert up to a junction (measured on generated logs)


@dataclass(frozen=True)
class WorldConfig:
    """Episode and traffic settings (our choices unless cited)."""

    duration: float = 20.0  # s of recorded log
    warmup: float = 3.0  # s simulated before recording so queues and speeds settle
    traffic_density_range: tuple[float, float] = (0.4, 1.2)  # scale of vehicle density / inflow per map
    mean_vehicle_gap: float = 45.0  # m between spawned vehicles in a lane at density 1
    entry_rate: float = 0.12  # vehicles / s entering each boundary lane at density 1
    agent_lane_change_rate: float = 0.02  # discretionary lane changes per agent-second on multi-lane roads
    pedestrian_density: float = 1.0 / 70.0  # sidewalk walkers per metre of sidewalk (scaled by density)
    crossing_rate: float = 1.0 / 14.0  # pedestrians arriving per crosswalk per second
    ego_standstill_prob: float = 0.08  # ego starts at rest
    route_margin: float = 150.0  # m of route beyond the farthest the ego can get (map for the metrics' 100 m)
    ego_green_window: tuple[float, float] = (-6.0, 12.0)  # s, ego approach turns green this long around arrival


@dataclass
class WorldLog:
    """A recorded episode: the map, the route and a 10 Hz timeline. Shapes: T steps, A agents, L lights."""

    seed: int
    road_map: RoadMap
    route: Route
    timestamps: np.ndarray  # (T,) s from the log start
    ego_states: np.ndarray  # (T, 7) EGO_STATE_FIELDS (rear axle; body-frame velocity and acceleration)
    ego_lane_ids: np.ndarray  # (T,) lane under the ego's rear axle (-1 when driven externally)
    agent_ids: np.ndarray  # (A,)
    agent_types: np.ndarray  # (A,)
    agent_sizes: np.ndarray  # (A, 3) length, width, height
    agent_states: np.ndarray  # (T, A, 5) x, y, heading, vx, vy of box centres (world frame)
    agent_valid: np.ndarray  # (T, A)
    light_lane_ids: np.ndarray  # (L,)
    light_status: np.ndarray  # (T, L)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.timestamps.shape[0])


@dataclass
class WorldFrame:
    """State of the world at one instant (what one log row is built from)."""

    time: float
    ego_state: np.ndarray  # (7,)
    ego_lane_id: int
    agent_ids: np.ndarray  # (n,)
    agent_states: np.ndarray  # (n, 5)
    light_status: np.ndarray  # (L,)


class WorldSim:
    """The synthetic world, stepped at ``SIM_DT``. Deterministic given ``seed`` and the sequence of ego states."""

    def __init__(self, seed: int, config: WorldConfig | None = None) -> None:
        self.seed = int(seed)
        self.config = config or WorldConfig()
        seqs = np.random.SeedSequence(self.seed).spawn(4)
        rng_map, self.rng, rng_expert, self.rng_ped = (np.random.default_rng(s) for s in seqs)
        cfg = self.config
        reach = max(13.9, 60 / 3.6) * 1.1 * (cfg.duration + cfg.warmup)
        self.map, self.route = generate_map(rng_map, reach + cfg.route_margin)
        self.time = -cfg.warmup
        self.density = float(self.rng.uniform(*cfg.traffic_density_range))
        if self.density < 0.0:
            raise ValueError(f"traffic density must be >= 0, got {cfg.traffic_density_range}")
        self._next_id = 1
        self.vehicles: list[Vehicle] = []
        self.pedestrians: list[Pedestrian] = []
        self.agent_meta: dict[int, tuple[int, float, float, float]] = {}  # id -> type, length, width, height
        self.external_ego: np.ndarray | None = None
        # ego
        first = next(r for r in self.map.roads if r.id == self.route.start_road)
        start_lane = first.fwd_lanes[int(rng_expert.integers(len(first.fwd_lanes)))]
        lane = self.map.lanes[start_lane]
        s_lane = arclength(lane.centerline)
        ref_pt = first.ref[int(np.searchsorted(arclength(first.ref), self.route.ego_start_s))]
        start_s, _ = project_point(lane.centerline, s_lane, ref_pt)
        speed = 0.0 if rng_expert.random() < cfg.ego_standstill_prob else float(
            rng_expert.uniform(0.5, 1.0) * lane.speed_limit * 0.9)
        self.expert = ExpertDriver(self.map, self.route, rng_expert, start_lane, start_s, speed)
        self.ego = self.expert.vehicle
        self._bias_lights(speed)
        self._spawn_parked()
        self._spawn_initial_traffic()
        self._spawn_initial_pedestrians()
        self._entry_lanes = [lid for lid, ln in self.map.lanes.items() if not ln.is_connector and not ln.predecessors]
        self._settle_initial_speeds()
        while self.time < -1e-9:
            self.step()
        self.time = 0.0

    # ------------------------------------------------------------------------------------------------------ set-up
    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _bias_lights(self, ego_speed: float) -> None:
        """Time each route junction so the ego's approach turns green around its expected arrival: arriving on
        red (the expert must stop) and on green both happen often."""
        dist = self.ego.path.length
        spans = {span.lane_id: span for span in self.ego.path.spans}
        delay = 0.0
        for j_id, k in zip(self.route.junction_ids, self.route.approach_indices, strict=True):
            junction = next(j for j in self.map.junctions if j.id == j_id)
            stop = next((s.s_start for lid, s in spans.items() if self.map.lanes[lid].junction_id == j_id), None)
            if stop is None:
                stop = dist
            v_typ = ARRIVAL_SPEED_FACTOR * self.map.lanes[self.ego.path.spans[0].lane_id].speed_limit
            t_arrive = stop / max(v_typ, 1.0) - self.config.warmup + delay
            t_green = t_arrive + float(self.rng.uniform(*self.config.ego_green_window))
            junction.set_green_start(k, t_green)
            delay += max(t_green - t_arrive, 0.0)

    def _spawn_parked(self) -> None:
        spots = self.map.parking_spots
        self.parked_ids = np.array([self.new_id() for _ in range(len(spots))], dtype=np.int64)
        sizes = []
        for spot, pid in zip(spots, self.parked_ids, strict=True):
            _, length, width, height, _, _ = sample_vehicle_body(self.rng)
            length = min(length, spot[3], 5.2)
            width = min(width, 2.0)
            sizes.append((length, width, height))
            self.agent_meta[int(pid)] = (int(AgentType.VEHICLE), length, width, height)
        self.parked_sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 3)
        self.parked_obstacles = static_obstacles(spots, self.parked_sizes, self.parked_ids)

    def _new_vehicle(self, lane_id: int, s: float, speed_frac: float) -> Vehicle:
        vtype, length, width, height, factor, fixed = sample_vehicle_body(self.rng)
        vid = self.new_id()
        veh = Vehicle(id=vid, type=vtype, length=length, width=width, height=height,
                      params=sample_agent_parameters(self.rng), speed_factor=factor, path=None, u=0.0, v=0.0,
                      front=length / 2, fixed_speed=fixed)
        attach_path(veh, self.map, make_vehicle_path(self.map, random_lane_sequence(self.map, lane_id, self.rng), s))
        desired = fixed if fixed > 0 else factor * self.map.lanes[lane_id].speed_limit
        veh.v = speed_frac * desired
        self.agent_meta[vid] = (vtype, length, width, height)
        return veh

    def _spawn_initial_traffic(self) -> None:
        cfg, rng = self.config, self.rng
        if self.density <= 0.0:
            return
        ego_xy = np.array(self.ego.center()[:2])
        for lid, lane in self.map.lanes.items():
            if lane.is_connector:
                continue
            length = lane.length
            s = float(rng.uniform(0.0, cfg.mean_vehicle_gap / self.density))
            placed: list[Vehicle] = []
            while s < length - 8.0:
                cl = lane.centerline
                sl = arclength(cl)
                p = np.array([np.interp(s, sl, cl[:, 0]), np.interp(s, sl, cl[:, 1])])
                if np.hypot(*(p - ego_xy)) > 18.0:
                    veh = self._new_vehicle(lid, s, float(rng.uniform(0.6, 1.0)))
                    placed.append(veh)
                    s += veh.length
                s += 6.0 + float(rng.exponential(cfg.mean_vehicle_gap / self.density))
            for a, b in itertools.pairwise(placed):  # follower a behind leader b: speed it can stop from
                gap = b.u - a.u - (a.length + b.length) / 2 - 2.0
                a.v = min(a.v, float(np.sqrt(2.0 * 2.0 * max(gap, 0.0))))
            self.vehicles += placed

    def _settle_initial_speeds(self) -> None:
        """Cap every vehicle's initial speed so it can stop at its comfortable deceleration before whatever is
        in its corridor (treated as standing) or a red stop line: the randomly spawned world starts consistent."""
        movers = [*self.vehicles, self.ego]
        obstacles = Obstacles.concat([vehicles_as_obstacles(movers), pedestrians_as_obstacles(self.pedestrians),
                                      self.parked_obstacles])
        windows = path_windows(movers)
        half_w = np.array([v.width / 2 for v in movers])
        front = np.array([v.front for v in movers])
        ids = np.array([v.id for v in movers], dtype=np.int64)
        vi, gap, _ = corridor_conflicts(windows[0], windows[1], windows[2], half_w, front, ids, obstacles,
                                        windows[0][:, 0, :])
        lights, left = self.map.light_state(self.time)
        limit = np.full(len(movers), np.inf)
        np.minimum.at(limit, vi, gap)
        for i, veh in enumerate(movers):
            g = _stop_line_gap(veh, lights, left)
            if g is not None:
                limit[i] = min(limit[i], g)
            veh.yellow_go_light = -1
            if np.isfinite(limit[i]):
                b = veh.params.comfortable_decel
                veh.v = min(veh.v, float(np.sqrt(2.0 * b * max(limit[i] - veh.params.min_gap - 2.0, 0.0))))

    def _spawn_initial_pedestrians(self) -> None:
        rng = self.rng_ped
        for walk in self.map.sidewalks:
            n = int(rng.poisson(arclength(walk)[-1] * self.config.pedestrian_density * self.density))
            for _ in range(n):
                i = int(rng.integers(len(walk) - 1))
                pts = walk[i:] if rng.random() < 0.5 else walk[: i + 1][::-1]
                if len(pts) >= 2:
                    self._add_pedestrian(pts)
        for a, b in self.map.crosswalks:
            if rng.random() < 0.5:
                self._add_crossing(a, b)

    def _add_pedestrian(self, waypoints: np.ndarray, wait_index: int = -1, junction=None) -> Pedestrian:
        rng = self.rng_ped
        d = waypoints[1] - waypoints[0]
        ped = Pedestrian(id=self.new_id(), length=float(rng.uniform(0.5, 0.8)), width=float(rng.uniform(0.5, 0.8)),
                         height=float(rng.uniform(1.5, 1.9)), speed=float(rng.uniform(*PEDESTRIAN_SPEED_RANGE)),
                         waypoints=np.asarray(waypoints, dtype=np.float64), xy=np.array(waypoints[0], float),
                         heading=float(np.arctan2(d[1], d[0])), wait_index=wait_index, junction=junction)
        if wait_index >= 0:
            ped.crossing_length = float(np.hypot(*(waypoints[wait_index + 1] - waypoints[wait_index])))
        self.agent_meta[ped.id] = (int(AgentType.PEDESTRIAN), ped.length, ped.width, ped.height)
        self.pedestrians.append(ped)
        return ped

    def _add_crossing(self, a: np.ndarray, b: np.ndarray) -> None:
        u = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
        junction = next((j for j in self.map.junctions
                         if any(np.allclose(a, c[0]) and np.allclose(b, c[1]) for c in j.crosswalks)), None)
        self._add_pedestrian(np.stack([a - 3.0 * u, a, b, b + 3.0 * u]), wait_index=1, junction=junction)

    # -------------------------------------------------------------------------------------------------------- step
    def ego_obstacle(self) -> Obstacles:
        if self.external_ego is None:
            return vehicles_as_obstacles([self.ego])
        x, y, h, vx, vy = self.external_ego[:5]
        d = EGO_VEHICLE.rear_axle_to_center
        return Obstacles(np.array([[x + d * np.cos(h), y + d * np.sin(h)]]), np.array([h]),
                         np.array([EGO_VEHICLE.half_length]), np.array([EGO_VEHICLE.half_width]),
                         np.array([np.hypot(vx, vy)]), np.array([EGO_ID], dtype=np.int64))

    def step(self, ego_state: np.ndarray | None = None) -> WorldFrame:
        """Advance by ``SIM_DT``. ``ego_state`` (7,) = the ego's state at the *new* time, set by an external
        driver; ``None`` lets the expert drive. Returns the new frame."""
        dt = SIM_DT
        lights, lights_left = self.map.light_state(self.time)
        driven = [v for v in self.vehicles if v.alive]
        expert_drives = ego_state is None and self.external_ego is None
        movers = driven + ([self.ego] if expert_drives else [])
        obstacles = Obstacles.concat([vehicles_as_obstacles(driven), self.ego_obstacle(),
                                      pedestrians_as_obstacles(self.pedestrians), self.parked_obstacles])
        if expert_drives:
            self.expert.update_lane_plan(obstacles)
        self._agent_lane_changes(driven, obstacles)
        windows = path_windows(movers)
        acc = longitudinal_control(movers, obstacles, lights, lights_left, windows)
        for ped in self.pedestrians:
            step_pedestrian(ped, self.time, movers, windows)
        for veh, a in zip(driven, acc[: len(driven)], strict=True):
            integrate(veh, float(a))
            if veh.u >= veh.path.length - 0.5:
                veh.alive = False
        if expert_drives:
            integrate(self.ego, self.expert.acceleration(float(acc[-1])))
        elif ego_state is not None:
            ego_state = np.asarray(ego_state, dtype=np.float64)
            if ego_state.shape != (7,):
                raise ValueError(f"ego_state must have shape (7,), got {ego_state.shape}")
            self.external_ego = ego_state.copy()
        self.vehicles = [v for v in self.vehicles if v.alive]
        self.pedestrians = [p for p in self.pedestrians if p.alive]
        self._spawn_entries()
        self.time += dt
        return self.frame()

    def _agent_lane_changes(self, driven: list[Vehicle], obstacles: Obstacles) -> None:
        rate = self.config.agent_lane_change_rate * SIM_DT
        for veh in driven:
            if veh.type == AgentType.BICYCLE or self.rng.random() > rate or veh.u < veh.lane_change_end:
                continue
            lane = self.map.lanes.get(veh.lane_id())
            if lane is None or lane.is_connector:
                continue
            options = [n for n in (lane.left_neighbor, lane.right_neighbor) if n is not None]
            if not options:
                continue
            target = options[int(self.rng.integers(len(options)))]
            span = veh.path.span_at(veh.u)
            if span is None or span.s_end - veh.u < lane_change_length(veh.v) + 30.0:
                continue
            nxt = random_lane_sequence(self.map, target, self.rng)[1:]
            try_lane_change(veh, self.map, target, nxt, obstacles)

    def _spawn_entries(self) -> None:
        rate = self.config.entry_rate * self.density * SIM_DT
        if not self._entry_lanes:
            return
        occupied = np.array([v.center()[:2] for v in self.vehicles] + [self.ego_obstacle().xy[0]])
        for lid in self._entry_lanes:
            if self.rng.random() > rate:
                continue
            start = self.map.lanes[lid].centerline[0]
            if len(occupied) and np.min(np.hypot(*(occupied - start).T)) < 25.0:
                continue
            veh = self._new_vehicle(lid, 0.0, 0.8)
            self.vehicles.append(veh)
        for a, b in self.map.crosswalks:
            if self.rng_ped.random() < self.config.crossing_rate * SIM_DT:
                self._add_crossing(a, b)

    # ------------------------------------------------------------------------------------------------------ output
    def ego_state(self) -> np.ndarray:
        """(7,) x, y, heading, vx, vy, ax, ay of the rear axle (body-frame velocity and acceleration)."""
        if self.external_ego is not None:
            return self.external_ego.copy()
        x, y, h, kappa = self.ego.pose()
        v = self.ego.v
        return np.array([x, y, h, v, 0.0, self.ego.a, v * v * kappa])

    def frame(self) -> WorldFrame:
        rows, ids = [], []
        for veh in self.vehicles:
            cx, cy, h = veh.center()
            rows.append((cx, cy, h, veh.v * np.cos(h), veh.v * np.sin(h)))
            ids.append(veh.id)
        for ped in self.pedestrians:
            vel = ped.velocity
            rows.append((ped.xy[0], ped.xy[1], ped.heading, vel[0], vel[1]))
            ids.append(ped.id)
        spots = self.map.parking_spots
        for spot, pid in zip(spots, self.parked_ids, strict=True):
            rows.append((spot[0], spot[1], spot[2], 0.0, 0.0))
            ids.append(int(pid))
        lane = self.ego.lane_id() if self.external_ego is None else -1
        return WorldFrame(self.time, self.ego_state(), lane, np.asarray(ids, dtype=np.int64),
                          np.asarray(rows, dtype=np.float64).reshape(-1, 5), self.map.light_status(self.time))


def simulate_log(seed: int, config: WorldConfig | None = None) -> WorldLog:
    """Run the expert-driven world for ``config.duration`` seconds and record it at 10 Hz."""
    sim = WorldSim(seed, config)
    n_steps = int(round(sim.config.duration / SIM_DT))
    frames = [sim.frame()]
    for _ in range(n_steps):
        frames.append(sim.step())
    return assemble_log(sim, frames)


def assemble_log(sim: WorldSim, frames: list[WorldFrame]) -> WorldLog:
    """Stack frames into a :class:`WorldLog`. The logged longitudinal acceleration at step k is the one applied
    from k to k + 1, so ``vx[k + 1] = vx[k] + ax[k] * dt`` holds exactly."""
    T = len(frames)
    all_ids = sorted({int(i) for f in frames for i in f.agent_ids})
    col = {aid: c for c, aid in enumerate(all_ids)}
    A = len(all_ids)
    states = np.zeros((T, A, 5))
    valid = np.zeros((T, A), dtype=bool)
    for t, f in enumerate(frames):
        cols = np.array([col[int(i)] for i in f.agent_ids], dtype=np.int64)
        if len(cols):
            states[t, cols] = f.agent_states
            valid[t, cols] = True
    ego = np.stack([f.ego_state for f in frames])
    if T > 1 and sim.external_ego is None:
        ego[:-1, 5] = np.diff(ego[:, 3]) / SIM_DT
    meta = np.array([sim.agent_meta[a] for a in all_ids], dtype=np.float64).reshape(-1, 4)
    return WorldLog(
        seed=sim.seed, road_map=sim.map, route=sim.route,
        timestamps=np.array([round(f.time, 6) for f in frames]),
        ego_states=ego, ego_lane_ids=np.array([f.ego_lane_id for f in frames], dtype=np.int64),
        agent_ids=np.asarray(all_ids, dtype=np.int64), agent_types=meta[:, 0].astype(np.int64),
        agent_sizes=meta[:, 1:4].copy(), agent_states=states, agent_valid=valid,
        light_lane_ids=sim.map.light_lane_ids.copy(), light_status=np.stack([f.light_status for f in frames]),
        info={"seed": sim.seed, "density": sim.density, "turns": list(sim.route.turns),
              "lane_changes": sim.expert.lane_changes, "speed_factor": sim.ego.speed_factor},
    )
