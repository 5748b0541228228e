"""PDM-Closed reference trajectory for Ego Progress normalisation (navsim_metrics.md §5.5), on our lane graph.

Proposals: the route centerline (§3) and its ±1 m lateral offsets × IDM longitudinal profiles with target speeds
{0.2, 0.4, 0.6, 0.8, 1.0} × the start lane's speed limit (15 m/s when unknown) = 15 proposals. Each is simulated with
the NAVSIM tracker from the current ego state and scored with our scorer in PDM-Closed's own context — objects
detected at t0 (within 100 m; at most 50 vehicles, 25 pedestrians, 10 bicycles, 50 static) extrapolated at constant
velocity, red lights at t0 — with the v1 scorer (PDMS) or the v2 scorer (EPDMS without history and EC), all 15
normalised together. The best one (first maximum) is the reference; its 41 simulated poses are then re-simulated
and scored as proposal 0 by :func:`drive_jepa_core.metrics.scorer.score_trajectories`.

Deviations from NAVSIM's PDM-Closed (documented, EP is therefore not bit-comparable with NAVSIM's):

* Paths are the centerline resampled every 0.5 m in a window from 10 m behind to 250 m ahead of the ego's
  projection and offset along the normals; the centerline is extended straight by 200 m past its end so long
  proposals never run out of path.
* The leading object is found in Frenet coordinates of the centerline: an object (box corners) or red-light polygon
  (vertices) leads when its lateral extent overlaps the ego corridor (path offset ± ego half width) and it reaches
  beyond the ego's front bumper; the gap is from the front bumper to its nearest point along the path; its speed is
  its velocity along the path (0 for red lights). Red-light connectors the ego's front bumper has already entered
  at t0 are ignored. The leader is re-selected every 2 steps and advanced at its own speed in between.
* IDM is integrated with explicit Euler steps of 0.1 s (speed clipped at 0, trapezoidal position update);
  s* = s0 + max(0, v T + v Δv / (2 √(a b))).
* A scene without a centerline gets a standing-still reference (zero progress, so EP normalises against the agent
  alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import shapely

from drive_jepa_core.constants import EGO_VEHICLE, SIM_DT
from drive_jepa_core.geometry import ego_center
from drive_jepa_core.metrics.metric_cache import (
    MetricCache,
    ScoringContext,
    check_version,
    make_observation,
    red_light_frames,
)
from drive_jepa_core.metrics.params import (
    NUM_STATES,
    PDM_CLOSED_PARAMETERS,
    V1_OBSERVATION_FRAMES,
    V2_OBSERVATION_FRAMES,
    PDMClosedParameters,
)
from drive_jepa_core.scene.format import AgentType
from drive_jepa_core.sim import simulate

if TYPE_CHECKING:  # pragma: no cover
    from drive_jepa_core.metrics.metric_cache import Observation


@dataclass(frozen=True)
class PDMClosedResult:
    """The chosen PDM-Closed proposal.

    Attributes:
        poses: ``(41, 3)`` world poses of the chosen proposal's simulated states (the reference trajectory).
        states: ``(41, 11)`` its simulated states.
        proposal_scores: ``(P,)`` PDMS (v1) or EPDMS without EC (v2) of every proposal.
        best: index of the chosen proposal; lateral_offset (m) and target_speed (m/s) describe it.
    """

    poses: np.ndarray
    states: np.ndarray
    proposal_scores: np.ndarray
    best: int
    lateral_offset: float
    target_speed: float


def run_pdm_closed(cache: MetricCache, version: str, params: PDMClosedParameters = PDM_CLOSED_PARAMETERS
                   ) -> PDMClosedResult:
    """Run PDM-Closed on the scene of ``cache`` for ``version`` ("v1" or "v2")."""
    from drive_jepa_core.metrics.scorer import score_states

    check_version(version)
    mp = cache.map
    if mp.centerline is None or cache.scene is None:
        states = np.tile(cache.initial_state, (NUM_STATES, 1))
        states[:, 3:] = 0.0
        return PDMClosedResult(states[:, :3].copy(), states, np.zeros(1), 0, 0.0, 0.0)
    num_frames = V1_OBSERVATION_FRAMES if version == "v1" else V2_OBSERVATION_FRAMES
    obs = forecast_observation(cache, num_frames, params)
    path, s_ego = _resampled_path(mp.centerline, cache.ego_state7, params)
    limit = mp.speed_limit if np.isfinite(mp.speed_limit) and mp.speed_limit > 0 else params.default_speed_limit
    offsets = np.repeat(np.asarray(params.lateral_offsets, dtype=np.float64), len(params.speed_fractions))
    targets = np.tile(np.asarray(params.speed_fractions, dtype=np.float64) * limit, len(params.lateral_offsets))
    speed0 = float(np.hypot(cache.ego_state7[3], cache.ego_state7[4]))
    progress = _idm_profiles(path, s_ego, speed0, offsets, targets, obs, mp, params)  # (P, 41)
    poses = _poses_along(path, progress, offsets)  # (P, 41, 3)
    states = simulate(poses, cache.initial_state)
    ctx = ScoringContext(mp, obs, None)
    result = score_states(ctx, states, version, joint=True)
    scores = result.pdms if version == "v1" else result.epdms
    best = int(np.argmax(scores))
    return PDMClosedResult(states[best, :, :3].copy(), states[best], scores, best, float(offsets[best]),
                           float(targets[best]))


def forecast_observation(cache: MetricCache, num_frames: int, params: PDMClosedParameters = PDM_CLOSED_PARAMETERS
                         ) -> Observation:
    """PDM-Closed's observation: objects at t0 (capped per class, nearest first) at constant velocity (§5.5)."""
    scene = cache.scene
    t0 = scene.t0_index
    states = scene.agent_states[t0]
    valid = scene.agent_valid[t0] & np.all(np.isfinite(states), axis=-1)
    centre = ego_center(cache.ego_state7[:3])
    dist = np.hypot(states[:, 0] - centre[0], states[:, 1] - centre[1])
    caps = dict(params.max_agents)
    keep = np.zeros(valid.shape, dtype=bool)
    groups = {"VEHICLE": [AgentType.VEHICLE], "PEDESTRIAN": [AgentType.PEDESTRIAN], "BICYCLE": [AgentType.BICYCLE],
              "STATIC": [AgentType.TRAFFIC_CONE, AgentType.BARRIER, AgentType.CZONE_SIGN, AgentType.GENERIC_OBJECT]}
    for name, types in groups.items():
        sel = np.flatnonzero(valid & (dist <= params.observation_radius) & np.isin(scene.agent_types, types))
        keep[sel[np.argsort(dist[sel], kind="stable")][: caps[name]]] = True
    heading = states[:, 2]
    direction = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
    velocity = np.where(keep[:, None], states[:, 3:5], 0.0)
    speed = np.hypot(velocity[:, 0], velocity[:, 1])
    sign = np.where(np.einsum("ad,ad->a", velocity, direction) < 0.0, -1.0, 1.0)  # moving backwards: flipped
    along = (sign * speed)[:, None] * direction  # (A, 2) velocity along the heading
    times = SIM_DT * np.arange(num_frames)
    centres = states[None, :, :2] + times[:, None, None] * along[None]
    frames_valid = np.broadcast_to(keep, (num_frames, keep.shape[0]))
    red = red_light_frames(scene, cache.map, num_frames, hold=False)
    return make_observation(scene.agent_ids, scene.agent_types, scene.agent_sizes, centres,
                            np.broadcast_to(heading, (num_frames, heading.shape[0])),
                            np.broadcast_to(along, (num_frames, *along.shape)), frames_valid, red)


