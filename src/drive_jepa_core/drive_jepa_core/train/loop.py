"""``drive-jepa train``: planner training, single process or DDP under ``torchrun``.

Per step (drive_jepa.md §5, §10): GridMask on the normalized video → forward → the final proposals are detached and
scored on CPU against each sample's scene (EPDMS targets for the score head, per-waypoint on-road/on-route and
collision targets for the auxiliary heads) → imitation + MTD + BCE losses → AdamW step (encoder at 0.1× LR).

Distributed: ``torchrun --nproc_per_node=N -m drive_jepa_core.cli train …`` (or ``drive-jepa train --nproc N``, which
launches torchrun for you) runs one process per GPU with NCCL, or N CPU processes with gloo. Each process reads its
own shard (``DistributedSampler``) and scores its own proposals. Without torchrun it runs as one plain process.
bf16 autocast is used on CUDA only.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from drive_jepa_core.train.augment import GridMask
from drive_jepa_core.train.checkpoint import (
    BEST_FILE,
    MODEL_FILE,
    create_model,
    load_training_state,
    save_planner,
    save_training_state,
    unwrap,
)
from drive_jepa_core.train.config import TrainConfig
from drive_jepa_core.train.dataset import PlannerDataset, collate_samples, teachers_path

LOG_FILE = "log.jsonl"


# ---------------------------------------------------------------------------------------------------------------------
# Distributed setup
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None, cpu_threads: int = 0) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1), NCCL on CUDA and gloo on CPU; otherwise a
    single process. ``device``: "cpu" / "cuda" to force one (default: CUDA when available). ``cpu_threads``: torch
    threads on CPU (0: the machine's cores shared by this machine's processes; OMP_NUM_THREADS, if set, wins)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
        if "OMP_NUM_THREADS" not in os.environ:
            local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", world_size)))
            torch.set_num_threads(cpu_threads or max(1, (os.cpu_count() or 1) // local))
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        torch_dist.barrier()


def _all_reduce_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=info.device if info.device.type == "cuda" else "cpu")
    torch_dist.all_reduce(t)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist(), strict=True)}


class _SkipSampler(Sampler[int]):
    """The epoch's indices of a DistributedSampler minus the first ``skip`` (resume mid-epoch)."""

    def __init__(self, sampler: DistributedSampler, skip: int) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.sampler)[self.skip:])

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


