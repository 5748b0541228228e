"""The streaming planner that runs on the vehicle: uint8 camera frames + ego state in, selected trajectory out.

This is the ONE inference path: the ROS node and the rosbag replay both call :meth:`Planner.plan`, and it
preprocesses exactly as training does (:mod:`drive_jepa_core.preprocess`: centre crop + resize, ImageNet
normalization, the crop-adjusted camera projection, the (11,) ego status)::

    frames (t-0.5 s, t) ──prepare_video──► video (1, 3, 2, H, W) ─┐
    ego state + command ──ego_status_vector──► (1, 11) ───────────┼─► Backend.run ─► proposals (Np, M, 3), logits (Np)
    camera ego2image ──ImageGeometry.adjust_projection──► (1, 3, 4)┘        │
                                       S = sigmoid(logits) ─► MomentumSelector.select ─► selected trajectory (M, 3)

Momentum (drive_jepa.md §7): the selector keeps the previously selected plan (world-frame simulated states), so
consecutive calls must come from one stream in time order; :meth:`Planner.reset` starts a new stream.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from drive_jepa_core.preprocess import ImageGeometry, ego_status_vector, prepare_video
from drive_jepa_core.runtime.backends import (
    BACKENDS,
    Backend,
    OnnxRuntimeBackend,
    TensorRTBackend,
    TorchBackend,
)
from drive_jepa_core.runtime.model_check import ModelCheckError, ModelExpectation, ModelInfo, check_checkpoint
from drive_jepa_core.scene.format import CameraCalibration
from drive_jepa_core.selection import MomentumConfig, MomentumSelector, ResetReason, SelectionResult

LOG = logging.getLogger(__name__)

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN/inf; the frame is rejected so that nothing non-finite is ever published."""


@dataclass(frozen=True)
class EgoStatus:
    """Ego state at the planning instant (rear axle).

    Attributes:
        pose: ``(3,)`` world/map ``(x, y, heading)``; momentum selection compares plans in this frame.
        velocity: ``(2,)`` body-frame ``(vx, vy)`` m/s.
        acceleration: ``(2,)`` body-frame ``(ax, ay)`` m/s².
    """

    pose: tuple[float, float, float]
    velocity: tuple[float, float]
    acceleration: tuple[float, float] = (0.0, 0.0)

    def state7(self) -> np.ndarray:
        """``(7,)`` float64 ``[x, y, heading, vx, vy, ax, ay]`` (a ``Scene.ego_states`` row)."""
        return np.concatenate([np.asarray(self.pose, np.float64).reshape(3),
                               np.asarray(self.velocity, np.float64).reshape(2),
                               np.asarray(self.acceleration, np.float64).reshape(2)])

    @classmethod
    def from_state7(cls, state7: np.ndarray) -> EgoStatus:
        s = np.asarray(state7, np.float64).reshape(7)
        return cls(pose=(s[0], s[1], s[2]), velocity=(s[3], s[4]), acceleration=(s[5], s[6]))


@dataclass(frozen=True)
class StageTimings:
    """Wall time of one :meth:`Planner.plan` call per stage, milliseconds."""

    preprocess_ms: float
    inference_ms: float
    selection_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.selection_ms


@dataclass(frozen=True)
class PlanResult:
    """One planning step.

    Attributes:
        stamp: seconds, as passed to :meth:`Planner.plan`.
        ego_state: ``(7,)`` world ego state the plan starts from (pose + body velocity/acceleration).
        proposals: ``(Np, M, 3)`` float32 ego-frame (rear axle) ``(x, y, heading)`` at 0.5 s steps.
        score_logits: ``(Np,)`` raw scorer outputs.
        scores: ``(Np,)`` learned scores S = sigmoid(logits).
        comfort_scores: ``(Np,)`` two-frame EC against the previous plan ∈ {0, 1}; NaN when momentum was not applied.
        final_scores: ``(Np,)`` S' = 7/8 S + 1/8 EC (= S without momentum).
        selected_index: argmax of ``final_scores``.
        trajectory: ``(M, 3)`` float32 the selected proposal, ego frame.
        valid: momentum was applied this frame.
        reset_reason: why not (``ResetReason.NONE`` when valid).
        interval: seconds since the previous frame (NaN without one).
        previous_index: index selected in the previous frame, -1 when none is held.
        timings: per-stage wall time.
        backend: backend name.
        selection: the full :class:`SelectionResult` (world-frame simulated states of every proposal).
    """

    stamp: float
    ego_state: np.ndarray
    proposals: np.ndarray
    score_logits: np.ndarray
    scores: np.ndarray
    comfort_scores: np.ndarray
    final_scores: np.ndarray
    selected_index: int
    trajectory: np.ndarray
    valid: bool
    reset_reason: ResetReason
    interval: float
    previous_index: int
    timings: StageTimings
    backend: str
    selection: SelectionResult