# ----------------------------------------------------------------------------------------------------------------------
# Paths
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Path:
    s: np.ndarray  # (N,) arclength
    xy: np.ndarray  # (N, 2)
    heading: np.ndarray  # (N,) unwrapped
    line: shapely.LineString


def _resampled_path(centerline: np.ndarray, ego_state7: np.ndarray, params: PDMClosedParameters
                    ) -> tuple[_Path, float]:
    """The centerline (extended straight past its end) resampled every ``path_resample`` m; ego rear-axle s."""
    pts = np.asarray(centerline, dtype=np.float64)
    end_dir = pts[-1] - pts[-2]
    end_dir = end_dir / max(float(np.hypot(*end_dir)), 1e-9)
    pts = np.concatenate([pts, pts[-1:] + params.path_extension * end_dir[None]])
    seg = np.hypot(*np.diff(pts, axis=0).T)
    keep = np.concatenate([[True], seg > 0])
    pts = pts[keep]
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    s_ego_full = float(shapely.line_locate_point(shapely.LineString(pts), shapely.Point(*ego_state7[:2])))
    # Only a window around the ego matters (4 s of IDM at any speed limit stays far inside it).
    s = np.arange(max(0.0, s_ego_full - params.path_behind), min(cum[-1], s_ego_full + params.path_ahead),
                  params.path_resample)
    xy = np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], axis=-1)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])  # arclength of the resampled line
    d = np.gradient(xy, axis=0)
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    path = _Path(s, xy, heading, shapely.LineString(xy))
    s_ego, _ = _frenet(path, ego_state7[None, :2])
    return path, float(s_ego[0])


