"""Planner model: anchors, deformable sampling, shapes, gradients, batch independence, ONNX Runtime parity.

The encoder is a small stand-in honouring the encoder contract (``embed_dim``, ``grid_shape``, (B, 3, 2, H, W) →
(B, H/16·W/16, D)): a Conv3d tubelet embedding. One test also runs a real one-block VisionTransformer.
"""

from __future__ import annotations

import dataclasses
import io
import math
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from drive_jepa_core.models.deformable_attention import DeformableAttention, waypoint_box_anchors
from drive_jepa_core.models.losses import PlannerTargets, planner_loss
from drive_jepa_core.models.perception_free import PerceptionFreePlanner
from drive_jepa_core.models.planner_config import PerceptionFreeConfig, PlannerConfig
from drive_jepa_core.models.proposal_planner import ProposalPlanner
from drive_jepa_core.models.vit import build_encoder

H, W = 256, 512
TINY = PlannerConfig(d_model=32, d_ffn=64, num_heads=4, head_hidden=32)


class TubeletEncoder(nn.Module):
    """Stand-in video encoder: Conv3d with kernel = stride = (2, 16, 16)."""

    def __init__(self, embed_dim: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.proj = nn.Conv3d(3, embed_dim, kernel_size=(2, 16, 16), stride=(2, 16, 16))

    def grid_shape(self, video_shape: tuple[int, ...]) -> tuple[int, int, int]:
        _, _, t, h, w = (int(s) for s in video_shape)
        return t // 2, h // 16, w // 16

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.proj(video).flatten(2).transpose(1, 2)


def front_camera(batch: int) -> torch.Tensor:
    """(B, 3, 4) ego2image of a 512 x 256 pinhole (f = 256 px) at ego (1.5, 0, 1.5) m looking along +x."""
    K = torch.tensor([[256.0, 0.0, 255.5], [0.0, 256.0, 127.5], [0.0, 0.0, 1.0]])
    ego2cam = torch.tensor([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    t = -ego2cam @ torch.tensor([1.5, 0.0, 1.5])
    return (K @ torch.cat([ego2cam, t[:, None]], dim=1)).expand(batch, 3, 4).contiguous()


def smooth_video(batch: int, seed: int = 0) -> torch.Tensor:
    """(B, 3, 2, H, W) smooth random frames (a real camera image is far smoother than white noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch * 2, 3, 8, 16, generator=g)
    frames = F.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)
    return frames.reshape(batch, 2, 3, H, W).transpose(1, 2).contiguous()


def make_inputs(batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 100)
    return smooth_video(batch, seed), torch.randn(batch, 11, generator=g), front_camera(batch)


def make_planner(config: PlannerConfig = TINY, seed: int = 0) -> ProposalPlanner:
    torch.manual_seed(seed)
    return ProposalPlanner(TubeletEncoder(), config)


# --------------------------------------------------------------------------------------------------------------------
# anchors and deformable attention
# --------------------------------------------------------------------------------------------------------------------
def test_box_anchors_by_hand_and_distinct() -> None:
    c = PlannerConfig()
    poses = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, math.pi / 2]], dtype=torch.float64).reshape(1, 2, 1, 3)
    anchors = waypoint_box_anchors(poses, c.box_half_length, c.box_half_width, c.rear_axle_to_center,
                                   c.anchor_heights)
    assert anchors.shape == (1, 2, 16, 3)
    # heading 0 at x = 10: centre (11.461, 0); FL = (11.461 + 2.838, +1.2485), RR = (11.461 - 2.838, -1.2485)
    np.testing.assert_allclose(anchors[0, 0, 0].numpy(), [14.299, 1.2485, -2.0], atol=1e-9)
    np.testing.assert_allclose(anchors[0, 0, 2].numpy(), [8.623, -1.2485, -2.0], atol=1e-9)
    # heading 90°: centre (0, 1.461); FL = centre + L·(0, 1) + W·(-1, 0) = (-1.2485, 4.299); top height 6 m
    np.testing.assert_allclose(anchors[0, 1, 12].numpy(), [-1.2485, 4.299, 6.0], atol=1e-9)
    for token in anchors[0]:
        assert len({tuple(np.round(p, 6)) for p in token.numpy()}) == 16  # all 4 corners x 4 heights distinct
    assert c.num_anchors == 16 and c.box_half_length == pytest.approx(2.838) and c.box_half_width == pytest.approx(
        1.2485)


def identity_attention(num_anchors: int, channels: int = 4, heads: int = 2) -> DeformableAttention:
    attn = DeformableAttention(channels, heads, num_anchors, 1)
    with torch.no_grad():
        for layer in (attn.value_proj, attn.output_proj):
            layer.weight.copy_(torch.eye(channels))
            layer.bias.zero_()
        attn.sampling_offsets.bias.zero_()  # weights are zero-initialized: zero offsets
    return attn


def linear_value_map(channels: int = 4, rows: int = 4, cols: int = 6) -> torch.Tensor:
    """(1, C, rows, cols) with value[c, i, j] = j + 10 i + 100 c."""
    i = torch.arange(rows, dtype=torch.float32)[:, None]
    j = torch.arange(cols, dtype=torch.float32)[None, :]
    return torch.stack([j + 10 * i + 100 * c for c in range(channels)])[None]


def cell_to_grid(col: float, row: float, cols: int = 6, rows: int = 4) -> list[float]:
    return [(col + 0.5) * 2 / cols - 1, (row + 0.5) * 2 / rows - 1]


def test_zero_offsets_sample_the_bilinear_value_at_the_reference() -> None:
    attn = identity_attention(1)
    value = linear_value_map()
    reference = torch.tensor([[[cell_to_grid(2.5, 1.25)], [cell_to_grid(0.0, 3.0)]]])  # (1, Q=2, A=1, 2)
    out = attn(torch.randn(1, 2, 4), value, reference)
    expected = torch.tensor([[2.5 + 12.5 + 100 * c for c in range(4)], [0.0 + 30.0 + 100 * c for c in range(4)]])
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-4)


def test_offsets_are_in_value_map_cells() -> None:
    attn = identity_attention(1, heads=1)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, -1.0]))  # one cell right, one cell up
    out = attn(torch.zeros(1, 1, 4), linear_value_map(), torch.tensor([[[cell_to_grid(2.0, 2.0)]]]))
    assert out[0, 0, 0].item() == pytest.approx(3.0 + 10.0)


def test_anchor_mask_removes_anchors_per_sample() -> None:
    attn = identity_attention(2)
    value = linear_value_map().expand(2, -1, -1, -1)
    reference = torch.tensor([cell_to_grid(1.0, 1.0), cell_to_grid(4.0, 2.0)]).expand(2, 1, 2, 2)
    mask = torch.tensor([[[True, False]], [[False, False]]])  # sample 0: anchor 0 only; sample 1: nothing visible
    out = attn(torch.zeros(2, 1, 4), value, reference, mask)
    assert out[0, 0].tolist() == pytest.approx([11.0 + 100 * c for c in range(4)])
    assert out[1, 0].tolist() == [0.0, 0.0, 0.0, 0.0]  # no visible anchor -> zero sample (then the bias, 0 here)
    unmasked = attn(torch.zeros(2, 1, 4), value, reference)  # uniform weights over both anchors
    assert unmasked[1, 0, 0].item() == pytest.approx((11.0 + 24.0) / 2)


# --------------------------------------------------------------------------------------------------------------------
# the planner
# --------------------------------------------------------------------------------------------------------------------
def test_forward_shapes() -> None:
    planner = make_planner()
    out = planner(*make_inputs())
    Np, M, Iters = TINY.num_proposals, TINY.num_poses, TINY.num_iterations
    assert (Np, M, Iters) == (32, 8, 4)
    assert out["proposals"].shape == (2, Np, M, 3)
    assert out["proposals_per_iter"].shape == (Iters, 2, Np, M, 3)
    assert out["scores"].shape == (2, Np)
    assert out["mapping"].shape == (2, Np, M, 2)
    assert out["collision"].shape == (2, Np, M)
    assert out["trajectory"].shape == (2, M, 3)
    torch.testing.assert_close(out["proposals"], out["proposals_per_iter"][-1])
    best = out["scores"].argmax(dim=1)
    torch.testing.assert_close(out["trajectory"], out["proposals"][torch.arange(2), best])
    assert all(torch.isfinite(v).all() for v in out.values())
    assert set(planner(*make_inputs(), aux_heads=False)) == {"proposals", "proposals_per_iter", "scores", "trajectory"}


def test_pose_scale_sets_the_units_of_the_trajectory_heads() -> None:
    """Same weights, scale (10, 5, 1) vs (1, 1, 1): the first iteration's poses are the raw output times the scale."""
    scaled = make_planner()
    unit = make_planner(dataclasses.replace(TINY, pose_scale=(1.0, 1.0, 1.0)))
    unit.load_state_dict(scaled.state_dict())  # the scale is a config value, not a weight
    inputs = make_inputs()
    first_scaled = scaled(*inputs)["proposals_per_iter"][0]
    first_unit = unit(*inputs)["proposals_per_iter"][0]
    torch.testing.assert_close(first_scaled, first_unit * torch.tensor([10.0, 5.0, 1.0]))
    free_config = PerceptionFreeConfig(d_model=32, num_heads=4, d_ffn=64, head_hidden=32, num_encoder_layers=1,
                                       num_decoder_layers=1)
    torch.manual_seed(0)
    free = PerceptionFreePlanner(TubeletEncoder(), free_config, image_hw=(H, W))
    free_unit = PerceptionFreePlanner(TubeletEncoder(), dataclasses.replace(free_config, pose_scale=(1.0, 1.0, 1.0)),
                                      image_hw=(H, W))
    free_unit.load_state_dict(free.state_dict())
    a, b = free(*inputs)["trajectory"], free_unit(*inputs)["trajectory"]
    torch.testing.assert_close(a[..., :2], b[..., :2] * torch.tensor([10.0, 5.0]))
    torch.testing.assert_close(a[..., 2], b[..., 2])  # heading stays tanh * pi
    with pytest.raises(ValueError, match="pose_scale"):
        PlannerConfig(pose_scale=(1.0, 0.0, 1.0))


def test_one_shared_refiner() -> None:
    n4 = sum(p.numel() for p in make_planner().parameters())
    n1 = sum(p.numel() for p in make_planner(PlannerConfig(d_model=32, d_ffn=64, num_heads=4, head_hidden=32,
                                                           num_iterations=1)).parameters())
    assert n4 == n1  # the iterations reuse one layer


def test_gradients_reach_every_parameter() -> None:
    planner = make_planner()
    # Offsets and attention logits start at zero weight, which makes the position embedding's gradient exactly 0 at
    # init; perturb them as one optimizer step would.
    with torch.no_grad():
        for p in planner.parameters():
            p.add_(0.01 * torch.randn_like(p))
    images, ego, P = make_inputs()
    out = planner(images, ego, P)
    targets = PlannerTargets(
        trajectory=torch.randn(2, 8, 3), pseudo_teachers=torch.randn(2, 4, 8, 3),
        pseudo_teacher_mask=torch.tensor([[True, True, False, False], [True, True, True, True]]),
        score=torch.rand(2, 32), mapping=torch.rand(2, 32, 8, 2).round(), collision=torch.rand(2, 32, 8).round())
    planner_loss(out, targets)["total"].backward()
    missing = [n for n, p in planner.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert missing == []


def test_samples_are_independent() -> None:
    """Changing sample 1 (image, status, camera) must not change sample 0 (upstream mixed samples at B > 1)."""
    planner = make_planner().eval()
    images, ego, P = make_inputs()
    images2, ego2, P2 = images.clone(), ego.clone(), P.clone()
    images2[1], ego2[1] = smooth_video(1, seed=7)[0], ego2[1] + 1.0
    P2[1] = P2[1] * 1.1
    with torch.no_grad():
        a, b = planner(images, ego, P), planner(images2, ego2, P2)
    for key in a:
        batch_dim = 1 if key == "proposals_per_iter" else 0
        torch.testing.assert_close(a[key].select(batch_dim, 0), b[key].select(batch_dim, 0))
    assert not torch.allclose(a["proposals"][1], b["proposals"][1])


def test_param_groups_scale_encoder_lr() -> None:
    planner = make_planner()
    groups = planner.param_groups(1e-4)
    assert [g["lr"] for g in groups] == pytest.approx([1e-5, 1e-4])
    assert sum(len(g["params"]) for g in groups) == len(list(planner.parameters()))
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in planner.encoder.parameters()}


def test_bad_inputs_raise() -> None:
    planner = make_planner()
    images, ego, P = make_inputs()
    with pytest.raises(ValueError, match="ego_status"):
        planner(images, ego[:, :8], P)
    with pytest.raises(ValueError, match="ego2image"):
        planner(images, ego, P[:, :, :3])
    with pytest.raises(ValueError, match="T'=1"):
        planner(torch.cat([images, images], dim=2), ego, P)
    with pytest.raises(TypeError, match="grid_shape"):
        ProposalPlanner(nn.Linear(3, 3), TINY)
    with pytest.raises(ValueError, match="divisible"):
        PlannerConfig(d_model=30, num_heads=4)


def test_runs_on_the_real_vision_transformer() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("tiny", depth=1, embed_dim=32, num_heads=2)
    planner = ProposalPlanner(encoder, TINY)
    out = planner(*make_inputs(batch=1))
    assert out["proposals"].shape == (1, 32, 8, 3) and torch.isfinite(out["scores"]).all()


def export_and_run(model: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str]) -> list[np.ndarray]:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks folded into constants
        torch.onnx.export(model, inputs, buffer, dynamo=False, opset_version=17, input_names=names)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy() for name, x in zip(names, inputs, strict=True)})


