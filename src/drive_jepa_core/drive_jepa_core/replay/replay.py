"""``drive-jepa replay``: run the planner over a rosbag2 offline and evaluate it open loop.

The bag is read in log-time order (:class:`~drive_jepa_core.replay.bag_io.BagReader`); every decoded camera frame goes
through :class:`~drive_jepa_core.replay.pairing.InputPairer` (the pairing the ROS node uses) and, when paired, through
the same :class:`~drive_jepa_core.runtime.planner.Planner` the node runs (or NAVSIM's constant-velocity baseline
behind the same interface). Outputs in ``--out``:

* ``metrics.json``: open-loop errors against the bag's own odometry future (ADE/FDE at 1/2/4 s, heading error),
  temporal consistency (two-frame Extended Comfort rate between consecutive selected plans and their mean change),
  proposal diversity D (:mod:`drive_jepa_core.metrics.diversity`), latency percentiles, and every skipped frame
  counted by reason. Planned frames whose odometry does not cover the 4 s future are counted as ``no_future`` and
  excluded from the open-loop errors.
* ``frames.json`` / ``frames.npz``: per-image outputs (status, selected trajectory, scores, proposals) keyed by the
  image stamp in nanoseconds, for comparison with the ROS node on the same bag.
* ``planner_outputs/``: an mcap bag with the node's output topics (:data:`~drive_jepa_core.replay.bag_io.OUTPUT_TOPICS`)
  at the input image stamps.
* ``report.html`` with PNGs: camera frames with the candidates and the selected trajectory projected into the image,
  bird's-eye plots of the proposals, and metrics over time.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from drive_jepa_core.constants import COMMAND_NAMES, COMMAND_STRAIGHT, NUM_TRAJ_POSES, TRAJ_DT
from drive_jepa_core.geometry import global_to_local, local_to_global, wrap_angle
from drive_jepa_core.jsonutil import json_clean
from drive_jepa_core.metrics.comfort import EC_MAX_INTERVAL, extended_comfort
from drive_jepa_core.metrics.diversity import diversity
from drive_jepa_core.replay.bag_io import (
    BASE_FRAME,
    STORAGES,
    BagReader,
    BagWriter,
    CameraInfoEvent,
    CommandEvent,
    ImageEvent,
    OdometryEvent,
    OdometryTrack,
)
from drive_jepa_core.replay.pairing import InputPairer, PairedInput, PairingConfig, SkipReason
from drive_jepa_core.scene.format import CameraCalibration
from drive_jepa_core.selection import MomentumConfig, MomentumSelector

LOG = logging.getLogger(__name__)

BASELINES = ("constant-velocity",)
OUTPUT_FRAMES = ("odom", "ego")
HORIZONS = (1.0, 2.0, 4.0)  # s, open-loop error horizons (NAVSIM-style 1/2/4 s on the 0.5 s grid)
# A future is "covered" when odometry brackets every pose time with samples at most this far apart: interpolating
# across longer gaps would invent the ground truth (0.25 s still accepts 4 Hz odometry).
FUTURE_MAX_GAP = 0.25
NON_FINITE_OUTPUT = "non_finite_output"  # the model produced NaN/inf (Planner.plan refused the frame)
SKIP_KEYS = (*(r.value for r in SkipReason), NON_FINITE_OUTPUT)
LATENCY_PERCENTILES = (50, 90, 99)


# --------------------------------------------------------------------------------------------------------------------
# Constant-velocity baseline behind the Planner interface
# --------------------------------------------------------------------------------------------------------------------
class ConstantVelocityPlanner:
    """NAVSIM's constant-velocity agent (straight ahead at the current speed) with :meth:`Planner.plan`'s signature.

    One proposal with score 1; the same :class:`MomentumSelector` keeps the selection bookkeeping, so the temporal
    consistency metrics are computed exactly as for a model.
    """

    name = "constant-velocity"

    def __init__(self, momentum: MomentumConfig | None = None) -> None:
        self.selector = MomentumSelector(momentum)

    def set_camera(self, width: int, height: int, ego2image: np.ndarray) -> None:
        """Cameras are ignored (kept for interface parity)."""

    def reset(self) -> None:
        self.selector.reset()

    def plan(self, frame_now: np.ndarray, frame_prev: np.ndarray, ego_status: np.ndarray, command: int,
             stamp: float, pose: np.ndarray | None = None) -> Any:
        from drive_jepa_core.metrics.scorer import constant_velocity_trajectory
        from drive_jepa_core.runtime.planner import PlanResult, StageTimings

        t0 = time.perf_counter()
        state = np.asarray(ego_status, dtype=np.float64).reshape(7).copy()
        if pose is not None:
            state[:3] = pose
        proposals = constant_velocity_trajectory(state)[None].astype(np.float32)  # (1, M, 3)
        t1 = time.perf_counter()
        scores = np.ones(1)
        selection = self.selector.select(proposals, scores, state, stamp)
        t2 = time.perf_counter()
        return PlanResult(
            stamp=float(stamp), ego_state=state, proposals=proposals, score_logits=np.full(1, np.inf, np.float32),
            scores=scores, comfort_scores=selection.comfort_scores, final_scores=selection.final_scores,
            selected_index=selection.selected_index, trajectory=proposals[selection.selected_index].copy(),
            valid=selection.valid, reset_reason=selection.reset_reason, interval=selection.interval,
            previous_index=selection.previous_index,
            timings=StageTimings(preprocess_ms=0.0, inference_ms=(t1 - t0) * 1e3, selection_ms=(t2 - t1) * 1e3),
            backend=self.name, selection=selection)


# --------------------------------------------------------------------------------------------------------------------
# Metrics helpers
# --------------------------------------------------------------------------------------------------------------------
def future_ground_truth(track: OdometryTrack, stamp: float, num_poses: int = NUM_TRAJ_POSES,
                        dt: float = TRAJ_DT) -> np.ndarray | None:
    """Logged future ``(num_poses, 3)`` in the ego frame at ``stamp`` (odometry interpolated at ``stamp + k dt``),
    or None when the odometry does not cover it (see :data:`FUTURE_MAX_GAP`)."""
    times = stamp + dt * np.arange(num_poses + 1)
    if not np.all(track.covered(times, FUTURE_MAX_GAP)):
        return None
    poses, _ = track.interpolate(times)
    return global_to_local(poses[1:], poses[0])


def open_loop_errors(trajectory: np.ndarray, truth: np.ndarray, dt: float = TRAJ_DT) -> dict[str, float]:
    """ADE/FDE at :data:`HORIZONS` and heading errors of one ``(M, 3)`` plan against the ``(M, 3)`` truth.

    ADE@h averages the L2 errors of the poses at 0.5 … h s, FDE@h is the error at h s; heading errors are absolute
    wrapped differences (mean over all poses, and at the last pose).
    """
    err = np.hypot(trajectory[:, 0] - truth[:, 0], trajectory[:, 1] - truth[:, 1])
    out: dict[str, float] = {}
    for h in HORIZONS:
        n = int(round(h / dt))
        if n <= len(err):
            out[f"ade_{h:g}s"] = float(np.mean(err[:n]))
            out[f"fde_{h:g}s"] = float(err[n - 1])
    dh = np.abs(wrap_angle(trajectory[:, 2] - truth[:, 2]))
    out["heading_error_rad"] = float(np.mean(dh))
    out[f"heading_error_{len(dh) * dt:g}s_rad"] = float(dh[-1])
    return out


def trajectory_change(prev_plan: Any, plan: Any, dt: float = TRAJ_DT) -> float | None:
    """Mean distance (m) between the current selected trajectory and the previous one at the same absolute times.

    The previous plan (origin pose at its stamp, then its waypoints) is placed in the world with its odometry pose and
    linearly interpolated at the current waypoint times that it covers; None when they share no time.
    """
    t_prev, t_now = float(prev_plan.stamp), float(plan.stamp)
    origin = np.asarray(prev_plan.ego_state[:3], np.float64)
    prev_world = np.concatenate([origin[None], local_to_global(np.asarray(prev_plan.trajectory, np.float64), origin)])
    prev_t = t_prev + dt * np.arange(len(prev_world))
    now_world = local_to_global(np.asarray(plan.trajectory, np.float64), plan.ego_state[:3])
    now_t = t_now + dt * np.arange(1, len(now_world) + 1)
    keep = (now_t >= prev_t[0] - 1e-6) & (now_t <= prev_t[-1] + 1e-6)
    if not np.any(keep):
        return None
    x = np.interp(now_t[keep], prev_t, prev_world[:, 0])
    y = np.interp(now_t[keep], prev_t, prev_world[:, 1])
    return float(np.mean(np.hypot(now_world[keep, 0] - x, now_world[keep, 1] - y)))


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, **{f"p{p}": None for p in LATENCY_PERCENTILES}, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), **{f"p{p}": float(np.percentile(arr, p)) for p in LATENCY_PERCENTILES},
            "max": float(arr.max())}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --------------------------------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------------------------------
def _load_planner(model: str | Path | None, baseline: str | None, backend: str, device: str | None,
                  momentum: MomentumConfig) -> tuple[Any, dict[str, Any]]:
    if model is not None and baseline is not None:
        raise ValueError("give either a model or a baseline, not both")
    if model is None:
        name = baseline or BASELINES[0]
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
        return ConstantVelocityPlanner(momentum), {"kind": "baseline", "name": name}
    from drive_jepa_core.runtime.planner import Planner

    planner = Planner.from_checkpoint(model, backend=backend, device=device, momentum=momentum)
    info = planner.info
    return planner, {"kind": "model", "model": str(model), "backend": backend,
                     "image_size": list(getattr(info, "image_size", ())),
                     "num_proposals": getattr(info, "num_proposals", None)}


def replay_bag(bag: str | Path, out: str | Path, model: str | Path | None = None, baseline: str | None = None,
               backend: str = "torch", device: str | None = None, camera_topic: str | None = None,
               odometry_topic: str | None = None, command_topic: str | None = None,
               camera_info_topic: str | None = None, pairing: PairingConfig | None = None,
               momentum: MomentumConfig | None = None, default_command: int = COMMAND_STRAIGHT,
               output_frame: str = "odom", storage: str = "mcap", write_bag: bool = True, report: bool = True,
               report_frames: int = 6, max_frames: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Replay ``bag`` through a planner and write the outputs listed in the module docstring into ``out``.

    Args:
        bag: rosbag2 directory or file (sqlite3 or mcap).
        out: output directory (created; existing outputs of an earlier replay are replaced).
        model: trained planner (run directory, ``.safetensors``, or ``.onnx``/``.engine`` for those backends);
            without it the ``baseline`` (default constant velocity) runs.
        backend, device: see :meth:`Planner.from_checkpoint`.
        camera_topic, odometry_topic, command_topic, camera_info_topic: override the detection by type.
        pairing: thresholds of the input pairing (defaults = the node's defaults).
        momentum: momentum-aware selection config.
        default_command: command while none (or UNKNOWN) was received: 0 left, 1 straight, 2 right.
        output_frame: ``"odom"`` writes output paths in the odometry frame (viewable without TF), ``"ego"`` in
            ``base_link`` relative to the vehicle at the image stamp.
        storage: storage of the output bag.
        write_bag, report: turn the output bag / HTML report off.
        report_frames: camera/BEV figures in the report (evenly spread over the bag).
        max_frames: stop after this many camera messages.
    Returns:
        the metrics dictionary (also written to ``out/metrics.json``).
    """
    if output_frame not in OUTPUT_FRAMES:
        raise ValueError(f"output_frame must be one of {OUTPUT_FRAMES}, got {output_frame!r}")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
    if not 0 <= int(default_command) < len(COMMAND_NAMES):
        raise ValueError(f"default_command must be 0 (left), 1 (straight) or 2 (right), got {default_command}")
    pairing = pairing if pairing is not None else PairingConfig()
    momentum = momentum if momentum is not None else MomentumConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    planner, planner_info = _load_planner(model, baseline, backend, device, momentum)

    reader = BagReader(bag, camera_topic=camera_topic, odometry_topic=odometry_topic, command_topic=command_topic,
                       camera_info_topic=camera_info_topic)
    with reader:
        track = reader.odometry_track()
        n_images = reader.message_count(reader.topics.camera)
        if max_frames is not None:
            n_images = min(n_images, int(max_frames))
        wanted: set[int] = set()  # camera message indices drawn in the report: centres of equal slices of the bag
        if report and n_images and report_frames > 0:
            k = int(report_frames)
            wanted = {int((j + 0.5) * n_images / k) for j in range(k)}
        writer = None
        if write_bag:
            bag_dir = out / "planner_outputs"
            _remove_bag(bag_dir)
            writer = BagWriter(bag_dir, storage)
            writer.set_custom_data("drive_jepa.replay_source", str(bag))
        try:
            state = _run(reader, planner, pairing, momentum, track, writer, output_frame, int(default_command),
                         n_images, wanted, progress)
        finally:
            if writer is not None:
                writer.close()
        bag_info = {"path": str(bag), "storage": reader.storage, "topics": reader.topics.to_json(),
                    "duration_s": (reader.end_ns - reader.start_ns) * 1e-9,
                    "camera_messages": reader.message_count(reader.topics.camera),
                    "odometry_messages": reader.message_count(reader.topics.odometry),
                    "deserialization_errors": dict(reader.errors)}

    metrics = _metrics(state, bag_info, planner_info, pairing, momentum)
    metrics["outputs"] = _write_frames(out, state)
    if writer is not None:
        metrics["outputs"]["bag"] = str(out / "planner_outputs")
    if report:
        from drive_jepa_core.replay.report import write_report

        metrics["outputs"]["report"] = str(write_report(out, metrics, state))
    (out / "metrics.json").write_text(json.dumps(json_clean(metrics), indent=2) + "\n")
    return metrics


