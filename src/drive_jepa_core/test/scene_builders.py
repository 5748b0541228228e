"""Hand-made scenes for the scorer tests: straight roads and a signalised junction, agents placed by hand.

Right-hand traffic along +x. Lanes are 3.5 m wide; a lane's polygon is its centerline offset by ±1.75 m. The ego
drives at constant speed from ``EGO_X0`` (timeline -1.5 s … +5.0 s at 10 Hz, t0 at index 15).
"""

from __future__ import annotations

import numpy as np

from drive_jepa_core.scene.format import (
    AgentType,
    MapLayer,
    Scene,
    TrafficLightStatus,
)

LANE_WIDTH = 3.5
NUM_PAST = 15  # 1.5 s of history at 10 Hz
NUM_FUTURE = 50  # 5.0 s of future at 10 Hz
ROAD_X = (-80.0, 220.0)
JUNCTION_X = (40.0, 60.0)  # intersection box along x for the junction scene


def _offset(line: np.ndarray, dist: float) -> np.ndarray:
    """Polyline shifted ``dist`` to its left (per-vertex normals from neighbouring segments)."""
    d = np.gradient(line, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return line + dist * n


def straight_line(x0: float, x1: float, y: float, step: float = 5.0) -> np.ndarray:
    """Points from (x0, y) to (x1, y) (direction x0 -> x1), about ``step`` apart."""
    n = max(2, int(round(abs(x1 - x0) / step)) + 1)
    return np.stack([np.linspace(x0, x1, n), np.full(n, y)], axis=-1)


class SceneBuilder:
    """Accumulates map, ego, agents and lights; :meth:`build` returns a validated :class:`Scene`."""

    def __init__(self, token: str = "hand", num_past: int = NUM_PAST, num_future: int = NUM_FUTURE) -> None:
        self.token = token
        self.t0_index = num_past
        self.timestamps = (np.arange(num_past + num_future + 1) - num_past) * 0.1
        self.polygons: list[tuple[int, int, np.ndarray]] = []
        self.lanes: list[dict] = []
        self.successors: list[tuple[int, int]] = []
        self.route: list[int] = []
        self.agents: list[dict] = []
        self.lights: list[tuple[int, np.ndarray]] = []
        self.ego_states = np.zeros((len(self.timestamps), 7))

    @property
    def num_steps(self) -> int:
        return len(self.timestamps)

    # --- map ---
    def add_polygon(self, pid: int, layer: MapLayer, ring: np.ndarray) -> SceneBuilder:
        self.polygons.append((pid, int(layer), np.asarray(ring, dtype=np.float64)))
        return self

    def add_lane(self, lane_id: int, roadblock_id: int, centerline: np.ndarray, connector: bool = False,
                 speed_limit: float = 15.0, width: float = LANE_WIDTH) -> SceneBuilder:
        """A lane (or lane connector) with its polygon: the centerline offset by ± width / 2."""
        centerline = np.asarray(centerline, dtype=np.float64)
        left, right = _offset(centerline, width / 2.0), _offset(centerline, -width / 2.0)
        ring = np.concatenate([left, right[::-1]])
        self.add_polygon(lane_id, MapLayer.LANE_CONNECTOR if connector else MapLayer.LANE, ring)
        self.lanes.append(dict(id=lane_id, rb=roadblock_id, connector=connector, limit=speed_limit,
                               centerline=centerline, left=left, right=right))
        return self

    def add_successor(self, lane_id: int, successor_id: int) -> SceneBuilder:
        self.successors.append((lane_id, successor_id))
        return self

    def set_route(self, roadblock_ids: list[int]) -> SceneBuilder:
        self.route = list(roadblock_ids)
        return self

    # --- ego ---
    def set_ego_constant_speed(self, x0: float = 0.0, y0: float = 0.0, heading: float = 0.0, speed: float = 10.0
                               ) -> SceneBuilder:
        """Ego moving straight at constant speed; rear axle at (x0, y0) at t0."""
        t = self.timestamps
        self.ego_states[:, 0] = x0 + np.cos(heading) * speed * t
        self.ego_states[:, 1] = y0 + np.sin(heading) * speed * t
        self.ego_states[:, 2] = heading
        self.ego_states[:, 3] = speed
        self.ego_states[:, 4:] = 0.0
        return self

    def set_ego_states(self, states: np.ndarray) -> SceneBuilder:
        self.ego_states = np.asarray(states, dtype=np.float64).reshape(self.num_steps, 7).copy()
        return self

    # --- agents ---
    def add_agent(self, agent_id: int, agent_type: AgentType, size: tuple[float, float], states: np.ndarray,
                  valid: np.ndarray | None = None) -> SceneBuilder:
        """Agent with ``(T, 5)`` states [x, y, heading, vx, vy] (box centre, world velocity)."""
        states = np.asarray(states, dtype=np.float64).reshape(self.num_steps, 5)
        valid = np.ones(self.num_steps, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        self.agents.append(dict(id=agent_id, type=int(agent_type), size=(size[0], size[1], 1.5), states=states,
                                valid=valid))
        return self

    def add_constant_agent(self, agent_id: int, agent_type: AgentType, x: float, y: float, heading: float = 0.0,
                           speed: float = 0.0, size: tuple[float, float] = (4.5, 1.9)) -> SceneBuilder:
        """Agent at (x, y) at t0 moving along its heading at constant ``speed`` (0: standing still)."""
        t = self.timestamps
        states = np.zeros((self.num_steps, 5))
        states[:, 0] = x + np.cos(heading) * speed * t
        states[:, 1] = y + np.sin(heading) * speed * t
        states[:, 2] = heading
        states[:, 3] = np.cos(heading) * speed
        states[:, 4] = np.sin(heading) * speed
        return self.add_agent(agent_id, agent_type, size, states)

    # --- lights ---
    def add_traffic_light(self, lane_id: int, status: TrafficLightStatus | np.ndarray) -> SceneBuilder:
        """Light on lane connector ``lane_id``: one status for the whole timeline, or ``(T,)`` statuses."""
        arr = np.broadcast_to(np.asarray(status, dtype=np.int64), (self.num_steps,)).copy()
        self.lights.append((lane_id, arr))
        return self

    def build(self) -> Scene:
        T = self.num_steps
        lanes = self.lanes
        scene = Scene(
            token=self.token, log_name=f"log_{self.token}", split="test", source="synthetic", command=1,
            timestamps=self.timestamps.copy(), t0_index=self.t0_index, ego_states=self.ego_states.copy(),
            agent_ids=np.array([a["id"] for a in self.agents], dtype=np.int64),
            agent_types=np.array([a["type"] for a in self.agents], dtype=np.int64),
            agent_sizes=np.array([a["size"] for a in self.agents], dtype=np.float64).reshape(-1, 3),
            agent_states=(np.stack([a["states"] for a in self.agents], axis=1) if self.agents
                          else np.zeros((T, 0, 5))),
            agent_valid=(np.stack([a["valid"] for a in self.agents], axis=1) if self.agents
                         else np.zeros((T, 0), dtype=bool)),
            map_polygon_ids=np.array([p[0] for p in self.polygons], dtype=np.int64),
            map_polygon_layers=np.array([p[1] for p in self.polygons], dtype=np.int64),
            map_polygons=[p[2] for p in self.polygons],
            lane_ids=np.array([la["id"] for la in lanes], dtype=np.int64),
            lane_roadblock_ids=np.array([la["rb"] for la in lanes], dtype=np.int64),
            lane_is_connector=np.array([la["connector"] for la in lanes], dtype=bool),
            lane_speed_limits=np.array([la["limit"] for la in lanes], dtype=np.float64),
            lane_centerlines=[la["centerline"] for la in lanes],
            lane_left_boundaries=[la["left"] for la in lanes],
            lane_right_boundaries=[la["right"] for la in lanes],
            lane_successors=np.array(self.successors, dtype=np.int64).reshape(-1, 2),
            route_roadblock_ids=list(self.route),
            traffic_light_lane_ids=np.array([lid for lid, _ in self.lights], dtype=np.int64),
            traffic_light_status=(np.stack([s for _, s in self.lights], axis=1) if self.lights
                                  else np.zeros((T, 0), dtype=np.int64)),
            camera=None, camera_timestamps=np.zeros(0), camera_frames=None,
        )
        scene.validate()
        return scene


def _rect(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def straight_road(token: str = "straight", ego_speed: float = 10.0, ego_y: float = 0.0, speed_limit: float = 10.0,
                  ) -> SceneBuilder:
    """Straight road along +x: two eastbound lanes (y = 0 ego lane, y = -3.5) in roadblocks 100 → 101, one
    westbound (oncoming) lane at y = +3.5 in roadblock 200. Route [100, 101]. Road edges at y = ±5.25."""
    b = SceneBuilder(token)
    mid = 70.0
    x0, x1 = ROAD_X
    h = LANE_WIDTH / 2.0
    b.add_polygon(100, MapLayer.ROADBLOCK, _rect(x0, mid, -3 * h, h))
    b.add_polygon(101, MapLayer.ROADBLOCK, _rect(mid, x1, -3 * h, h))
    b.add_polygon(200, MapLayer.ROADBLOCK, _rect(x0, x1, h, 3 * h))
    b.add_lane(1, 100, straight_line(x0, mid, 0.0), speed_limit=speed_limit)
    b.add_lane(2, 100, straight_line(x0, mid, -LANE_WIDTH), speed_limit=speed_limit)
    b.add_lane(11, 101, straight_line(mid, x1, 0.0), speed_limit=speed_limit)
    b.add_lane(12, 101, straight_line(mid, x1, -LANE_WIDTH), speed_limit=speed_limit)
    b.add_lane(3, 200, straight_line(x1, x0, LANE_WIDTH), speed_limit=speed_limit)
    b.add_successor(1, 11).add_successor(2, 12)
    b.set_route([100, 101])
    b.set_ego_constant_speed(0.0, ego_y, 0.0, ego_speed)
    return b


def junction(token: str = "junction", light: TrafficLightStatus | np.ndarray | None = TrafficLightStatus.RED,
             ego_x: float = 10.0, ego_speed: float = 10.0, speed_limit: float = 10.0) -> SceneBuilder:
    """Eastbound road (lane 1, roadblock 100) → straight lane connector 31 (roadblock connector 300) through an
    intersection at x ∈ [40, 60] → lane 41 (roadblock 400); a north-south crossing road with connector 32 (not on
    route). Route [100, 300, 400]; the light (if any) controls connector 31."""
    b = SceneBuilder(token)
    jx0, jx1 = JUNCTION_X
    x0, x1 = ROAD_X
    h = LANE_WIDTH / 2.0
    b.add_polygon(100, MapLayer.ROADBLOCK, _rect(x0, jx0, -h, h))
    b.add_polygon(400, MapLayer.ROADBLOCK, _rect(jx1, x1, -h, h))
    b.add_polygon(500, MapLayer.ROADBLOCK, _rect(jx0 + 10 - h, jx0 + 10 + h, -100.0, -10.0))
    b.add_polygon(600, MapLayer.ROADBLOCK, _rect(jx0 + 10 - h, jx0 + 10 + h, 10.0, 100.0))
    b.add_polygon(900, MapLayer.INTERSECTION, _rect(jx0, jx1, -10.0, 10.0))
    b.add_lane(1, 100, straight_line(x0, jx0, 0.0), speed_limit=speed_limit)
    b.add_lane(31, 300, straight_line(jx0, jx1, 0.0, step=2.0), connector=True, speed_limit=speed_limit)
    b.add_lane(41, 400, straight_line(jx1, x1, 0.0), speed_limit=speed_limit)
    cx = jx0 + 10.0
    b.add_lane(51, 500, np.array([[cx, -100.0], [cx, -10.0]]), speed_limit=speed_limit)
    b.add_lane(32, 700, np.array([[cx, -10.0], [cx, 10.0]]), connector=True, speed_limit=speed_limit)
    b.add_lane(61, 600, np.array([[cx, 10.0], [cx, 100.0]]), speed_limit=speed_limit)
    b.add_successor(1, 31).add_successor(31, 41).add_successor(51, 32).add_successor(32, 61)
    b.set_route([100, 300, 400])
    if light is not None:
        b.add_traffic_light(31, light)
    b.set_ego_constant_speed(ego_x, 0.0, 0.0, ego_speed)
    return b


def curved_road(token: str = "curve", ego_speed: float = 8.0, radius: float = 40.0) -> SceneBuilder:
    """A left-curving single-lane road (arc of ``radius``), lanes split in three roadblocks, ego at its start."""
    b = SceneBuilder(token)
    angles = np.linspace(-np.pi / 2, np.pi / 2 + 0.6, 60)
    centre = np.array([0.0, radius])
    arc = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    lead = np.stack([np.linspace(-60.0, 0.0, 13), np.zeros(13)], axis=-1)
    parts = [lead[:-1], arc[:30], arc[30:]]
    prev = None
    for i, part in enumerate(parts):
        if prev is not None:
            part = np.concatenate([prev[-1:], part])
        lane_id, rb = 1 + i, 100 + i
        b.add_lane(lane_id, rb, part, speed_limit=12.0)
        left, right = _offset(part, 2.5 * LANE_WIDTH), _offset(part, -1.5 * LANE_WIDTH)
        b.add_polygon(rb, MapLayer.ROADBLOCK, np.concatenate([left, right[::-1]]))
        if prev is not None:
            b.add_successor(lane_id - 1, lane_id)
        prev = part
    b.set_route([100, 101, 102])
    b.set_ego_constant_speed(-20.0, 0.0, 0.0, ego_speed)
    # A slower lead vehicle and a parked car on the shoulder.
    b.add_constant_agent(7, AgentType.VEHICLE, 5.0, 0.0, 0.0, 4.0)
    b.add_constant_agent(8, AgentType.VEHICLE, -5.0, -4.5, 0.0, 0.0)
    return b


def busy_road(token: str = "busy", seed: int = 0, num_agents: int = 14) -> SceneBuilder:
    """The straight road with random vehicles, pedestrians and static objects around the ego."""
    rng = np.random.default_rng(seed)
    b = straight_road(token, ego_speed=9.0, speed_limit=12.0)
    types = [AgentType.VEHICLE, AgentType.VEHICLE, AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.BICYCLE,
             AgentType.BARRIER, AgentType.TRAFFIC_CONE, AgentType.GENERIC_OBJECT]
    for i in range(num_agents):
        kind = types[rng.integers(len(types))]
        lane_y = float(rng.choice([-LANE_WIDTH, 0.0, LANE_WIDTH]))
        x = float(rng.uniform(-20.0, 70.0))
        if abs(x) < 8.0 and lane_y == 0.0:
            x += 16.0  # keep the ego's own spot free
        if kind == AgentType.VEHICLE:
            heading = np.pi if lane_y > 0 else 0.0
            speed = float(rng.uniform(0.0, 12.0)) if rng.random() < 0.7 else 0.0
            b.add_constant_agent(1000 + i, kind, x, lane_y + rng.normal(0, 0.3), heading, speed, (4.6, 1.9))
        elif kind in (AgentType.PEDESTRIAN, AgentType.BICYCLE):
            heading = float(rng.uniform(-np.pi, np.pi))
            size = (0.6, 0.6) if kind == AgentType.PEDESTRIAN else (1.8, 0.6)
            b.add_constant_agent(1000 + i, kind, x, lane_y, heading, float(rng.uniform(0.5, 3.0)), size)
        else:
            b.add_constant_agent(1000 + i, kind, x, lane_y + rng.normal(0, 1.0), float(rng.uniform(-1, 1)), 0.0,
                                 (0.8, 0.8))
    return b


def random_trajectories(scene: Scene, num: int, seed: int = 0, spread: float = 1.0) -> np.ndarray:
    """``(num, 8, 3)`` perturbations of the logged future: random speed scale, lateral drift and heading drift."""
    rng = np.random.default_rng(seed)
    future = scene.future_trajectory()
    t = np.arange(1, 9) * 0.5
    scale = rng.uniform(0.0, 1.6, size=(num, 1))
    lateral = spread * rng.normal(0.0, 1.5, size=(num, 1)) * (t / 4.0) ** 2
    curve = spread * rng.normal(0.0, 0.04, size=(num, 1))
    out = np.zeros((num, 8, 3))
    out[..., 0] = future[None, :, 0] * scale
    out[..., 1] = future[None, :, 1] + lateral + 0.05 * curve * out[..., 0] ** 2
    out[..., 2] = np.arctan2(np.gradient(out[..., 1], axis=1), np.maximum(np.gradient(out[..., 0], axis=1), 1e-3))
    out[..., 2] += rng.normal(0.0, 0.02, size=(num, 8))
    return out
