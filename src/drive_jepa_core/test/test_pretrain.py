"""V-JEPA pretraining: masks (vjepa2.md A3), EMA, loss, schedule (A4), the scene-file clip dataset and a few real
optimizer steps with checkpoint save/resume. Scenes are built directly with the scene-format helpers (12 camera
frames at 2 Hz, -1.5 … +4.0 s, as the world generator writes them) and saved with ``save_scene``."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from drive_jepa_core.checkpoints import load_vjepa2_encoder, save_encoder
from drive_jepa_core.constants import IMAGENET_MEAN, IMAGENET_STD
from drive_jepa_core.models.predictor import Predictor, PredictorConfig
from drive_jepa_core.models.vit import EncoderConfig, VisionTransformer
from drive_jepa_core.pretrain import cli
from drive_jepa_core.pretrain.data import ClipConfig, SceneClipDataset, clip_windows
from drive_jepa_core.pretrain.ema import ema_update, momentum_at
from drive_jepa_core.pretrain.masks import LONG_RANGE, SHORT_RANGE, MaskConfig, MultiBlockMaskGenerator
from drive_jepa_core.pretrain.train import (
    ModelSection,
    OptimSection,
    PredictorSection,
    PretrainConfig,
    RunSection,
    StepBatchSampler,
    feature_std,
    jepa_l1_loss,
    load_pretrain_config,
    lr_at,
    normalize_targets,
    param_groups,
    pretrain,
)
from drive_jepa_core.scene import CameraCalibration, Scene, empty_agent_fields, empty_map_fields, save_scene

torch.set_num_threads(1)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "drive_jepa_core" / "configs"
FRAME_H, FRAME_W = 72, 144  # camera size; clips are centre-cropped to 2:1 and resized to 128x64


# ---------------------------------------------------------------------------------------------------------------------
# Scene files
# ---------------------------------------------------------------------------------------------------------------------
def make_scene(index: int, num_frames: int = 12, frame_dt: float = 0.5) -> Scene:
    t = np.round(np.arange(-15, 51) * 0.1, 10)
    ego = np.zeros((len(t), 7))
    ego[:, 0], ego[:, 3] = 6.0 * t, 6.0
    rng = np.random.default_rng(index)
    frames = rng.integers(0, 256, size=(num_frames, FRAME_H, FRAME_W, 3), dtype=np.uint8)
    K = np.array([[100.0, 0, FRAME_W / 2], [0, 100.0, FRAME_H / 2], [0, 0, 1]])
    sensor2ego = np.array([[0, 0, 1, 1.5], [-1, 0, 0, 0], [0, -1, 0, 1.5], [0, 0, 0, 1.0]])
    return Scene(token=f"scene{index:02d}", log_name="log0", split="train", source="synthetic", command=1,
                 timestamps=t, t0_index=15, ego_states=ego,
                 camera=CameraCalibration("front", FRAME_W, FRAME_H, K, sensor2ego),
                 camera_timestamps=-1.5 + frame_dt * np.arange(num_frames), camera_frames=frames,
                 **empty_agent_fields(len(t)), **empty_map_fields())


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    for i in range(3):
        save_scene(make_scene(i), root / f"scene{i:02d}")
    save_scene(make_scene(9, num_frames=3), root / "short")  # too few frames for a 4-frame clip: skipped
    return root


# ---------------------------------------------------------------------------------------------------------------------
# Masks
# ---------------------------------------------------------------------------------------------------------------------
def test_block_size_by_hand() -> None:
    rng = np.random.default_rng(0)
    grid = (4, 16, 32)  # 8 frames at 256x512
    square = (1.0, 1.0)
    # short-range: keep = int(512 * 0.15) = 76, ar 1 -> h = w = round(sqrt(76)) = round(8.72) = 9; t = 4 (tube)
    short = MultiBlockMaskGenerator(grid, replace(SHORT_RANGE, aspect_ratio=square))
    assert short.sample_block_size(rng) == (4, 9, 9)
    # long-range: keep = int(512 * 0.7) = 358 -> round(sqrt(358)) = round(18.92) = 19, h clipped to 16 rows
    long = MultiBlockMaskGenerator(grid, replace(LONG_RANGE, aspect_ratio=square))
    assert long.sample_block_size(rng) == (4, 16, 19)
    # temporal scale 0.5 -> t = max(1, int(4 * 0.5)) = 2
    half = MultiBlockMaskGenerator(grid, MaskConfig(1, (0.15, 0.15), square, (0.5, 0.5)))
    assert half.sample_block_size(rng)[0] == 2


@pytest.mark.parametrize("config", [SHORT_RANGE, LONG_RANGE], ids=["short", "long"])
def test_mask_batches_are_rectangular_disjoint_tubes(config: MaskConfig) -> None:
    grid = (4, 16, 32)
    n = 4 * 16 * 32
    gen = MultiBlockMaskGenerator(grid, config)
    rng = np.random.default_rng(1)
    for _ in range(5):
        ctx, tgt = gen(6, rng)
        assert ctx.dtype == tgt.dtype == torch.int64
        assert ctx.shape[0] == tgt.shape[0] == 6 and ctx.shape[1] > 0 and tgt.shape[1] > 0
        for c, t in zip(ctx, tgt, strict=True):
            assert torch.all(c[1:] > c[:-1]) and torch.all(t[1:] > t[:-1])  # sorted, unique
            assert not set(c.tolist()) & set(t.tolist())
            assert 0 <= int(c.min()) and int(t.max()) < n
    # tube: with temporal_scale 1 every frame hides the same spatial region
    for _ in range(20):
        mask = gen.sample_mask(gen.sample_block_size(rng), rng)
        assert mask.shape == grid
        assert all(np.array_equal(mask[0], mask[k]) for k in range(1, 4))


@pytest.mark.parametrize(("config", "lo", "hi"), [(SHORT_RANGE, 0.55, 0.85), (LONG_RANGE, 0.70, 0.95)],
                         ids=["short", "long"])
def test_masked_fraction_statistics(config: MaskConfig, lo: float, hi: float) -> None:
    """One block covers about ``s`` of the frame (s = 0.15 / 0.7, up to rounding of h, w). Per sample the hidden
    fraction lies between one block and ``num_blocks`` blocks; if blocks fell independently the mean would be
    ``1 - (1 - s)^k``: 0.73 for 8 x 0.15 and 0.91 for 2 x 0.7. Boxes overlap more than independent pixels
    (a 0.7 box must include the frame centre), so the observed mean is below that; the bands bracket it."""
    grid = (1, 16, 32)
    gen = MultiBlockMaskGenerator(grid, config)
    rng = np.random.default_rng(2)
    fractions = []
    for _ in range(400):
        t, h, w = gen.sample_block_size(rng)
        frac = gen.sample_mask((t, h, w), rng).mean()
        one_block = h * w / 512
        assert one_block - 1e-9 <= frac <= min(1.0, config.num_blocks * one_block) + 1e-9
        fractions.append(frac)
    mean = float(np.mean(fractions))
    independent = 1 - (1 - config.spatial_scale[0]) ** config.num_blocks
    assert lo <= mean <= hi and mean <= independent + 0.02, mean


def test_empty_context_is_redrawn_or_reported() -> None:
    full = MultiBlockMaskGenerator((1, 2, 2), MaskConfig(1, (1.0, 1.0), (1.0, 1.0)))
    with pytest.raises(RuntimeError, match="hides the whole grid"):
        full(1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        MaskConfig(0, (0.1, 0.1))


# ---------------------------------------------------------------------------------------------------------------------
# EMA, loss, schedule, optimizer groups
# ---------------------------------------------------------------------------------------------------------------------
def test_ema_update_exact() -> None:
    target, online = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[1.0, 2.0]]))
        target.bias.fill_(0.5)
        online.weight.copy_(torch.tensor([[3.0, -2.0]]))
        online.bias.fill_(1.5)
    ema_update(target, online, 0.9)
    # 0.9 * 1 + 0.1 * 3 = 1.2; 0.9 * 2 + 0.1 * (-2) = 1.6; 0.9 * 0.5 + 0.1 * 1.5 = 0.6
    assert torch.allclose(target.weight, torch.tensor([[1.2, 1.6]])) and torch.allclose(target.bias,
                                                                                        torch.tensor([0.6]))
    assert torch.equal(online.weight, torch.tensor([[3.0, -2.0]]))  # online untouched
    ema_update(target, online, 1.0)
    assert torch.allclose(target.weight, torch.tensor([[1.2, 1.6]]))
    assert momentum_at(0, 100, 0.99, 1.0) == 0.99
    assert math.isclose(momentum_at(50, 100, 0.99, 1.0), 0.995)
    assert momentum_at(200, 100, 0.99, 1.0) == 1.0


def test_l1_loss_on_layer_normed_targets_by_hand() -> None:
    # LN over 2 features: [0, 2] -> mean 1, var 1 -> [-1, 1]/sqrt(1 + 1e-5); [4, 0] -> [1, -1]; [1, 1] -> [0, 0]
    raw = torch.tensor([[[0.0, 2.0], [4.0, 0.0], [1.0, 1.0]]])
    targets = normalize_targets(raw)
    s = 1 / math.sqrt(1 + 1e-5)
    assert torch.allclose(targets, torch.tensor([[[-s, s], [s, -s], [0.0, 0.0]]]))
    # predict tokens 2 and 0: |0.5-0| + |0.5-0| + |-1+s| + |2-s| = 1 + (1 - s) + (2 - s), mean over 4 values
    pred = torch.tensor([[[0.5, 0.5], [-1.0, 2.0]]])
    loss = jepa_l1_loss(pred, targets, torch.tensor([[2, 0]]))
    assert math.isclose(float(loss), (1 + (1 - s) + (2 - s)) / 4, rel_tol=1e-6)
    # collapse monitor: per-dimension std over the 3 tokens, averaged over the 2 dimensions
    expected = float(targets[0].std(dim=0).mean())
    assert math.isclose(feature_std(targets), expected) and expected > 0
    assert feature_std(torch.ones(1, 5, 3)) == 0.0


def test_lr_schedule_by_hand() -> None:
    opt = OptimSection(steps=110, lr=1e-3, start_lr=1e-4, final_lr=1e-5, warmup_steps=10)
    assert math.isclose(lr_at(0, opt), 1e-4 + 0.9e-3 * 1 / 10)  # (step + 1) / warmup
    assert math.isclose(lr_at(9, opt), 1e-3)
    assert math.isclose(lr_at(10, opt), 1e-3)  # start of the cosine
    assert math.isclose(lr_at(60, opt), 1e-5 + (1e-3 - 1e-5) * 0.5)  # halfway
    assert math.isclose(lr_at(110, opt), 1e-5)


def test_no_decay_groups() -> None:
    model = VisionTransformer(EncoderConfig(embed_dim=64, depth=1, num_heads=1, mlp_hidden_dim=64))
    decay, no_decay = param_groups(model, weight_decay=0.04)
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0
    decayed = {id(p) for p in decay["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (not name.endswith("bias") and p.ndim > 1), name


def test_step_batch_sampler_is_keyed_by_step() -> None:
    full = list(StepBatchSampler(5, 3, seed=4, start_step=0, end_step=4))
    assert list(StepBatchSampler(5, 3, seed=4, start_step=2, end_step=4)) == full[2:]
    flat = [i for batch in full for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))  # each epoch a permutation


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------
def test_clip_windows() -> None:
    stamps = -1.5 + 0.5 * np.arange(12)
    assert len(clip_windows(stamps, 8, 2.0)) == 5  # 12 - 8 + 1
    assert clip_windows(stamps, 8, 2.0)[0] == tuple(range(8))
    assert clip_windows(stamps, 3, 1.0) == [(i, i + 2, i + 4) for i in range(8)]  # every second frame
    assert clip_windows(stamps, 13, 2.0) == []
    # frame 4 is 200 ms late: no window may use it or start at it; 20-30 ms jitter elsewhere is tolerated (<= 51 ms)
    jittered = stamps + np.array([0, 0.02, -0.03, 0, 0.2, 0, 0, 0, 0, 0, 0, 0])
    assert clip_windows(jittered, 4, 2.0) == [(0, 1, 2, 3)] + [(i, i + 1, i + 2, i + 3) for i in range(5, 9)]


def test_scene_clip_dataset(scene_dir: Path) -> None:
    ds = SceneClipDataset(scene_dir, ClipConfig(num_frames=4, fps=2.0, width=128, height=64))
    assert len(ds) == 3 * 9 and len(ds.skipped) == 1  # 12 - 4 + 1 windows per scene; the 3-frame scene skipped
    video = ds[1]
    assert video.shape == (3, 4, 64, 128) and video.dtype == torch.float32
    # frame 1..4 of scene00, centre crop 144x72 (already 2:1) resized to 128x64: check normalization on frame 1
    import cv2

    frames = make_scene(0).camera_frames
    resized = cv2.resize(frames[1], (128, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    expected = (resized[..., 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert np.allclose(video[0, 0].numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="no 12-frame clips"):
        SceneClipDataset(scene_dir / "short.npz", ClipConfig(num_frames=12))


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------
def tiny_config(steps: int = 3, hflip: float = 0.0) -> PretrainConfig:
    return PretrainConfig(
        model=ModelSection(size="tiny", overrides={"embed_dim": 64, "depth": 1, "num_heads": 1}),
        predictor=PredictorSection(predictor_dim=32, depth=1, num_heads=1, mlp_ratio=2.0, num_mask_tokens=2),
        data=ClipConfig(num_frames=4, fps=2.0, width=128, height=64, hflip_prob=hflip),
        optim=OptimSection(batch_size=2, steps=steps, lr=1e-3, start_lr=1e-4, final_lr=1e-5, warmup_steps=1,
                           ema=(0.99, 0.999)),
        run=RunSection(seed=0, num_workers=0, log_every=1, save_every=100, device="cpu"),
    )


def test_three_step_pretraining_and_resume(scene_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    summary = pretrain(tiny_config(3), scene_dir, run, progress=False, log=lambda _: None)
    assert summary["steps"] == 3 and summary["num_clips"] == 27 and summary["samples_per_s"] > 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 and r["target_std"] > 0 for r in records)
    assert math.isclose(records[0]["lr"], 1e-3) and math.isclose(records[0]["momentum"], 0.99)
    for name in ("encoder", "target_encoder", "predictor"):
        assert (run / f"{name}.safetensors").is_file() and (run / f"{name}.json").is_file()
    assert json.loads((run / "checkpoint" / "state.json").read_text()) == {"step": 3}
    target = load_vjepa2_encoder(run)  # a run directory stands for its target (EMA) encoder
    online = load_vjepa2_encoder(run, key="encoder")
    assert target.config.embed_dim == 64
    assert not torch.equal(target.blocks[0].attn.qkv.weight, online.blocks[0].attn.qkv.weight)

    # 2 steps, then resume to 3: identical weights to the uninterrupted run (masks and batches are keyed by step)
    split = tmp_path / "split"
    first = pretrain(tiny_config(3), scene_dir, split, stop_at=2, progress=False, log=lambda _: None)
    assert first["steps"] == 2
    messages: list[str] = []
    pretrain(tiny_config(3), scene_dir, split, progress=False, log=messages.append)
    assert any("resuming" in m and "step 2" in m for m in messages)
    for name in ("encoder", "target_encoder"):
        a = load_vjepa2_encoder(run / f"{name}.safetensors").state_dict()
        b = load_vjepa2_encoder(split / f"{name}.safetensors").state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), name


def test_init_from_official_checkpoint(scene_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc = VisionTransformer(EncoderConfig(embed_dim=64, depth=1, num_heads=1, mlp_hidden_dim=128))
    tgt = VisionTransformer(EncoderConfig(embed_dim=64, depth=1, num_heads=1, mlp_hidden_dim=128))
    pred = Predictor(PredictorConfig(encoder_dim=64, predictor_dim=32, depth=1, num_heads=1, mlp_hidden_dim=64,
                                     num_mask_tokens=10))
    ckpt = tmp_path / "vitl.pt"
    torch.save({key: {f"module.backbone.{k}": v for k, v in m.state_dict().items()}
                for key, m in (("encoder", enc), ("target_encoder", tgt), ("predictor", pred))} | {"epoch": 1}, ckpt)
    messages: list[str] = []
    out = tmp_path / "cont"
    pretrain(tiny_config(1), scene_dir, out, init=ckpt, progress=False, log=messages.append)
    assert any("predictor from" in m or "and predictor" in m for m in messages)
    # the EMA target moved by (1 - 0.99) towards the updated online encoder: still close to the checkpoint target
    new_target = load_vjepa2_encoder(out)
    w0, w1 = tgt.blocks[0].mlp.fc1.weight, new_target.blocks[0].mlp.fc1.weight
    assert not torch.equal(w0, w1) and torch.allclose(w0, w1, atol=0.05)
    # an encoder file of ours also works as --init (predictor from scratch)
    own = save_encoder(tgt, tmp_path / "own.safetensors")
    messages.clear()
    pretrain(tiny_config(1), scene_dir, tmp_path / "own_run", init=own, progress=False, log=messages.append)
    assert any("predictor from scratch" in m for m in messages)


def test_yaml_configs_parse() -> None:
    tiny = load_pretrain_config(CONFIG_DIR / "pretrain_tiny.yaml")
    assert tiny.model.size == "tiny" and len(tiny.masks) == 2
    vitl = load_pretrain_config(CONFIG_DIR / "pretrain_vitl.yaml")
    assert vitl.model.size == "large" and vitl.data.num_frames == 8 and (vitl.data.width, vitl.data.height) == (512,
                                                                                                                256)
    assert vitl.masks == (SHORT_RANGE, LONG_RANGE) and vitl.optim.ema == (0.99925, 0.99925)


def test_bad_config_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 1.0\n")
    with pytest.raises(ValueError, match="learning_rate"):
        load_pretrain_config(path)


def test_cli_registers_pretrain(scene_dir: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["pretrain", "--data", str(scene_dir), "--out", str(tmp_path / "r"), "--steps", "2"])
    assert args.steps == 2 and args.config.name == "pretrain_tiny.yaml" and args.init is None