def _frenet(path: _Path, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arclength and signed lateral offset (left positive) of points ``(N, 2)`` on the resampled path."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    pts = shapely.points(xy)
    s = shapely.line_locate_point(path.line, pts)
    foot = shapely.get_coordinates(shapely.line_interpolate_point(path.line, s))
    heading = np.interp(s, path.s, path.heading)
    rel = xy - foot
    return s, np.cos(heading) * rel[:, 1] - np.sin(heading) * rel[:, 0]


def _poses_along(path: _Path, progress: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """World poses ``(P, T, 3)`` at arclengths ``progress (P, T)`` on the path offset laterally by ``offsets (P,)``."""
    x = np.interp(progress, path.s, path.xy[:, 0])
    y = np.interp(progress, path.s, path.xy[:, 1])
    h = np.interp(progress, path.s, path.heading)
    x = x - offsets[:, None] * np.sin(h)
    y = y + offsets[:, None] * np.cos(h)
    return np.stack([x, y, np.arctan2(np.sin(h), np.cos(h))], axis=-1)


# ----------------------------------------------------------------------------------------------------------------------
# IDM along the paths
# ----------------------------------------------------------------------------------------------------------------------
def _obstacle_extents(path: _Path, obs: Observation, mp, frame: int, s_front0: float, memo: dict
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Frenet extents of the obstacles of a frame: s_min, s_max, d_min, d_max and speed along the path ``(O,)``."""
    present = np.flatnonzero(obs.valid[frame])
    s_min, s_max, d_min, d_max, v = [], [], [], [], []
    if present.size:
        corners = obs.corners[frame, present].reshape(-1, 2)
        s, d = _frenet(path, corners)
        s, d = s.reshape(-1, 4), d.reshape(-1, 4)
        s_min.append(s.min(1))
        s_max.append(s.max(1))
        d_min.append(d.min(1))
        d_max.append(d.max(1))
        idx = np.clip(np.searchsorted(path.s, s.min(1)), 0, len(path.s) - 1)
        tangent = np.stack([np.cos(path.heading[idx]), np.sin(path.heading[idx])], axis=-1)
        vel = _velocity(obs, frame, present)
        v.append(np.einsum("od,od->o", vel, tangent))
    for pos in np.flatnonzero(obs.red[frame]):
        if pos not in memo:  # red-light polygons do not move
            memo[pos] = _frenet(path, mp.index.rings[pos])
        s, d = memo[pos]
        if s.min() < s_front0:  # the ego has already entered this connector
            continue
        s_min.append(s.min(keepdims=True))
        s_max.append(s.max(keepdims=True))
        d_min.append(d.min(keepdims=True))
        d_max.append(d.max(keepdims=True))
        v.append(np.zeros(1))
    if not s_min:
        empty = np.zeros(0)
        return empty, empty, empty, empty, empty
    return (np.concatenate(s_min), np.concatenate(s_max), np.concatenate(d_min), np.concatenate(d_max),
            np.concatenate(v))


def _velocity(obs: Observation, frame: int, objs: np.ndarray) -> np.ndarray:
    """World velocity of forecast objects: the frame-to-frame displacement (constant by construction)."""
    nxt = min(frame + 1, obs.num_frames - 1)
    prv = nxt - 1
    return (obs.centres[nxt, objs] - obs.centres[prv, objs]) / SIM_DT


def _idm_profiles(path: _Path, s_ego: float, speed0: float, offsets: np.ndarray, targets: np.ndarray,
                  obs: Observation, mp, params: PDMClosedParameters) -> np.ndarray:
    """Rear-axle arclength ``(P, 41)`` of each IDM proposal (§5.5 constants)."""
    p = params
    num = offsets.shape[0]
    front = EGO_VEHICLE.front_length
    half_w = EGO_VEHICLE.half_width
    s = np.full(num, s_ego)
    v = np.full(num, speed0)
    lead_s = np.full(num, np.inf)
    lead_v = np.zeros(num)
    out = np.empty((num, NUM_STATES))
    out[:, 0] = s
    sqrt_ab = 2.0 * np.sqrt(p.accel_max * p.decel_max)
    memo: dict = {}
    for k in range(NUM_STATES - 1):
        if k % p.leader_update_steps == 0:
            s_min, s_max, d_min, d_max, v_obj = _obstacle_extents(path, obs, mp, min(k, obs.num_frames - 1),
                                                                  s_ego + front, memo)
            lead_s[:] = np.inf
            lead_v[:] = 0.0
            if s_min.size:
                lateral = (d_max[None] >= offsets[:, None] - half_w) & (d_min[None] <= offsets[:, None] + half_w)
                ahead = s_max[None] >= (s + front)[:, None]
                cand = np.where(lateral & ahead, s_min[None], np.inf)  # (P, O)
                j = np.argmin(cand, axis=1)
                lead_s = cand[np.arange(num), j]
                lead_v = np.where(np.isfinite(lead_s), v_obj[j], 0.0)
        gap = np.maximum(lead_s - (s + front), 1e-3)
        s_star = p.min_gap + np.maximum(0.0, v * p.headway + v * (v - lead_v) / sqrt_ab)
        interaction = np.where(np.isfinite(lead_s), (s_star / gap) ** 2, 0.0)
        accel = p.accel_max * (1.0 - (v / targets) ** p.exponent - interaction)
        accel = np.clip(accel, *p.accel_clip)
        v_new = np.maximum(0.0, v + accel * SIM_DT)
        s = s + 0.5 * (v + v_new) * SIM_DT
        v = v_new
        lead_s = lead_s + lead_v * SIM_DT
        out[:, k + 1] = s
    return out
