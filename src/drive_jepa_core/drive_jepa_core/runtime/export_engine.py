"""``drive-jepa export engine``: a TensorRT engine from the exported ONNX, cached next to it.

Engine caching follows Autoware / Isaac ROS (ros2_conventions.md B2): an engine is only valid for the ONNX it was built
from, the TensorRT version and the GPU that built it, and its precision. Every engine gets a JSON sidecar recording
those; on load the sidecar is compared with the current ONNX sha256 / TensorRT version / GPU name / precision and the
engine is rebuilt on any mismatch (or when the sidecar is missing or unreadable — e.g. a build that crashed after
writing part of the engine, since the sidecar is written last).

Layout (default)::

    model.onnx
    model.fp32.engine        serialized engine  (model.fp16.engine with --fp16)
    model.fp32.engine.json   sidecar: onnx_sha256, tensorrt_version, gpu_name, precision, workspace_mb, model info
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from drive_jepa_core.runtime.model_check import (
    ModelCheckError,
    file_sha256,
    read_sidecar,
    require_file,
)

LOG = logging.getLogger(__name__)

ENGINE_FORMAT = "drive_jepa_engine"
# Builder workspace. Isaac ROS' TensorRTNode defaults to 64 MiB (ros2_conventions.md B2), too little for the tactics
# of ViT-L's 512-token attention; 2 GiB leaves TensorRT its fastest kernels on any vehicle GPU.
DEFAULT_WORKSPACE_MB = 2048
# Sidecar fields that must equal the current environment for a cached engine to be reused.
CACHE_KEYS = ("onnx_sha256", "tensorrt_version", "gpu_name", "precision")


def precision_name(fp16: bool) -> str:
    return "fp16" if fp16 else "fp32"


def default_engine_path(onnx_path: str | Path, fp16: bool = False) -> Path:
    """``model.onnx`` → ``model.fp32.engine`` (or ``.fp16.engine``) in the same directory."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.{precision_name(fp16)}.engine")


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def build_environment() -> dict[str, str]:
    """TensorRT version and GPU of this process (what an engine is tied to)."""
    import torch

    from drive_jepa_core.runtime.backends import import_tensorrt

    trt = import_tensorrt()
    major, minor = torch.cuda.get_device_capability()
    return {"tensorrt_version": str(trt.__version__), "gpu_name": torch.cuda.get_device_name(),
            "compute_capability": f"{major}.{minor}"}


def expected_sidecar(onnx_path: str | Path, fp16: bool, environment: dict[str, str]) -> dict[str, Any]:
    """The cache-relevant fields an engine of ``onnx_path`` built here must carry."""
    return {"onnx_sha256": file_sha256(onnx_path), "precision": precision_name(fp16), **environment}


