"""Straightforward per-trajectory PDM scorer: the test oracle of the batch scorer.

One trajectory at a time, loops over states and objects written the way NAVSIM's ``pdm_scorer.py`` reads
(navsim_metrics.md §4–§6): shapely polygons for the ego box at each state, ``intersects`` against every object box
of the frame, the NC / TTC ignore lists updated in loop order, ``contains_xy`` of each point against each map
polygon, ``distance`` / ``project`` on the centerline. No vectorization tricks: slow and obviously faithful.
:func:`drive_jepa_core.metrics.scorer.score_trajectories` must return exactly the same sub-scores.
"""

from __future__ import annotations

import numpy as np
import shapely

from drive_jepa_core.geometry import ego_center, ego_corners
from drive_jepa_core.metrics.aggregate import epdms_v2, epdms_with_human_filter, pdms_v11
from drive_jepa_core.metrics.comfort import comfort_v1, extended_comfort, history_comfort
from drive_jepa_core.metrics.map_query import relative_angle
from drive_jepa_core.metrics.metric_cache import MetricCache, ScoringContext, check_version
from drive_jepa_core.metrics.params import (
    AHEAD_ANGLE,
    BEHIND_ANGLE,
    DDC_COMPLIANCE_THRESHOLD,
    DDC_HORIZON_STEPS,
    DDC_VIOLATION_THRESHOLD,
    LANE_KEEPING_DEVIATION,
    LANE_KEEPING_STEPS,
    NC_AGENT_PENALTY,
    NC_STATIC_PENALTY,
    NUM_STATES,
    PROGRESS_DISTANCE_THRESHOLD,
    STOPPED_SPEED_THRESHOLD,
    TTC_PROJECTION_STEPS,
    TTC_STOPPED_SPEED_THRESHOLD,
)
from drive_jepa_core.metrics.scorer import ScoreResult, check_trajectories, ttc_last_index, ttc_shift
from drive_jepa_core.sim import simulate, simulate_trajectories

__all__ = ["reference_subscores", "score_states_reference", "score_trajectories_reference"]


def score_trajectories_reference(cache: MetricCache, trajectory: np.ndarray, version: str = "v2",
                                 previous_states: np.ndarray | None = None, dt: float | None = None,
                                 human_filter: bool = False) -> ScoreResult:
    """Score one trajectory ``(8, 3)`` (rear-axle frame) like :func:`~drive_jepa_core.metrics.scorer.
    score_trajectories`, returning a K = 1 :class:`ScoreResult`."""
    check_version(version)
    trajectory = check_trajectories(np.asarray(trajectory, dtype=np.float64)[None])[0]
    states = simulate_trajectories(trajectory[None], cache.ego_state7)[0]
    return score_states_reference(cache, states, version, previous_states, dt, human_filter)


def score_states_reference(cache: MetricCache, states: np.ndarray, version: str = "v2",
                           previous_states: np.ndarray | None = None, dt: float | None = None,
                           human_filter: bool = False) -> ScoreResult:
    """Score one already simulated ``(41, 11)`` state array (see :func:`score_trajectories_reference`)."""
    check_version(version)
    states = np.asarray(states, dtype=np.float64)
    if states.shape != (NUM_STATES, 11):
        raise ValueError(f"states must be ({NUM_STATES}, 11), got {states.shape}")
    # Proposal 0: the PDM-Closed reference, re-simulated and scored in the same context (once per scene, as NAVSIM).
    key = f"proposal0_{version}"
    if key not in cache._oracle:
        ref_states = simulate(cache.pdm_reference(version).poses[None], cache.initial_state)[0]
        ref = reference_subscores(cache.context(version), ref_states, version)
        cache._oracle[key] = (ref["progress"], ref["mult"])
    result = _result(cache.context(version), states, version, cache._oracle[key], previous_states, dt)
    if human_filter:
        key = f"human_{version}"
        if key not in cache._oracle:
            if cache.human_future is None:
                raise ValueError(f"scene {cache.token} has no 4 s logged future: the human filter is unavailable")
            human_states = simulate_trajectories(cache.human_future[None], cache.ego_state7)[0]
            human_ctx = ScoringContext(cache.map, cache.observations[version], None)
            cache._oracle[key] = _result(human_ctx, human_states, version, None, None, None)
        result = epdms_with_human_filter(result, cache._oracle[key])
    return result


