"""``drive_jepa_planner``: the lifecycle node that runs the Drive-JEPA planner on a front camera and odometry.

A thin ROS adapter over :class:`drive_jepa_core.runtime.planner.Planner` (the one inference path):

* executor thread (callbacks): decode each camera frame and add it and every odometry sample to the core's
  :class:`~drive_jepa_core.replay.pairing.InputPairer` (the one input pairing, shared with ``drive-jepa replay``: it
  checks stamps for duplicates, reordering and time jumps and keeps the bounded buffers); keep the latest driving
  command and camera_info; hand the newest frame to the worker through a one-slot mailbox ("latest frame wins": a
  slow model never builds a queue);
* worker thread: ask the pairer for the frame closest to ``t - 0.5 s``, the odometry sample nearest the image stamp
  and the acceleration estimate, call ``Planner.plan``, publish the selected path, the scored candidates, the
  selection state, markers and the processing time.

Fed the messages of a bag one image at a time, the node therefore plans exactly the frames, with exactly the inputs,
that the offline replay does (test_node_vs_replay.py checks it).

Failsafe: any unusable input (no camera_info, undecodable image, missing/stale/NaN odometry, no earlier frame,
duplicate, out-of-order or jumping stamps) or inference failure publishes no trajectory for that frame;
``/diagnostics`` says why at once and the node keeps running. Input faults also publish a SelectionState with
``INPUT_FAULT``. A time jump backwards (bag loop) or an odometry frame change clears the buffers and resets the
planner's momentum. No published float is ever NaN: a comfort score that does not exist (no momentum this cycle) is
published as :data:`COMFORT_NOT_AVAILABLE` (-1.0, see CandidateTrajectory.msg), a missing interval as 0.0.

Lifecycle (rclpy ``LifecycleNode``): configure validates the parameters and loads the model; activate subscribes
and starts the worker; deactivate unsubscribes and stops it; cleanup frees the model. ``autostart`` configures and
activates at start. Parameters: :mod:`drive_jepa_ros.parameters` (documented in ``config/planner.yaml``).
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64, Header
from visualization_msgs.msg import MarkerArray

from drive_jepa_core.constants import COMFORT_NOT_AVAILABLE, TRAJ_DT
from drive_jepa_core.geometry import local_to_global
from drive_jepa_core.replay.pairing import InputPairer, PairedInput, SkipReason
from drive_jepa_core.runtime.planner import NonFiniteOutputError, Planner, PlanResult
from drive_jepa_core.selection import ResetReason
from drive_jepa_msgs.msg import CandidateTrajectories, CandidateTrajectory, DrivingCommand, SelectionState
from drive_jepa_ros.conversions import (
    compressed_to_rgb,
    image_to_rgb,
    odometry_to_ego_state,
    stamp_to_seconds,
    trajectory_to_path,
)
from drive_jepa_ros.diagnostics import Fault, NodeHealth, to_diagnostic_array
from drive_jepa_ros.frame_buffer import LatestSlot
from drive_jepa_ros.markers import proposal_markers
from drive_jepa_ros.parameters import (
    NODE_NAME,
    PARAMETER_SPECS,
    PARAMETERS,
    NodeSettings,
    camera_info_intrinsics,
    check_parameter_change,
    descriptor,
)

_RESET_REASONS = {
    ResetReason.NONE: SelectionState.NONE,
    ResetReason.FIRST_FRAME: SelectionState.FIRST_FRAME,
    ResetReason.GAP: SelectionState.GAP,
    ResetReason.TIME_BACKWARDS: SelectionState.TIME_BACKWARDS,
    ResetReason.REQUESTED: SelectionState.REQUESTED,
}
_VALID_COMMANDS = (DrivingCommand.LEFT, DrivingCommand.STRAIGHT, DrivingCommand.RIGHT)
# "Not available" for a comfort score (no momentum this cycle): the convention of CandidateTrajectory.msg and
# SelectionState.msg, outside the {0, 1} range of real scores, so no published float is NaN.
# Skip reasons of the shared input pairing -> the node's failsafe faults (diagnostics).
_PAIRING_FAULTS = {
    SkipReason.NO_PREVIOUS_FRAME: Fault.NO_PREVIOUS_FRAME,
    SkipReason.NO_ODOMETRY: Fault.NO_ODOMETRY,
    SkipReason.STALE_ODOMETRY: Fault.NO_ODOMETRY,
    SkipReason.NON_FINITE_ODOMETRY: Fault.BAD_ODOMETRY,
    SkipReason.ODOMETRY_FRAME_CHANGED: Fault.BAD_ODOMETRY,
    SkipReason.DUPLICATE_STAMP: Fault.DUPLICATE_STAMP,
    SkipReason.OUT_OF_ORDER_STAMP: Fault.OUT_OF_ORDER,
    SkipReason.TIME_JUMP: Fault.TIME_JUMP_BACKWARD,
    SkipReason.TIME_JUMP_FORWARD: Fault.TIME_JUMP_FORWARD,
    SkipReason.UNDECODABLE_IMAGE: Fault.BAD_IMAGE,
    SkipReason.WRONG_ENCODING: Fault.BAD_IMAGE,
}
# Camera: sensor-data QoS (best effort: accepts reliable and best-effort publishers, ros2_conventions.md B3) with
# depth 1 (yolo_ros): when callbacks fall behind, DDS keeps only the newest image instead of 5 stale ones, so "latest
# frame wins" holds from the wire to the model.
_IMAGE_QOS = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                        durability=qos_profile_sensor_data.durability, history=qos_profile_sensor_data.history)
_OUTPUT_QOS = QoSProfile(depth=10)  # reliable, volatile (ros2_conventions.md B3)
_ODOMETRY_QOS = QoSProfile(depth=50)  # reliable like most odometry publishers; 0.5 s at 100 Hz
_LOG_THROTTLE_S = 2.0
_WORKER_JOIN_S = 30.0  # upper bound for one in-flight inference when deactivating


@dataclass(frozen=True)
class _Job:
    seconds: float  # image stamp as the pairer keys it (sec + nanosec * 1e-9, as the offline replay)
    stamp: Any  # builtin_interfaces/Time of the image
    received: float  # time.monotonic() at receipt


@dataclass(frozen=True)
class _Camera:
    width: int
    height: int
    K: np.ndarray

    def key(self) -> tuple[int, int, bytes]:
        return self.width, self.height, self.K.tobytes()


def comfort_for_message(comfort_scores: np.ndarray) -> list[float]:
    """Per-candidate comfort for the messages: NaN ("momentum not applied") -> :data:`COMFORT_NOT_AVAILABLE`."""
    values = np.asarray(comfort_scores, dtype=np.float64).reshape(-1)
    return [float(c) if math.isfinite(c) else COMFORT_NOT_AVAILABLE for c in values]


class PlannerNode(LifecycleNode):
    """The planner lifecycle node (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self._settings: NodeSettings | None = None
        self._planner: Planner | None = None
        self._lock = threading.Lock()  # guards the pairer and latest inputs below
        self._pairer = InputPairer()
        self._odometry_error = ""  # why the newest unusable odometry message was unusable (diagnostics detail)
        self._command: int | None = None
        self._camera: _Camera | None = None
        self._camera_error = ""
        self._reset_pending = False
        # worker-thread state
        self._applied_camera: tuple[int, int, bytes] | None = None
        self._reset_override: int | None = None  # reset reason to report for the planner's REQUESTED reset
        self._last_selected = -1
        self._mailbox: LatestSlot[_Job] = LatestSlot()
        self._worker: threading.Thread | None = None

        self._generator_id = list(uuid.uuid4().bytes)
        self._subscriptions_: list[Any] = []
        self._publishers_: dict[str, Any] = {}
        self._health = NodeHealth(NODE_NAME)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(self.get_parameter("diagnostics_period").value,
                                                    self._publish_diagnostics)
        self.get_logger().info("created; configure it (or set autostart) to load the model")

    # -----------------------------------------------------------------------------------------------------------------
    # parameters
    # -----------------------------------------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Reject bad values with a reason; configure-time parameters only change while unconfigured."""
        changes = {p.name: p.value for p in parameters}
        reason = check_parameter_change(changes, configured=self._settings is not None)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _after_set_parameters(self, parameters: list[Parameter]) -> None:
        """Apply accepted live parameters to the running configuration."""
        settings = self._settings
        if settings is None:
            return
        updates = {p.name.replace(".", "_"): PARAMETER_SPECS[p.name].type(p.value) for p in parameters
                   if p.name in PARAMETER_SPECS}
        self._settings = replace(settings, **updates)
        self._health.input_timeout = self._settings.input_timeout
        with self._lock:
            self._pairer.config = self._settings.pairing

    def _parameter_values(self) -> dict[str, Any]:
        return {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}

    # -----------------------------------------------------------------------------------------------------------------
    # lifecycle
    # -----------------------------------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters and load (and warm up) the model."""
        try:
            settings = NodeSettings.from_values(self._parameter_values())
        except ValueError as exc:
            return self._configure_failed(f"invalid parameters: {exc}")
        t0 = time.perf_counter()
        try:
            planner = self._load_planner(settings)
        except Exception as exc:  # every loader error (missing file, wrong model, backend unavailable) is a refusal
            return self._configure_failed(f"cannot load model {settings.model_path!r} with backend "
                                          f"{settings.backend}: {type(exc).__name__}: {exc}")
        load_ms = (time.perf_counter() - t0) * 1e3
        with self._lock:
            self._settings, self._planner = settings, planner
            self._pairer.config = settings.pairing
            self._camera, self._camera_error = None, ""
            if not settings.camera_use_camera_info:
                width, height, K = settings.parameter_intrinsics()
                self._camera = _Camera(width, height, K)
        self._applied_camera = None
        info = planner.info
        self._health.input_timeout = settings.input_timeout
        self._health.use_camera_info = settings.camera_use_camera_info
        self._health.model_loaded(
            f"{planner.backend.name} on {planner.backend.device}: {info.variant}, Np={info.num_proposals}, "
            f"M={info.num_poses}, input {info.image_width}x{info.image_height}",
            [("model_path", settings.model_path), ("backend", planner.backend.name),
             ("device", planner.backend.device), ("variant", info.variant), ("num_proposals", info.num_proposals),
             ("num_poses", info.num_poses), ("input_size", f"{info.image_width}x{info.image_height}"),
             ("checkpoint_sha256", info.checkpoint_sha256 or "unknown"), ("load_ms", f"{load_ms:.0f}")])
        self._publishers_ = {
            "path": self.create_lifecycle_publisher(Path, "~/output/path", _OUTPUT_QOS),
            "candidates": self.create_lifecycle_publisher(CandidateTrajectories, "~/output/candidates", _OUTPUT_QOS),
            "state": self.create_lifecycle_publisher(SelectionState, "~/output/selection_state", _OUTPUT_QOS),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/debug/markers", _OUTPUT_QOS),
            "time": self.create_lifecycle_publisher(Float64, "~/debug/processing_time_ms", _OUTPUT_QOS),
        }
        self._diagnostics_timer.cancel()
        self.destroy_timer(self._diagnostics_timer)
        self._diagnostics_timer = self.create_timer(settings.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(f"configured: {self._health.model_message} (loaded in {load_ms:.0f} ms, checkpoint "
                               f"sha256 {(info.checkpoint_sha256 or 'unknown')[:12]})")
        self._publish_diagnostics()
        return super().on_configure(state)

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.get_logger().error(f"configure failed: {reason}")
        self._health.model_failed(reason)
        self._publish_diagnostics()
        return TransitionCallbackReturn.FAILURE

    def _load_planner(self, settings: NodeSettings) -> Planner:
        if settings.num_threads:
            import torch

            torch.set_num_threads(settings.num_threads)
        planner = Planner.from_checkpoint(
            settings.model_path, backend=settings.backend, device=settings.device, momentum=settings.momentum,
            onnx_path=settings.onnx_path or None, engine_path=settings.engine_path or None, fp16=settings.fp16,
            workspace_mb=settings.workspace_mb or None, intra_op_threads=settings.num_threads or None,
            force_rebuild=settings.force_engine_update)
        planner.warmup(settings.warmup_iterations)
        return planner

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Activate the publishers, subscribe to the inputs and start the inference worker."""
        result = super().on_activate(state)
        settings = self._settings
        assert settings is not None  # the state machine only activates a configured node
        self._clear_inputs()
        self._mailbox = LatestSlot()
        self._worker = threading.Thread(target=self._worker_loop, name="drive_jepa_inference", daemon=True)
        self._worker.start()
        if settings.image_transport == "compressed":
            self._subscribe(CompressedImage, settings.subscribed_image_topic, self._on_image, _IMAGE_QOS)
        else:
            self._subscribe(Image, settings.subscribed_image_topic, self._on_image, _IMAGE_QOS)
        if settings.camera_use_camera_info:
            self._subscribe(CameraInfo, settings.camera_info_topic, self._on_camera_info, qos_profile_sensor_data)
        self._subscribe(Odometry, settings.odometry_topic, self._on_odometry, _ODOMETRY_QOS)
        self._subscribe(DrivingCommand, settings.command_topic, self._on_command, QoSProfile(depth=1))
        self._health.set_active(True)
        self.get_logger().info(f"active: camera {self.resolve_topic_name(settings.subscribed_image_topic)} "
                               f"({settings.image_transport}), odometry "
                               f"{self.resolve_topic_name(settings.odometry_topic)}")
        return result

    def _subscribe(self, msg_type: Any, topic: str, callback: Any, qos: QoSProfile) -> None:
        self._subscriptions_.append(self.create_subscription(msg_type, topic, callback, qos))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, finish the in-flight frame, stop the worker; the next activation starts a new stream."""
        self._stop_processing()
        if self._planner is not None:
            self._planner.reset()
        self._last_selected, self._reset_override = -1, None
        return super().on_deactivate(state)

    def _stop_processing(self) -> None:
        self._health.set_active(False)
        for sub in self._subscriptions_:
            self.destroy_subscription(sub)
        self._subscriptions_ = []
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(_WORKER_JOIN_S)
            if self._worker.is_alive():
                self.get_logger().error("inference worker did not stop in time")
            self._worker = None
        self._clear_inputs()

    def _clear_inputs(self) -> None:
        with self._lock:
            self._pairer.clear()
            self._odometry_error = ""
            self._command = None
            self._reset_pending = False
            if self._settings is not None and self._settings.camera_use_camera_info:
                self._camera = None

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model and the publishers."""
        self._release()
        return super().on_cleanup(state)

    def _release(self) -> None:
        for pub in self._publishers_.values():
            self.destroy_lifecycle_publisher(pub)
        self._publishers_ = {}
        device = self._planner.backend.device if self._planner is not None else "cpu"
        with self._lock:
            self._planner, self._settings, self._camera = None, None, None
        self._health.model_unloaded()
        gc.collect()
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop everything and go back to unconfigured."""
        self.get_logger().error("error during a transition: releasing the model")
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def stop(self) -> None:
        """Stop processing and free the model (process exit, shutdown, error)."""
        self._stop_processing()
        if self._settings is not None or self._publishers_:
            self._release()

    # -----------------------------------------------------------------------------------------------------------------
    # callbacks (executor thread)
    # -----------------------------------------------------------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Decode, add to the pairer (which checks the stamp), and offer the frame to the worker."""
        received = time.monotonic()
        self._health.input_received("camera", received)
        settings = self._settings
        if settings is None:
            return
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ValueError as exc:
            self._fail(Fault.BAD_IMAGE, str(exc), msg.header.stamp)
            return
        seconds = stamp_to_seconds(msg.header.stamp)
        with self._lock:
            event = self._pairer.add_image(seconds, rgb)
            detail = self._pairing_detail(event, seconds) if event is not None else ""
            if event is SkipReason.TIME_JUMP:
                self._reset_pending = True  # the worker owns the planner: it resets before the next plan
        if event is None:
            self._mailbox.put(_Job(seconds, msg.header.stamp, received))
            self._health.set_queue(self._mailbox.depth, self._mailbox.dropped)
        else:  # dropped, or the first frame after a time jump: this image's outcome is known already
            self._skip(event, detail, msg.header.stamp)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._health.input_received("camera_info")
        try:
            width, height, K = camera_info_intrinsics(msg)
        except ValueError as exc:
            with self._lock:
                self._camera_error = str(exc)
            self.get_logger().warn(f"ignoring camera_info: {exc}", throttle_duration_sec=_LOG_THROTTLE_S)
            return
        with self._lock:
            self._camera, self._camera_error = _Camera(width, height, K), ""

    def _on_odometry(self, msg: Odometry) -> None:
        self._health.input_received("odometry")
        if self._settings is None:
            return
        error = ""
        try:
            pose, state = odometry_to_ego_state(msg)
            velocity = state[3:5]
        except ValueError as exc:  # stored as non-finite: the pairer reports it if it is the sample an image needs
            pose, velocity, error = np.full(3, np.nan), np.full(2, np.nan), str(exc)
        with self._lock:
            event = self._pairer.add_odometry(stamp_to_seconds(msg.header.stamp), pose, velocity,
                                              msg.header.frame_id)
            if error and event not in (SkipReason.DUPLICATE_STAMP, SkipReason.OUT_OF_ORDER_STAMP):
                self._odometry_error = error
        # reordered samples are dropped (their neighbours say the same); a jump back or a frame change is reported
        # by the next frame's pairing, which also resets the planner

    def _on_command(self, msg: DrivingCommand) -> None:
        self._health.input_received("command")
        with self._lock:
            self._command = int(msg.command) if msg.command in _VALID_COMMANDS else None

    # -----------------------------------------------------------------------------------------------------------------
    # worker thread
    # -----------------------------------------------------------------------------------------------------------------
    def _worker_loop(self) -> None:
        mailbox = self._mailbox
        while True:
            job = mailbox.take()
            if job is None:
                return
            self._health.set_queue(mailbox.depth, mailbox.dropped)
            try:
                self._process(job)
            except Exception as exc:  # never let one frame kill the worker
                self._fail(Fault.INFERENCE_ERROR, f"{type(exc).__name__}: {exc}", job.stamp)

    def _process(self, job: _Job) -> None:
        started = time.monotonic()
        settings, planner = self._settings, self._planner
        if settings is None or planner is None:
            return
        with self._lock:
            camera, camera_error = self._camera, self._camera_error
            stored = self._pairer.has_image(job.seconds)
            # without a camera the image is not paired (a pending reset stays for the next one)
            result = self._pairer.pair(job.seconds) if stored and camera is not None else None
            detail = self._pairing_detail(result, job.seconds) if isinstance(result, SkipReason) else ""
            command = self._command
            reset, self._reset_pending = self._reset_pending, False
        if reset:
            self._reset_planner(planner, SkipReason.TIME_JUMP)
        if not stored:
            return  # cleared by a time jump after it was queued; that jump was reported
        if camera is None:
            self._fail(Fault.NO_CAMERA_INFO, camera_error or "no camera_info received yet", job.stamp)
            return
        if isinstance(result, SkipReason):
            if result.resets_momentum:
                self._reset_planner(planner, result)
            self._skip(result, detail, job.stamp)
            return
        assert isinstance(result, PairedInput)
        paired = result
        now_shape = paired.frame_now.shape[:2]
        if now_shape != (camera.height, camera.width):
            self._fail(Fault.BAD_IMAGE, f"image is {now_shape[1]}x{now_shape[0]} but the camera is "
                       f"{camera.width}x{camera.height}", job.stamp)
            return
        if paired.frame_prev.shape[:2] != now_shape:
            self._fail(Fault.BAD_IMAGE, f"previous image is {paired.frame_prev.shape[1]}x{paired.frame_prev.shape[0]} "
                       f"but the current one is {now_shape[1]}x{now_shape[0]}", job.stamp)
            return
        if camera.key() != self._applied_camera:
            try:
                planner.set_camera(camera.width, camera.height,
                                   settings.calibration(camera.width, camera.height, camera.K).ego2image())
            except ValueError as exc:
                self._fail(Fault.BAD_CAMERA_INFO, str(exc), job.stamp)
                return
            self._applied_camera = camera.key()
        cmd = command if command is not None else settings.default_command
        try:
            plan = planner.plan(paired.frame_now, paired.frame_prev, paired.ego_state7(), cmd, paired.stamp)
        except NonFiniteOutputError as exc:
            self._fail(Fault.NONFINITE_OUTPUT, str(exc), job.stamp)
            return
        except Exception as exc:
            self._fail(Fault.INFERENCE_ERROR, f"{type(exc).__name__}: {exc}", job.stamp)
            return
        self._publish(job, plan, paired, settings, wait_ms=(started - job.received) * 1e3)

    def _reset_planner(self, planner: Planner, reason: SkipReason) -> None:
        """Forget momentum (worker thread); the next plan reports why instead of the planner's REQUESTED."""
        planner.reset()
        self._reset_override = SelectionState.TIME_BACKWARDS if reason is SkipReason.TIME_JUMP else None

    def _pairing_detail(self, reason: SkipReason, seconds: float) -> str:
        """Diagnostics text of a pairing skip (caller holds the lock or owns the pairer's state)."""
        if reason is SkipReason.NON_FINITE_ODOMETRY:
            cause = f": {self._odometry_error}" if self._odometry_error else ""
            return f"the odometry sample nearest the image stamp is non-finite (NaN/inf or a zero quaternion){cause}"
        if reason is SkipReason.ODOMETRY_FRAME_CHANGED:
            return f"the odometry frame_id changed to {self._pairer.frame_id!r}: buffers cleared, momentum reset"
        return self._pairer.describe(reason, seconds)

    def _skip(self, reason: SkipReason, detail: str, stamp: Any) -> None:
        """An image the input pairing rejected: no trajectory, the matching failsafe fault."""
        self._fail(_PAIRING_FAULTS[reason], f"{reason.value}: {detail}", stamp)

    def _publish(self, job: _Job, result: PlanResult, paired: PairedInput, settings: NodeSettings,
                 wait_ms: float) -> None:
        if settings.output_frame == "odom":
            frame_id, frame_pose = paired.frame_id or "odom", np.asarray(paired.pose, np.float64)
        else:
            frame_id, frame_pose = settings.ego_frame_id, np.zeros(3)
        proposals = local_to_global(result.proposals, frame_pose)  # (Np, M, 3) in frame_id
        values = (proposals, result.scores, result.final_scores)
        if not all(np.all(np.isfinite(v)) for v in values):
            self._fail(Fault.NONFINITE_OUTPUT, "non-finite trajectory or score after the frame transform", job.stamp)
            return
        header = Header(stamp=job.stamp, frame_id=frame_id)
        selected = int(result.selected_index)
        pubs = self._publishers_
        # The selected path first: it is what a controller waits for; the rest is for introspection.
        path = trajectory_to_path(result.trajectory, frame_pose, header)
        pubs["path"].publish(path)
        path_ms = (time.monotonic() - job.received) * 1e3
        reason = _RESET_REASONS[result.reset_reason]
        if result.reset_reason is ResetReason.REQUESTED and self._reset_override is not None:
            reason = self._reset_override
        self._reset_override = None
        comfort = comfort_for_message(result.comfort_scores)
        state = self._selection_state(header, settings)
        state.momentum_valid = bool(result.valid)
        state.reset_reason = reason
        state.interval = float(result.interval) if math.isfinite(result.interval) else 0.0
        state.previous_index = int(result.previous_index)
        state.selected_index = selected
        state.comfort_scores = comfort

        candidates = CandidateTrajectories(header=header, generator_name=settings.generator_name,
                                           generator_id=self._generator_id, selected_index=selected, selection=state)
        for i in range(proposals.shape[0]):
            candidates.candidates.append(CandidateTrajectory(
                path=path if i == selected else trajectory_to_path(result.proposals[i], frame_pose, header),
                learned_score=float(result.scores[i]), comfort_score=comfort[i],
                final_score=float(result.final_scores[i]), time_step=TRAJ_DT, index=i))
        pubs["candidates"].publish(candidates)
        pubs["state"].publish(state)
        if settings.publish_markers:
            pubs["markers"].publish(proposal_markers(proposals, frame_pose, result.final_scores, selected, header,
                                                     settings.marker_line_width, settings.marker_lifetime))
        total_ms = (time.monotonic() - job.received) * 1e3
        pubs["time"].publish(Float64(data=total_ms))
        self._last_selected = selected
        t = result.timings
        self._health.frame_published({"wait": wait_ms, "preprocess": t.preprocess_ms, "inference": t.inference_ms,
                                      "selection": t.selection_ms, "plan": t.total_ms, "path": path_ms,
                                      "node_total": total_ms})

    def _selection_state(self, header: Header, settings: NodeSettings) -> SelectionState:
        momentum = settings.momentum
        return SelectionState(header=header, previous_index=self._last_selected, selected_index=-1,
                              momentum_weight=float(momentum.comfort_weight), max_gap=float(momentum.max_gap))

    # -----------------------------------------------------------------------------------------------------------------
    # failsafe and diagnostics
    # -----------------------------------------------------------------------------------------------------------------
    def _fail(self, fault: Fault, detail: str, stamp: Any) -> None:
        """No trajectory for this frame: record why, tell /diagnostics at once when the reason changed."""
        changed = self._health.frame_failed(fault, detail)
        self.get_logger().warn(f"no trajectory: {fault.value}: {detail}", throttle_duration_sec=_LOG_THROTTLE_S)
        settings, pub = self._settings, self._publishers_.get("state")
        if fault.is_input_fault and settings is not None and pub is not None and pub.is_activated:
            state = self._selection_state(Header(stamp=stamp, frame_id=settings.ego_frame_id), settings)
            state.reset_reason = SelectionState.INPUT_FAULT
            pub.publish(state)
        if changed:
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        statuses = self._health.statuses()
        self._diagnostics_pub.publish(to_diagnostic_array(statuses, self.get_clock().now().to_msg()))


# --------------------------------------------------------------------------------------------------------------------
def main(args: list[str] | None = None) -> int:
    """Run the node (``ros2 run drive_jepa_ros planner_node``); SIGINT/SIGTERM stop it cleanly."""
    rclpy.init(args=args)
    executor = SingleThreadedExecutor()  # callbacks only decode and buffer; inference has its own thread
    node: PlannerNode | None = None
    code = 0
    try:
        node = PlannerNode()
        executor.add_node(node)
        if node.get_parameter("autostart").value:
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                node.get_logger().error("autostart: configure failed; fix the parameters and configure again")
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # e.g. a parameter override of the wrong type: say why before exiting
        print(f"[{NODE_NAME}] fatal: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    finally:
        executor.shutdown()
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