# ---------------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------------
class Trainer:
    """One training run.

    Args:
        config: :class:`TrainConfig`.
        data: training scene directory (or list of scene files).
        out: run directory (created).
        val: optional validation scene directory: each epoch the top-scored proposal of every val scene is simulated
            and scored; the best mean score is kept as ``best.safetensors``.
        resume: continue from ``out/checkpoint``.
        device: "cpu" / "cuda" (default: CUDA when available).
        progress: tqdm bar on rank 0.
    """

    def __init__(self, config: TrainConfig, data: str | Path | list, out: str | Path, val: str | Path | None = None,
                 resume: bool = False, device: str | None = None, progress: bool = True) -> None:
        self.config = config
        self.out = Path(out)
        self.info = setup_distributed(device, config.train.cpu_threads)
        self.progress = progress and self.info.is_main
        cfg = config
        torch.manual_seed(cfg.train.seed)  # identical init on every rank (DDP also broadcasts rank 0's weights)
        np.random.seed(cfg.train.seed + self.info.rank)
        self.model, self.spec = create_model(
            cfg.model.variant, cfg.model.encoder_size, cfg.model.planner, config.image_size,
            cfg.model.encoder_overrides, cfg.model.encoder_checkpoint, cfg.model.activation_checkpointing)
        self.model.to(self.info.device)
        self.is_proposal = cfg.model.variant == "proposal"
        self.planner_config = self.spec.planner_config()
        self.use_mtd = self.is_proposal and cfg.model.mtd
        draws = self.planner_config.num_iterations if self.is_proposal else 1
        self.dataset = PlannerDataset(
            data, config.image_size, teachers_dir=cfg.data.teachers_dir,
            max_teachers=min(cfg.data.max_teachers, getattr(self.planner_config, "max_pseudo_teachers", 0)),
            use_teachers=self.use_mtd, teacher_draws=draws, cache=cfg.data.cache,
            num_poses=self.planner_config.num_poses)
        if self.use_mtd and self.info.is_main:
            found = sum(teachers_path(p, cfg.data.teachers_dir).exists() for p in self.dataset.paths)
            if found == 0:
                print(f"warning: none of the {len(self.dataset)} training scenes has a pseudo-teacher file; the MTD "
                      f"term is 0. Run `drive-jepa vocab build` and `drive-jepa vocab score` first.", file=sys.stderr)
        self.val_dataset = (PlannerDataset(val, config.image_size, use_teachers=False, cache=cfg.data.cache,
                                           num_poses=self.planner_config.num_poses)
                            if val is not None else None)
        self.sampler = DistributedSampler(self.dataset, num_replicas=self.info.world_size, rank=self.info.rank,
                                          shuffle=True, seed=cfg.train.seed, drop_last=False)
        per_rank = len(self.sampler)
        self.drop_last = per_rank >= cfg.train.batch_size
        self.steps_per_epoch = per_rank // cfg.train.batch_size if self.drop_last else 1
        encoder_params = {id(p) for p in unwrap(self.model).encoder.parameters()}
        groups = [
            {"params": [p for p in self.model.parameters() if id(p) in encoder_params and p.requires_grad],
             "lr": cfg.optim.lr * cfg.optim.encoder_lr_scale, "name": "encoder"},
            {"params": [p for p in self.model.parameters() if id(p) not in encoder_params and p.requires_grad],
             "lr": cfg.optim.lr, "name": "planner"},
        ]
        for g in groups:
            g["base_lr"] = g["lr"]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                                           weight_decay=cfg.optim.weight_decay)
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.seconds = {"targets": 0.0, "steps": 0.0}  # wall time in online scoring / in whole train steps
        self.best_score: float | None = None
        if resume:
            state = load_training_state(self.out, self.model, self.optimizer)
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            self.batch_in_epoch = int(state.get("batch_in_epoch", 0))
            self.best_score = state.get("best_score")
            if self.batch_in_epoch >= self.steps_per_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        elif self.info.is_main and (self.out / LOG_FILE).exists():
            (self.out / LOG_FILE).unlink()  # a fresh run into an old directory starts a fresh log; --resume appends
        self._main_loader: DataLoader | None = None
        self._val_store: Any = None  # scoring caches of the validation scenes, kept across epochs
        self.targets = None
        if self.is_proposal:
            from drive_jepa_core.train.targets import OnlineTargets

            self.targets = OnlineTargets(version=cfg.train.score_version, cache_scenes=cfg.train.score_cache_scenes,
                                         workers=cfg.train.score_workers)
        self.grid_mask = GridMask(cfg.train.grid_mask_prob, cfg.train.grid_mask_ratio)
        self.amp = cfg.train.amp and self.info.device.type == "cuda"
        self.ddp: nn.Module = self.model
        if self.info.enabled:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.info.device.index] if self.info.device.type == "cuda" else None)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            config.save(self.out / "config.yaml")
        _barrier(self.info)

    # -----------------------------------------------------------------------------------------------------------------
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        """The epoch's batches. The regular loader is built once with persistent workers, so each DataLoader
        worker keeps its in-memory sample cache across epochs; a resumed partial epoch gets a one-off loader."""
        self.sampler.set_epoch(epoch)
        workers = self.config.data.num_workers
        kwargs = dict(batch_size=self.config.train.batch_size, num_workers=workers, collate_fn=collate_samples,
                      drop_last=self.drop_last, pin_memory=self.info.device.type == "cuda")
        if skip_batches:
            sampler = _SkipSampler(self.sampler, skip_batches * self.config.train.batch_size)
            return DataLoader(self.dataset, sampler=sampler, **kwargs)
        if self._main_loader is None:
            self._main_loader = DataLoader(self.dataset, sampler=self.sampler, persistent_workers=workers > 0,
                                           **kwargs)
        return self._main_loader

    def _set_lr(self) -> float:
        warm = self.config.optim.warmup_steps
        factor = min(1.0, (self.step + 1) / warm) if warm > 0 else 1.0
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        return self.config.optim.lr * factor

    def _forward(self, batch: dict[str, Any], train: bool) -> dict[str, torch.Tensor]:
        dev = self.info.device
        video = batch["video"].to(dev, non_blocking=True)
        if train:
            video = self.grid_mask(video)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            out = (self.ddp if train else self.model)(video, batch["ego_status"].to(dev), batch["ego2image"].to(dev))
        return {k: v.float() for k, v in out.items()}

    def _loss(self, batch: dict[str, Any], out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        from drive_jepa_core.models.losses import PlannerTargets, length_normalized_l1, planner_loss

        dev = self.info.device
        trajectory = batch["trajectory"].to(dev)
        if not self.is_proposal:
            loss = length_normalized_l1(out["trajectory"], trajectory, alpha=self.planner_config.length_norm_alpha)
            return {"total": loss, "imitation": loss.detach()}
        proposals = out["proposals"].detach().cpu().numpy()
        t0 = time.perf_counter()
        tgt = self.targets(batch["scene_path"], proposals)
        self.seconds["targets"] += time.perf_counter() - t0
        teachers = mask = None
        if self.use_mtd:
            teachers = batch["teachers"].to(dev).transpose(0, 1)  # (B, D, K, M, 3) -> (D=I, B, K, M, 3)
            mask = batch["teacher_mask"].to(dev).transpose(0, 1)
        targets = PlannerTargets(trajectory=trajectory, pseudo_teachers=teachers, pseudo_teacher_mask=mask,
                                 score=torch.from_numpy(tgt.score).to(dev),
                                 mapping=torch.from_numpy(tgt.mapping).to(dev),
                                 collision=torch.from_numpy(tgt.collision).to(dev))
        losses = planner_loss(out, targets, self.planner_config.loss)
        losses["target_score"] = torch.tensor(float(np.mean(tgt.score)))
        return losses

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimizer step on ``batch``; returns the detached loss values."""
        t0 = time.perf_counter()
        self.model.train()
        lr = self._set_lr()
        out = self._forward(batch, train=True)
        losses = self._loss(batch, out)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.step += 1
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"training loss became {values['total']} at step {self.step}: {values}")
        values["lr"] = lr
        self.seconds["steps"] += time.perf_counter() - t0
        return values

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean simulated score of the top-scored proposal over the validation scenes (rank 0 computes)."""
        from drive_jepa_core.train.evaluate import score_selected
        from drive_jepa_core.train.targets import MetricCacheStore

        assert self.val_dataset is not None
        if self._val_store is None:
            self._val_store = MetricCacheStore(self.config.train.score_cache_scenes)
        self.model.eval()
        loader = DataLoader(self.val_dataset, batch_size=self.config.train.batch_size, shuffle=False,
                            collate_fn=collate_samples)
        scores = []
        for batch in loader:
            out = self._forward(batch, train=False)
            selected = out["trajectory"].cpu().numpy()
            scores.extend(score_selected(batch["scene_path"], selected, self.config.train.score_version,
                                         self._val_store))
        return {"val_score": float(np.nanmean(scores)) if scores else float("nan"), "val_scenes": len(scores)}

    def _log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            with open(self.out / LOG_FILE, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def _save(self, batch_in_epoch: int) -> None:
        if self.info.is_main:
            state = {"epoch": self.epoch, "step": self.step, "batch_in_epoch": batch_in_epoch,
                     "best_score": self.best_score, "world_size": self.info.world_size}
            save_training_state(self.out, self.model, self.spec, self.optimizer, state)
            save_planner(self.model, self.spec, self.out / MODEL_FILE,
                         extra={"step": self.step, "epoch": self.epoch})
        _barrier(self.info)

    def run(self) -> dict[str, Any]:
        """Train to ``epochs`` (or ``max_steps``); returns a summary (steps, samples/s, last losses, best score)."""
        from tqdm import tqdm

        cfg = self.config.train
        max_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * self.steps_per_epoch
        bar = tqdm(total=max_steps, initial=min(self.step, max_steps), desc="train", unit="step",
                   disable=not self.progress)
        samples = 0
        t_start = time.perf_counter()
        window: dict[str, list[float]] = {}
        last: dict[str, float] = {}
        done = self.step >= max_steps
        while not done and self.epoch < cfg.epochs:
            # Per-epoch seeding: teacher draws and GridMask are reproducible, also after --resume.
            torch.manual_seed(cfg.seed + 1000 * self.epoch + self.info.rank)
            skip = self.batch_in_epoch
            epoch_values: dict[str, list[float]] = {}
            for i, batch in enumerate(self._loader(self.epoch, skip), start=skip):
                last = self.train_step(batch)
                samples += len(batch["scene_path"])
                for k, v in last.items():
                    window.setdefault(k, []).append(v)
                    epoch_values.setdefault(k, []).append(v)
                bar.update()
                bar.set_postfix(loss=f"{last['total']:.3f}")
                if self.step % max(1, cfg.log_every) == 0:
                    elapsed = time.perf_counter() - t_start
                    self._log({"step": self.step, "epoch": self.epoch,
                               **{k: float(np.mean(v)) for k, v in window.items()},
                               "samples_per_s": samples * self.info.world_size / max(elapsed, 1e-9)})
                    window = {}
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self._save(batch_in_epoch=i + 1)
                if self.step >= max_steps:
                    done = True
                    self.batch_in_epoch = i + 1
                    break
            else:
                self.batch_in_epoch = self.steps_per_epoch
            epoch_record = _all_reduce_mean({k: float(np.mean(v)) for k, v in epoch_values.items()}, self.info)
            finished_epoch = self.batch_in_epoch >= self.steps_per_epoch
            if finished_epoch and self.val_dataset is not None and self.config.train.validate:
                if self.info.is_main:
                    val = self.validate()
                    epoch_record.update(val)
                    if self.best_score is None or val["val_score"] > self.best_score:
                        self.best_score = val["val_score"]
                        save_planner(self.model, self.spec, self.out / BEST_FILE,
                                     extra={"step": self.step, "epoch": self.epoch, "val_score": self.best_score})
                _barrier(self.info)
            self._log({"epoch_end": self.epoch, "step": self.step, **epoch_record})
            if finished_epoch:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            self._save(batch_in_epoch=self.batch_in_epoch)
        bar.close()
        elapsed = time.perf_counter() - t_start
        return {"steps": self.step, "epochs": self.epoch, "world_size": self.info.world_size,
                "samples": samples * self.info.world_size, "seconds": elapsed,
                "samples_per_s": samples * self.info.world_size / max(elapsed, 1e-9),
                "last": last, "best_score": self.best_score, "run_dir": str(self.out),
                "step_seconds": self.seconds["steps"], "target_seconds": self.seconds["targets"]}

    def close(self) -> None:
        if self.targets is not None:
            self.targets.close()
        if self.info.enabled and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def train(config: TrainConfig, data: str | Path, out: str | Path, val: str | Path | None = None,
          resume: bool = False, device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Run a whole training (see :class:`Trainer`) and return its summary."""
    trainer = Trainer(config, data, out, val=val, resume=resume, device=device, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()


__all__ = ["DistInfo", "LOG_FILE", "Trainer", "setup_distributed", "train"]