def _result(ctx: ScoringContext, states: np.ndarray, version: str, reference: tuple[float, float] | None,
            previous_states: np.ndarray | None, dt: float | None) -> ScoreResult:
    sub = reference_subscores(ctx, states, version)
    raw, mult = sub["progress"], sub["mult"]
    best = raw * mult if reference is None else max(reference[0] * reference[1], raw * mult)
    if version == "v1":
        if best > PROGRESS_DISTANCE_THRESHOLD:
            ep = raw * mult / best
        else:
            ep = 1.0 if mult > 0.0 else 0.0
        c = float(comfort_v1(states[None])[0])
        pdms = float(pdms_v11(np.array([sub["nc"]]), np.array([sub["dac"]]), np.array([ep]), np.array([sub["ttc"]]),
                              np.array([c]))[0])
        return _pack("v1", sub, ep, c=c, pdms=pdms, states=states)
    ep = min(max(raw / best, 0.0), 1.0) if best > PROGRESS_DISTANCE_THRESHOLD else 1.0
    hc = float(history_comfort(states[None], ctx.history)[0])
    ec = float(extended_comfort(states[None], previous_states, dt).ec[0]) if previous_states is not None else np.nan
    epdms = float(epdms_v2(*[np.array([v]) for v in (sub["nc"], sub["dac"], sub["ddc"], sub["tlc"], ep, sub["ttc"],
                                                     sub["lk"], hc, ec)])[0])
    return _pack("v2", sub, ep, hc=hc, ec=ec, epdms=epdms, states=states)


def _pack(version: str, sub: dict, ep: float, states: np.ndarray, **extra: float) -> ScoreResult:
    def arr(name: str) -> np.ndarray:
        value = extra.get(name, sub.get(name, np.nan))
        return np.array([np.nan if value is None else value], dtype=np.float64)

    return ScoreResult(
        version=version, nc=arr("nc"), dac=arr("dac"), ddc=arr("ddc"), tlc=arr("tlc"), ep=np.array([ep]),
        ttc=arr("ttc"), c=arr("c"), lk=arr("lk"), hc=arr("hc"), ec=arr("ec"), pdms=arr("pdms"), epdms=arr("epdms"),
        progress=np.array([sub["progress"]]), states=states[None],
    )