def _ego_state7(ego_status: EgoStatus | np.ndarray | Any, pose: np.ndarray | None) -> np.ndarray:
    if isinstance(ego_status, EgoStatus):
        state = ego_status.state7()
    else:
        state = np.asarray(ego_status, dtype=np.float64)
        if state.shape != (7,):
            raise ValueError(f"ego_status must be an EgoStatus or a (7,) [x, y, heading, vx, vy, ax, ay] state, got "
                             f"shape {state.shape}")
        state = state.copy()
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (3,):
            raise ValueError(f"pose must be (3,) world (x, y, heading), got shape {pose.shape}")
        state[:3] = pose
    if not np.all(np.isfinite(state)):
        raise ValueError(f"ego state contains NaN/inf: {state.tolist()}")
    return state


class Planner:
    """Streaming Drive-JEPA planner around one :class:`Backend` and a :class:`MomentumSelector`.

    Args:
        backend: a loaded backend (:meth:`from_checkpoint` builds one).
        momentum: selection config (default: the reference's 7/8 weight and 0.55 s reset).
        camera: front camera calibration; or call :meth:`set_camera` later (e.g. on the first ``camera_info``).
    """

    def __init__(self, backend: Backend, momentum: MomentumConfig | None = None,
                 camera: CameraCalibration | None = None) -> None:
        self.backend = backend
        self.selector = MomentumSelector(momentum)
        self._geometry: ImageGeometry | None = None
        self._ego2image: np.ndarray | None = None  # (1, 3, 4) float32 into the model input
        if camera is not None:
            self.set_camera(camera.width, camera.height, camera.ego2image())

    # ---------------------------------------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        backend: str = "torch",
        device: str | None = None,
        momentum: MomentumConfig | None = None,
        camera: CameraCalibration | None = None,
        camera_width: int | None = None,
        camera_height: int | None = None,
        ego2image: np.ndarray | None = None,
        onnx_path: str | Path | None = None,
        engine_path: str | Path | None = None,
        fp16: bool = False,
        workspace_mb: int | None = None,
        intra_op_threads: int | None = None,
        expect_image_size: tuple[int, int] | None = None,
        expect_num_proposals: int | None = None,
        expect_num_poses: int | None = None,
        force_rebuild: bool = False,
    ) -> Planner:
        """Load a trained planner for one backend; every model file is validated here, at load time.

        Args:
            path: a ``drive-jepa train`` run directory or planner ``.safetensors``; for ``onnxruntime`` also an
                ``.onnx``; for ``tensorrt`` also an ``.onnx`` or a prebuilt ``.engine``.
            backend: ``"torch"`` | ``"onnxruntime"`` | ``"tensorrt"``.
            device: ``"cpu"``, ``"cuda[:N]"`` or ``None`` (torch: CUDA when available; onnxruntime: CPU).
            momentum: selection config.
            camera: calibration of the front camera; or ``camera_width``/``camera_height``/``ego2image`` (``(3, 4)``
                projection from the ego rear-axle frame into *source* image pixels).
            onnx_path: ONNX file to run (onnxruntime) or build from (tensorrt). Given explicitly, it must match the
                checkpoint (else :class:`ModelCheckError`); by default ``RUN_DIR/model.onnx`` next to the weights is
                used as a cache: exported when missing or made from other weights.
            engine_path: TensorRT engine cache (default next to the ONNX, see ``export_engine``).
            fp16, workspace_mb, force_rebuild: TensorRT build options.
            intra_op_threads: ONNX Runtime threads per operator (default: torch's thread count).
            expect_image_size, expect_num_proposals, expect_num_poses: what the caller's configuration requires of
                the model ((W, H), Np, M); a model that differs fails here.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        expect = ModelExpectation(image_size=tuple(expect_image_size) if expect_image_size else None,
                                  num_proposals=expect_num_proposals, num_poses=expect_num_poses)
        path = Path(path)
        suffix = path.suffix.lower()
        engine: Backend
        if suffix in ENGINE_SUFFIXES:
            if backend != "tensorrt":
                raise ValueError(f"{path}: a TensorRT engine can only run with backend='tensorrt'")
            engine = TensorRTBackend(path, expect=expect, device=device)
        elif suffix in ONNX_SUFFIXES:
            if backend == "torch":
                raise ValueError(f"{path}: the torch backend needs the trained checkpoint (run directory or "
                                 f".safetensors), not an ONNX file")
            engine = _load_exported(backend, path, expect, device, engine_path, fp16, workspace_mb,
                                    intra_op_threads, force_rebuild)
        elif backend == "torch":
            engine = TorchBackend.from_checkpoint(path, device=device, expect=expect)
        else:
            engine = _load_from_checkpoint(backend, path, expect, device, onnx_path, engine_path, fp16,
                                           workspace_mb, intra_op_threads, force_rebuild)
        planner = cls(engine, momentum=momentum, camera=camera)
        if camera is None and ego2image is not None:
            if camera_width is None or camera_height is None:
                raise ValueError("ego2image needs camera_width and camera_height (the source image size)")
            planner.set_camera(camera_width, camera_height, ego2image)
        elif camera is None and (camera_width is not None or camera_height is not None):
            raise ValueError("camera_width/camera_height need ego2image (or pass camera=CameraCalibration)")
        return planner

    # ---------------------------------------------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        """The loaded model's input size, Np, M, …"""
        return self.backend.info

    @property
    def geometry(self) -> ImageGeometry | None:
        return self._geometry

    @property
    def model_ego2image(self) -> np.ndarray | None:
        """``(3, 4)`` float32 projection into the model input (after crop + resize), or None before set_camera."""
        return None if self._ego2image is None else self._ego2image[0].copy()

    def set_camera(self, width: int, height: int, ego2image: np.ndarray) -> None:
        """Configure the source camera: frames of ``width × height`` pixels and their ``(3, 4)`` ego→image projection.

        The same centre crop + resize is applied to the frames and to the projection (as in training).
        """
        ego2image = np.asarray(ego2image, dtype=np.float64)
        if ego2image.shape != (3, 4) or not np.all(np.isfinite(ego2image)):
            raise ValueError(f"ego2image must be a finite (3, 4) matrix, got shape {ego2image.shape}")
        geometry = ImageGeometry.center_crop(int(width), int(height), *self.info.image_size)
        self._geometry = geometry
        self._ego2image = geometry.adjust_projection(ego2image).astype(np.float32)[None]

    def reset(self) -> None:
        """Forget the previous plan (new drive, bag loop, relocalization): the next frame has no momentum."""
        self.selector.reset()

    def warmup(self, iterations: int = 1) -> None:
        """Run the backend on a neutral input (first-call allocations, ORT/TensorRT autotuning); no state changes."""
        shapes = self.info.input_shapes()
        ego = np.zeros(shapes["ego_status"], np.float32)
        ego[0, 7 + 1] = 1.0  # "straight"
        ego2image = self._ego2image if self._ego2image is not None else np.zeros(shapes["ego2image"], np.float32)
        for _ in range(int(iterations)):
            self.backend.run(np.zeros(shapes["video"], np.float32), ego, ego2image)

    # ---------------------------------------------------------------------------------------------------------------
    def plan(self, frame_now: np.ndarray, frame_prev: np.ndarray, ego_status: EgoStatus | np.ndarray, command: int,
             stamp: float, pose: np.ndarray | None = None) -> PlanResult:
        """Plan one frame.

        Args:
            frame_now: uint8 RGB ``(H, W, 3)`` at ``stamp`` (source size of :meth:`set_camera`).
            frame_prev: uint8 RGB ``(H, W, 3)`` about 0.5 s earlier (``constants.CAMERA_FRAME_GAP``).
            ego_status: :class:`EgoStatus` or ``(7,)`` ``[x, y, heading, vx, vy, ax, ay]`` (world pose, body-frame
                velocity and acceleration), e.g. from ``odometry_to_ego_state``.
            command: driving command 0 left, 1 straight, 2 right.
            stamp: seconds (the camera stamp of ``frame_now``); consecutive calls must be in time order.
            pose: optional ``(3,)`` world pose overriding the one in ``ego_status``.
        Returns:
            :class:`PlanResult`.
        Raises:
            ValueError: bad frames / ego state / command; RuntimeError without camera calibration;
            NonFiniteOutputError: the model produced NaN/inf (the selector state is left untouched).
        """
        t0 = time.perf_counter()
        if self._geometry is None or self._ego2image is None:
            raise RuntimeError("no camera calibration: call Planner.set_camera(width, height, ego2image) first")
        stamp = float(stamp)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp}")
        state7 = _ego_state7(ego_status, pose)
        video = prepare_video(frame_prev, frame_now, self._geometry)[None]
        ego_vector = ego_status_vector(state7[3:5], state7[5:7], command)[None]
        t1 = time.perf_counter()

        proposals, logits = self.backend.run(video, ego_vector, self._ego2image)
        t2 = time.perf_counter()

        proposals = np.asarray(proposals, dtype=np.float32)[0]
        logits = np.asarray(logits, dtype=np.float32)[0]
        for name, array in (("proposals", proposals), ("scores", logits)):
            bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
            if bad:
                raise NonFiniteOutputError(
                    f"{self.backend.name} backend produced {bad} NaN/inf values in '{name}' "
                    f"{tuple(array.shape)} at stamp {stamp:.3f}; frame rejected (nothing is published)")
        scores = expit(logits.astype(np.float64))
        selection = self.selector.select(proposals, scores, state7, stamp)
        t3 = time.perf_counter()

        timings = StageTimings(preprocess_ms=(t1 - t0) * 1e3, inference_ms=(t2 - t1) * 1e3,
                               selection_ms=(t3 - t2) * 1e3)
        return PlanResult(
            stamp=stamp, ego_state=state7, proposals=proposals, score_logits=logits, scores=scores,
            comfort_scores=selection.comfort_scores, final_scores=selection.final_scores,
            selected_index=selection.selected_index, trajectory=proposals[selection.selected_index].copy(),
            valid=selection.valid, reset_reason=selection.reset_reason, interval=selection.interval,
            previous_index=selection.previous_index, timings=timings, backend=self.backend.name,
            selection=selection)


