"""One closed-loop episode in the built-in world: an agent drives the ego, the traffic reacts.

Timeline (10 Hz, ``SIM_DT``)::

    world warm-up (WorldSim) ─► expert drives `history` s (camera/ego history) ─► take-over step H
    ─► for `seconds`: [render camera t and t-0.5 s] → agent.plan(...) → LQR tracker + kinematic bicycle → world.step
    ─► (scoring tail: 4 s more world so every scored plan has an observed future; not judged)

* **Agents.** ``model``: a :class:`~drive_jepa_core.runtime.planner.Planner` (camera frames at t and t-0.5 s from the
  world's renderer, the ego status, the route command); ``constant-velocity``: NAVSIM's baseline
  (:class:`~drive_jepa_core.replay.replay.ConstantVelocityPlanner`); both are followed by NAVSIM's LQR tracker and
  kinematic bicycle (:mod:`drive_jepa_core.sim`), whose full 11-value state (steering, actuator lags) carries over
  between steps. ``expert``: the world's own privileged driver drives the ego directly (as when logs are
  generated); its "plan" at a scored step is the 4 s it then actually drove (what NAVSIM scores as the human).
* **Re-planning** every ``replan_every`` steps (default 1: 10 Hz). In between, the ego keeps following the last
  plan's tracked states (the tracker is deterministic, so following the batch-simulated states equals stepping it).
  When a model is too slow on CPU, ``replan_every=5`` plans at 2 Hz, the camera rate of the training scenes.
* **World.** ``WorldSim.step(ego_state)`` places the ego where the tracker put it; IDM vehicles brake for it and
  lane changers check gaps to it.
* **Ego status.** The tracker's state as ``[x, y, heading, vx, vy, ax, ay]`` with ``vy = 0`` (kinematic bicycle) and
  ``ay = vx · yaw rate`` (the centripetal acceleration the world logs for its expert).
* **Ending.** After ``seconds`` or, by default, at the first at-fault collision, when the ego box is fully off the
  drivable area, or when it is more than 30 m off its route (:mod:`.metrics`). A crashed ego stands still during the
  scoring tail.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from drive_jepa_core.closedloop.metrics import (
    ROUTE_DEVIATION_LIMIT,
    SCORE_FUTURE_STEPS,
    EpisodeMonitor,
    MapGeometry,
    RouteReference,
    comfort_summary,
    mean_scores,
    realized_future,
    route_command,
    score_steps,
)
from drive_jepa_core.constants import (
    CAMERA_FRAME_GAP,
    DEFAULT_IMAGE_HEIGHT,
    DEFAULT_IMAGE_WIDTH,
    EGO_VEHICLE,
    HISTORY_SECONDS,
    NUM_SIM_POSES,
    SIM_DT,
    TRAJ_DT,
)
from drive_jepa_core.scene.format import CameraCalibration
from drive_jepa_core.sim import initial_state, reference_poses, simulate
from drive_jepa_core.sim.constants import StateIndex
from drive_jepa_core.world.log import WorldConfig, WorldFrame, WorldLog, WorldSim, assemble_log

AGENTS = ("expert", "constant-velocity", "model")
TERMINATIONS = ("at_fault_collision", "off_road", "route_deviation")
CAMERA_GAP_STEPS = int(round(CAMERA_FRAME_GAP / SIM_DT))  # 5: the model sees frames at t and t - 0.5 s
MIN_CURVATURE_SPEED = 1.0  # m/s; below it the take-over steering angle is not inferred from the lateral acceleration


@dataclass(frozen=True)
class ClosedLoopConfig:
    """Episode settings.

    Attributes:
        seconds: time the agent drives (judged).
        history: expert driving before the take-over (camera t-0.5 s frame, 1.5 s history of the scored scenes).
        replan_every: simulation steps between plans (1 = 10 Hz, 5 = 2 Hz).
        score_every: seconds between EPDMS-scored plans (a multiple of the re-planning interval); None: no scoring.
        terminate_on: termination reasons that end the episode early (subset of :data:`TERMINATIONS`).
        image_width, image_height: camera size (the planner crops/resizes to its own input).
        world: world settings (its ``duration`` is set to cover the episode).
    """

    seconds: float = 20.0
    history: float = HISTORY_SECONDS
    replan_every: int = 1
    score_every: float | None = TRAJ_DT
    terminate_on: tuple[str, ...] = TERMINATIONS
    route_deviation_limit: float = ROUTE_DEVIATION_LIMIT
    image_width: int = DEFAULT_IMAGE_WIDTH
    image_height: int = DEFAULT_IMAGE_HEIGHT
    world: WorldConfig | None = None

    @property
    def history_steps(self) -> int:
        return int(round(self.history / SIM_DT))

    @property
    def drive_steps(self) -> int:
        return int(round(self.seconds / SIM_DT))

    @property
    def score_stride(self) -> int | None:
        return None if self.score_every is None else int(round(self.score_every / SIM_DT))

    def validate(self) -> None:
        if not self.seconds > 0 or abs(self.drive_steps * SIM_DT - self.seconds) > 1e-6:
            raise ValueError(f"seconds must be a positive multiple of {SIM_DT}, got {self.seconds}")
        if self.history_steps < CAMERA_GAP_STEPS or abs(self.history_steps * SIM_DT - self.history) > 1e-6:
            raise ValueError(f"history must be a multiple of {SIM_DT} s and >= {CAMERA_FRAME_GAP} s (the model's "
                             f"previous frame), got {self.history}")
        if not 1 <= self.replan_every <= NUM_SIM_POSES:
            raise ValueError(f"replan_every must be in 1..{NUM_SIM_POSES} steps (a plan covers 4 s), "
                             f"got {self.replan_every}")
        stride = self.score_stride
        if stride is not None and (stride < 1 or abs(stride * SIM_DT - self.score_every) > 1e-6
                                   or stride % self.replan_every):
            raise ValueError(f"score_every must be a multiple of the re-planning interval "
                             f"{self.replan_every * SIM_DT:.1f} s, got {self.score_every}")
        unknown = set(self.terminate_on) - set(TERMINATIONS)
        if unknown:
            raise ValueError(f"unknown termination reasons {sorted(unknown)}; choose from {TERMINATIONS}")
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")


@dataclass
class PlanRecord:
    """One planning call. Trajectories are rear-axle-frame poses at 0.5 s: ``(8, 3)``; proposals ``(Np, 8, 3)``."""

    step: int
    time: float
    command: int
    trajectory: np.ndarray
    proposals: np.ndarray
    final_scores: np.ndarray
    selected_index: int
    plan_ms: float


@dataclass
class EpisodeResult:
    """Everything one episode produced.

    Attributes:
        log: the closed-loop log (steps 0 … end + scoring tail); ``takeover_step`` H and ``end_step`` bound the
            judged part [H, end].
        plans: step -> :class:`PlanRecord` (empty for the expert); commands: step -> driving command.
        step_scores: per scored step EPDMS rows (see :func:`~drive_jepa_core.closedloop.metrics.score_steps`).
        metrics: the JSON-ready summary.
    """

    seed: int
    agent: str
    config: ClosedLoopConfig
    camera: CameraCalibration
    log: WorldLog
    takeover_step: int
    end_step: int
    route: RouteReference
    monitor: EpisodeMonitor
    plans: dict[int, PlanRecord] = field(default_factory=dict)
    commands: dict[int, int] = field(default_factory=dict)
    step_scores: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def trajectory_at(self, step: int) -> np.ndarray | None:
        """The plan followed from ``step`` ``(8, 3)``: the agent's plan there, the expert's realized future."""
        if self.agent == "expert":
            try:
                return realized_future(self.log, step)
            except ValueError:
                return None
        plan = self.plans.get(step)
        return None if plan is None else plan.trajectory


# --------------------------------------------------------------------------------------------------------------------
# Agents
# --------------------------------------------------------------------------------------------------------------------
def make_agent(name: str, model: str | None = None, backend: str = "torch", device: str | None = None,
               camera: CameraCalibration | None = None) -> Any:
    """The planner behind agent ``name`` (None for the expert, which the world drives)."""
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {AGENTS}")
    if name == "expert":
        return None
    if name == "constant-velocity":
        from drive_jepa_core.replay.replay import ConstantVelocityPlanner

        return ConstantVelocityPlanner()
    if model is None:
        raise ValueError("the model agent needs --model RUN_DIR (a trained run directory or planner weights)")
    from drive_jepa_core.runtime.planner import Planner

    return Planner.from_checkpoint(model, backend=backend, device=device, camera=camera)


def initial_tracker_state(ego_state7: np.ndarray) -> np.ndarray:
    """``(11,)`` tracker state at the take-over: NAVSIM's initial state, with the steering angle and yaw rate of the
    curve the ego is driving (``kappa = ay / v²``) so the handover does not jerk the wheel straight."""
    state = initial_state(ego_state7)
    v = float(ego_state7[3])
    if abs(v) >= MIN_CURVATURE_SPEED:
        kappa = float(ego_state7[6]) / (v * v)
        state[StateIndex.STEERING_ANGLE] = math.atan(EGO_VEHICLE.wheel_base * kappa)
        state[StateIndex.ANGULAR_VELOCITY] = v * kappa
    return state


def ego_state7(state11: np.ndarray) -> np.ndarray:
    """``(7,)`` world ego state from a tracker state: ``vy = 0``, ``ay = vx · yaw rate``."""
    s = np.asarray(state11, dtype=np.float64)
    return np.array([s[StateIndex.X], s[StateIndex.Y], s[StateIndex.HEADING], s[StateIndex.VELOCITY_X], 0.0,
                     s[StateIndex.ACCELERATION_X], s[StateIndex.VELOCITY_X] * s[StateIndex.ANGULAR_VELOCITY]])


def standstill(state: np.ndarray) -> np.ndarray:
    """A copy of ``state`` (7 or 11 values) at rest: velocities, accelerations and rates zeroed."""
    out = np.asarray(state, dtype=np.float64).copy()
    out[3:] = 0.0
    if out.shape[0] > StateIndex.STEERING_ANGLE:
        out[StateIndex.STEERING_ANGLE] = state[StateIndex.STEERING_ANGLE]
    return out


class _LiveCamera:
    """Renders the world's front camera from live frames, keeping only the frames the next plans need."""

    def __init__(self, sim: WorldSim, camera: CameraCalibration) -> None:
        from drive_jepa_core.world.render import CameraRenderer
        from drive_jepa_core.world.scenes import map_scene

        # What world.scenes.make_renderer builds from a finished log, built from the live simulation instead.
        self.renderer = CameraRenderer(map_scene(sim.map, sim.route, camera), camera, seed=sim.seed,
                                       crosswalks=sim.map.crosswalks)
        self.meta = sim.agent_meta
        self.light_lane_ids = sim.map.light_lane_ids
        self.cache: dict[int, np.ndarray] = {}
        self.seconds = 0.0

    def frame(self, step: int, world_frame: WorldFrame) -> np.ndarray:
        if step not in self.cache:
            t0 = time.perf_counter()
            meta = np.array([self.meta[int(i)] for i in world_frame.agent_ids], dtype=np.float64).reshape(-1, 4)
            boxes = np.concatenate([world_frame.agent_states[:, :3], meta[:, 1:4]], axis=1)
            self.cache[step] = self.renderer.render(world_frame.ego_state[:3], meta[:, 0].astype(np.int64), boxes,
                                                    self.light_lane_ids, world_frame.light_status,
                                                    agent_ids=world_frame.agent_ids)
            self.seconds += time.perf_counter() - t0
        return self.cache[step]

    def forget_before(self, step: int) -> None:
        for k in [k for k in self.cache if k < step]:
            del self.cache[k]


