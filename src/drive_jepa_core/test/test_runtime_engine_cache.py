"""TensorRT engine cache validation (Autoware / Isaac ROS behaviour), on plain files: an engine is reused only while
its sidecar matches the ONNX sha256, TensorRT version, GPU and precision. Runs without TensorRT."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from drive_jepa_core.runtime import BackendUnavailableError, Planner
from drive_jepa_core.runtime.export_engine import (
    cache_mismatch,
    default_engine_path,
    expected_sidecar,
    make_sidecar,
    sidecar_path,
    write_sidecar,
)

ENV = {"tensorrt_version": "10.9.0.34", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}


@pytest.fixture()
def cached(tmp_path):
    """A model.onnx and a 'built' fp32 engine with a matching sidecar."""
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx graph v1")
    engine = default_engine_path(onnx_path, fp16=False)
    engine.write_bytes(b"\x01" * 64)
    write_sidecar(engine, make_sidecar(onnx_path, False, ENV, {"num_proposals": "8"}, engine_bytes=64,
                                       workspace_mb=2048))
    return onnx_path, engine


def test_matching_sidecar_is_reused(cached) -> None:
    onnx_path, engine = cached
    assert engine.name == "model.fp32.engine" and sidecar_path(engine).name == "model.fp32.engine.json"
    assert cache_mismatch(engine, expected_sidecar(onnx_path, False, ENV)) is None


@pytest.mark.parametrize(("field", "value"), [("tensorrt_version", "10.12.0"), ("gpu_name", "NVIDIA Jetson AGX Orin")])
def test_other_tensorrt_or_gpu_forces_a_rebuild(cached, field, value) -> None:
    onnx_path, engine = cached
    reason = cache_mismatch(engine, expected_sidecar(onnx_path, False, dict(ENV, **{field: value})))
    assert reason is not None and field in reason and value in reason


def test_changed_onnx_or_precision_forces_a_rebuild(cached) -> None:
    onnx_path, engine = cached
    assert "precision: cached 'fp32' vs now 'fp16'" in cache_mismatch(engine, expected_sidecar(onnx_path, True, ENV))
    onnx_path.write_bytes(b"onnx graph v2")  # re-exported
    assert "onnx_sha256" in cache_mismatch(engine, expected_sidecar(onnx_path, False, ENV))


def test_missing_sidecar_or_truncated_engine_forces_a_rebuild(cached) -> None:
    onnx_path, engine = cached
    expected = expected_sidecar(onnx_path, False, ENV)
    engine.write_bytes(b"\x01" * 10)  # an interrupted copy
    assert "engine is 10 bytes but the sidecar recorded 64" in cache_mismatch(engine, expected)
    sidecar_path(engine).unlink()
    assert "missing or unreadable" in cache_mismatch(engine, expected)
    engine.unlink()
    assert "no engine at" in cache_mismatch(engine, expected)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available(),
                    reason="TensorRT and a GPU are present: the backend is available")
def test_tensorrt_backend_without_tensorrt_says_why(tmp_path) -> None:
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"not used")
    with pytest.raises(BackendUnavailableError, match="TensorRT backend needs"):
        Planner.from_checkpoint(onnx_path, backend="tensorrt")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available(),
                    reason="TensorRT and a GPU are present: the command would build an engine")
def test_export_engine_command_without_tensorrt_exits_with_the_reason(tmp_path, capsys) -> None:
    import argparse

    from drive_jepa_core.runtime import cli as runtime_cli

    parser = argparse.ArgumentParser(prog="drive-jepa")
    runtime_cli.register(parser.add_subparsers(dest="command"))
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"graph")
    args = parser.parse_args(["export", "engine", "--onnx", str(onnx_path), "--fp16", "--workspace-mb", "512"])
    assert args.func(args) == 1
    assert "TensorRT backend needs" in capsys.readouterr().err
