"""V-JEPA pretraining loop (vjepa2.md A3/A4; Drive-JEPA's driving-video setting, drive_jepa.md §9).

Per step, for a batch of clips ``(B, 3, T, H, W)``:

1. the EMA target encoder encodes the full clip; its tokens are layer-normed again (no affine) → targets ``(B, N, D)``;
2. for each mask generator (short-range, long-range): the online encoder sees only the context tokens, the predictor
   predicts the hidden tokens, loss = mean L1 over the hidden tokens;
3. loss = mean over generators; AdamW step (bias and 1-D parameters without weight decay) with linear warm-up then
   cosine LR; EMA update of the target encoder with a linearly scheduled momentum.

Logged: loss, LR, momentum and a collapse monitor — the mean over feature dimensions of the per-dimension std of the
normalized targets across all tokens of the batch (tends to 0 if every token maps to the same vector).

A run directory holds ``config.yaml``, the latest ``encoder`` / ``target_encoder`` / ``predictor`` ``.safetensors``
(+ ``.json``; see :mod:`drive_jepa_core.checkpoints`), ``checkpoint/optimizer.pt`` (``torch.save`` of tensors and
numbers only, read back with ``weights_only=True``), ``checkpoint/state.json`` and ``log.jsonl``. A run directory
with a ``checkpoint/state.json`` is resumed.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, Sampler

from drive_jepa_core.checkpoints import (
    CheckpointError,
    checkpoint_has_key,
    load_state_strict,
    load_vjepa2_encoder,
    load_vjepa2_predictor,
    save_encoder,
    save_predictor,
)
from drive_jepa_core.models.predictor import Predictor, PredictorConfig
from drive_jepa_core.models.vit import VisionTransformer, encoder_config
from drive_jepa_core.pretrain.data import ClipConfig, SceneClipDataset
from drive_jepa_core.pretrain.ema import ema_update, momentum_at
from drive_jepa_core.pretrain.masks import DEFAULT_MASKS, MaskConfig, MultiBlockMaskGenerator

STATE_DIR = "checkpoint"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"


# ---------------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSection:
    size: str = "large"
    overrides: dict[str, Any] = field(default_factory=dict)  # EncoderConfig fields (or mlp_ratio)
    activation_checkpointing: bool = False


@dataclass(frozen=True)
class PredictorSection:
    """Released V-JEPA 2 predictor by default (vjepa2.md A2)."""

    predictor_dim: int = 384
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_mask_tokens: int = 10


@dataclass(frozen=True)
class OptimSection:
    """Upstream ViT-L pretraining values by default (vjepa2.md A4); Drive-JEPA's own are unverified (§9)."""

    batch_size: int = 24
    steps: int = 15000
    lr: float = 5.25e-4
    start_lr: float = 1.0e-4
    final_lr: float = 5.25e-4
    warmup_steps: int = 12000
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    ema: tuple[float, float] = (0.99925, 0.99925)
    grad_clip: float = 0.0  # 0 = off (V-JEPA 2 does not clip)


@dataclass(frozen=True)
class RunSection:
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    save_every: int = 500
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "bfloat16"  # autocast dtype on CUDA (bfloat16 | float32); CPU always runs float32
    mask_token_index: int = 0  # upstream training uses the clip-length group index = 0 (vjepa2.md A2)


@dataclass(frozen=True)
class PretrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    predictor: PredictorSection = field(default_factory=PredictorSection)
    data: ClipConfig = field(default_factory=ClipConfig)
    masks: tuple[MaskConfig, ...] = DEFAULT_MASKS
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["masks"] = [asdict(m) for m in self.masks]
        return _lists(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        sections: dict[str, type] = {"model": ModelSection, "predictor": PredictorSection, "data": ClipConfig,
                                     "optim": OptimSection, "run": RunSection}
        _check_keys("pretrain config", data, set(sections) | {"masks"})
        kwargs: dict[str, Any] = {}
        for name, section in sections.items():
            if name in data:
                values = dict(data[name] or {})
                _check_keys(f"pretrain config section '{name}'", values, {f.name for f in fields(section)})
                kwargs[name] = section(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        if "masks" in data:
            masks = []
            for m in data["masks"]:
                _check_keys("mask config", m, {f.name for f in fields(MaskConfig)})
                masks.append(MaskConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}))
            if not masks:
                raise ValueError("pretrain config needs at least one mask generator")
            kwargs["masks"] = tuple(masks)
        return cls(**kwargs)