# --------------------------------------------------------------------------------------------------------------------
# The episode
# --------------------------------------------------------------------------------------------------------------------
def run_episode(seed: int, agent: str = "expert", planner: Any | None = None, config: ClosedLoopConfig | None = None,
                camera: CameraCalibration | None = None, progress: bool = False) -> EpisodeResult:
    """Drive world ``seed`` with ``agent`` and judge it (see the module docstring).

    Args:
        agent: one of :data:`AGENTS`.
        planner: the agent's planner (``plan``/``reset``/``set_camera`` as :class:`Planner`); required for
            ``model``, built for ``constant-velocity`` when None, ignored for ``expert``.
        camera: front camera (default: the world's camera at the configured size).
    """
    from drive_jepa_core.runtime.planner import NonFiniteOutputError

    cfg = config or ClosedLoopConfig()
    cfg.validate()
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; choose one of {AGENTS}")
    if agent == "model" and planner is None:
        raise ValueError("the model agent needs a planner (make_agent('model', model=RUN_DIR))")
    if agent == "constant-velocity" and planner is None:
        planner = make_agent(agent)
    if camera is None:
        from drive_jepa_core.world.render import default_front_camera

        camera = default_front_camera(cfg.image_width, cfg.image_height)
    started = time.perf_counter()
    H, N = cfg.history_steps, cfg.drive_steps
    tail = SCORE_FUTURE_STEPS if cfg.score_stride is not None else 0
    base = cfg.world or WorldConfig()
    # The map's size follows the duration: keep the split's own duration when the episode (with a scoring tail,
    # whether scored or not, so scoring never changes the world) fits in it; then a seed gives the same world as
    # its generated log and scenes.
    world_cfg = replace(base, duration=max(base.duration, (H + N + SCORE_FUTURE_STEPS) * SIM_DT))
    sim = WorldSim(int(seed), world_cfg)
    frames = [sim.frame()]
    for _ in range(H):
        frames.append(sim.step())
    route = RouteReference.build(sim.map, sim.route, sim.ego.lane_id(), frames[H].ego_state)
    monitor = EpisodeMonitor(MapGeometry(sim.map, sim.route), route, sim.agent_meta, cfg.route_deviation_limit)
    monitor.observe(H, frames[H])

    live = None
    if agent != "expert":
        planner.reset()
        if agent == "model":
            live = _LiveCamera(sim, camera)
            planner.set_camera(camera.width, camera.height, camera.ego2image())
    blank = np.zeros((camera.height, camera.width, 3), np.uint8)  # frames the constant-velocity agent ignores
    plans: dict[int, PlanRecord] = {}
    commands: dict[int, int] = {}
    state11 = initial_tracker_state(frames[H].ego_state)
    plan_states = simulate(reference_poses(np.zeros((1, 8, 3)), state11[:3]), state11[None])[0]  # until a plan
    plan_step, rejected, sim_seconds = H, 0, 0.0
    end = H + N
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=N, desc=f"{agent} seed {seed}", unit="step", leave=False)
    for k in range(H, H + N):
        ego = frames[k].ego_state
        command = route_command(sim.map, sim.route, route, ego, monitor.route_s[-1])
        commands[k] = command
        if agent == "expert":
            t0 = time.perf_counter()
            frame = sim.step()
            sim_seconds += time.perf_counter() - t0
        else:
            if (k - H) % cfg.replan_every == 0:
                if live is not None:
                    now = live.frame(k, frames[k])
                    prev = live.frame(k - CAMERA_GAP_STEPS, frames[k - CAMERA_GAP_STEPS])
                    live.forget_before(k - CAMERA_GAP_STEPS + cfg.replan_every)
                else:
                    now = prev = blank
                t0 = time.perf_counter()
                try:
                    result = planner.plan(now, prev, ego, command, stamp=float(frames[k].time))
                except NonFiniteOutputError:
                    rejected += 1  # keep following the previous plan, as the vehicle would
                else:
                    traj = np.asarray(result.trajectory, dtype=np.float64)
                    plans[k] = PlanRecord(k, float(frames[k].time), command, traj,
                                          np.asarray(result.proposals, np.float32),
                                          np.asarray(result.final_scores, np.float64), int(result.selected_index),
                                          (time.perf_counter() - t0) * 1e3)
                    plan_states = simulate(reference_poses(traj[None], state11[:3]), state11[None])[0]
                    plan_step = k
            idx = k - plan_step + 1
            state11 = plan_states[idx] if idx < len(plan_states) else standstill(plan_states[-1])
            t0 = time.perf_counter()
            frame = sim.step(ego_state7(state11))
            sim_seconds += time.perf_counter() - t0
        frames.append(frame)
        if bar is not None:
            bar.update(1)
        reason = monitor.observe(k + 1, frame)
        if reason is not None and reason in cfg.terminate_on:
            end = k + 1
            break
    if bar is not None:
        bar.close()

    # --- scoring tail: the world goes on so every scored plan has 4 s of observed future (not judged)
    t0 = time.perf_counter()
    crashed = monitor.termination is not None and monitor.termination in cfg.terminate_on
    parked = standstill(frames[end].ego_state)
    for j in range(tail):
        if crashed:
            frames.append(sim.step(parked))
        elif agent == "expert":
            frames.append(sim.step())
        else:
            idx = end + j - plan_step + 1
            state11 = plan_states[idx] if idx < len(plan_states) else standstill(plan_states[-1])
            frames.append(sim.step(ego_state7(state11)))
    sim_seconds += time.perf_counter() - t0
    log = assemble_log(sim, frames)
    # The world's log convention for every agent (assemble_log applies it only to expert-driven logs): the
    # acceleration logged at step k is the one applied from k to k + 1.
    log.ego_states[:-1, 5] = np.diff(log.ego_states[:, 3]) / SIM_DT

    res = EpisodeResult(int(seed), agent, cfg, camera, log, H, end, route, monitor, plans, commands)
    t0 = time.perf_counter()
    if cfg.score_stride is not None:
        steps = [k for k in range(H, end, cfg.score_stride) if k + SCORE_FUTURE_STEPS < log.num_steps]
        trajs = {k: t for k in steps if (t := res.trajectory_at(k)) is not None}
        res.step_scores = score_steps(log, trajs, commands, cfg.score_every)
    score_seconds = time.perf_counter() - t0
    timings = {"total_s": time.perf_counter() - started, "world_s": sim_seconds, "scoring_s": score_seconds,
               "render_s": live.seconds if live is not None else 0.0,
               "plan_ms_mean": float(np.mean([p.plan_ms for p in plans.values()])) if plans else None}
    res.metrics = episode_metrics(res, rejected, timings)
    return res


