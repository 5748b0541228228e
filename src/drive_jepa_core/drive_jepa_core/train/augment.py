"""GridMask, the planner's only training augmentation (drive_jepa.md §2.1, §10).

Reference settings: applied with probability 0.7 per forward call, after ImageNet normalization; grid period ``d``
drawn uniformly from ``[2, H)``; stripes ``l = ratio·d`` wide with ratio 0.5 in both directions, offset randomly;
``mode=1`` (inverted): the union of the row and column stripes is KEPT and the ``(d−l)²`` squares between them are
zeroed; no rotation. One mask is shared by every image of the batch and both frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# drive_jepa.md §2.1: prob 0.7, ratio 0.5, mode 1 (inverted), rotate 1 (= none).
GRID_MASK_PROB = 0.7
GRID_MASK_RATIO = 0.5


@dataclass(frozen=True)
class GridMask:
    prob: float = GRID_MASK_PROB
    ratio: float = GRID_MASK_RATIO

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"GridMask prob must be in [0, 1], got {self.prob}")
        if not 0.0 < self.ratio < 1.0:
            raise ValueError(f"GridMask ratio must be in (0, 1), got {self.ratio}")

    def mask(self, height: int, width: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(height, width)`` float mask of 1 (keep) / 0 (drop)."""
        if height < 3:
            raise ValueError(f"GridMask needs images at least 3 pixels high, got {height}")
        d = int(torch.randint(2, height, (1,), generator=generator))
        stripe = min(max(int(d * self.ratio + 0.5), 1), d - 1)
        off_h = int(torch.randint(0, d, (1,), generator=generator))
        off_w = int(torch.randint(0, d, (1,), generator=generator))
        rows = ((torch.arange(height) - off_h) % d) < stripe
        cols = ((torch.arange(width) - off_w) % d) < stripe
        return (rows[:, None] | cols[None, :]).float()

    def __call__(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply to a normalized batch ``(B, 3, T, H, W)`` (returns a new tensor; the input is unchanged)."""
        if video.dim() != 5:
            raise ValueError(f"GridMask expects (B, 3, T, H, W), got {tuple(video.shape)}")
        if float(torch.rand((), generator=generator)) >= self.prob:
            return video
        m = self.mask(video.shape[-2], video.shape[-1], generator).to(device=video.device, dtype=video.dtype)
        return video * m


__all__ = ["GRID_MASK_PROB", "GRID_MASK_RATIO", "GridMask"]
