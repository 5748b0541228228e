"""The expert ("human") driver whose motion becomes the logged ego trajectory.

It follows the route's lanes with an IDM speed policy (leaders, pedestrians, red lights, curves, speed limits),
limits jerk for comfort, and changes lanes: mandatory ones to reach a lane that serves the next turn, and random
discretionary ones between lanes that serve it, so several futures are legal from the same state.
"""

from __future__ import annotations

import numpy as np

from drive_jepa_core.constants import EGO_VEHICLE, SIM_DT
from drive_jepa_core.scene.format import AgentType
from drive_jepa_core.world.agents import (
    Obstacles,
    Vehicle,
    attach_path,
    lane_change_length,
    make_vehicle_path,
    try_lane_change,
)
from drive_jepa_core.world.idm import EXPERT_IDM
from drive_jepa_core.world.road_network import RoadMap, Route

EGO_ID = 0  # agent id reserved for the ego in the simulation
EXPERT_LAT_ACCEL = 2.0  # m/s^2 on curves; drivers keep ~0.2 g in everyday curves (ISO 2631 comfort ~1.5-2.5)
EXPERT_JERK_UP = 2.0  # m/s^3; comfortable jerk < 2 m/s^3 in city driving (Bae et al. 2019), nuPlan bound 4.13
EXPERT_JERK_DOWN = 3.0  # m/s^3
EXPERT_JERK_EMERGENCY = 8.0  # m/s^3, when IDM asks for more than the comfortable deceleration
EXPERT_SPEED_FACTOR_RANGE = (0.85, 1.0)  # desired speed / limit of the episode's driver
DISCRETIONARY_LANE_CHANGE_PROB = 0.4  # chance per road with >= 2 suitable lanes (our choice: multimodal futures)
LANE_END_MARGIN = 15.0  # m, a lane change must end this far before the lane ends
MERGE_WAIT_BEFORE_END = 45.0  # m: on a lane that does not serve the route, wait for a gap this far from its end