# --------------------------------------------------------------------------------------------------------------------
def _load_exported(backend: str, path: Path, expect: ModelExpectation, device: str | None,
                   engine_path: str | Path | None, fp16: bool, workspace_mb: int | None,
                   intra_op_threads: int | None, force_rebuild: bool) -> Backend:
    """Backend for an exported ONNX file (no checkpoint at hand)."""
    if backend == "onnxruntime":
        return OnnxRuntimeBackend(path, device=device, expect=expect, intra_op_threads=intra_op_threads)
    return TensorRTBackend.from_onnx(path, fp16=fp16, workspace_mb=workspace_mb, engine_path=engine_path,
                                     expect=expect, device=device, force_rebuild=force_rebuild)


def _load_from_checkpoint(backend: str, path: Path, expect: ModelExpectation, device: str | None,
                          onnx_path: str | Path | None, engine_path: str | Path | None, fp16: bool,
                          workspace_mb: int | None, intra_op_threads: int | None, force_rebuild: bool) -> Backend:
    """Backend for a checkpoint: run its ONNX (explicit and verified, or the cached export next to the weights)."""
    from drive_jepa_core.runtime.export_onnx import default_onnx_path, export_onnx

    weights, _, info = check_checkpoint(path, expect)
    full = expect.merged(ModelExpectation.from_info(info, f"checkpoint {weights}"))
    if onnx_path is not None:
        return _load_exported(backend, Path(onnx_path), full, device, engine_path, fp16, workspace_mb,
                              intra_op_threads, force_rebuild)
    cached = default_onnx_path(weights)
    if cached.exists():
        try:
            return _load_exported(backend, cached, full, device, engine_path, fp16, workspace_mb, intra_op_threads,
                                  force_rebuild)
        except ModelCheckError as exc:
            LOG.warning("cached ONNX %s is unusable (%s); re-exporting it from %s", cached, exc, weights)
    else:
        LOG.info("no ONNX next to %s; exporting %s", weights, cached)
    export_onnx(weights, cached)
    return _load_exported(backend, cached, full, device, engine_path, fp16, workspace_mb, intra_op_threads,
                          force_rebuild)


__all__ = ["EgoStatus", "NonFiniteOutputError", "PlanResult", "Planner", "StageTimings"]
