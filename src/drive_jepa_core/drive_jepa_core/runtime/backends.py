"""Inference backends: the same graph (:mod:`drive_jepa_core.runtime.graph`) run by torch, ONNX Runtime or TensorRT.

Every backend is numpy in / numpy out with batch 1::

    run(video (1, 3, 2, H, W) float32, ego_status (1, 11) float32, ego2image (1, 3, 4) float32)
        -> proposals (1, Np, M, 3) float32, score_logits (1, Np) float32

and validates its model file when it is constructed (:mod:`drive_jepa_core.runtime.model_check`), so a wrong or
broken file fails at load time, not at the first frame.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from drive_jepa_core.runtime.graph import INPUT_NAMES, OUTPUT_NAMES, InferenceGraph
from drive_jepa_core.runtime.model_check import (
    ModelCheckError,
    ModelExpectation,
    ModelInfo,
    check_checkpoint,
    check_io,
    check_onnx_file,
    read_sidecar,
    require_file,
)

LOG = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "tensorrt")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (package or device missing)."""


@runtime_checkable
class Backend(Protocol):
    """What :class:`~drive_jepa_core.runtime.planner.Planner` needs from an inference engine."""

    name: str
    info: ModelInfo
    device: str

    def run(self, video: np.ndarray, ego_status: np.ndarray,
            ego2image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(1, 3, 2, H, W)``, ``(1, 11)``, ``(1, 3, 4)`` float32 → proposals ``(1, Np, M, 3)``, logits ``(1, Np)``."""
        ...


def _check_inputs(info: ModelInfo, video: np.ndarray, ego_status: np.ndarray, ego2image: np.ndarray) -> None:
    expected = info.input_shapes()
    for name, array in zip(INPUT_NAMES, (video, ego_status, ego2image), strict=True):
        if tuple(array.shape) != expected[name]:
            raise ValueError(f"input '{name}' has shape {tuple(array.shape)}, the model expects {expected[name]}")


def resolve_device(device: str | None) -> str:
    """``None``/"auto" → "cuda" when available else "cpu"; "cuda" without CUDA raises."""
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailableError(f"device {device!r} requested but torch sees no CUDA GPU")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return device


# --------------------------------------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------------------------------------
class TorchBackend:
    """Eager PyTorch: eval mode, no autograd, fp32, CPU or CUDA."""

    name = "torch"

    def __init__(self, model: nn.Module, info: ModelInfo, device: str | None = None) -> None:
        self.device = resolve_device(device)
        self.info = info
        self.graph = InferenceGraph(model).to(self.device, torch.float32).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = None,
                        expect: ModelExpectation | None = None) -> TorchBackend:
        """Load a planner (run directory or ``.safetensors``), validated against ``expect`` before it is built."""
        from drive_jepa_core.checkpoints import CheckpointError
        from drive_jepa_core.train.checkpoint import load_planner

        weights, _, info = check_checkpoint(path, expect)
        try:
            model, _ = load_planner(weights, device="cpu")
        except CheckpointError as exc:
            raise ModelCheckError(str(exc)) from exc
        except Exception as exc:  # safetensors raises its own types for truncated data
            raise ModelCheckError(f"{weights}: weights cannot be read ({exc}); the file is truncated or corrupt") \
                from exc
        return cls(model, info, device)

    def run(self, video: np.ndarray, ego_status: np.ndarray,
            ego2image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _check_inputs(self.info, video, ego_status, ego2image)
        with torch.inference_mode():
            args = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device)
                    for a in (video, ego_status, ego2image))
            proposals, scores = self.graph(*args)
            return proposals.float().cpu().numpy(), scores.float().cpu().numpy()


# --------------------------------------------------------------------------------------------------------------------
# ONNX Runtime
# --------------------------------------------------------------------------------------------------------------------
def make_ort_session(model: str | Path | bytes, device: str = "cpu", intra_op_threads: int | None = None) -> Any:
    """An ONNX Runtime session tuned for single-frame latency.

    All graph optimizations (constant folding, LayerNorm/GELU/MatMul+Add fusions), sequential execution (the graph
    is one chain; parallel mode only adds scheduling cost), ``intra_op_threads`` threads per operator (default: the
    process' torch thread count, so torch and ORT are compared with the same parallelism).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(intra_op_threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the static graph makes ORT warn about unused initializers
    if device.startswith("cuda"):
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError(
                f"ONNX Runtime has no CUDAExecutionProvider here (providers: {available}); install "
                "onnxruntime-gpu or use device='cpu'")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=options, providers=providers)


class OnnxRuntimeBackend:
    """ONNX Runtime on CPU or CUDA, running the file written by ``drive-jepa export onnx``."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: str | None = None, expect: ModelExpectation | None = None,
                 intra_op_threads: int | None = None) -> None:
        path = require_file(path, "ONNX model")
        self.path = path
        self.device = "cpu" if device in (None, "", "auto", "cpu") else str(device)
        try:
            self.session = make_ort_session(path, self.device, intra_op_threads)
        except BackendUnavailableError:
            raise
        except Exception as exc:  # InvalidProtobuf, Fail, ... (ORT's pybind exception types)
            raise ModelCheckError(f"{path}: cannot be loaded as an ONNX model ({type(exc).__name__}: "
                                  f"{str(exc).strip()[:300]}); the file is truncated or corrupt — re-export it "
                                  f"with `drive-jepa export onnx`") from exc
        inputs = {i.name: tuple(i.shape) for i in self.session.get_inputs()}
        outputs = {o.name: tuple(o.shape) for o in self.session.get_outputs()}
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = check_io(path, inputs, outputs, metadata, expect)
        self._input_names = list(INPUT_NAMES)
        self._output_names = list(OUTPUT_NAMES)

    def run(self, video: np.ndarray, ego_status: np.ndarray,
            ego2image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _check_inputs(self.info, video, ego_status, ego2image)
        feeds = {name: np.ascontiguousarray(a, dtype=np.float32)
                 for name, a in zip(self._input_names, (video, ego_status, ego2image), strict=True)}
        proposals, scores = self.session.run(self._output_names, feeds)
        return proposals, scores


# --------------------------------------------------------------------------------------------------------------------
# TensorRT
# --------------------------------------------------------------------------------------------------------------------
def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or a clear :class:`BackendUnavailableError`."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "the TensorRT backend needs the `tensorrt` Python package and an NVIDIA GPU (pip install tensorrt, on a "
            f"machine with CUDA); it is not importable here: {exc}") from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError("the TensorRT backend needs a CUDA GPU visible to torch (used for the I/O "
                                      "buffers); none is available")
    return trt


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.bool: torch.bool}
    if dtype not in table:
        raise ModelCheckError(f"engine tensor dtype {dtype} is not supported by the runtime")
    return table[dtype]


class TensorRTBackend:
    """A serialized TensorRT engine executed with ``execute_async_v3`` on torch-allocated CUDA buffers.

    Use :meth:`from_onnx` to get an engine from the exported ONNX with Autoware / Isaac ROS caching (build once,
    reuse while the ONNX, TensorRT version, GPU and precision are unchanged, rebuild otherwise).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, expect: ModelExpectation | None = None,
                 device: str | None = None) -> None:
        trt = import_tensorrt()
        from drive_jepa_core.runtime.export_engine import build_environment, sidecar_path

        engine_path = require_file(engine_path, "TensorRT engine")
        self.path = engine_path
        sidecar = read_sidecar(sidecar_path(engine_path))
        if sidecar is not None:  # an engine only runs on the TensorRT version and GPU that built it
            environment = build_environment()
            stale = [f"{k}: built with {sidecar.get(k)!r}, running on {environment[k]!r}"
                     for k in ("tensorrt_version", "gpu_name") if k in sidecar and sidecar[k] != environment[k]]
            if stale:
                raise ModelCheckError(f"{engine_path}: engine does not fit this machine ({'; '.join(stale)}); rebuild "
                                      f"it from the ONNX (`drive-jepa export engine --onnx ...`)")
        self.device = resolve_device(device or "cuda")
        torch.cuda.set_device(torch.device(self.device))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ModelCheckError(f"{engine_path}: TensorRT could not deserialize the engine (truncated, or built by "
                                  f"another TensorRT version / GPU); delete it to rebuild from the ONNX")
        self.context = self.engine.create_execution_context()
        inputs: dict[str, tuple[int, ...]] = {}
        outputs: dict[str, tuple[int, ...]] = {}
        self._buffers: dict[str, torch.Tensor] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs)[name] = shape
            if all(d > 0 for d in shape):
                dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
                self._buffers[name] = torch.empty(shape, dtype=dtype, device=self.device)
        metadata = {k: str(v) for k, v in (sidecar or {}).get("model", {}).items()}
        self.info = check_io(engine_path, inputs, outputs, metadata, expect)
        for name, buffer in self._buffers.items():
            self.context.set_tensor_address(name, buffer.data_ptr())
        self._stream = torch.cuda.Stream(device=self.device)

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, fp16: bool = False, workspace_mb: int | None = None,
                  engine_path: str | Path | None = None, expect: ModelExpectation | None = None,
                  device: str | None = None, force_rebuild: bool = False) -> TensorRTBackend:
        """Engine for ``onnx_path`` from the cache next to it (validated by its sidecar), built when needed."""
        from drive_jepa_core.runtime.export_engine import DEFAULT_WORKSPACE_MB, ensure_engine

        import_tensorrt()
        check_onnx_file(onnx_path, expect)  # a wrong ONNX fails before a minutes-long engine build
        engine = ensure_engine(onnx_path, fp16=fp16, workspace_mb=workspace_mb or DEFAULT_WORKSPACE_MB,
                               engine_path=engine_path, force_rebuild=force_rebuild)
        return cls(engine, expect=expect, device=device)

    def run(self, video: np.ndarray, ego_status: np.ndarray,
            ego2image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _check_inputs(self.info, video, ego_status, ego2image)
        with torch.cuda.stream(self._stream):
            for name, array in zip(INPUT_NAMES, (video, ego_status, ego2image), strict=True):
                buffer = self._buffers[name]
                buffer.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(buffer.dtype), non_blocking=False)
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"{self.path}: TensorRT execution failed")
            outputs = [self._buffers[name].float().cpu() for name in OUTPUT_NAMES]
        self._stream.synchronize()
        return outputs[0].numpy(), outputs[1].numpy()


__all__ = [
    "BACKENDS", "Backend", "BackendUnavailableError", "OnnxRuntimeBackend", "TensorRTBackend", "TorchBackend",
    "import_tensorrt", "make_ort_session", "resolve_device",
]
