"""TensorRT backend on a GPU: engine build from the exported ONNX, sidecar, reuse, rebuild on mismatch, parity with
torch through the Planner. Skips (with the reason) without the tensorrt package or a CUDA GPU."""

from __future__ import annotations

import json

import pytest
import torch

trt = pytest.importorskip("tensorrt", reason="TensorRT tests need the `tensorrt` Python package (and an NVIDIA GPU)")
if not torch.cuda.is_available():
    pytest.skip("TensorRT tests need a CUDA GPU; torch sees none", allow_module_level=True)

from _runtime_models import camera, ego_state, frames, save_tiny_planner  # noqa: E402

from drive_jepa_core.runtime import ModelCheckError, Planner  # noqa: E402
from drive_jepa_core.runtime.export_engine import ensure_engine, sidecar_path  # noqa: E402
from drive_jepa_core.runtime.export_onnx import export_onnx, relative_error  # noqa: E402

pytestmark = pytest.mark.gpu
TRT_FP32_TOLERANCE = 1e-3  # TF32 tactics are allowed in fp32 builds; relative to torch fp32 on CPU


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    run = save_tiny_planner(tmp_path_factory.mktemp("run"))
    return run, export_onnx(run, run / "model.onnx", strict=True).path


def test_engine_is_built_cached_and_rebuilt_on_mismatch(exported) -> None:
    _, onnx_path = exported
    engine = ensure_engine(onnx_path, fp16=False, workspace_mb=256)
    sidecar = json.loads(sidecar_path(engine).read_text())
    assert sidecar["tensorrt_version"] == trt.__version__
    assert sidecar["gpu_name"] == torch.cuda.get_device_name() and sidecar["precision"] == "fp32"
    assert sidecar["model"]["num_proposals"] == "8" and sidecar["engine_bytes"] == engine.stat().st_size
    built = engine.stat().st_mtime_ns
    assert ensure_engine(onnx_path, fp16=False, workspace_mb=256).stat().st_mtime_ns == built  # reused

    sidecar["tensorrt_version"] = "0.0.0"  # as if built by another TensorRT
    sidecar_path(engine).write_text(json.dumps(sidecar))
    ensure_engine(onnx_path, fp16=False, workspace_mb=256)
    assert json.loads(sidecar_path(engine).read_text())["tensorrt_version"] == trt.__version__  # rebuilt


def test_tensorrt_planner_matches_torch(exported) -> None:
    run, onnx_path = exported
    torch_planner = Planner.from_checkpoint(run, backend="torch", device="cpu", camera=camera())
    trt_planner = Planner.from_checkpoint(run, backend="tensorrt", onnx_path=onnx_path, camera=camera(),
                                          workspace_mb=256)
    prev, now = frames(seed=1)
    a = torch_planner.plan(now, prev, ego_state(), 1, 0.0)
    b = trt_planner.plan(now, prev, ego_state(), 1, 0.0)
    assert b.backend == "tensorrt"
    assert relative_error(b.proposals, a.proposals) <= TRT_FP32_TOLERANCE
    assert relative_error(b.score_logits, a.score_logits) <= TRT_FP32_TOLERANCE


def test_engine_with_wrong_np_fails_at_load(exported) -> None:
    _, onnx_path = exported
    engine = ensure_engine(onnx_path, fp16=False, workspace_mb=256)
    with pytest.raises(ModelCheckError, match=rf"{engine}: .*Np is 8 but 32 is expected"):
        Planner.from_checkpoint(engine, backend="tensorrt", expect_num_proposals=32)