def cache_mismatch(engine_path: str | Path, expected: dict[str, Any]) -> str | None:
    """Why the cached engine at ``engine_path`` cannot be reused (``None`` when it can).

    Args:
        engine_path: the engine file; its sidecar is ``<engine>.json``.
        expected: :func:`expected_sidecar` of the current ONNX and environment.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file() or engine_path.stat().st_size == 0:
        return f"no engine at {engine_path}"
    sidecar = read_sidecar(sidecar_path(engine_path))
    if sidecar is None:
        return f"sidecar {sidecar_path(engine_path)} is missing or unreadable"
    if sidecar.get("format") != ENGINE_FORMAT:
        return f"sidecar {sidecar_path(engine_path)} has format {sidecar.get('format')!r}, not {ENGINE_FORMAT!r}"
    if sidecar.get("engine_bytes") not in (None, engine_path.stat().st_size):
        return f"engine is {engine_path.stat().st_size} bytes but the sidecar recorded {sidecar['engine_bytes']}"
    diffs = [f"{key}: cached {sidecar.get(key)!r} vs now {expected[key]!r}"
             for key in CACHE_KEYS if key in expected and sidecar.get(key) != expected[key]]
    return "; ".join(diffs) if diffs else None


def make_sidecar(onnx_path: str | Path, fp16: bool, environment: dict[str, str], metadata: dict[str, str],
                 engine_bytes: int, workspace_mb: int, build_seconds: float = 0.0) -> dict[str, Any]:
    """The sidecar of an engine built from ``onnx_path`` in ``environment`` (:func:`build_environment`)."""
    return {
        "format": ENGINE_FORMAT,
        "onnx_file": Path(onnx_path).name,
        **expected_sidecar(onnx_path, fp16, environment),
        "workspace_mb": int(workspace_mb),
        "engine_bytes": int(engine_bytes),
        "build_seconds": round(float(build_seconds), 3),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": dict(metadata),
    }


def write_sidecar(engine_path: str | Path, sidecar: dict[str, Any]) -> Path:
    """Write ``<engine>.json`` atomically."""
    side = sidecar_path(engine_path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, side)
    return side


def onnx_model_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The runtime metadata (:meth:`ModelInfo.to_metadata`) stored in an exported ONNX file."""
    import onnx

    try:
        proto = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise ModelCheckError(f"{onnx_path}: not a readable ONNX model ({exc}); the file is truncated or corrupt") \
            from exc
    return {p.key: p.value for p in proto.metadata_props}


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, fp16: bool = False,
                 workspace_mb: int = DEFAULT_WORKSPACE_MB) -> Path:
    """Parse ``onnx_path`` and build + serialize a TensorRT engine, then write its sidecar.

    Raises:
        ModelCheckError: TensorRT cannot parse the ONNX (the parser's errors are listed).
        BackendUnavailableError: no tensorrt / GPU; fp16 asked of a TensorRT without the FP16 builder flag.
    """
    from drive_jepa_core.runtime.backends import BackendUnavailableError, import_tensorrt

    trt = import_tensorrt()
    onnx_path = require_file(onnx_path, "ONNX model")
    engine_path = Path(engine_path) if engine_path is not None else default_engine_path(onnx_path, fp16)
    if workspace_mb <= 0:
        raise ValueError(f"workspace_mb must be positive, got {workspace_mb}")
    metadata = onnx_model_metadata(onnx_path)
    environment = build_environment()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if int(str(trt.__version__).split(".")[0]) < 10:  # TensorRT 8.x needs explicit batch; 10+ is always explicit
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file, so external weight files are found
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelCheckError(f"{onnx_path}: TensorRT cannot parse the ONNX model: " + " | ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16:
        # TensorRT 10 has the weak-typing FP16 flag; TensorRT 11 removed it (strongly typed networks only), so an fp16
        # engine there needs an fp16 ONNX (ModelOpt AutoCast) — say so instead of silently building fp32.
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} has no FP16 builder flag (strong typing only); convert the ONNX to mixed "
                "precision first (e.g. NVIDIA ModelOpt AutoCast) and build it without --fp16")
        config.set_flag(trt.BuilderFlag.FP16)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    data = bytes(serialized)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, engine_path)
    sidecar = make_sidecar(onnx_path, fp16, environment, metadata, engine_bytes=len(data),
                           workspace_mb=workspace_mb, build_seconds=time.perf_counter() - started)
    write_sidecar(engine_path, sidecar)  # last: an engine without a valid sidecar is never reused
    LOG.info("built TensorRT engine %s (%s, %.1f MB) in %.1f s", engine_path, sidecar["precision"], len(data) / 1e6,
             sidecar["build_seconds"])
    return engine_path


def ensure_engine(onnx_path: str | Path, fp16: bool = False, workspace_mb: int = DEFAULT_WORKSPACE_MB,
                  engine_path: str | Path | None = None, force_rebuild: bool = False) -> Path:
    """The cached engine of ``onnx_path`` if its sidecar matches the ONNX and this environment, else a fresh build.

    Returns:
        The engine path.
    """
    onnx_path = require_file(onnx_path, "ONNX model")
    engine_path = Path(engine_path) if engine_path is not None else default_engine_path(onnx_path, fp16)
    reason = "rebuild forced" if force_rebuild else cache_mismatch(
        engine_path, expected_sidecar(onnx_path, fp16, build_environment()))
    if reason is None:
        LOG.info("reusing cached TensorRT engine %s", engine_path)
        return engine_path
    LOG.warning("building TensorRT engine %s: %s", engine_path, reason)
    return build_engine(onnx_path, engine_path, fp16=fp16, workspace_mb=workspace_mb)


__all__ = [
    "CACHE_KEYS", "DEFAULT_WORKSPACE_MB", "ENGINE_FORMAT", "build_engine", "build_environment", "cache_mismatch",
    "default_engine_path", "ensure_engine", "expected_sidecar", "make_sidecar", "onnx_model_metadata",
    "precision_name", "sidecar_path", "write_sidecar",
]