class ExpertDriver:
    """Drives ``vehicle`` along ``route``; call :meth:`acceleration` then integrate, once per step."""

    def __init__(self, road_map: RoadMap, route: Route, rng: np.random.Generator, start_lane: int,
                 start_s: float, speed: float) -> None:
        self.map, self.route, self.rng = road_map, route, rng
        self._route_index = {rb: i for i, rb in enumerate(route.roadblock_ids)}
        self.vehicle = Vehicle(
            id=EGO_ID, type=int(AgentType.VEHICLE), length=EGO_VEHICLE.length, width=EGO_VEHICLE.width,
            height=EGO_VEHICLE.height, params=EXPERT_IDM,
            speed_factor=float(rng.uniform(*EXPERT_SPEED_FACTOR_RANGE)),
            path=None, u=0.0, v=speed, center_offset=EGO_VEHICLE.rear_axle_to_center,
            front=EGO_VEHICLE.front_length, lat_accel=EXPERT_LAT_ACCEL, stop_at_path_end=True)
        lanes = self.route_lanes_from(start_lane)
        attach_path(self.vehicle, road_map, make_vehicle_path(road_map, lanes, start_s, end_cut=self._end_cut(lanes)))
        self._last_lane = -1
        self._planned_roads: set[int] = set()
        self._plan: tuple[float, int] | None = None  # (trigger arclength on the current path, target lane)
        self.lane_changes = 0

    # ------------------------------------------------------------------------------------------------------ routing
    def route_lanes_from(self, lane_id: int) -> list[int]:
        """``lane_id`` and its successors along the route (stops where the lane has no route connector)."""
        seq = [lane_id]
        idx = self._route_index.get(self.map.lanes[lane_id].roadblock_id)
        if idx is None:
            raise ValueError(f"lane {lane_id} is not on the route")
        while idx + 1 < len(self.route.roadblock_ids):
            nxt = self.route.roadblock_ids[idx + 1]
            cand = [s for s in self.map.lanes[seq[-1]].successors if self.map.lanes[s].roadblock_id == nxt]
            if not cand:
                break
            seq.append(cand[0])
            idx += 1
        return seq

    def _end_cut(self, lanes: list[int]) -> float:
        """Stop short of the end of a lane that does not continue along the route (a lane change is due)."""
        idx = self._route_index[self.map.lanes[lanes[-1]].roadblock_id]
        return MERGE_WAIT_BEFORE_END if idx + 1 < len(self.route.roadblock_ids) else 0.0

    def exit_lanes(self, roadblock: int) -> list[int]:
        """Lanes of ``roadblock`` from which the route continues (all of them on the route's last road)."""
        idx = self._route_index[roadblock]
        lanes = self.map.roadblock_lanes(roadblock)
        if idx + 1 >= len(self.route.roadblock_ids):
            return lanes
        nxt = self.route.roadblock_ids[idx + 1]
        return [lid for lid in lanes if any(self.map.lanes[s].roadblock_id == nxt
                                            for s in self.map.lanes[lid].successors)]

    # ---------------------------------------------------------------------------------------------- lane changes
    def _remaining_on_lane(self) -> float:
        span = self.vehicle.path.span_at(self.vehicle.u)
        return 0.0 if span is None else span.s_end - self.vehicle.u

    def _plan_road(self, lane_id: int) -> None:
        lane = self.map.lanes[lane_id]
        exits = self.exit_lanes(lane.roadblock_id)
        remaining = self._remaining_on_lane()
        lc_len = lane_change_length(self.vehicle.v)
        room = remaining - lc_len - LANE_END_MARGIN
        self._plan = None
        if lane_id not in exits:  # mandatory: towards the nearest lane serving the next turn, retried until done
            step = self._towards(lane_id, exits)
            if step is not None:
                self._plan = (self.vehicle.u + float(self.rng.uniform(0.0, min(25.0, max(room, 0.0)))), step)
            return
        if room <= 5.0:
            return
        if lane.road_id in self._planned_roads:
            return
        self._planned_roads.add(lane.road_id)
        options = [n for n in (lane.left_neighbor, lane.right_neighbor) if n is not None and n in exits]
        if options and self.rng.random() < DISCRETIONARY_LANE_CHANGE_PROB:
            target = options[int(self.rng.integers(len(options)))]
            self._plan = (self.vehicle.u + float(self.rng.uniform(0.0, room)), target)

    def _towards(self, lane_id: int, exits: list[int]) -> int | None:
        for direction in ("left_neighbor", "right_neighbor"):
            cur, hops = lane_id, []
            while getattr(self.map.lanes[cur], direction) is not None:
                cur = getattr(self.map.lanes[cur], direction)
                hops.append(cur)
                if cur in exits:
                    return hops[0]
        return None

    def update_lane_plan(self, obstacles: Obstacles) -> None:
        """Start/track lane changes; call before :meth:`acceleration` each step."""
        veh = self.vehicle
        lane_id = veh.lane_id()
        if lane_id != self._last_lane:
            self._last_lane = lane_id
            if lane_id >= 0 and not self.map.lanes[lane_id].is_connector:
                self._plan_road(lane_id)
        if self._plan is None or veh.u < veh.lane_change_end or veh.u < self._plan[0]:
            return
        target = self._plan[1]
        if self.map.lanes[target].roadblock_id != self.map.lanes[lane_id].roadblock_id:
            self._plan = None
            return
        lanes = self.route_lanes_from(target)
        if try_lane_change(veh, self.map, target, lanes[1:], obstacles, end_cut=self._end_cut(lanes)):
            self.lane_changes += 1
            self._plan = None
            self._last_lane = -1  # re-plan on the new lane (e.g. a second mandatory change)

    # ------------------------------------------------------------------------------------------------ longitudinal
    def acceleration(self, idm_accel: float, dt: float = SIM_DT) -> float:
        """Jerk-limited acceleration towards the IDM command."""
        a_prev = self.vehicle.a
        down = EXPERT_JERK_EMERGENCY if idm_accel < -EXPERT_IDM.comfortable_decel else EXPERT_JERK_DOWN
        return float(np.clip(idm_accel, a_prev - down * dt, a_prev + EXPERT_JERK_UP * dt))
