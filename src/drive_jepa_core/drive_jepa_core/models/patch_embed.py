"""3-D tubelet patch embedding (V-JEPA 2 ``PatchEmbed3D``, vjepa2.md A1)."""

from __future__ import annotations

import torch
from torch import nn

PATCH_SIZE = 16  # pixels per patch side, every V-JEPA 2 checkpoint (vjepa2.md A1)
TUBELET_SIZE = 2  # frames per token, every V-JEPA 2 checkpoint (vjepa2.md A1)


class PatchEmbed3D(nn.Module):
    """Cut a video into non-overlapping ``tubelet × patch × patch`` tubes and project each to ``embed_dim``.

    A ``Conv3d`` with kernel = stride = ``(tubelet, patch, patch)`` and a bias, named ``proj`` so its weights load
    from ``patch_embed.proj.{weight,bias}``.

    Input ``(B, C, T, H, W)``; output tokens ``(B, N, D)`` with ``N = T' H' W'`` in t-major, row, column order,
    where ``T' = T / tubelet``, ``H' = H / patch``, ``W' = W / patch``.
    """

    def __init__(self, embed_dim: int, in_chans: int = 3, patch_size: int = PATCH_SIZE,
                 tubelet_size: int = TUBELET_SIZE) -> None:
        super().__init__()
        self.patch_size = int(patch_size)
        self.tubelet_size = int(tubelet_size)
        self.in_chans = int(in_chans)
        kernel = (self.tubelet_size, self.patch_size, self.patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def grid_shape(self, video_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int]:
        """Token grid ``(T', H', W')`` for a video of shape ``(B, C, T, H, W)``; raises on sizes that do not tile."""
        if len(video_shape) != 5:
            raise ValueError(f"expected a video (B, C, T, H, W), got shape {tuple(video_shape)}")
        _, c, t, h, w = (int(s) for s in video_shape)  # python ints: an exported graph has a static grid
        if c != self.in_chans:
            raise ValueError(f"expected {self.in_chans} channels, got {c} (shape {tuple(video_shape)})")
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size or min(t, h, w) == 0:
            raise ValueError(
                f"video (T={t}, H={h}, W={w}) must have T a positive multiple of the tubelet size {self.tubelet_size} "
                f"and H, W positive multiples of the patch size {self.patch_size}")
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` → ``(B, T'H'W', D)``."""
        self.grid_shape(video.shape)
        return self.proj(video).flatten(2).transpose(1, 2)
