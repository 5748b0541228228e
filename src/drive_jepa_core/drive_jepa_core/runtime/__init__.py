"""Vehicle inference runtime: one numpy-in / numpy-out planning path over three backends (torch, ONNX Runtime,
TensorRT), ONNX / engine export, load-time model validation and momentum-aware selection.

Entry point: :class:`drive_jepa_core.runtime.planner.Planner` (``Planner.from_checkpoint(...).plan(...)``).
"""

from drive_jepa_core.runtime.backends import (
    Backend,
    BackendUnavailableError,
    OnnxRuntimeBackend,
    TensorRTBackend,
    TorchBackend,
)
from drive_jepa_core.runtime.model_check import ModelCheckError, ModelExpectation, ModelInfo
from drive_jepa_core.runtime.planner import EgoStatus, NonFiniteOutputError, Planner, PlanResult, StageTimings

__all__ = [
    "Backend", "BackendUnavailableError", "EgoStatus", "ModelCheckError", "ModelExpectation", "ModelInfo",
    "NonFiniteOutputError", "OnnxRuntimeBackend", "PlanResult", "Planner", "StageTimings", "TensorRTBackend",
    "TorchBackend",
]
