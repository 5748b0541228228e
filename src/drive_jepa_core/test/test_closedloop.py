"""Closed-loop evaluation in the built-in world: the expert drives cleanly, the constant-velocity baseline does not beat
it at a junction, a tiny real planner drives through the Planner, episodes are deterministic, the CLI writes its
reports; plus the rules (NAVSIM collision classes, route projection, free-flow distance) on hand-made geometry."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from _runtime_models import SOURCE_SIZE, camera, save_tiny_planner

from drive_jepa_core.closedloop import cli as closedloop_cli
from drive_jepa_core.closedloop.episode import ClosedLoopConfig, make_agent, run_episode
from drive_jepa_core.closedloop.metrics import (
    RouteReference,
    classify_collision,
    collision_at_fault,
    episode_scene,
)
from drive_jepa_core.constants import EGO_VEHICLE
from drive_jepa_core.geometry import box_corners

# Test-split worlds (seed = 20_000_000 + offset), probed once: in 9 the route turns right 36 m ahead (a
# constant-velocity car goes straight on into the kerb-side parking), in 6 the ego approaches a red light 7 m from its
# stop line, in 0 the road is free.
JUNCTION_SEED, RED_LIGHT_SEED, FREE_SEED = 20_000_009, 20_000_006, 20_000_000
FAST = ClosedLoopConfig(seconds=6.0, score_every=None)


@pytest.fixture(scope="module")
def junction():
    cfg = ClosedLoopConfig(seconds=8.0, score_every=2.0)
    return {agent: run_episode(JUNCTION_SEED, agent, config=cfg) for agent in ("expert", "constant-velocity")}


# ---------------------------------------------------------------------------------------------------------- rules
def test_collision_classes_follow_navsim_nc() -> None:
    ego = np.zeros(3)  # rear axle at the origin, heading +x; front bumper at x = 4.049, rear at x = -1.127
    ahead = box_corners(np.array([EGO_VEHICLE.front_length + 1.5, 0.0]), 0.0, 4.0, 1.8)  # overlaps the bumper
    behind = box_corners(np.array([-3.0, 0.0]), 0.0, 4.0, 1.8)  # spans x -5 … -1: the rear, 180° from the heading
    beside = box_corners(np.array([1.461, 2.0]), 0.0, 2.0, 1.8)  # y 1.1 … 2.9, x 0.46 … 2.46: side only, at 54°
    assert classify_collision(ego, 5.0, ahead, 3.0, True) == "active_front"
    assert classify_collision(ego, 0.0, ahead, 3.0, True) == "stopped_ego"  # ego speed <= 0.05 m/s
    assert classify_collision(ego, 5.0, ahead, 0.0, True) == "stopped_track"
    assert classify_collision(ego, 5.0, ahead, 3.0, False) == "stopped_track"  # static object
    assert classify_collision(ego, 5.0, behind, 8.0, True) == "active_rear"
    assert classify_collision(ego, 5.0, beside, 3.0, True) == "active_lateral"
    assert collision_at_fault("active_front", False) and collision_at_fault("stopped_track", False)
    assert not collision_at_fault("active_rear", True) and not collision_at_fault("stopped_ego", True)
    assert not collision_at_fault("active_lateral", False) and collision_at_fault("active_lateral", True)


def test_route_projection_and_free_flow_distance() -> None:
    # an L: 10 m east on a 5 m/s lane, then 10 m north on a 10 m/s lane
    ref = RouteReference(points=np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]), s=np.array([0.0, 10.0, 20.0]),
                         segment_lane=np.array([1, 2]), segment_limit=np.array([5.0, 10.0]), lane_ids=[1, 2])
    assert ref.project(np.array([5.0, 1.0])) == pytest.approx((5.0, 1.0))
    assert ref.project(np.array([11.0, 5.0]), s_hint=12.0) == pytest.approx((15.0, 1.0))
    assert ref.lane_at(3.0) == 1 and ref.lane_at(12.0) == 2
    # from rest at 1 m/s²: v = 0.1, 0.2, … 1.0 over ten 0.1 s steps -> 0.1 * 5.5 m
    assert ref.free_flow_distance(0.0, 0.0, 1.0, accel=1.0) == pytest.approx(0.55)
    # at the 5 m/s limit for 2 s: 20 steps of 0.5 m, the last one still read on the 5 m/s segment
    assert ref.free_flow_distance(0.0, 5.0, 2.0, accel=1.0) == pytest.approx(10.0)
    assert ref.free_flow_distance(0.0, 5.0, 100.0) == pytest.approx(20.0)  # capped at the end of the route


def test_config_rejects_bad_settings() -> None:
    for bad in (dict(replan_every=0), dict(replan_every=41), dict(replan_every=2, score_every=0.5),
                dict(history=0.3), dict(seconds=0.0), dict(terminate_on=("bored",))):
        with pytest.raises(ValueError):
            ClosedLoopConfig(**bad).validate()
    with pytest.raises(ValueError, match="planner"):
        run_episode(FREE_SEED, "model", config=FAST)
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("human")


# ------------------------------------------------------------------------------------------------------ episodes
def test_expert_completes_episodes_without_infractions(junction) -> None:
    for res in (junction["expert"], run_episode(FREE_SEED, "expert", config=FAST)):
        m = res.metrics
        assert m["termination"] is None and m["driven_seconds"] == pytest.approx(res.config.seconds)
        assert m["at_fault_collisions"] == 0 and m["other_collisions"] == 0
        assert not m["off_road"] and m["red_light_violations"] == 0
        assert m["max_route_deviation_m"] < 2.0  # lane centre (or one lane change) of its own route
        assert m["route_completion"] > 0.8 and m["comfort"]["comfortable"]
        assert res.monitor.steps == list(range(res.takeover_step, res.end_step + 1))


def test_constant_velocity_is_no_better_than_the_expert_at_a_junction(junction) -> None:
    expert, cv = junction["expert"], junction["constant-velocity"]
    assert expert.takeover_step == cv.takeover_step == 15
    # the same world until the take-over: the expert drove both egos there (the acceleration logged at the take-over
    # step is the one applied after it, the agent's)
    np.testing.assert_array_equal(expert.log.ego_states[:15], cv.log.ego_states[:15])
    np.testing.assert_array_equal(expert.log.ego_states[15, :5], cv.log.ego_states[15, :5])
    assert cv.metrics["route_completion"] < expert.metrics["route_completion"]
    assert cv.metrics["epdms"]["epdms"] < expert.metrics["epdms"]["epdms"]
    assert expert.metrics["epdms"]["nc"] == 1.0 and expert.metrics["epdms"]["scored_steps"] == 4
    # going straight on where the route turns right ends in the kerb-side parking: off road, then an at-fault hit
    assert cv.metrics["off_road"] and cv.metrics["termination"] == "at_fault_collision"
    event = next(c for c in cv.monitor.collisions if c.at_fault)
    assert event.kind == "stopped_track" and event.agent_type == "VEHICLE"
    assert cv.end_step == event.step and len(cv.plans) == cv.end_step - cv.takeover_step
    # a scored step's scene is the closed-loop log around it; the expert's plan there is what it then drove
    step = expert.takeover_step
    scene = episode_scene(expert.log, step, expert.commands[step])
    assert scene.t0_index == 15 and scene.num_steps == 56
    np.testing.assert_allclose(expert.trajectory_at(step), scene.future_trajectory(), atol=1e-9)


def test_red_light_violation_is_counted() -> None:
    expert = run_episode(RED_LIGHT_SEED, "expert", config=FAST)
    cv = run_episode(RED_LIGHT_SEED, "constant-velocity", config=FAST)
    assert expert.metrics["red_light_violations"] == 0 and expert.metrics["route_progress_m"] < 15.0  # waits
    assert cv.metrics["red_light_violations"] == 1
    step = cv.monitor.red_light_steps[0]
    assert cv.takeover_step < step <= cv.end_step


def test_tiny_model_drives_through_the_planner(tmp_path) -> None:
    run_dir = save_tiny_planner(tmp_path / "run")
    cam = camera()
    planner = make_agent("model", model=str(run_dir), device="cpu", camera=cam)
    for replan, expected in ((1, 10), (5, 2)):
        cfg = ClosedLoopConfig(seconds=1.0, replan_every=replan, score_every=None, image_width=SOURCE_SIZE[0],
                               image_height=SOURCE_SIZE[1], terminate_on=())
        res = run_episode(FREE_SEED, "model", planner=planner, config=cfg, camera=cam)
        assert len(res.plans) == expected and res.metrics["plans"] == expected
        assert sorted(res.plans) == list(range(res.takeover_step, res.end_step, replan))
        plan = res.plans[res.takeover_step]
        assert plan.trajectory.shape == (8, 3) and plan.proposals.shape == (8, 8, 3)
        assert np.all(np.isfinite(res.log.ego_states)) and res.end_step - res.takeover_step == 10
        assert res.metrics["timings"]["render_s"] > 0.0 and res.metrics["replan_hz"] == pytest.approx(10 / replan)
        # the ego left the expert's path: from the take-over on it is the tracker's, with vy = 0
        assert np.all(res.log.ego_states[res.takeover_step + 1:, 4] == 0.0)


def test_episode_is_deterministic() -> None:
    cfg = ClosedLoopConfig(seconds=3.0, score_every=1.0)
    a = run_episode(RED_LIGHT_SEED, "constant-velocity", config=cfg)
    b = run_episode(RED_LIGHT_SEED, "constant-velocity", config=cfg)
    np.testing.assert_array_equal(a.log.ego_states, b.log.ego_states)
    np.testing.assert_array_equal(a.log.agent_states, b.log.agent_states)
    strip = [{k: v for k, v in r.metrics.items() if k != "timings"} for r in (a, b)]
    assert json.dumps(strip[0], default=str) == json.dumps(strip[1], default=str)
    assert [r["step"] for r in a.step_scores] == [15, 25, 35]
    assert all(math.isnan(r["ec"]) for r in a.step_scores)  # 1 s apart: no EC pair (needs < 0.55 s)
    # scoring only adds the tail after the end: the world and the drive are the same without it
    c = run_episode(RED_LIGHT_SEED, "constant-velocity", config=ClosedLoopConfig(seconds=3.0, score_every=None))
    assert c.end_step == a.end_step and c.log.num_steps == a.end_step + 1 < a.log.num_steps
    np.testing.assert_array_equal(c.log.ego_states[:-1], a.log.ego_states[:a.end_step])
    assert c.metrics["route_progress_m"] == a.metrics["route_progress_m"]


def test_cli_writes_summary_gif_and_plots(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    closedloop_cli.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "cl"
    args = parser.parse_args(["closedloop", "--agent", "constant-velocity", "--agent", "expert", "--episodes", "1",
                              "--seed", "6", "--seconds", "2", "--score-every", "1.0", "--image-width", "160",
                              "--image-height", "80", "--out", str(out)])
    assert args.func(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["agents"]) == ["expert", "constant-velocity"]  # the expert runs first
    assert summary["info"]["seeds"] == [RED_LIGHT_SEED]
    cv = summary["agents"]["constant-velocity"]
    assert cv["episodes"] == 1 and cv["scored_steps"] == 2 and 0.0 <= cv["epdms"] <= 1.0
    assert summary["agents"]["expert"]["progress_vs_expert"] == 1.0
    assert "| constant-velocity |" in (out / "summary.md").read_text()
    assert "<table>" in (out / "summary.html").read_text()
    episodes = json.loads((out / "expert" / "episodes.json").read_text())
    assert episodes[0]["seed"] == RED_LIGHT_SEED and len(episodes[0]["step_scores"]) == 2
    for agent in ("expert", "constant-velocity"):
        for name in ("camera.gif", "bev.png", "worst_step.png"):
            assert (out / agent / f"seed_{RED_LIGHT_SEED}_{name}").stat().st_size > 1000
    import imageio.v3 as iio

    gif = iio.imread(out / "expert" / f"seed_{RED_LIGHT_SEED}_camera.gif", index=None)
    assert gif.shape[0] == 5  # 2 s at 2 Hz: t = 0, 0.5, … 2.0 s
    bad = parser.parse_args(["closedloop", "--agent", "model", "--out", str(out)])
    assert bad.func(bad) == 2
