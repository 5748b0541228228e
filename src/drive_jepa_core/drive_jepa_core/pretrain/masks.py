"""Multiblock 3-D tube masks for V-JEPA pretraining (vjepa2.md A3, upstream ``multiseq_multiblock3d``).

On a ``(T', H', W')`` token grid a mask generator hides the union of ``num_blocks`` boxes. The box size is drawn once
per batch: ``t = max(1, int(T' s_t))`` (``s_t = 1`` → the box spans the whole clip: a *tube*, the same spatial region
hidden in every frame), ``keep = int(H'W' s)``, ``h = round(sqrt(keep·ar))``, ``w = round(sqrt(keep/ar))`` clipped to
the grid, with ``s`` and ``ar`` drawn uniformly from their ranges. Each sample places its boxes uniformly at random;
the hidden tokens are the predictor targets, the visible ones the encoder context. A sample whose context is empty is
redrawn. To make the batch rectangular every sample is cut to the smallest count in the batch; upstream keeps the
*first* ids (always dropping the end of the clip), here a uniformly random subset is kept instead so no region is
systematically left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

_MAX_REDRAWS = 100  # attempts to draw a sample with a non-empty context before giving up


@dataclass(frozen=True)
class MaskConfig:
    """One mask generator (vjepa2.md A3 table)."""

    num_blocks: int
    spatial_scale: tuple[float, float]  # fraction of H'W' covered by one block
    aspect_ratio: tuple[float, float] = (0.75, 1.5)  # h / w of one block
    temporal_scale: tuple[float, float] = (1.0, 1.0)  # fraction of T' covered by one block (1 → tube)

    def __post_init__(self) -> None:
        for name in ("spatial_scale", "aspect_ratio", "temporal_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"mask {name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if self.num_blocks < 1:
            raise ValueError(f"mask num_blocks must be >= 1, got {self.num_blocks}")
        if self.spatial_scale[1] > 1 or self.temporal_scale[1] > 1:
            raise ValueError("mask spatial_scale and temporal_scale must be <= 1")


SHORT_RANGE = MaskConfig(num_blocks=8, spatial_scale=(0.15, 0.15))  # vjepa2.md A3 "short-range"
LONG_RANGE = MaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7))  # vjepa2.md A3 "long-range"
DEFAULT_MASKS: tuple[MaskConfig, ...] = (SHORT_RANGE, LONG_RANGE)


class MultiBlockMaskGenerator:
    """Draws (context, target) token-id sets for a batch on a fixed token grid.

    Args:
        grid: ``(T', H', W')`` token grid of the clips.
        config: block count and scale ranges.
    """

    def __init__(self, grid: tuple[int, int, int], config: MaskConfig) -> None:
        self.grid = tuple(int(g) for g in grid)
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise ValueError(f"grid must be three positive sizes (T', H', W'), got {grid}")
        self.config = config

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def sample_block_size(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """Block size ``(t, h, w)`` in tokens, drawn once per batch."""
        T, H, W = self.grid
        cfg = self.config
        s_t = rng.uniform(*cfg.temporal_scale)
        s = rng.uniform(*cfg.spatial_scale)
        ar = rng.uniform(*cfg.aspect_ratio)
        t = max(1, int(T * s_t))
        keep = int(H * W * s)
        h = min(H, max(1, int(round(math.sqrt(keep * ar)))))
        w = min(W, max(1, int(round(math.sqrt(keep / ar)))))
        return t, h, w

    def sample_mask(self, block_size: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
        """``(T', H', W')`` bool, True = hidden: union of ``num_blocks`` boxes of ``block_size`` placed at random."""
        T, H, W = self.grid
        t, h, w = block_size
        mask = np.zeros(self.grid, dtype=bool)
        for _ in range(self.config.num_blocks):
            t0 = int(rng.integers(0, T - t + 1))
            r0 = int(rng.integers(0, H - h + 1))
            c0 = int(rng.integers(0, W - w + 1))
            mask[t0:t0 + t, r0:r0 + h, c0:c0 + w] = True
        return mask

    def __call__(self, batch_size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``context_ids (B, Kc)`` and ``target_ids (B, Kt)``, int64, each row sorted ascending."""
        block = self.sample_block_size(rng)
        contexts, targets = [], []
        for _ in range(batch_size):
            for _ in range(_MAX_REDRAWS):
                hidden = self.sample_mask(block, rng).reshape(-1)
                if not hidden.all():
                    break
            else:
                raise RuntimeError(f"mask {self.config} with block {block} hides the whole grid {self.grid}")
            contexts.append(np.flatnonzero(~hidden))
            targets.append(np.flatnonzero(hidden))
        return _equalize(contexts, rng), _equalize(targets, rng)


def _equalize(rows: list[np.ndarray], rng: np.random.Generator) -> torch.Tensor:
    """Cut every row to the shortest length with a uniformly random (sorted) subset → ``(B, K)`` int64."""
    k = min(len(r) for r in rows)
    out = np.stack([r if len(r) == k else np.sort(rng.choice(r, size=k, replace=False)) for r in rows])
    return torch.from_numpy(out.astype(np.int64))
