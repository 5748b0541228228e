"""Load-time failures: a missing, truncated or mismatched model fails in Planner.from_checkpoint with a message
naming the file and what differs — never at the first frame."""

from __future__ import annotations

import shutil

import pytest
from _runtime_models import camera, ego_state, frames, save_tiny_planner

from drive_jepa_core.runtime import ModelCheckError, ModelExpectation, ModelInfo, Planner
from drive_jepa_core.runtime.export_onnx import default_onnx_path, export_onnx
from drive_jepa_core.runtime.model_check import check_io, check_onnx_file, file_sha256


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Two checkpoints (Np = 8 and Np = 6) and the ONNX of the first."""
    root = tmp_path_factory.mktemp("runs")
    a = save_tiny_planner(root / "a", seed=0)
    b = save_tiny_planner(root / "b", seed=1, num_proposals=6)
    onnx_a = export_onnx(a, root / "a.onnx", strict=True).path
    return a, b, onnx_a


def test_missing_files_fail_at_load(tmp_path) -> None:
    with pytest.raises(ModelCheckError, match=r"nowhere.*do not exist"):
        Planner.from_checkpoint(tmp_path / "nowhere")
    missing = tmp_path / "model.onnx"
    with pytest.raises(ModelCheckError, match=rf"{missing}: ONNX model does not exist"):
        Planner.from_checkpoint(missing, backend="onnxruntime")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelCheckError, match=rf"{empty}: ONNX model is empty"):
        Planner.from_checkpoint(empty, backend="onnxruntime")


def test_truncated_onnx_fails_at_load_naming_the_file(runs, tmp_path) -> None:
    _, _, onnx_a = runs
    data = onnx_a.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelCheckError, match=rf"{truncated}: cannot be loaded as an ONNX model.*truncated or corrupt"):
        Planner.from_checkpoint(truncated, backend="onnxruntime")
    with pytest.raises(ModelCheckError, match=rf"{truncated}: cannot be loaded as an ONNX model.*truncated or corrupt"):
        check_onnx_file(truncated)  # the pre-check before a TensorRT build


def test_truncated_checkpoint_fails_at_load_naming_the_file(runs, tmp_path) -> None:
    a, _, _ = runs
    data = (a / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelCheckError, match=str(tmp_path / "model.safetensors")):
        Planner.from_checkpoint(tmp_path, backend="torch")


def test_wrong_input_size_fails_at_load(runs) -> None:
    a, _, onnx_a = runs
    for path, backend in ((a, "torch"), (onnx_a, "onnxruntime")):
        with pytest.raises(ModelCheckError, match=r"input size is 128x64 \(W x H\) but 512x256 is expected") as err:
            Planner.from_checkpoint(path, backend=backend, expect_image_size=(512, 256))
        assert str(path) in str(err.value)


def test_wrong_number_of_proposals_fails_at_load(runs) -> None:
    a, b, onnx_a = runs
    with pytest.raises(ModelCheckError, match=rf"{onnx_a}: .*Np is 8 but 32 is expected"):
        Planner.from_checkpoint(onnx_a, backend="onnxruntime", expect_num_proposals=32)
    assert check_onnx_file(onnx_a).num_proposals == 8
    with pytest.raises(ModelCheckError, match=rf"{onnx_a}: .*Np is 8 but 32 is expected"):
        check_onnx_file(onnx_a, ModelExpectation(num_proposals=32))
    with pytest.raises(ModelCheckError, match=r"poses per proposal M is 8 but 6 is expected"):
        Planner.from_checkpoint(a, expect_num_poses=6)
    # the ONNX of checkpoint a given for checkpoint b (Np = 6): both the size and the source checkpoint differ
    with pytest.raises(ModelCheckError, match=rf"{onnx_a}: model does not match checkpoint .*b.*Np is 8 but 6") as err:
        Planner.from_checkpoint(b, backend="onnxruntime", onnx_path=onnx_a)
    assert "re-export it" in str(err.value)


def test_stale_cached_onnx_is_reexported(runs, tmp_path) -> None:
    _, b, onnx_a = runs
    run = tmp_path / "run"
    shutil.copytree(b, run)
    cached = default_onnx_path(run / "model.safetensors")
    shutil.copy(onnx_a, cached)  # made from another checkpoint: the cache is invalid
    planner = Planner.from_checkpoint(run, backend="onnxruntime", camera=camera())
    assert planner.info.num_proposals == 6
    assert planner.info.checkpoint_sha256 == file_sha256(run / "model.safetensors")
    prev, now = frames(seed=0)
    assert planner.plan(now, prev, ego_state(), 1, 0.0).proposals.shape == (6, 8, 3)


def test_check_io_rejects_dynamic_and_inconsistent_graphs() -> None:
    info = ModelInfo(image_width=128, image_height=64, num_proposals=8, num_poses=8)
    outputs = info.output_shapes()
    dynamic = dict(info.input_shapes(), video=("batch", 3, 2, 64, 128))
    with pytest.raises(ModelCheckError, match=r"m.onnx: tensor 'video' has dynamic"):
        check_io("m.onnx", dynamic, outputs, {})
    with pytest.raises(ModelCheckError, match=r"inputs are \['images'"):
        check_io("m.onnx", {"images": (1, 3, 2, 64, 128)}, outputs, {})
    wrong_scores = dict(outputs, scores=(1, 7))
    with pytest.raises(ModelCheckError, match=r"'scores' is \(1, 7\), expected \(1, 8\)"):
        check_io("m.onnx", info.input_shapes(), wrong_scores, {})
    with pytest.raises(ModelCheckError, match=r"metadata num_proposals=32 but the graph has 8"):
        check_io("m.onnx", info.input_shapes(), outputs, {"num_proposals": "32"})
    assert check_io("m.onnx", info.input_shapes(), outputs, info.to_metadata()) == info
    with pytest.raises(ModelCheckError, match=r"num_proposals is 8 in a but 6 in b"):
        ModelExpectation(num_proposals=8, source="a").merged(ModelExpectation(num_proposals=6, source="b"))
