"""Batch PDM scorer: NAVSIM PDMS v1.1 / EPDMS v2 sub-scores for many trajectories of one scene at once.

Follows shared/reference/navsim_metrics.md §4–§6. Trajectories are simulated with the NAVSIM LQR tracker
(:mod:`drive_jepa_core.sim`) and scored against the scene's :class:`MetricCache`. Each trajectory is scored as NAVSIM
scores an agent: as proposal 1 next to the PDM-Closed reference (proposal 0), never normalised against the other K-1
trajectories. Results equal the straightforward per-trajectory implementation in
:mod:`drive_jepa_core.metrics.reference_scorer` exactly; the speed comes from

* one exact grid-accelerated point-in-polygon query for all corners, centres and rear axles (:class:`PolygonIndex`),
  from which every map flag of §4 follows by bitmask algebra;
* a uniform-grid broad phase and a vectorized separating-axis test (shapely only within 1e-7 m of touching) for
  ego boxes against object boxes (NC, TTC) and red-light polygon edges (TLC);
* the sequential ignore-set logic of NC and TTC reduced to its closed form: an object counts for a trajectory iff
  its first (eligible) contact counts, because a non-counting contact puts the object on the ignore list and a
  counting one already decides the score. Only those first contacts are classified;
* LK distances from a precomputed near / far / band grid around the centerline (band points against their cell's
  candidate segments, shapely only within 1e-9 m of the 0.5 m threshold).

Version differences (§3–§6): v1 uses 51 log-replay frames, TTC over t = 0 … 40, DDC without the intersection
exclusion, EP normalised with the masked numerator, C comfort, PDMS. v2 uses 41 frames without the objects
overlapping the ego at t0, TTC over t = 0 … 31, DDC skips intersections, TLC, LK, HC, optional EC, EPDMS. Sub-scores
a version does not define are NaN in its result.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from drive_jepa_core.constants import EGO_VEHICLE, NUM_TRAJ_POSES, SIM_DT, TRAJ_DT
from drive_jepa_core.geometry import box_corners, ego_center
from drive_jepa_core.metrics.aggregate import SUBSCORE_NAMES, epdms_v2, epdms_with_human_filter, pdms_v11
from drive_jepa_core.metrics.comfort import comfort_v1, extended_comfort, history_comfort
from drive_jepa_core.metrics.map_query import (
    SAT_EPSILON,
    BoxGrid,
    polygons_from_corners,
    popcount,
    rect_gap,
    relative_angle,
)
from drive_jepa_core.metrics.metric_cache import MetricCache, ScoringContext, check_version
from drive_jepa_core.metrics.params import (
    AHEAD_ANGLE,
    BEHIND_ANGLE,
    DDC_COMPLIANCE_THRESHOLD,
    DDC_HORIZON_STEPS,
    DDC_VIOLATION_THRESHOLD,
    LANE_KEEPING_STEPS,
    NC_AGENT_PENALTY,
    NC_STATIC_PENALTY,
    NUM_STATES,
    PROGRESS_DISTANCE_THRESHOLD,
    STOPPED_SPEED_THRESHOLD,
    TTC_PROJECTION_STEPS,
    TTC_STOPPED_SPEED_THRESHOLD,
)
from drive_jepa_core.sim import simulate, simulate_trajectories
from drive_jepa_core.sim.constants import StateIndex

EGO_HALF_LENGTH: float = EGO_VEHICLE.half_length
EGO_HALF_WIDTH: float = EGO_VEHICLE.half_width

__all__ = [
    "ScoreResult",
    "constant_velocity_trajectory",
    "reference_progress",
    "score_human",
    "score_states",
    "score_trajectories",
    "ttc_last_index",
]


@dataclass(frozen=True)
class ScoreResult:
    """Sub-scores and scores of K trajectories; every array is ``(K,)`` except ``states``.

    Attributes:
        version: "v1" or "v2".
        nc, dac, ddc, tlc, ep, ttc, c, lk, hc, ec: sub-scores (NaN where the version does not define them; EC is
            NaN without a previous frame).
        pdms: PDMS v1.1 (v1 results), epdms: EPDMS v2 (v2 results); NaN otherwise.
        progress: raw ego progress along the centerline (m).
        states: ``(K, 41, 11)`` simulated states.
        human_filtered: whether the v2 human false-positive filter was applied.
    """

    version: str
    nc: np.ndarray
    dac: np.ndarray
    ddc: np.ndarray
    tlc: np.ndarray
    ep: np.ndarray
    ttc: np.ndarray
    c: np.ndarray
    lk: np.ndarray
    hc: np.ndarray
    ec: np.ndarray
    pdms: np.ndarray
    epdms: np.ndarray
    progress: np.ndarray
    states: np.ndarray
    human_filtered: bool = False

    def __len__(self) -> int:
        return int(self.nc.shape[0])

    @property
    def score(self) -> np.ndarray:
        """The version's headline score: PDMS for v1, EPDMS for v2."""
        return self.pdms if self.version == "v1" else self.epdms

    def row(self, i: int) -> dict[str, float]:
        """Sub-scores, scores and progress of trajectory ``i`` as plain floats."""
        names = (*SUBSCORE_NAMES, "pdms", "epdms", "progress")
        return {n: float(getattr(self, n)[i]) for n in names}

    def select(self, index: Any) -> ScoreResult:
        """The result restricted to trajectories ``index`` (a slice, mask or index array)."""
        fields = {f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        return dataclasses.replace(self, **fields)


# ----------------------------------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------------------------------
def constant_velocity_trajectory(ego_state7: np.ndarray, num_poses: int = NUM_TRAJ_POSES, dt: float = TRAJ_DT
                                 ) -> np.ndarray:
    """NAVSIM's constant-velocity agent: straight ahead at the current speed, ``(num_poses, 3)`` local poses."""
    ego_state7 = np.asarray(ego_state7, dtype=np.float64)
    if ego_state7.shape != (7,) or not np.all(np.isfinite(ego_state7)):
        raise ValueError(f"ego_state7 must be a finite (7,) [x, y, heading, vx, vy, ax, ay], got {ego_state7.shape}")
    speed = float(np.hypot(ego_state7[3], ego_state7[4]))
    out = np.zeros((num_poses, 3))
    out[:, 0] = speed * dt * np.arange(1, num_poses + 1)
    return out


def check_trajectories(trajectories: np.ndarray) -> np.ndarray:
    trajectories = np.asarray(trajectories, dtype=np.float64)
    if trajectories.ndim != 3 or trajectories.shape[1:] != (NUM_TRAJ_POSES, 3):
        raise ValueError(f"trajectories must be (K, {NUM_TRAJ_POSES}, 3) local poses, got {trajectories.shape}")
    if trajectories.shape[0] == 0:
        raise ValueError("need at least one trajectory to score")
    if not np.all(np.isfinite(trajectories)):
        raise ValueError("trajectories must be finite")
    return trajectories


def score_trajectories(cache: MetricCache, trajectories: np.ndarray, version: str = "v2",
                       previous_states: np.ndarray | None = None, dt: float | None = None,
                       human_filter: bool = False) -> ScoreResult:
    """Score K planned trajectories of one scene (vectorized).

    Args:
        cache: the scene's :class:`MetricCache`.
        trajectories: ``(K, 8, 3)`` poses at 0.5 s … 4 s in the current rear-axle frame.
        version: "v2" (EPDMS) or "v1" (PDMS v1.1).
        previous_states: v2 only, ``(41, 11)`` simulated states of the plan chosen at the previous frame of the same
            log (or ``(K, 41, 11)``); with ``dt`` (seconds between the frames, 0 < dt < 0.55) it gives EC. Without it
            EC is NaN and EPDMS drops its weight.
        human_filter: v2 only, apply the human false-positive filter (§6.2).
    Returns:
        :class:`ScoreResult`; each trajectory normalised for EP against the PDM-Closed reference only.
    """
    check_version(version)
    trajectories = check_trajectories(trajectories)
    states = simulate_trajectories(trajectories, cache.ego_state7)
    raw0, mult0 = reference_progress(cache, version)
    result = score_states(cache.context(version), states, version, ep_reference=(raw0, mult0),
                          previous_states=previous_states, dt=dt)
    if human_filter:
        result = epdms_with_human_filter(result, cache.human_scores(version))
    return result


def reference_progress(cache: MetricCache, version: str) -> tuple[float, float]:
    """Raw progress and multiplier product of the PDM-Closed reference (proposal 0) in the log-replay context."""
    if version not in cache._reference:
        ref = cache.pdm_reference(version)
        states0 = simulate(ref.poses[None], cache.initial_state)
        res = score_states(cache.context(version), states0, version, ep_reference=None)
        cache._reference[version] = (float(res.progress[0]), float(multiplier(res, version)[0]))
    return cache._reference[version]


def score_human(cache: MetricCache, version: str = "v2") -> ScoreResult:
    """The logged human future scored alone (no reference, no history: HC = 1, no EC) — for the v2 filter."""
    if cache.human_future is None:
        raise ValueError(f"scene {cache.token} has no 4 s logged future")
    states = simulate_trajectories(cache.human_future[None], cache.ego_state7)
    ctx = ScoringContext(cache.map, cache.observations[version], None)
    return score_states(ctx, states, version, ep_reference=None)


def multiplier(result: ScoreResult, version: str) -> np.ndarray:
    """Product of the multiplier metrics that mask EP: NC · DAC (v1), NC · DAC · DDC · TLC (v2) (§5.5)."""
    if version == "v1":
        return result.nc * result.dac
    return result.nc * result.dac * result.ddc * result.tlc


def ttc_last_index(version: str) -> int:
    """Last evaluated TTC state: 31 in v2 (t + 9 ≤ 40), 40 in v1 (frames up to 49) (§5.6)."""
    return NUM_STATES - 1 - (max(TTC_PROJECTION_STEPS) if version == "v2" else 0)


# ----------------------------------------------------------------------------------------------------------------------
# Core
# ----------------------------------------------------------------------------------------------------------------------
def score_states(ctx: ScoringContext, states: np.ndarray, version: str,
                 ep_reference: tuple[float, float] | None = None, joint: bool = False,
                 previous_states: np.ndarray | None = None, dt: float | None = None) -> ScoreResult:
    """Score simulated states ``(K, 41, 11)`` in a scoring context.

    EP normalisation (§5.5): with ``ep_reference = (raw0, mult0)`` each trajectory is normalised against that
    reference alone (NAVSIM's agent scoring); with ``joint`` all K are normalised together (PDM-Closed scoring its
    own proposals); otherwise each trajectory is normalised against itself ("scored alone").
    """
    check_version(version)
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 3 or states.shape[1] != NUM_STATES or states.shape[2] != 11:
        raise ValueError(f"states must be (K, {NUM_STATES}, 11), got {states.shape}")
    obs, mp = ctx.observation, ctx.map
    if obs.num_frames < NUM_STATES:
        raise ValueError(f"observation has {obs.num_frames} frames, need at least {NUM_STATES}")
    num, steps = states.shape[:2]
    poses = states[..., :3]
    centres = ego_center(poses)  # (K, T, 2)
    corners = box_corners(centres, poses[..., 2], EGO_VEHICLE.length, EGO_VEHICLE.width)  # = ego_corners(poses)
    speed = np.hypot(states[..., StateIndex.VELOCITY_X], states[..., StateIndex.VELOCITY_Y])
    ego = _EgoBoxes(centres[..., 0].reshape(-1), centres[..., 1].reshape(-1), np.cos(poses[..., 2]).reshape(-1),
                    np.sin(poses[..., 2]).reshape(-1), corners.reshape(-1, 4, 2))

    # --- per-state map flags (§4) from one exact point query: 4 corners, centre, rear axle ---
    points = np.concatenate([corners, centres[:, :, None], poses[:, :, None, :2]], axis=2)  # (K, T, 6, 2)
    corner_groups = mp.drivable | mp.lanes | (mp.route_connectors if version == "v2" else 0)
    relevant = np.stack([corner_groups] * 4 + [mp.route_lanes | mp.intersections, mp.intersections])  # (6, W)
    zero = np.zeros_like(mp.drivable)
    any_groups = (np.stack([mp.drivable] * 4 + [zero, zero]), np.stack([zero] * 4 + [mp.route_lanes, zero]),
                  np.stack([zero] * 4 + [mp.intersections, mp.intersections]))
    sets = mp.index.query(points, relevant, any_groups)
    drivable = sets.any_of(mp.drivable)
    non_drivable = ~np.all(drivable[..., :4], axis=-1)
    lane_bits = sets.bits(mp.lanes)[..., :4, :]  # (K, T, 4, W)
    union = np.bitwise_or.reduce(lane_bits, axis=2)
    common = np.bitwise_and.reduce(lane_bits, axis=2)
    multiple_lanes = (popcount(union) > 1) & np.all(common == 0, axis=-1)
    in_route_lane = sets.any_of(mp.route_lanes)
    oncoming = ~in_route_lane[..., 4]
    in_intersection = sets.any_of(mp.intersections)
    centre_in_intersection = in_intersection[..., 4]
    rear_in_intersection = in_intersection[..., 5]
    lanes_or_offroad = multiple_lanes | non_drivable

    dac = (~np.any(non_drivable, axis=1)).astype(np.float64)
    ddc = _driving_direction(centres, oncoming, centre_in_intersection if version == "v2" else None)
    contacts = _object_contacts(obs, ego, steps)
    nc = _no_collision(obs, ego, contacts, poses, speed, lanes_or_offroad)
    ttc = _time_to_collision(obs, ego, contacts, poses, speed, lanes_or_offroad, rear_in_intersection,
                             ttc_last_index(version))
    progress = _progress(mp, centres)

    def nan() -> np.ndarray:  # a fresh array per undefined field
        return np.full(num, np.nan)

    if version == "v1":
        mult = nc * dac
        ep = _normalised_progress(progress, mult, version, ep_reference, joint)
        c = comfort_v1(states).astype(np.float64)
        return ScoreResult("v1", nc, dac, ddc, nan(), ep, ttc, c, nan(), nan(), nan(), pdms_v11(nc, dac, ep, ttc, c),
                           nan(), progress, states)
    tlc = _traffic_lights(ctx, sets, ego, steps)
    lk = _lane_keeping(mp, centres, centre_in_intersection)
    mult = nc * dac * ddc * tlc
    ep = _normalised_progress(progress, mult, version, ep_reference, joint)
    hc = history_comfort(states, ctx.history).astype(np.float64)
    if previous_states is not None:
        if dt is None:
            raise ValueError("previous_states needs dt (seconds between the two frames)")
        ec = np.asarray(extended_comfort(states, previous_states, dt).ec, dtype=np.float64)
    else:
        ec = nan()
    epdms = epdms_v2(nc, dac, ddc, tlc, ep, ttc, lk, hc, ec)
    return ScoreResult("v2", nc, dac, ddc, tlc, ep, ttc, nan(), lk, hc, ec, nan(), epdms, progress, states)


# ----------------------------------------------------------------------------------------------------------------------
# Sub-metrics
# ----------------------------------------------------------------------------------------------------------------------
def _driving_direction(centres: np.ndarray, oncoming: np.ndarray, skip: np.ndarray | None) -> np.ndarray:
    """DDC (§5.3): max over 11-sample windows of oncoming progress; thresholds 2 m / 6 m."""
    num, steps = oncoming.shape
    step = np.zeros((num, steps))
    diff = centres[:, 1:] - centres[:, :-1]
    step[:, 1:] = np.hypot(diff[..., 0], diff[..., 1])
    step = np.where(oncoming, step, 0.0)
    if skip is not None:
        step = np.where(skip, 0.0, step)
    # Window sums added left to right (as the reference does) so both give bit-identical values.
    padded = np.concatenate([np.zeros((num, DDC_HORIZON_STEPS)), step], axis=1)
    window = np.zeros((num, steps))
    for j in range(DDC_HORIZON_STEPS + 1):
        window = window + padded[:, j: j + steps]
    worst = window.max(axis=1)
    return np.where(worst < DDC_COMPLIANCE_THRESHOLD, 1.0, np.where(worst < DDC_VIOLATION_THRESHOLD, 0.5, 0.0))


def _first_occurrence(group: np.ndarray, num_groups: int) -> np.ndarray:
    """Index of the first element of each distinct value of ``group`` (values in [0, num_groups))."""
    first = np.full(num_groups, group.size, dtype=np.int64)
    np.minimum.at(first, group, np.arange(group.size, dtype=np.int64))
    return first[first < group.size]


@dataclass(frozen=True)
class _EgoBoxes:
    """Ego boxes of the K × T simulated states, flattened to rows r = k T + t."""

    x: np.ndarray  # (K T,) geometric centre
    y: np.ndarray
    cos: np.ndarray  # (K T,) heading
    sin: np.ndarray
    corners: np.ndarray  # (K T, 4, 2) FL, RL, RR, FR (the reference polygons, for exact fallbacks)


def _contacts(grid: BoxGrid, frame: np.ndarray, x: np.ndarray, y: np.ndarray, ego: _EgoBoxes,
              rows: np.ndarray | None, exact: Any) -> tuple[np.ndarray, np.ndarray]:
    """Intersecting (query, entry) pairs: broad phase, SAT, shapely ``exact(q, e)`` within SAT_EPSILON of touching.

    Queries are ego boxes centred at (x, y) with the heading of ego row ``rows[q]`` (``rows`` None: row q) against
    the frame's entries of ``grid``; pairs are returned in query order.
    """
    q, e = grid.candidates(frame, x, y)
    if q.size == 0:
        return q, e
    r = q if rows is None else rows[q]
    gap = rect_gap(x[q], y[q], ego.cos[r], ego.sin[r], EGO_HALF_LENGTH, EGO_HALF_WIDTH, grid.x[e], grid.y[e],
                   grid.cos[e], grid.sin[e], grid.hl[e], grid.hw[e])
    hit = gap <= 0.0
    unsure = np.flatnonzero(np.abs(gap) <= SAT_EPSILON)
    if unsure.size:
        hit[unsure] = exact(q[unsure], e[unsure])
    return q[hit], e[hit]


def _object_contacts(obs: Any, ego: _EgoBoxes, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Intersecting (ego row r = k T + t, grid entry) pairs of ego boxes with the objects of frame t, in r order."""
    grid = obs.grid()

    def exact(q: np.ndarray, e: np.ndarray) -> np.ndarray:
        return shapely.intersects(polygons_from_corners(ego.corners[q]),
                                  polygons_from_corners(obs.corners[grid.frame[e], grid.obj[e]]))

    num = ego.x.size // steps
    return _contacts(grid, np.tile(np.arange(steps), num), ego.x, ego.y, ego, None, exact)


def _no_collision(obs: Any, ego: _EgoBoxes, contacts: tuple[np.ndarray, np.ndarray], poses: np.ndarray,
                  speed: np.ndarray, lanes_or_offroad: np.ndarray) -> np.ndarray:
    """NC (§5.1) with per-trajectory ignore sets, via the first contact of each (trajectory, object)."""
    num, steps = speed.shape
    nc = np.ones(num)
    q, e = contacts
    if q.size == 0:
        return nc
    grid = obs.grid()
    num_obj = obs.ids.shape[0]
    a = grid.obj[e]
    first = _first_occurrence((q // steps) * num_obj + a, num * num_obj)  # contacts are in (k, t) order
    q, e, a = q[first], e[first], a[first]
    k, t = q // steps, q % steps
    moving = speed[k, t] > STOPPED_SPEED_THRESHOLD
    stopped_track = ~obs.is_agent[a] | (obs.first_speed[a] <= STOPPED_SPEED_THRESHOLD)
    behind = relative_angle(poses[k, t], obs.centroids()[t, a]) > BEHIND_ANGLE
    at_fault = moving & stopped_track
    active = np.flatnonzero(moving & ~stopped_track & ~behind)
    if active.size:
        qa, ea = q[active], e[active]
        # Front bumper FL -> FR: a segment of half width HW centred HL ahead of the box centre.
        bx = ego.x[qa] + EGO_HALF_LENGTH * ego.cos[qa]
        by = ego.y[qa] + EGO_HALF_LENGTH * ego.sin[qa]
        gap = rect_gap(bx, by, ego.cos[qa], ego.sin[qa], 0.0, EGO_HALF_WIDTH, grid.x[ea], grid.y[ea], grid.cos[ea],
                       grid.sin[ea], grid.hl[ea], grid.hw[ea])
        front = gap <= 0.0
        unsure = np.flatnonzero(np.abs(gap) <= SAT_EPSILON)
        if unsure.size:
            bumper = shapely.linestrings(ego.corners[qa[unsure]][:, [0, 3]])
            front[unsure] = shapely.intersects(bumper, polygons_from_corners(obs.corners[t[active][unsure],
                                                                                          a[active][unsure]]))
        at_fault[active] = front | lanes_or_offroad[k[active], t[active]]
    penalty = np.where(obs.is_agent[a], NC_AGENT_PENALTY, NC_STATIC_PENALTY)
    np.minimum.at(nc, k[at_fault], penalty[at_fault])
    return nc


def ttc_shift(poses: np.ndarray, speed: np.ndarray, step: int) -> np.ndarray:
    """Translation ``(..., 2)`` of the ego box for a TTC projection of ``step`` × 0.1 s (§5.6)."""
    delta_t = float(step) * SIM_DT
    velocity = np.stack([np.cos(poses[..., 2]) * speed, np.sin(poses[..., 2]) * speed], axis=-1)
    return velocity * delta_t


def _time_to_collision(obs: Any, ego: _EgoBoxes, contacts: tuple[np.ndarray, np.ndarray], poses: np.ndarray,
                       speed: np.ndarray, lanes_or_offroad: np.ndarray, rear_in_intersection: np.ndarray, last: int
                       ) -> np.ndarray:
    """TTC (§5.6): projected ego boxes against objects of frame t + Δ; per-trajectory ignore sets.

    The Δ = 0 projection is the NC box against frame t, so its contacts are taken from ``contacts``.
    """
    num, steps = speed.shape
    n_t = last + 1
    steps_arr = np.asarray(TTC_PROJECTION_STEPS)
    n_f = steps_arr.size
    ttc = np.ones(num)
    if obs.num_frames < n_t + int(steps_arr.max()):
        raise ValueError(f"TTC up to t={last} needs {n_t + int(steps_arr.max())} observation frames")
    if steps_arr[0] != 0:  # pragma: no cover - NAVSIM's projections start at 0
        raise ValueError("TTC projections must start with 0")
    grid = obs.grid()
    eligible = speed.reshape(-1) >= TTC_STOPPED_SPEED_THRESHOLD  # slower states are skipped and ignore nothing
    eligible &= np.tile(np.arange(steps) <= last, num)
    # Δ = 0: the NC contacts of eligible states.
    q0, e0 = contacts
    keep = eligible[q0]
    rows_c, fis_c, ents_c = [q0[keep]], [np.zeros(int(keep.sum()), np.int64)], [e0[keep]]
    # Δ > 0: translated boxes, queries in (row, projection) order.
    row = np.flatnonzero(eligible)
    if row.size and n_f > 1:
        v = speed.reshape(-1)[row]
        vx, vy = ego.cos[row] * v, ego.sin[row] * v
        delta_t = np.array([float(s) * SIM_DT for s in TTC_PROJECTION_STEPS[1:]])
        shift_x = (vx[:, None] * delta_t[None]).reshape(-1)
        shift_y = (vy[:, None] * delta_t[None]).reshape(-1)
        rq = np.repeat(row, n_f - 1)
        fq = np.tile(np.arange(1, n_f), row.size)
        frame = rq % steps + steps_arr[fq]

        def exact(q: np.ndarray, e: np.ndarray) -> np.ndarray:
            shift = np.stack([shift_x[q], shift_y[q]], axis=-1)
            return shapely.intersects(polygons_from_corners(ego.corners[rq[q]] + shift[:, None, :]),
                                      polygons_from_corners(obs.corners[grid.frame[e], grid.obj[e]]))

        q, e = _contacts(grid, frame, ego.x[rq] + shift_x, ego.y[rq] + shift_y, ego, rq, exact)
        rows_c.append(rq[q])
        fis_c.append(fq[q])
        ents_c.append(e)
    r, fi, e = np.concatenate(rows_c), np.concatenate(fis_c), np.concatenate(ents_c)
    if r.size == 0:
        return ttc
    num_obj = obs.ids.shape[0]
    a = grid.obj[e]
    group = (r // steps) * num_obj + a
    order_key = r * n_f + fi  # loop order (k, t, projection)
    first_key = np.full(num * num_obj, np.iinfo(np.int64).max)
    np.minimum.at(first_key, group, order_key)
    first = order_key == first_key[group]
    r, a, fi = r[first], a[first], fi[first]
    k, t = r // steps, r % steps
    angle = relative_angle(poses[k, t], obs.centroids()[t + steps_arr[fi], a])
    risky = (angle < AHEAD_ANGLE) | ((lanes_or_offroad[k, t] | rear_in_intersection[k, t]) & ~(angle > BEHIND_ANGLE))
    ttc[k[risky]] = 0.0
    return ttc


def _progress(mp: Any, centres: np.ndarray) -> np.ndarray:
    """Raw progress (§5.5): max(0, s(centre_40) - s(centre_0)) along the centerline (shapely project)."""
    num = centres.shape[0]
    if mp.centerline_geom is None:
        return np.zeros(num)
    start = shapely.line_locate_point(mp.centerline_geom, shapely.points(centres[:1, 0]))[0]
    end = shapely.line_locate_point(mp.centerline_geom, shapely.points(centres[:, -1]))
    return np.maximum(0.0, end - start)


def _normalised_progress(progress: np.ndarray, mult: np.ndarray, version: str,
                         ep_reference: tuple[float, float] | None, joint: bool) -> np.ndarray:
    """EP (§5.5) for each trajectory, normalised against the reference, jointly, or alone."""
    masked = progress * mult
    if ep_reference is not None:
        raw0, mult0 = ep_reference
        best = np.maximum(raw0 * mult0, masked)
    elif joint:
        best = np.full_like(masked, masked.max())
    else:
        best = masked
    safe = np.where(best > PROGRESS_DISTANCE_THRESHOLD, best, 1.0)
    if version == "v1":
        small = np.where(mult > 0.0, 1.0, 0.0)
        return np.where(best > PROGRESS_DISTANCE_THRESHOLD, masked / safe, small)
    return np.where(best > PROGRESS_DISTANCE_THRESHOLD, np.clip(progress / safe, 0.0, 1.0), 1.0)


def _pack_rows(flags: np.ndarray, words: int) -> np.ndarray:
    """``(..., N)`` bool -> ``(..., words)`` uint64 bitmasks (bit j of word j // 64)."""
    pad = words * 64 - flags.shape[-1]
    padded = np.concatenate([flags, np.zeros((*flags.shape[:-1], pad), dtype=bool)], axis=-1)
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64)


def _traffic_lights(ctx: ScoringContext, sets: Any, ego: _EgoBoxes, steps: int) -> np.ndarray:
    """TLC (§5.4): the ego box intersects a red-light polygon of frame t, for some t.

    A box meets a polygon iff a box corner is strictly inside it or a polygon edge meets the (closed) box.
    """
    obs, mp = ctx.observation, ctx.map
    num = ego.x.size // steps
    red = obs.red[:steps]
    if not red.any():
        return np.ones(num)
    red_masks = _pack_rows(red, mp.index.words)  # (T, W)
    corner_bits = sets.bits(mp.route_connectors)[:, :, :4]  # (K, T, 4, W)
    inside = np.any(corner_bits & red_masks[None, :, None, :], axis=(-1, -2))  # (K, T)
    violated = inside.reshape(-1)
    rows = np.flatnonzero(~violated)
    edges = obs.red_edges(mp)

    def exact(q: np.ndarray, e: np.ndarray) -> np.ndarray:
        # Near-touching edge: decide with the whole polygon, as the reference does.
        owners = edges.polygon[edges.grid.obj[e]]
        return shapely.intersects(polygons_from_corners(ego.corners[rows[q]]), mp.geoms[owners])

    q, _ = _contacts(edges.grid, rows % steps, ego.x[rows], ego.y[rows], ego, rows, exact)
    violated[rows[q]] = True
    return (~violated.reshape(num, steps).any(axis=1)).astype(np.float64)


def _lane_keeping(mp: Any, centres: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """LK (§5.8): 0 once the centre is > 0.5 m from the centerline for 20 consecutive counted steps."""
    num, steps = skip.shape
    if mp.lane_keeping is None:
        return np.ones(num)
    deviating = mp.lane_keeping.exceeds(centres)
    counter = np.zeros(num, dtype=np.int64)
    failed = np.zeros(num, dtype=bool)
    for t in range(steps):
        counter = np.where(skip[:, t], counter, np.where(deviating[:, t], counter + 1, 0))
        failed |= counter >= LANE_KEEPING_STEPS
    return (~failed).astype(np.float64)