def load_pretrain_config(path: str | Path) -> PretrainConfig:
    """Read a pretraining YAML (sections ``model``, ``predictor``, ``data``, ``masks``, ``optim``, ``run``)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a pretraining config must be a YAML mapping")
    try:
        return PretrainConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _check_keys(what: str, data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in {what}; allowed: {sorted(allowed)}")


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------------------------------
# Loss, monitor, schedules, optimizer
# ---------------------------------------------------------------------------------------------------------------------
def normalize_targets(features: torch.Tensor) -> torch.Tensor:
    """Layer norm over the feature dimension without affine parameters: ``(B, N, D)`` → ``(B, N, D)``."""
    return F.layer_norm(features.float(), (features.shape[-1],))


def jepa_l1_loss(predictions: torch.Tensor, targets: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between predictions ``(B, Kt, D)`` and the targets ``(B, N, D)`` gathered at
    ``target_ids (B, Kt)`` — only the hidden tokens count (vjepa2.md A4, ``loss_exp = 1``)."""
    picked = torch.gather(targets, 1, target_ids.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))
    return (predictions.float() - picked).abs().mean()


def feature_std(features: torch.Tensor) -> float:
    """Collapse monitor: mean over dimensions of the per-dimension std across all ``B·N`` tokens of ``(B, N, D)``."""
    flat = features.detach().float().reshape(-1, features.shape[-1])
    return float(flat.std(dim=0).mean()) if flat.shape[0] > 1 else 0.0