class PlannerOutputs(nn.Module):
    """Tuple outputs for export (ONNX has no dicts)."""

    def __init__(self, planner: ProposalPlanner) -> None:
        super().__init__()
        self.planner = planner

    def forward(self, images: torch.Tensor, ego_status: torch.Tensor, ego2image: torch.Tensor):
        out = self.planner(images, ego_status, ego2image)
        return out["proposals"], out["scores"], out["trajectory"], out["mapping"], out["collision"]


def test_onnx_export_matches_torch() -> None:
    model = PlannerOutputs(make_planner()).eval()
    inputs = make_inputs()
    ort_out = export_and_run(model, inputs, ["images", "ego_status", "ego2image"])
    with torch.no_grad():
        torch_out = model(*inputs)
    for got, want in zip(ort_out, torch_out, strict=True):
        want = want.numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


# --------------------------------------------------------------------------------------------------------------------
# the perception-free baseline
# --------------------------------------------------------------------------------------------------------------------
def test_perception_free_shapes_tokens_and_export() -> None:
    torch.manual_seed(0)
    config = PerceptionFreeConfig(d_model=32, num_heads=4, d_ffn=64, head_hidden=32)
    model = PerceptionFreePlanner(TubeletEncoder(), config).eval()
    assert model.num_image_tokens + 1 == 129  # 16x32 -> pooled 8x16 + 1 status token (drive_jepa.md §8)
    images, ego, _ = make_inputs()
    with torch.no_grad():
        out = model(images, ego)
    assert out["trajectory"].shape == (2, 8, 3) and out["proposals"].shape == (2, 1, 8, 3)
    assert bool((out["trajectory"][..., 2].abs() < math.pi).all())
    (got,) = export_and_run(TrajectoryOnly(model), (images, ego), ["images", "ego_status"])
    want = out["trajectory"].numpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    one_query = PerceptionFreePlanner(TubeletEncoder(), PerceptionFreeConfig(d_model=32, num_heads=4, d_ffn=64,
                                                                               head_hidden=32, num_queries=1))
    assert one_query(images, ego)["trajectory"].shape == (2, 8, 3)


