"""Video ViT encoder, 3-D RoPE, predictor and ONNX export (vjepa2.md A1, A2, A6). Expected values are derived by hand
in the comments; models are tiny so the file runs in seconds on one CPU thread."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drive_jepa_core.models.patch_embed import PatchEmbed3D
from drive_jepa_core.models.predictor import Predictor, PredictorConfig
from drive_jepa_core.models.rope import (
    apply_rope,
    grid_positions,
    ids_to_positions,
    rope_axis_dim,
    rope_frequencies,
    rope_tables,
)
from drive_jepa_core.models.vit import ENCODER_SIZES, EncoderConfig, VisionTransformer, build_encoder, encoder_config

torch.set_num_threads(1)


def tiny_encoder(dim: int = 64, depth: int = 1, heads: int = 1, seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(EncoderConfig(embed_dim=dim, depth=depth, num_heads=heads, mlp_hidden_dim=2 * dim)).eval()


# ---------------------------------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("head_dim", "axis_dim"), [(64, 20), (80, 26), (32, 10), (14, 4), (12, 4), (6, 2)])
def test_rope_axis_split(head_dim: int, axis_dim: int) -> None:
    # 2 * ((head_dim // 3) // 2): 64 -> 2*(21//2)=20, 80 -> 2*(26//2)=26, 32 -> 2*(10//2)=10, 14 -> 2*(4//2)=4
    assert rope_axis_dim(head_dim) == axis_dim


def test_rope_frequencies_by_hand() -> None:
    # d = 4 -> n = 2: omega_j = 10000^(-j/2) = [1, 0.01]; d = 20 -> n = 10: omega_9 = 10000^(-0.9)
    assert torch.allclose(rope_frequencies(4), torch.tensor([1.0, 0.01]))
    w = rope_frequencies(20)
    assert w.shape == (10,) and w.dtype == torch.float32
    assert math.isclose(float(w[9]), 10000 ** -0.9, rel_tol=1e-6)


def test_rope_rotation_matches_hand_computation_with_tiled_layout() -> None:
    """head_dim 14: axis blocks of d = 4 channels (time 0-3, height 4-7, width 8-11), channels 12-13 unrotated.
    n = 2 frequencies [1, 0.01]; channel c of a block uses angle pos * omega[c mod 2] (tiled, not interleaved):
        out[2i]   = x[2i] cos(a_{2i mod 2})   - x[2i+1] sin(a_{2i mod 2})   = x[2i] cos(p)    - x[2i+1] sin(p)
        out[2i+1] = x[2i+1] cos(a_{(2i+1)}) + x[2i] sin(a_{(2i+1)})         = x[2i+1] cos(p/100) + x[2i] sin(p/100)
    """
    x = torch.arange(1.0, 15.0).view(1, 1, 1, 14)  # x[c] = c + 1
    t, r, c = 2.0, 3.0, 5.0
    cos, sin = rope_tables(torch.tensor([[t, r, c]]), head_dim=14)
    assert cos.shape == (1, 14)
    out = apply_rope(x, cos, sin).flatten().tolist()
    expected = []
    for block, pos in enumerate((t, r, c)):
        base = 4 * block
        for i in range(2):  # two pairs per block
            x0, x1 = base + 2 * i + 1.0, base + 2 * i + 2.0
            expected.append(x0 * math.cos(pos) - x1 * math.sin(pos))
            expected.append(x1 * math.cos(pos * 0.01) + x0 * math.sin(pos * 0.01))
    expected += [13.0, 14.0]
    assert np.allclose(out, expected, atol=1e-5)


def test_rope_tables_layout_is_tiled_per_axis() -> None:
    # head_dim 64: d = 20, n = 10. Token at (t, row, col) = (1, 2, 3): time block angles are [1*w_0..1*w_9] twice,
    # height block [2*w], width block [3*w].
    cos, sin = rope_tables(torch.tensor([[1.0, 2.0, 3.0]]), head_dim=64)
    w = rope_frequencies(20)
    angles = torch.cat([torch.cat([p * w, p * w]) for p in (1.0, 2.0, 3.0)])
    assert cos.shape == (1, 64)
    assert torch.allclose(cos[0, :60], torch.cos(angles)) and torch.allclose(sin[0, :60], torch.sin(angles))
    # channels 60-63 are not rotated: cos 1, sin 0
    assert torch.equal(cos[0, 60:], torch.ones(4)) and torch.equal(sin[0, 60:], torch.zeros(4))


def test_positions_on_non_square_grid() -> None:
    # 2 frames at 256x512, patch 16, tubelet 2 -> grid (1, 16, 32); token id = row * 32 + col
    grid = (1, 16, 32)
    ids = torch.tensor([0, 31, 32, 33, 511])
    expected = torch.tensor([[0, 0, 0], [0, 0, 31], [0, 1, 0], [0, 1, 1], [0, 15, 31]], dtype=torch.float32)
    assert torch.equal(ids_to_positions(ids, grid), expected)
    # 8 frames -> grid (4, 16, 32): id 512 is the first token of the second temporal slice, 2047 the last token
    assert ids_to_positions(torch.tensor([512, 2047]), (4, 16, 32)).tolist() == [[1, 0, 0], [3, 15, 31]]
    # full-grid positions (arange path, used for export) agree with the id path
    assert torch.equal(grid_positions(grid), ids_to_positions(torch.arange(512), grid))
    assert torch.equal(grid_positions((4, 16, 32)), ids_to_positions(torch.arange(2048), (4, 16, 32)))


def test_ids_must_be_integers() -> None:
    with pytest.raises(TypeError):
        ids_to_positions(torch.tensor([0.0, 1.0]), (1, 2, 2))


# ---------------------------------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------------------------------
def test_registry_sizes() -> None:
    # vjepa2.md A1: ViT-L 1024/24/16 (MLP 4096), ViT-H 1280/32/16 (5120), ViT-g 1408/40/22 (48/11 -> 6144)
    assert (encoder_config("large").embed_dim, encoder_config("large").depth, encoder_config("large").num_heads,
            encoder_config("large").mlp_hidden_dim) == (1024, 24, 16, 4096)
    assert (encoder_config("huge").embed_dim, encoder_config("huge").depth, encoder_config("huge").num_heads,
            encoder_config("huge").mlp_hidden_dim) == (1280, 32, 16, 5120)
    assert (encoder_config("giant").embed_dim, encoder_config("giant").depth, encoder_config("giant").num_heads,
            encoder_config("giant").mlp_hidden_dim) == (1408, 40, 22, 6144)
    assert set(ENCODER_SIZES) == {"tiny", "small", "base", "large", "huge", "giant"}
    assert encoder_config("tiny", depth=2).depth == 2
    with pytest.raises(ValueError, match="unknown encoder size"):
        encoder_config("enormous")


def test_parameter_count_formula() -> None:
    # per block: 2 LN (4D) + qkv (3D^2 + 3D) + proj (D^2 + D) + fc1 (D*H + H) + fc2 (H*D + D); patch 3*2*16*16*D + D
    dim, depth, hidden = 64, 3, 128
    model = VisionTransformer(EncoderConfig(embed_dim=dim, depth=depth, num_heads=1, mlp_hidden_dim=hidden))
    block = 4 * dim + 3 * dim * dim + 3 * dim + dim * dim + dim + dim * hidden + hidden + hidden * dim + dim
    expected = depth * block + 3 * 2 * 16 * 16 * dim + dim + 2 * dim
    assert sum(p.numel() for p in model.parameters()) == expected


def test_non_square_clip_gives_512_tokens() -> None:
    model = tiny_encoder()
    video = torch.randn(1, 3, 2, 256, 512)
    assert model.grid_shape(video.shape) == (1, 16, 32)
    with torch.no_grad():
        out = model(video)
    assert out.shape == (1, 512, 64)
    # 8 frames -> 4 x 16 x 32 = 2048 tokens
    assert model.grid_shape((1, 3, 8, 256, 512)) == (4, 16, 32)


def test_patch_embed_token_order_is_t_row_col() -> None:
    # A single bright 2x16x16 tube at frames 2-3, rows 16-31, cols 48-63 of a (4, 32, 64) video lands in token
    # t=1, row=1, col=3 -> id = 1*(2*4) + 1*4 + 3 = 15.
    embed = PatchEmbed3D(embed_dim=1)
    with torch.no_grad():
        embed.proj.weight.fill_(1.0)
        embed.proj.bias.zero_()
    video = torch.zeros(1, 3, 4, 32, 64)
    video[:, :, 2:4, 16:32, 48:64] = 1.0
    tokens = embed(video)[0, :, 0]
    assert tokens.shape == (16,)
    tokens = tokens.detach()
    assert int(tokens.argmax()) == 15 and float(tokens[15]) == 3 * 2 * 16 * 16


def test_token_ids_path_matches_full_path_when_keeping_all_tokens() -> None:
    model = tiny_encoder(depth=2)
    video = torch.randn(2, 3, 2, 64, 96)
    ids = torch.arange(4 * 6).expand(2, -1)
    with torch.no_grad():
        assert torch.allclose(model(video), model(video, ids), atol=1e-6)


def test_context_tokens_see_only_the_context() -> None:
    # Changing pixels of a patch that is not in the context must not change the context output.
    model = tiny_encoder(depth=2)
    video = torch.randn(1, 3, 2, 32, 32)  # grid (1, 2, 2)
    ids = torch.tensor([[0, 1, 2]])
    edited = video.clone()
    edited[:, :, :, 16:, 16:] += 5.0  # token 3
    with torch.no_grad():
        assert torch.allclose(model(video, ids), model(edited, ids), atol=1e-6)
        assert not torch.allclose(model(video), model(edited), atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 3, 3, 32, 32), (1, 3, 2, 30, 32), (1, 3, 2, 32, 40), (1, 4, 2, 32, 32),
                                   (3, 2, 32, 32)])
def test_bad_video_shapes_raise(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        tiny_encoder()(torch.zeros(shape))


def test_build_encoder_overrides() -> None:
    model = build_encoder("tiny", depth=1)
    assert model.config.embed_dim == 192 and model.config.num_heads == 3 and len(model.blocks) == 1
    assert model.config.head_dim == 64


# ---------------------------------------------------------------------------------------------------------------------
# Predictor
# ---------------------------------------------------------------------------------------------------------------------
def make_predictor(encoder_dim: int = 64, seed: int = 1) -> Predictor:
    torch.manual_seed(seed)
    pred = Predictor(PredictorConfig(encoder_dim=encoder_dim, predictor_dim=32, depth=2, num_heads=1,
                                     mlp_hidden_dim=64, num_mask_tokens=3)).eval()
    with torch.no_grad():
        for token in pred.mask_tokens:
            token.normal_()  # distinguishable mask tokens (they start at zero; a constant vector would vanish in LN)
        for block in pred.predictor_blocks:
            block.attn.qkv.weight.mul_(20.0)  # sharpen attention so positions visibly matter at this tiny init
    return pred


def test_predictor_shapes_and_non_square_grid() -> None:
    pred = make_predictor()
    grid = (4, 16, 32)  # 8 frames at 256x512
    ctx_ids = torch.tensor([[0, 100, 600, 2047], [5, 6, 7, 8]])
    tgt_ids = torch.tensor([[1, 512, 1500], [9, 10, 2000]])
    with torch.no_grad():
        out = pred(torch.randn(2, 4, 64), ctx_ids, tgt_ids, grid)
    assert out.shape == (2, 3, 64)
    with pytest.raises(ValueError, match="must lie in"):
        pred(torch.randn(2, 4, 64), ctx_ids, tgt_ids, (1, 16, 32))  # id 2047 is outside a 512-token grid


def test_predictor_is_invariant_to_context_order_and_uses_positions() -> None:
    pred = make_predictor()
    grid = (1, 4, 8)
    ctx = torch.randn(1, 5, 64)
    ctx_ids = torch.tensor([[0, 3, 9, 17, 30]])
    tgt_ids = torch.tensor([[1, 20]])
    perm = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        a = pred(ctx, ctx_ids, tgt_ids, grid)
        b = pred(ctx[:, perm], ctx_ids[:, perm], tgt_ids, grid)
        c = pred(ctx, ctx_ids, tgt_ids.flip(1), grid).flip(1)
        moved = pred(ctx, ctx_ids, torch.tensor([[2, 20]]), grid)
        other_token = pred(ctx, ctx_ids, tgt_ids, grid, mask_index=1)
    assert torch.allclose(a, b, atol=1e-5)  # upstream's sort by id is unnecessary
    assert torch.allclose(a, c, atol=1e-5)
    assert not torch.allclose(a[:, 0], moved[:, 0], atol=1e-4)  # target position matters
    assert not torch.allclose(a, other_token, atol=1e-4)  # mask_index picks a different learned token
    with torch.no_grad():
        assert torch.allclose(pred(ctx, ctx_ids, tgt_ids, grid, mask_index=4), other_token)  # 4 % 3 == 1


# ---------------------------------------------------------------------------------------------------------------------
# ONNX export (vjepa2.md A6)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter announces its deprecation
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the token grid is static by design (vjepa2.md A6)
def test_onnx_export_matches_torch(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = build_encoder("tiny", depth=2).eval()  # head_dim 64 -> the ViT-L RoPE split 20/20/20 + 4
    torch.manual_seed(3)
    video = torch.randn(1, 3, 2, 256, 512)
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(model, (video,), str(path), input_names=["video"], output_names=["tokens"], opset_version=17,
                      dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"video": video.numpy()})
    with torch.no_grad():
        ref = model(video).numpy()
    assert got.shape == (1, 512, 192)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    assert rel <= 1e-4, rel


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    plain = tiny_encoder(depth=2).train()
    ckpt = tiny_encoder(depth=2).train()
    ckpt.use_activation_checkpointing = True
    video = torch.randn(1, 3, 2, 32, 32)
    ids = torch.tensor([[0, 2, 3]])
    for model in (plain, ckpt):
        model(video, ids).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