def episode_metrics(res: EpisodeResult, rejected_plans: int = 0, timings: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The JSON summary of an episode (route completion, infractions, comfort, EPDMS, timings)."""
    cfg, mon = res.config, res.monitor
    H, end = res.takeover_step, res.end_step
    ego = res.log.ego_states
    s0 = mon.route_s[0]
    progress = max(mon.route_s[-1] - s0, 0.0)
    free_flow = res.route.free_flow_distance(s0, float(ego[H, 3]), cfg.seconds)
    driven = ego[H:end + 1].copy()
    if len(driven) > 1:  # the acceleration logged at the end step is applied after it (scoring tail): not driven
        driven[-1, 5] = driven[-2, 5]
    comfort = comfort_summary(driven) if len(driven) > 5 else None
    speeds = np.hypot(driven[:, 3], driven[:, 4])
    return {
        "seed": res.seed,
        "agent": res.agent,
        "seconds": cfg.seconds,
        "driven_seconds": round((end - H) * SIM_DT, 6),
        "termination": mon.termination if mon.termination in cfg.terminate_on else None,
        "route_progress_m": progress,
        "free_flow_m": free_flow,
        "route_completion": float(min(progress / free_flow, 1.0)) if free_flow > 0 else 1.0,
        "distance_m": float(np.sum(np.hypot(*np.diff(driven[:, :2], axis=0).T))) if len(driven) > 1 else 0.0,
        "mean_speed": float(speeds.mean()),
        **mon.summary(),
        "comfort": comfort,
        "epdms": mean_scores(res.step_scores),
        "plans": len(res.plans),
        "rejected_plans": int(rejected_plans),
        "replan_hz": 1.0 / (cfg.replan_every * SIM_DT) if res.agent != "expert" else None,
        "timings": timings or {},
    }