def _remove_bag(path: Path) -> None:
    """Delete an earlier replay's output bag (only files a rosbag2 writer creates)."""
    if not path.exists():
        return
    for f in path.iterdir():
        if f.suffix in (".mcap", ".db3", ".yaml") or f.name.endswith((".db3-shm", ".db3-wal")):
            f.unlink()
    path.rmdir()


class ReplayState:
    """Everything collected while replaying (consumed by the metrics, the per-frame dump and the report)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []  # one per camera message, in bag order
        self.plans: list[Any] = []  # PlanResult per planned frame
        self.truth: list[np.ndarray | None] = []  # (M, 3) per plan
        self.commands: list[int] = []
        self.accel_valid: list[bool] = []
        self.skipped: Counter[str] = Counter()
        self.report_frames: dict[int, tuple[np.ndarray, CameraCalibration]] = {}  # plan index -> (frame, camera)
        self.calibration_source = "default"
        self.images = 0
        self.per_frame_errors: list[dict[str, float] | None] = []  # open-loop errors per plan (None: no future)
        self.diversity: list[float] = []  # D per plan


def _run(reader: BagReader, planner: Any, pairing: PairingConfig, momentum: MomentumConfig, track: OdometryTrack,
         writer: BagWriter | None, output_frame: str, default_command: int, n_images: int, wanted: set[int],
         progress: bool) -> ReplayState:
    from drive_jepa_core.runtime.planner import NonFiniteOutputError
    from drive_jepa_core.world.render import default_front_camera

    state = ReplayState()
    pairer = InputPairer(pairing)
    command = default_command
    info_calib: CameraCalibration | None = None
    active: tuple[int, int, bytes] | None = None  # (w, h, K bytes) the planner is configured with
    calib: CameraCalibration | None = None
    stamp_ns: dict[float, int] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_images, desc="replay", unit="frame")
    for event in reader.messages():
        if isinstance(event, OdometryEvent):
            pairer.add_odometry(event.stamp, event.pose, event.velocity, event.frame_id)
            continue
        if isinstance(event, CommandEvent):
            command = event.command if 0 <= event.command < len(COMMAND_NAMES) else default_command
            continue
        if isinstance(event, CameraInfoEvent):
            info_calib = event.calibration() or info_calib
            continue
        assert isinstance(event, ImageEvent)
        if state.images >= n_images:
            break
        index = state.images
        state.images += 1
        if bar is not None:
            bar.update(1)
        record: dict[str, Any] = {"index": index, "stamp_ns": event.stamp_ns}
        state.records.append(record)
        if event.frame is None:
            reason = (event.skip or SkipReason.UNDECODABLE_IMAGE).value
            record.update(status=reason, detail=event.error)
            state.skipped[reason] += 1
            continue
        h, w = event.frame.shape[:2]
        if info_calib is not None and (info_calib.width, info_calib.height) == (w, h):
            calib, state.calibration_source = info_calib, "camera_info"
        elif calib is None or (calib.width, calib.height) != (w, h):
            calib = default_front_camera(w, h)
        key = (w, h, np.asarray(calib.intrinsics).tobytes())
        if key != active:
            planner.set_camera(w, h, calib.ego2image())
            active = key
        stamp_ns[event.stamp] = event.stamp_ns  # the pairer keeps float seconds; map them back to exact stamps
        while len(stamp_ns) > 4 * pairing.frame_buffer_size:
            stamp_ns.pop(next(iter(stamp_ns)))
        result = pairer.process_image(event.stamp, event.frame)
        if isinstance(result, SkipReason):
            if result.resets_momentum:
                planner.reset()
            record.update(status=result.value)
            state.skipped[result.value] += 1
            continue
        paired: PairedInput = result
        try:
            plan = planner.plan(paired.frame_now, paired.frame_prev, paired.ego_state7(), command, paired.stamp)
        except NonFiniteOutputError as exc:
            record.update(status=NON_FINITE_OUTPUT, detail=str(exc))
            state.skipped[NON_FINITE_OUTPUT] += 1
            continue
        if writer is not None:
            frame_id = BASE_FRAME if output_frame == "ego" else (paired.frame_id or "odom")
            writer.write_plan(plan, event.stamp_ns, frame_id=frame_id, momentum=momentum)
        truth = future_ground_truth(track, paired.stamp, len(plan.trajectory))
        record.update(status="planned", prev_stamp_ns=stamp_ns.get(paired.prev_stamp), plan_index=len(state.plans))
        if index in wanted:
            state.report_frames[len(state.plans)] = (paired.frame_now, calib)
        state.plans.append(plan)
        state.truth.append(truth)
        state.commands.append(int(command))
        state.accel_valid.append(bool(paired.acceleration_valid))
        record.update(odometry_stamp=paired.odometry_stamp, frame_gap=paired.frame_gap)
    if bar is not None:
        bar.close()
    return state


def _metrics(state: ReplayState, bag_info: dict[str, Any], planner_info: dict[str, Any], pairing: PairingConfig,
             momentum: MomentumConfig) -> dict[str, Any]:
    plans = state.plans
    per_frame = [open_loop_errors(np.asarray(p.trajectory, np.float64), t) if t is not None else None
                 for p, t in zip(plans, state.truth, strict=True)]
    evaluated = [e for e in per_frame if e is not None]
    keys = list(evaluated[0]) if evaluated else [f"{k}_{h:g}s" for h in HORIZONS for k in ("ade", "fde")] + [
        "heading_error_rad", f"heading_error_{NUM_TRAJ_POSES * TRAJ_DT:g}s_rad"]
    open_loop = {k: _mean([e[k] for e in evaluated]) for k in keys}

    ec_values: list[float] = []
    changes: list[float] = []
    for prev, cur in itertools.pairwise(plans):
        dt = float(cur.stamp) - float(prev.stamp)
        if not 0.0 < dt < EC_MAX_INTERVAL:
            continue
        ec = extended_comfort(cur.selection.selected_states[None], prev.selection.selected_states, dt).ec[0]
        ec_values.append(float(ec))
        change = trajectory_change(prev, cur)
        if change is not None:
            changes.append(change)
    div = [diversity(np.asarray(p.proposals, np.float64)) for p in plans]
    timings = {"total": [p.timings.total_ms for p in plans],
               "preprocess": [p.timings.preprocess_ms for p in plans],
               "inference": [p.timings.inference_ms for p in plans],
               "selection": [p.timings.selection_ms for p in plans]}
    skipped = {key: int(state.skipped.get(key, 0)) for key in SKIP_KEYS}
    no_future = sum(1 for t in state.truth if t is None)
    state.per_frame_errors, state.diversity = per_frame, div  # reused by the report
    return {
        "bag": bag_info,
        "planner": {**planner_info, "num_proposals": int(plans[0].proposals.shape[0]) if plans else
                    planner_info.get("num_proposals")},
        "pairing": asdict(pairing),
        "momentum": {"score_weight": momentum.score_weight, "max_gap": momentum.max_gap},
        "camera_calibration": state.calibration_source,
        "frames": {"images": state.images, "planned": len(plans), "skipped": skipped,
                   "skipped_total": int(sum(skipped.values())), "no_future": no_future,
                   "evaluated": len(evaluated),
                   "acceleration_unavailable": int(sum(1 for v in state.accel_valid if not v)),
                   "momentum_applied": int(sum(1 for p in plans if p.valid))},
        "open_loop": open_loop,
        "temporal_consistency": {"pairs": len(ec_values), "extended_comfort_rate": _mean(ec_values),
                                 "mean_trajectory_change_m": _mean(changes)},
        "diversity": {"mean": _mean(div), "num_frames": len(div)},
        "latency_ms": {k: _percentiles(v) for k, v in timings.items()},
    }


def _write_frames(out: Path, state: ReplayState) -> dict[str, str]:
    """``frames.json`` (one record per camera message) and ``frames.npz`` (arrays of the planned frames)."""
    plans = state.plans
    records = []
    for rec in state.records:
        rec = dict(rec)
        if rec.get("status") == "planned":
            p = plans[rec["plan_index"]]
            rec.update(
                selected_index=int(p.selected_index), trajectory=np.asarray(p.trajectory, np.float64),
                scores=np.asarray(p.scores, np.float64), final_scores=np.asarray(p.final_scores, np.float64),
                comfort_scores=np.asarray(p.comfort_scores, np.float64), momentum_valid=bool(p.valid),
                reset_reason=str(getattr(p.reset_reason, "value", p.reset_reason)), interval=float(p.interval),
                ego_state=np.asarray(p.ego_state, np.float64), command=state.commands[rec["plan_index"]],
                latency_ms=float(p.timings.total_ms))
        records.append(rec)
    (out / "frames.json").write_text(json.dumps(json_clean({"frames": records}), indent=1) + "\n")
    arrays: dict[str, np.ndarray] = {
        "image_stamps_ns": np.array([r["stamp_ns"] for r in state.records], dtype=np.int64),
        "image_status": np.array([r["status"] for r in state.records], dtype=str),
        "stamps_ns": np.array([r["stamp_ns"] for r in state.records if r.get("status") == "planned"], dtype=np.int64),
    }
    if plans:
        arrays.update(
            proposals=np.stack([np.asarray(p.proposals, np.float32) for p in plans]),
            scores=np.stack([np.asarray(p.scores, np.float64) for p in plans]),
            final_scores=np.stack([np.asarray(p.final_scores, np.float64) for p in plans]),
            comfort_scores=np.stack([np.asarray(p.comfort_scores, np.float64) for p in plans]),
            selected_index=np.array([p.selected_index for p in plans], dtype=np.int64),
            trajectory=np.stack([np.asarray(p.trajectory, np.float32) for p in plans]),
            ego_state=np.stack([np.asarray(p.ego_state, np.float64) for p in plans]),
            momentum_valid=np.array([bool(p.valid) for p in plans]),
            command=np.array(state.commands, dtype=np.int64),
        )
    np.savez(out / "frames.npz", **arrays)
    return {"frames_json": str(out / "frames.json"), "frames_npz": str(out / "frames.npz")}