def lr_at(step: int, optim: OptimSection) -> float:
    """Linear warm-up ``start_lr → lr`` over ``warmup_steps`` (progress ``(step + 1) / warmup``, as upstream), then
    half-cosine ``lr → final_lr`` over the remaining steps."""
    if step < optim.warmup_steps:
        return optim.start_lr + (optim.lr - optim.start_lr) * (step + 1) / optim.warmup_steps
    span = max(1, optim.steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    return optim.final_lr + (optim.lr - optim.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(*modules: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weights decayed; biases and 1-D parameters (LayerNorm) not (vjepa2.md A4)."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if name.endswith("bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------------------
class VJEPATrainer:
    """Online encoder + predictor trained against an EMA target encoder.

    Args:
        config: the run configuration.
        encoder: online encoder; the target starts as a copy unless ``target_encoder`` is given.
        predictor: V-JEPA predictor whose ``encoder_dim`` matches the encoder.
        device: where to train.
    """

    def __init__(self, config: PretrainConfig, encoder: VisionTransformer, predictor: Predictor,
                 target_encoder: VisionTransformer | None = None, device: str | torch.device = "cpu") -> None:
        if predictor.config.encoder_dim != encoder.embed_dim:
            raise ValueError(f"predictor encoder_dim {predictor.config.encoder_dim} != encoder dim {encoder.embed_dim}")
        self.config = config
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).train()
        self.predictor = predictor.to(self.device).train()
        self.target_encoder = (target_encoder if target_encoder is not None else copy.deepcopy(encoder))
        self.target_encoder = self.target_encoder.to(self.device).eval().requires_grad_(False)
        clip = config.data
        self.grid = self.encoder.grid_shape((1, 3, clip.num_frames, clip.height, clip.width))
        self.mask_generators = [MultiBlockMaskGenerator(self.grid, m) for m in config.masks]
        opt = config.optim
        self.optimizer = torch.optim.AdamW(param_groups(self.encoder, self.predictor, weight_decay=opt.weight_decay),
                                           lr=opt.start_lr, betas=opt.betas, eps=opt.eps)
        self.step = 0
        use_bf16 = self.device.type == "cuda" and config.run.dtype == "bfloat16"
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def sample_masks(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(context_ids, target_ids) per generator, seeded by (seed, step, generator) so resumed runs repeat them."""
        out = []
        for g, generator in enumerate(self.mask_generators):
            rng = np.random.default_rng([self.config.run.seed, self.step, g])
            ctx, tgt = generator(batch_size, rng)
            out.append((ctx.to(self.device), tgt.to(self.device)))
        return out

    def train_step(self, video: torch.Tensor) -> dict[str, float]:
        """One optimization step on ``video (B, 3, T, H, W)``; returns the logged scalars."""
        opt = self.config.optim
        video = video.to(self.device, non_blocking=True)
        lr = lr_at(self.step, opt)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        masks = self.sample_masks(video.shape[0])
        with torch.no_grad(), self._autocast():
            targets = normalize_targets(self.target_encoder(video))  # (B, N, D) float32
        losses = []
        with self._autocast():
            for ctx_ids, tgt_ids in masks:
                context = self.encoder(video, ctx_ids)
                pred = self.predictor(context, ctx_ids, tgt_ids, self.grid, self.config.run.mask_token_index)
                losses.append(jepa_l1_loss(pred, targets, tgt_ids))
        loss = torch.stack(losses).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretraining loss became {float(loss)} at step {self.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if opt.grad_clip > 0:
            nn.utils.clip_grad_norm_(list(self.encoder.parameters()) + list(self.predictor.parameters()),
                                     opt.grad_clip)
        self.optimizer.step()
        momentum = momentum_at(self.step, opt.steps, *opt.ema)
        ema_update(self.target_encoder, self.encoder, momentum)
        self.step += 1
        return {"step": self.step, "loss": float(loss.detach()), "lr": lr, "momentum": momentum,
                "target_std": feature_std(targets)}

    # -- persistence -------------------------------------------------------------------------------------------------
    def save(self, run_dir: str | Path) -> None:
        """Write the resumable state into ``run_dir`` (weights first, ``state.json`` last)."""
        run_dir = Path(run_dir)
        state_dir = run_dir / STATE_DIR
        state_dir.mkdir(parents=True, exist_ok=True)
        save_encoder(self.encoder, run_dir / "encoder.safetensors")
        save_encoder(self.target_encoder, run_dir / "target_encoder.safetensors")
        save_predictor(self.predictor, run_dir / "predictor.safetensors")
        tmp = state_dir / "optimizer.pt.tmp"
        torch.save(self.optimizer.state_dict(), tmp)
        tmp.replace(state_dir / "optimizer.pt")
        (state_dir / "state.json").write_text(json.dumps({"step": self.step}) + "\n")

    def resume(self, run_dir: str | Path) -> None:
        """Load weights, optimizer state and step written by :meth:`save` (strict; raises on any mismatch)."""
        run_dir = Path(run_dir)
        load_state_strict(self.encoder, _tensors(run_dir / "encoder.safetensors"), source="encoder")
        load_state_strict(self.target_encoder, _tensors(run_dir / "target_encoder.safetensors"),
                          source="target_encoder")
        load_state_strict(self.predictor, _tensors(run_dir / "predictor.safetensors"), source="predictor")
        state = torch.load(run_dir / STATE_DIR / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state)
        self.step = int(json.loads((run_dir / STATE_DIR / "state.json").read_text())["step"])


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} is missing")
    return load_file(str(path))


# ---------------------------------------------------------------------------------------------------------------------
# Building models and data
# ---------------------------------------------------------------------------------------------------------------------
def build_models(config: PretrainConfig, init: str | Path | None = None,
                 log: Any = print) -> tuple[VisionTransformer, VisionTransformer | None, Predictor]:
    """(online encoder, target encoder or None = copy of online, predictor) from scratch or from ``init``.

    ``init`` may be an official V-JEPA 2 ``.pt`` (``encoder``, ``target_encoder``, ``predictor`` keys), an HF
    ``VJEPA2Model`` safetensors file, an encoder file of ours, or a previous pretraining run directory. The
    checkpoint fixes the encoder architecture (and the predictor's, when it holds one); the config's ``model``
    section is then ignored.
    """
    ckpt = config.model.activation_checkpointing
    if init is None:
        encoder = VisionTransformer(encoder_config(config.model.size, **config.model.overrides), ckpt)
        return encoder, None, _new_predictor(config, encoder.embed_dim)
    init = Path(init)
    has_target, has_online = _has_member(init, "target_encoder"), _has_member(init, "encoder")
    target = load_vjepa2_encoder(init, key="target_encoder" if has_target or not has_online else "encoder")
    encoder = load_vjepa2_encoder(init, key="encoder") if has_online and has_target else copy.deepcopy(target)
    if encoder.config != target.config:
        raise CheckpointError(f"{init}: encoder and target_encoder architectures differ")
    encoder.use_activation_checkpointing = ckpt
    try:
        predictor = load_vjepa2_predictor(init)
        log(f"initialized encoder, target encoder and predictor from {init}")
    except CheckpointError:
        predictor = _new_predictor(config, encoder.embed_dim)
        log(f"initialized encoder and target encoder from {init}; predictor from scratch")
    predictor.use_activation_checkpointing = ckpt
    return encoder.train(), target, predictor.train()


def _has_member(path: Path, key: str) -> bool:
    if path.is_dir():
        return (path / f"{key}.safetensors").is_file()
    if path.suffix in (".pt", ".pth"):
        return checkpoint_has_key(path, key)
    # a single safetensors file holds one encoder: it becomes the target, the online encoder starts as its copy
    return key == "target_encoder"


def _new_predictor(config: PretrainConfig, encoder_dim: int) -> Predictor:
    p = config.predictor
    return Predictor(PredictorConfig(encoder_dim=encoder_dim, predictor_dim=p.predictor_dim, depth=p.depth,
                                     num_heads=p.num_heads, mlp_hidden_dim=int(round(p.predictor_dim * p.mlp_ratio)),
                                     num_mask_tokens=p.num_mask_tokens), config.model.activation_checkpointing)


class StepBatchSampler(Sampler[list[int]]):
    """Batches of dataset indices keyed by step: the ``k``-th sample ever drawn is ``perm_e[k mod n]`` with
    ``e = k // n`` and ``perm_e`` a permutation seeded by ``(seed, e)`` — so a resumed run continues the same order."""

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: int, end_step: int) -> None:
        self.n, self.batch_size, self.seed = int(num_items), int(batch_size), int(seed)
        self.start_step, self.end_step = int(start_step), int(end_step)
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def _index(self, k: int) -> int:
        epoch = k // self.n
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._perm[1][k % self.n])

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            yield [self._index(step * self.batch_size + j) for j in range(self.batch_size)]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------
def pretrain(config: PretrainConfig, data_dir: str | Path, out_dir: str | Path, init: str | Path | None = None,
             steps: int | None = None, stop_at: int | None = None, progress: bool = True,
             log: Any = print) -> dict[str, Any]:
    """Run (or resume) V-JEPA pretraining on the scenes under ``data_dir``; writes the run directory ``out_dir``.

    Args:
        init: initial weights for a new run (see :func:`build_models`); ignored when ``out_dir`` is resumed.
        steps: override ``optim.steps`` (the total; the LR/EMA schedules stretch to it).
        stop_at: save and stop after this step although the schedule spans ``optim.steps`` (time-sliced jobs: a
            later call with the same ``out_dir`` continues exactly where this one stopped).

    Returns:
        Summary: ``steps``, ``final_loss``, ``final_target_std``, ``samples_per_s`` (this invocation), ``run_dir``.
    """
    from tqdm import tqdm

    if steps is not None:
        if steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        config = replace(config, optim=replace(config.optim, steps=int(steps)))
    out_dir = Path(out_dir)
    resuming = (out_dir / STATE_DIR / "state.json").is_file()
    torch.manual_seed(config.run.seed)
    device = resolve_device(config.run.device)
    dataset = SceneClipDataset(data_dir, config.data)
    if dataset.skipped:
        log(f"skipped {len(dataset.skipped)} scene(s) with fewer than {config.data.num_frames} usable frames")
    if resuming:
        # The saved weights fix the architecture: rebuild it from them, then load the full state.
        encoder = load_vjepa2_encoder(out_dir / "encoder.safetensors")
        encoder.use_activation_checkpointing = config.model.activation_checkpointing
        predictor = load_vjepa2_predictor(out_dir / "predictor.safetensors")
        predictor.use_activation_checkpointing = config.model.activation_checkpointing
        trainer = VJEPATrainer(config, encoder, predictor, device=device)
        trainer.resume(out_dir)
        log(f"resuming {out_dir} at step {trainer.step}" + (f" (--init {init} ignored)" if init else ""))
    else:
        encoder, target, predictor = build_models(config, init, log)
        trainer = VJEPATrainer(config, encoder, predictor, target, device=device)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / CONFIG_FILE, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config.to_dict(), fh, sort_keys=False)

    total = config.optim.steps
    end = total if stop_at is None else max(trainer.step, min(total, int(stop_at)))
    sampler = StepBatchSampler(len(dataset), config.optim.batch_size, config.run.seed, trainer.step, end)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.run.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    record: dict[str, float] = {}
    start_step, t0 = trainer.step, time.perf_counter()
    bar = tqdm(total=total, initial=trainer.step, desc="pretrain", unit="step", disable=not progress)
    with open(out_dir / LOG_FILE, "a", encoding="utf-8") as log_fh:
        for video in loader:
            record = trainer.train_step(video)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", std=f"{record['target_std']:.3f}")
            step = trainer.step
            if step % config.run.log_every == 0 or step == end:
                elapsed = time.perf_counter() - t0
                record["samples_per_s"] = (step - start_step) * config.optim.batch_size / max(elapsed, 1e-9)
                log_fh.write(json.dumps(record) + "\n")
                log_fh.flush()
            if step % config.run.save_every == 0 or step == end:
                trainer.save(out_dir)
    bar.close()
    elapsed = time.perf_counter() - t0
    done = trainer.step - start_step
    if done == 0:
        trainer.save(out_dir)
    return {"steps": trainer.step, "final_loss": record.get("loss"), "final_target_std": record.get("target_std"),
            "samples_per_s": done * config.optim.batch_size / elapsed if done else 0.0, "run_dir": str(out_dir),
            "num_clips": len(dataset)}
