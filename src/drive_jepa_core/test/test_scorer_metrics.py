"""PDM sub-scores on hand-built scenes with hand-derivable expectations (navsim_metrics.md §3–§6).

Every case is scored by the batch scorer and by the per-trajectory reference scorer, which must agree exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from scene_builders import SceneBuilder, junction, straight_road

from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.metrics.params import KEYFRAME_STEPS
from drive_jepa_core.metrics.reference_scorer import score_trajectories_reference
from drive_jepa_core.metrics.scorer import ScoreResult, constant_velocity_trajectory, score_trajectories
from drive_jepa_core.scene.format import AgentType, TrafficLightStatus

TIMES = np.arange(1, 9) * 0.5


def _score(builder: SceneBuilder, trajectory: np.ndarray | None = None, version: str = "v2") -> ScoreResult:
    """Batch score of one trajectory (default: the logged future); asserts the reference scorer agrees."""
    scene = builder.build()
    cache = MetricCache.from_scene(scene)
    traj = scene.future_trajectory() if trajectory is None else trajectory
    result = score_trajectories(cache, traj[None], version)
    ref = score_trajectories_reference(cache, traj, version)
    for name, value in result.row(0).items():
        other = ref.row(0)[name]
        assert (np.isnan(value) and np.isnan(other)) or value == other, (name, value, other)
    return result


def _lateral(y_end: float, speed: float = 10.0, t_start: float = 0.0, t_end: float = 4.0) -> np.ndarray:
    """Straight at ``speed`` with a smooth lateral move to ``y_end`` between t_start and t_end (local frame)."""
    s = np.clip((TIMES - t_start) / (t_end - t_start), 0.0, 1.0)
    out = np.zeros((8, 3))
    out[:, 0] = speed * TIMES
    out[:, 1] = y_end * (3 * s**2 - 2 * s**3)
    out[:, 2] = np.arctan2(np.gradient(out[:, 1], TIMES), speed)
    return out


# --- NC (§5.1) ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_rear_end_of_static_barrier_is_half(version):
    """Ego at 10 m/s drives into a barrier 20 m ahead: stopped-track collision, non-agent class -> NC 0.5."""
    b = straight_road()
    b.add_constant_agent(50, AgentType.BARRIER, 20.0, 0.0, size=(1.0, 1.0))
    r = _score(b, version=version)
    assert r.nc[0] == 0.5
    assert r.ttc[0] == 0.0  # the barrier is ahead: risky
    assert r.dac[0] == 1.0


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_rear_end_of_stopped_vehicle_is_zero(version):
    """The same with a standing VEHICLE (first-appearance speed 0 -> stopped track, agent class) -> NC 0."""
    b = straight_road()
    b.add_constant_agent(50, AgentType.VEHICLE, 22.0, 0.0, speed=0.0)
    r = _score(b, version=version)
    assert r.nc[0] == 0.0
    assert r.score[0] == 0.0


def test_being_rear_ended_is_not_at_fault():
    """A faster vehicle from behind runs into the ego: active-rear collision -> NC stays 1."""
    b = straight_road(ego_speed=5.0)
    b.add_constant_agent(50, AgentType.VEHICLE, -9.5, 0.0, speed=15.0)
    r = _score(b)
    assert r.nc[0] == 1.0


def test_v2_drops_objects_overlapping_the_ego_at_t0_v1_keeps_them():
    """A cone under the ego at t0: v1 counts the stopped-track contact (0.5), v2 removed the cone (§3)."""
    b = straight_road()
    b.add_constant_agent(50, AgentType.TRAFFIC_CONE, 3.0, 0.0, size=(0.5, 0.5))
    assert _score(b, version="v1").nc[0] == 0.5
    assert _score(b, version="v2").nc[0] == 1.0


# --- DAC (§5.2) -----------------------------------------------------------------------------------------------------
def test_corner_off_road_gives_dac_zero():
    """Road edge at y = -5.25: moving to y = -6.5 puts corners off-road -> DAC 0 (and the score 0); moving to
    y = -3.0 (the neighbouring lane) stays inside -> DAC 1."""
    off = _score(straight_road(), _lateral(-6.5))
    assert off.dac[0] == 0.0
    assert off.epdms[0] == 0.0
    assert _score(straight_road(), _lateral(-3.0)).dac[0] == 1.0


# --- TLC (§5.4) -----------------------------------------------------------------------------------------------------
def test_entering_red_light_connector_gives_tlc_zero():
    """The ego (front bumper at x = 14 m) drives 40 m into a connector starting at x = 40 m."""
    assert _score(junction(light=TrafficLightStatus.RED)).tlc[0] == 0.0
    assert _score(junction(light=TrafficLightStatus.GREEN)).tlc[0] == 1.0
    # stopping at 3.5 m/s² from 10 m/s takes 14.3 m: the front bumper stays before x = 40 m
    stop = np.zeros((8, 3))
    stop[:, 0] = np.minimum(10.0 * TIMES - 1.75 * TIMES**2, 10.0**2 / 7.0)
    assert _score(junction(light=TrafficLightStatus.RED), stop).tlc[0] == 1.0


def test_red_light_status_is_held_per_half_second():
    """A light turning red 0.7 s after t0 is seen red from frame 10 (the keyframe at 1.0 s), not frame 7."""
    b = junction(light=None)
    status = np.full(b.num_steps, TrafficLightStatus.GREEN)
    status[b.t0_index + 7:] = TrafficLightStatus.RED
    b.add_traffic_light(31, status)
    cache = MetricCache.from_scene(b.build())
    red = cache.observations["v2"].red.any(axis=1)
    assert not red[: 2 * KEYFRAME_STEPS].any()
    assert red[2 * KEYFRAME_STEPS:].all()


# --- DDC (§5.3) -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("speed", "expected"), [(1.5, 1.0), (3.0, 0.5), (6.0, 0.0)])
def test_driving_on_the_oncoming_lane(speed, expected):
    """Ego driving east in the westbound lane: every step is oncoming; the 11-sample window holds 11 steps of
    0.1 s, W = 1.1 v: 1.65 m < 2 -> 1; 3.3 m in [2, 6) -> 0.5; 6.6 m >= 6 -> 0."""
    r = _score(straight_road(ego_speed=speed, ego_y=3.5), version="v2")
    assert r.ddc[0] == expected
    assert _score(straight_road(ego_speed=speed, ego_y=3.5), version="v1").ddc[0] == expected


# --- LK (§5.8) ------------------------------------------------------------------------------------------------------
def test_lane_keeping_constant_offset_fails():
    """0.9 m left of the centerline for the whole 4 s: 41 consecutive deviating steps >= 20 -> LK 0."""
    assert _score(straight_road(ego_y=0.9)).lk[0] == 0.0


def test_lane_keeping_short_excursion_passes_long_fails():
    """Moving 1 m left during the last 1.5 s leaves < 2 s above 0.5 m -> LK 1; the same move done in the first
    1.5 s leaves > 2.5 s above 0.5 m -> LK 0."""
    assert _score(straight_road(), _lateral(1.0, t_start=2.5, t_end=4.0)).lk[0] == 1.0
    assert _score(straight_road(), _lateral(1.0, t_start=0.0, t_end=1.5)).lk[0] == 0.0


# --- C / HC (§5.7) --------------------------------------------------------------------------------------------------
def test_hard_braking_fails_comfort():
    """15 m/s to standstill at 8 m/s² violates the -4.05 m/s² bound -> C 0 (v1) and HC 0 (v2)."""
    b = straight_road(ego_speed=15.0, speed_limit=15.0)
    brake = np.zeros((8, 3))
    brake[:, 0] = np.where(TIMES < 15.0 / 8.0, 15.0 * TIMES - 4.0 * TIMES**2, 15.0**2 / 16.0)
    assert _score(b, brake, "v1").c[0] == 0.0
    assert _score(b, brake, "v2").hc[0] == 0.0
    assert _score(b, version="v1").c[0] == 1.0


# --- expert / EP / baselines ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_expert_on_clean_road_scores_one(version):
    """Constant speed at the speed limit in the lane centre: every multiplier 1, PDM-Closed makes the same
    progress at best (EP ~1)."""
    r = _score(straight_road(ego_speed=10.0, speed_limit=10.0), version=version)
    assert r.score[0] > 0.99
    assert r.nc[0] == r.dac[0] == r.ttc[0] == 1.0


def test_standing_still_gets_zero_progress():
    """From standstill, staying put makes no progress while PDM-Closed accelerates away (IDM a_max 1.5 m/s²:
    ~12 m > 5 m in 4 s): EP = 0 / N = 0."""
    scene = straight_road(ego_speed=0.0).build()
    cache = MetricCache.from_scene(scene)
    still = np.zeros((8, 3))
    r = score_trajectories(cache, still[None], "v2")
    assert r.ep[0] == 0.0
    assert r.progress[0] == 0.0


def test_constant_velocity_trajectory():
    traj = constant_velocity_trajectory(np.array([5.0, 2.0, 0.3, 3.0, 4.0, 0.0, 0.0]))
    np.testing.assert_allclose(traj[:, 0], 5.0 * TIMES)
    assert np.all(traj[:, 1:] == 0.0)
    with pytest.raises(ValueError):
        constant_velocity_trajectory(np.zeros(5))


def test_score_result_fields_and_validation():
    scene = straight_road().build()
    cache = MetricCache.from_scene(scene)
    trajs = np.stack([scene.future_trajectory(), _lateral(-6.5)])
    v1 = score_trajectories(cache, trajs, "v1")
    assert v1.states.shape == (2, 41, 11)
    assert np.isnan(v1.tlc).all() and np.isnan(v1.epdms).all() and not np.isnan(v1.pdms).any()
    v2 = score_trajectories(cache, trajs, "v2")
    assert np.isnan(v2.c).all() and np.isnan(v2.ec).all() and not np.isnan(v2.epdms).any()
    assert len(v2.select([1])) == 1
    with pytest.raises(ValueError, match="8, 3"):
        score_trajectories(cache, np.zeros((2, 7, 3)))
    with pytest.raises(ValueError, match="version"):
        score_trajectories(cache, trajs, "v3")
    with pytest.raises(ValueError, match="finite"):
        score_trajectories(cache, np.full((1, 8, 3), np.nan))


def test_extended_comfort_and_epdms_weights():
    """EC needs the previous frame's plan: the same constant-speed plan 0.5 s earlier is consistent -> EC 1 and
    EPDMS uses the /16 weights; without it EC is NaN and EPDMS uses /14."""
    scene = straight_road().build()
    cache = MetricCache.from_scene(scene)
    traj = scene.future_trajectory()[None]
    first = score_trajectories(cache, traj, "v2")
    # previous plan: the same motion started 0.5 s earlier, 5 m behind
    previous = first.states[0].copy()
    previous[:, 0] -= 5.0
    with_ec = score_trajectories(cache, traj, "v2", previous_states=previous, dt=0.5)
    assert with_ec.ec[0] == 1.0
    assert np.isnan(first.ec[0])
    assert with_ec.epdms[0] == pytest.approx(first.epdms[0])