class TrajectoryOnly(nn.Module):
    def __init__(self, model: PerceptionFreePlanner) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, ego_status: torch.Tensor) -> torch.Tensor:
        return self.model(images, ego_status)["trajectory"]


def test_geometry_stays_fp32_under_bf16_autocast() -> None:
    """Under mixed precision the poses, the projection and the deformable sampling must stay fp32."""
    planner = make_planner().eval()
    images, ego, P = make_inputs()
    with torch.no_grad():
        reference = planner(images, ego, P)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = planner(images, ego, P)
    assert mixed["proposals"].dtype == torch.float32 and mixed["proposals_per_iter"].dtype == torch.float32
    # same decisions as fp32 within bf16 feature noise, in head-output units (the raw outputs here are O(1))
    error = (mixed["proposals"] - reference["proposals"]).abs() / torch.tensor(TINY.pose_scale)
    assert error.max() < 0.1


@pytest.mark.parametrize("variant", [{"self_attn_reference": "grid"}, {"residual_refinement": True}])
def test_config_variants_run(variant: dict) -> None:
    config = PlannerConfig(d_model=32, d_ffn=64, num_heads=4, head_hidden=32, **variant)
    out = make_planner(config)(*make_inputs())
    assert out["proposals_per_iter"].shape == (4, 2, 32, 8, 3) and torch.isfinite(out["scores"]).all()
