"""V-JEPA 2 compatible video Vision Transformer encoder: ``(B, 3, T, H, W)`` → ``(B, N, D)`` (vjepa2.md A1).

Tubelet patch embedding (2×16×16) → ``depth`` pre-norm blocks with 3-D RoPE (no absolute position embedding, no CLS
token) → final LayerNorm. Tokens are ordered t-major, then row, then column; 2 frames at 256×512 give 1×16×32 = 512
tokens. The state dict uses the upstream names (``patch_embed.proj``, ``blocks.{i}.…``, ``norm``), so cleaned
official checkpoints load with ``strict=True`` (see :mod:`drive_jepa_core.checkpoints`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from drive_jepa_core.models.attention import (
    LAYER_NORM_EPS,
    Block,
    init_transformer_weights,
    rescale_residual_branches,
)
from drive_jepa_core.models.patch_embed import PATCH_SIZE, TUBELET_SIZE, PatchEmbed3D
from drive_jepa_core.models.rope import grid_positions, ids_to_positions, rope_tables


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a :class:`VisionTransformer`; everything needed to rebuild it from a weights file."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden_dim: int
    patch_size: int = PATCH_SIZE
    tubelet_size: int = TUBELET_SIZE
    in_chans: int = 3
    qkv_bias: bool = True

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown encoder config fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)


# name: (embed_dim, depth, num_heads, mlp_ratio). large/huge/giant: vjepa2.md A1 (giant = vit_giant_xformers,
# 22 heads, ratio 48/11 → 6144). tiny/small/base: the standard ViT sizes of upstream vision_transformer.py / timm.
ENCODER_SIZES: dict[str, tuple[int, int, int, float]] = {
    "tiny": (192, 12, 3, 4.0),
    "small": (384, 12, 6, 4.0),
    "base": (768, 12, 12, 4.0),
    "large": (1024, 24, 16, 4.0),
    "huge": (1280, 32, 16, 4.0),
    "giant": (1408, 40, 22, 48.0 / 11.0),
}


def encoder_config(size: str, **overrides: Any) -> EncoderConfig:
    """Config of a registered size, e.g. ``encoder_config("large")``; keyword overrides replace single fields
    (``mlp_ratio=`` is accepted and converted to ``mlp_hidden_dim``)."""
    if size not in ENCODER_SIZES:
        raise ValueError(f"unknown encoder size {size!r}; choose one of {sorted(ENCODER_SIZES)}")
    dim, depth, heads, ratio = ENCODER_SIZES[size]
    ratio = float(overrides.pop("mlp_ratio", ratio))
    dim = int(overrides.pop("embed_dim", dim))
    cfg = EncoderConfig(embed_dim=dim, depth=depth, num_heads=heads, mlp_hidden_dim=int(round(dim * ratio)))
    return replace(cfg, **overrides)


class VisionTransformer(nn.Module):
    """Video ViT encoder.

    Args:
        config: architecture (:class:`EncoderConfig`).
        use_activation_checkpointing: recompute block activations in backward (training memory for time).
    """

    def __init__(self, config: EncoderConfig, use_activation_checkpointing: bool = False) -> None:
        super().__init__()
        if config.embed_dim % config.num_heads:
            raise ValueError(f"embed_dim {config.embed_dim} is not divisible by num_heads {config.num_heads}")
        self.config = config
        self.embed_dim = config.embed_dim
        self.use_activation_checkpointing = use_activation_checkpointing
        self.patch_embed = PatchEmbed3D(config.embed_dim, config.in_chans, config.patch_size, config.tubelet_size)
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_hidden_dim, config.qkv_bias)
            for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.embed_dim, eps=LAYER_NORM_EPS)
        init_transformer_weights(self)
        rescale_residual_branches(self.blocks)

    def grid_shape(self, video_shape: torch.Size | tuple[int, ...]) -> tuple[int, int, int]:
        """Token grid ``(T', H', W')`` of a ``(B, C, T, H, W)`` video."""
        return self.patch_embed.grid_shape(video_shape)

    def forward(self, video: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Encode a video.

        Args:
            video: ``(B, 3, T, H, W)`` ImageNet-normalized float; T a multiple of the tubelet, H, W of the patch.
            token_ids: optional ``(B, K)`` int64 flattened token ids to keep (the V-JEPA context); the blocks then
                see only those tokens, each with its true RoPE position.

        Returns:
            ``(B, N, D)`` tokens after the final LayerNorm, ``N = T'H'W'`` (or ``(B, K, D)`` with ``token_ids``).
        """
        grid = self.grid_shape(video.shape)
        x = self.patch_embed(video)  # (B, N, D)
        if token_ids is None:
            positions = grid_positions(grid, device=x.device)  # (N, 3)
        else:
            if token_ids.ndim != 2 or token_ids.shape[0] != x.shape[0]:
                raise ValueError(f"token_ids must be (B={x.shape[0]}, K), got {tuple(token_ids.shape)}")
            x = torch.gather(x, 1, token_ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            positions = ids_to_positions(token_ids, grid).unsqueeze(1)  # (B, 1, K, 3): broadcast over heads
        rope = rope_tables(positions, self.config.head_dim)
        for block in self.blocks:
            if self.use_activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
        return self.norm(x)


def build_encoder(size: str = "large", use_activation_checkpointing: bool = False,
                  **overrides: Any) -> VisionTransformer:
    """Randomly initialized encoder of a registered size (``tiny`` … ``giant``), with optional field overrides."""
    return VisionTransformer(encoder_config(size, **overrides), use_activation_checkpointing)