def reference_subscores(ctx: ScoringContext, states: np.ndarray, version: str) -> dict:
    """NC, DAC, DDC, TLC (v2), TTC, LK (v2), raw progress and the EP multiplier of one ``(41, 11)`` state array."""
    mp, obs = ctx.map, ctx.observation
    poses = states[:, :3]
    centres = ego_center(poses[None])[0]
    corners = ego_corners(poses[None])[0]
    speed = np.hypot(states[:, 3], states[:, 4])
    ego_polys = [shapely.Polygon(corners[t]) for t in range(NUM_STATES)]
    geoms = mp.geoms
    drivable = [geoms[j] for j in mp.positions(mp.drivable)]
    lanes = [geoms[j] for j in mp.positions(mp.lanes)]
    route_lanes = [geoms[j] for j in mp.positions(mp.route_lanes)]
    intersections = [geoms[j] for j in mp.positions(mp.intersections)]

    def inside_any(polys: list, xy: np.ndarray) -> bool:
        return any(bool(shapely.contains_xy(p, xy[0], xy[1])) for p in polys)

    # --- §4 per-state flags ---
    non_drivable, multiple_lanes, oncoming, centre_int, rear_int = [], [], [], [], []
    for t in range(NUM_STATES):
        non_drivable.append(not all(inside_any(drivable, corners[t, c]) for c in range(4)))
        containing = [[bool(shapely.contains_xy(p, *corners[t, c])) for c in range(4)] for p in lanes]
        touched = sum(1 for row in containing if any(row))
        multiple_lanes.append(touched > 1 and not any(all(row) for row in containing))
        oncoming.append(not inside_any(route_lanes, centres[t]))
        centre_int.append(inside_any(intersections, centres[t]))
        rear_int.append(inside_any(intersections, poses[t, :2]))
    lanes_or_offroad = [a or b for a, b in zip(multiple_lanes, non_drivable, strict=True)]

    # --- NC (§5.1) ---
    nc = 1.0
    ignored: set[int] = set()
    for t in range(NUM_STATES):
        for a, box in obs.shapely_boxes(t):
            if not ego_polys[t].intersects(box) or a in ignored:
                continue
            angle = relative_angle(poses[t], np.array(box.centroid.coords[0]))
            if speed[t] <= STOPPED_SPEED_THRESHOLD:
                at_fault = False  # stopped ego
            elif (not obs.is_agent[a]) or obs.first_speed[a] <= STOPPED_SPEED_THRESHOLD:
                at_fault = True  # stopped track
            elif angle > BEHIND_ANGLE:
                at_fault = False  # active rear
            elif shapely.LineString([corners[t, 0], corners[t, 3]]).intersects(box):
                at_fault = True  # active front
            else:
                at_fault = lanes_or_offroad[t]  # active lateral
            if at_fault:
                nc = min(nc, NC_AGENT_PENALTY if obs.is_agent[a] else NC_STATIC_PENALTY)
            else:
                ignored.add(a)

    # --- DAC (§5.2) ---
    dac = 0.0 if any(non_drivable) else 1.0

    # --- DDC (§5.3) ---
    progress_steps = [0.0]
    for t in range(1, NUM_STATES):
        d = centres[t] - centres[t - 1]
        progress_steps.append(float(np.hypot(d[0], d[1])))
    for t in range(NUM_STATES):
        if not oncoming[t] or (version == "v2" and centre_int[t]):
            progress_steps[t] = 0.0
    worst = max(sum(progress_steps[max(0, t - DDC_HORIZON_STEPS): t + 1]) for t in range(NUM_STATES))
    ddc = 1.0 if worst < DDC_COMPLIANCE_THRESHOLD else (0.5 if worst < DDC_VIOLATION_THRESHOLD else 0.0)

    # --- TTC (§5.6) ---
    ttc = 1.0
    ignored = set()
    for t in range(ttc_last_index(version) + 1):
        for step in TTC_PROJECTION_STEPS:
            projected = shapely.Polygon(corners[t] + ttc_shift(poses[t], speed[t], step)[None, :])
            for a, box in obs.shapely_boxes(t + step):
                if not projected.intersects(box):
                    continue
                if a in ignored or speed[t] < TTC_STOPPED_SPEED_THRESHOLD:
                    continue
                angle = relative_angle(poses[t], np.array(box.centroid.coords[0]))
                if angle < AHEAD_ANGLE or ((lanes_or_offroad[t] or rear_int[t]) and not angle > BEHIND_ANGLE):
                    ttc = 0.0
                else:
                    ignored.add(a)

    # --- progress (§5.5) ---
    line = mp.centerline_geom
    if line is None:
        progress = 0.0
    else:
        progress = max(0.0, line.project(shapely.Point(centres[-1])) - line.project(shapely.Point(centres[0])))

    out = dict(nc=nc, dac=dac, ddc=ddc, ttc=ttc, progress=progress)
    if version == "v1":
        out["mult"] = nc * dac
        return out

    # --- TLC (§5.4) ---
    tlc = 1.0
    for t in range(NUM_STATES):
        for pos in np.flatnonzero(obs.red[t]):
            if ego_polys[t].intersects(geoms[pos]):
                tlc = 0.0

    # --- LK (§5.8) ---
    lk = 1.0
    if line is not None:
        counter = 0
        for t in range(NUM_STATES):
            if centre_int[t]:
                continue
            if line.distance(shapely.Point(centres[t])) > LANE_KEEPING_DEVIATION:
                counter += 1
            else:
                counter = 0
            if counter >= LANE_KEEPING_STEPS:
                lk = 0.0
                break
    out.update(tlc=tlc, lk=lk, mult=nc * dac * ddc * tlc)
    return out
