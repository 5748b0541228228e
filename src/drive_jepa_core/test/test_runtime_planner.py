"""The streaming Planner: torch = direct model forward, ONNX Runtime = torch (≤ 1e-4), momentum plugged in,
NaN rejection, bad-input errors. Real tiny planners (random weights, fixed seed) saved in the trained-model format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _runtime_models import IMAGE_SIZE, SOURCE_SIZE, camera, ego_state, frames, save_tiny_planner

from drive_jepa_core.preprocess import ImageGeometry, ego_status_vector, prepare_video
from drive_jepa_core.runtime import EgoStatus, NonFiniteOutputError, Planner, TorchBackend
from drive_jepa_core.runtime.export_onnx import export_onnx, relative_error
from drive_jepa_core.runtime.model_check import check_checkpoint
from drive_jepa_core.selection import MomentumConfig, ResetReason
from drive_jepa_core.train.checkpoint import load_planner

TOLERANCE = 1e-4  # ONNX Runtime vs torch, relative, fp32 (issue)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory):
    return save_tiny_planner(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def onnx_file(run_dir):
    return export_onnx(run_dir, run_dir / "exported.onnx", strict=True).path


def test_torch_planner_equals_direct_model_forward(run_dir) -> None:
    planner = Planner.from_checkpoint(run_dir, backend="torch", device="cpu", camera=camera())
    prev, now = frames(seed=1)
    result = planner.plan(now, prev, ego_state(speed=6.0), command=2, stamp=10.0)

    model, _ = load_planner(run_dir)
    geometry = ImageGeometry.center_crop(*SOURCE_SIZE, *IMAGE_SIZE)
    video = torch.from_numpy(prepare_video(prev, now, geometry))[None]
    ego = torch.from_numpy(ego_status_vector([6.0, 0.0], [0.0, 0.0], 2))[None]
    ego2image = torch.from_numpy(geometry.adjust_projection(camera().ego2image()).astype(np.float32))[None]
    with torch.no_grad():
        out = model(video, ego, ego2image)
    np.testing.assert_array_equal(result.proposals, out["proposals"][0].numpy())
    np.testing.assert_array_equal(result.score_logits, out["scores"][0].numpy())
    np.testing.assert_allclose(result.scores, 1.0 / (1.0 + np.exp(-out["scores"][0].double().numpy())), rtol=1e-12)
    assert result.proposals.shape == (8, 8, 3) and result.proposals.dtype == np.float32
    # first frame: no momentum, so the selection is the argmax of the learned score, as the model's own trajectory
    assert result.selected_index == int(out["scores"][0].argmax())
    np.testing.assert_array_equal(result.trajectory, out["trajectory"][0].numpy())
    assert result.backend == "torch" and planner.info.image_size == IMAGE_SIZE
    t = result.timings
    assert min(t.preprocess_ms, t.inference_ms, t.selection_ms) > 0.0
    assert t.total_ms == pytest.approx(t.preprocess_ms + t.inference_ms + t.selection_ms)


def test_onnxruntime_matches_torch_through_the_planner(run_dir, onnx_file) -> None:
    torch_planner = Planner.from_checkpoint(run_dir, backend="torch", device="cpu", camera=camera())
    ort_planner = Planner.from_checkpoint(run_dir, backend="onnxruntime", onnx_path=onnx_file, camera=camera())
    assert ort_planner.backend.name == "onnxruntime"
    for k, (prev, now) in enumerate([frames(seed=2), frames(seed=3), frames(seed=4)]):
        args = (now, prev, ego_state(x=4.0 * k, speed=8.0), 1, 0.5 * k)
        a, b = torch_planner.plan(*args), ort_planner.plan(*args)
        assert relative_error(b.proposals, a.proposals) <= TOLERANCE
        assert relative_error(b.score_logits, a.score_logits) <= TOLERANCE
        assert b.selected_index == a.selected_index
        assert (b.valid, b.reset_reason) == (a.valid, a.reset_reason)
        np.testing.assert_allclose(b.final_scores, a.final_scores, atol=1e-5)


def test_onnx_file_alone_runs_without_the_checkpoint(onnx_file) -> None:
    planner = Planner.from_checkpoint(onnx_file, backend="onnxruntime", camera=camera())
    assert planner.info.num_proposals == 8 and planner.info.image_size == IMAGE_SIZE
    prev, now = frames(seed=5)
    assert planner.plan(now, prev, ego_state(), 1, 0.0).proposals.shape == (8, 8, 3)


def test_momentum_selection_first_frame_then_half_a_second_later(run_dir) -> None:
    planner = Planner.from_checkpoint(run_dir, camera=camera(), momentum=MomentumConfig())
    prev, now = frames(seed=6)
    first = planner.plan(now, prev, ego_state(x=0.0), 1, stamp=100.0)
    assert not first.valid and first.reset_reason is ResetReason.FIRST_FRAME
    assert math.isnan(first.interval) and first.previous_index == -1
    assert np.all(np.isnan(first.comfort_scores))
    np.testing.assert_array_equal(first.final_scores, first.scores)

    prev2, now2 = frames(seed=7)
    second = planner.plan(now2, prev2, ego_state(x=4.0), 1, stamp=100.5)  # 8 m/s for 0.5 s
    assert second.valid and second.reset_reason is ResetReason.NONE
    assert second.interval == pytest.approx(0.5) and second.previous_index == first.selected_index
    assert set(np.unique(second.comfort_scores)) <= {0.0, 1.0}
    # S' = 7/8 S + 1/8 EC (drive_jepa.md §7.6)
    np.testing.assert_allclose(second.final_scores, 0.875 * second.scores + 0.125 * second.comfort_scores,
                               rtol=1e-12)
    assert second.selected_index == int(np.argmax(second.final_scores))
    np.testing.assert_array_equal(second.trajectory, second.proposals[second.selected_index])

    # a 1 s gap resets momentum; reset() is reported as requested
    assert planner.plan(now2, prev2, ego_state(x=12.0), 1, stamp=101.5).reset_reason is ResetReason.GAP
    planner.reset()
    assert planner.plan(now2, prev2, ego_state(x=16.0), 1, stamp=102.0).reset_reason is ResetReason.REQUESTED


def test_ego_status_forms_are_equivalent(run_dir) -> None:
    planner = Planner.from_checkpoint(run_dir, camera=camera())
    prev, now = frames(seed=8)
    state = np.array([5.0, -2.0, 0.3, 7.0, 0.1, 0.4, -0.2])
    a = planner.plan(now, prev, state, 0, 0.0)
    planner.reset()
    b = planner.plan(now, prev, EgoStatus(pose=(5.0, -2.0, 0.3), velocity=(7.0, 0.1), acceleration=(0.4, -0.2)), 0,
                     0.0)
    planner.reset()
    c = planner.plan(now, prev, np.array([0.0, 0.0, 0.0, 7.0, 0.1, 0.4, -0.2]), 0, 0.0, pose=np.array([5.0, -2.0, 0.3]))
    np.testing.assert_array_equal(a.proposals, b.proposals)
    np.testing.assert_array_equal(a.ego_state, c.ego_state)
    np.testing.assert_array_equal(a.selection.selected_states, c.selection.selected_states)
    assert EgoStatus.from_state7(state).state7().tolist() == state.tolist()


def test_nan_output_is_rejected_and_selection_state_untouched(run_dir) -> None:
    model, _ = load_planner(run_dir)
    with torch.no_grad():
        model.trajectory_head.mlp.layers[-1].bias[0] = float("nan")  # a corrupted weight: x of every pose is NaN
    _, _, info = check_checkpoint(run_dir)
    planner = Planner(TorchBackend(model, info, "cpu"), camera=camera())
    prev, now = frames(seed=9)
    with pytest.raises(NonFiniteOutputError, match=r"NaN/inf values in 'proposals'.*nothing is published"):
        planner.plan(now, prev, ego_state(), 1, 0.0)
    assert planner.selector.previous_states is None  # nothing was selected or remembered


def test_bad_inputs_raise_clear_errors(run_dir) -> None:
    planner = Planner.from_checkpoint(run_dir)
    prev, now = frames(seed=10)
    with pytest.raises(RuntimeError, match="no camera calibration"):
        planner.plan(now, prev, ego_state(), 1, 0.0)
    planner.set_camera(*SOURCE_SIZE, camera().ego2image())
    with pytest.raises(ValueError, match="camera is configured for 320x180"):
        planner.plan(now[:100], prev, ego_state(), 1, 0.0)
    with pytest.raises(ValueError, match="driving command"):
        planner.plan(now, prev, ego_state(), 5, 0.0)
    with pytest.raises(ValueError, match="NaN/inf"):
        planner.plan(now, prev, np.array([0.0, 0.0, 0.0, np.nan, 0.0, 0.0, 0.0]), 1, 0.0)
    with pytest.raises(ValueError, match=r"\(7,\)"):
        planner.plan(now, prev, np.zeros(11), 1, 0.0)
    with pytest.raises(ValueError, match="uint8"):
        planner.plan(now.astype(np.float32), prev, ego_state(), 1, 0.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        Planner.from_checkpoint(run_dir, backend="tflite")


def test_perception_free_variant_runs_with_one_proposal(tmp_path) -> None:
    run = save_tiny_planner(tmp_path / "pf", variant="perception_free")
    for backend in ("torch", "onnxruntime"):
        planner = Planner.from_checkpoint(run, backend=backend, camera=camera())
        prev, now = frames(seed=11)
        result = planner.plan(now, prev, ego_state(), 1, 0.0)
        assert result.proposals.shape == (1, 8, 3) and result.selected_index == 0
        assert result.scores.tolist() == [0.5]  # constant logit 0: no scorer in this baseline
