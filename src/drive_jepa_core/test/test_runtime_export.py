"""``drive-jepa export onnx``: one static graph with named I/O and self-describing metadata, verified at export."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
from _runtime_models import IMAGE_SIZE, save_tiny_planner

from drive_jepa_core.runtime import cli as runtime_cli
from drive_jepa_core.runtime.export_onnx import (
    ExportVerificationError,
    export_module_onnx,
    random_inputs,
    relative_error,
    verify_onnx,
)
from drive_jepa_core.runtime.graph import InferenceGraph
from drive_jepa_core.runtime.model_check import check_checkpoint, file_sha256
from drive_jepa_core.train.checkpoint import load_planner


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_planner(tmp_path_factory.mktemp("run"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drive-jepa")
    runtime_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_exports_one_static_graph_with_metadata(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "model.onnx"
    args = _parser().parse_args(["export", "onnx", "--model", str(run_dir), "--out", str(out), "--strict"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["onnx"] == str(out) and max(report["relative_errors"].values()) <= 1e-4

    proto = onnx.load(str(out))
    initializers = {i.name for i in proto.graph.initializer}
    inputs = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in proto.graph.input if i.name not in initializers}
    outputs = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    w, h = IMAGE_SIZE
    assert inputs == {"video": [1, 3, 2, h, w], "ego_status": [1, 11], "ego2image": [1, 3, 4]}
    assert outputs == {"proposals": [1, 8, 8, 3], "scores": [1, 8]}
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["format"] == "drive_jepa_runtime"
    assert (meta["image_width"], meta["image_height"], meta["num_proposals"], meta["num_poses"]) == ("128", "64", "8",
                                                                                                      "8")
    assert meta["checkpoint_sha256"] == file_sha256(run_dir / "model.safetensors")
    # static shapes: the RoPE position math folds away, no integer Einsum survives (vjepa2.md A6)
    assert "Einsum" not in {n.op_type for n in proto.graph.node}


def test_failed_verification_leaves_no_file(run_dir, tmp_path) -> None:
    model, _ = load_planner(run_dir)
    _, _, info = check_checkpoint(run_dir)
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportVerificationError, match="the export was discarded"):
        export_module_onnx(model, info, out, tolerance=0.0, strict=True)  # no fp32 graph matches to 0
    assert not out.exists() and not list(tmp_path.iterdir())


def test_verification_catches_a_graph_that_computes_something_else(run_dir, tmp_path) -> None:
    model, _ = load_planner(run_dir)
    _, _, info = check_checkpoint(run_dir)
    report = export_module_onnx(model, info, tmp_path / "a.onnx", strict=True)
    other = save_tiny_planner(tmp_path / "other", seed=5)
    wrong, _ = load_planner(other)  # same architecture, other weights: even the fp64 fallback must reject it
    with pytest.raises(ExportVerificationError, match="less faithful than torch fp32"):
        verify_onnx(InferenceGraph(wrong).eval(), report.path.read_bytes(), info)


def test_random_inputs_are_plausible() -> None:
    from drive_jepa_core.runtime.model_check import ModelInfo

    info = ModelInfo(image_width=128, image_height=64, num_proposals=8, num_poses=8)
    video, ego, ego2image = random_inputs(info, seed=3)
    assert video.shape == (1, 3, 2, 64, 128) and video.dtype == np.float32
    assert np.abs(np.diff(video, axis=-1)).mean() < 0.2 * video.std()  # smooth, unlike white noise
    assert ego[0, 7:].sum() == 1.0 and ego[0, :3].tolist() == [0.0, 0.0, 0.0]
    # a point 20 m ahead on the ground projects inside the image
    u, v, s = ego2image[0] @ np.array([20.0, 0.0, 0.0, 1.0])
    assert s > 0 and 0 <= u / s < 128 and 0 <= v / s < 64
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-6])) == pytest.approx(5e-7, rel=1e-3)
    assert relative_error(np.array([np.nan]), np.array([1.0])) == float("inf")
