"""V-JEPA predictor: from context tokens, predict the encoder features of masked (target) tokens (vjepa2.md A2).

``predictor_embed`` (D_enc → P) on the context, one learned mask token (chosen by ``mask_index % num_mask_tokens``)
placed at every target position, ``depth`` RoPE blocks over context + targets, ``predictor_norm``,
``predictor_proj`` (P → D_enc) on the target tokens. Targets are told apart only by their RoPE position.

Unlike upstream (whose predictor blocks fall back to a square ``img_size // 16`` grid), positions are computed on the
real ``(T', H', W')`` grid, so non-square clips such as 8 frames at 256×512 (4×16×32) are handled. Upstream sorts
context + target tokens by id before the blocks and unsorts after; attention without a mask is permutation-
equivariant and RoPE carries the positions, so that sort does not change the result and is omitted here.
Parameter names match upstream (``predictor_embed``, ``mask_tokens.{i}``, ``predictor_blocks.{i}``, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
from drive_jepa_core.models.rope import ids_to_positions, rope_tables

# Released predictor (vjepa2.md A2): depth 12, width 384, 12 heads, MLP ratio 4, 10 zero-initialized mask tokens.
PREDICTOR_DIM = 384
PREDICTOR_DEPTH = 12
PREDICTOR_HEADS = 12
PREDICTOR_MLP_RATIO = 4.0
PREDICTOR_NUM_MASK_TOKENS = 10


@dataclass(frozen=True)
class PredictorConfig:
    """Architecture of a :class:`Predictor`."""

    encoder_dim: int
    predictor_dim: int = PREDICTOR_DIM
    depth: int = PREDICTOR_DEPTH
    num_heads: int = PREDICTOR_HEADS
    mlp_hidden_dim: int = int(PREDICTOR_DIM * PREDICTOR_MLP_RATIO)
    num_mask_tokens: int = PREDICTOR_NUM_MASK_TOKENS
    qkv_bias: bool = True

    @property
    def head_dim(self) -> int:
        return self.predictor_dim // self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown predictor config fields {unknown}; expected a subset of {sorted(names)}")
        return cls(**data)


class Predictor(nn.Module):
    """V-JEPA predictor with learned mask tokens (zero-initialized, as upstream ``zero_init_mask_tokens=True``)."""

    def __init__(self, config: PredictorConfig, use_activation_checkpointing: bool = False) -> None:
        super().__init__()
        if config.predictor_dim % config.num_heads:
            raise ValueError(f"predictor_dim {config.predictor_dim} is not divisible by {config.num_heads} heads")
        if config.num_mask_tokens < 1:
            raise ValueError("the predictor needs at least one mask token")
        self.config = config
        self.use_activation_checkpointing = use_activation_checkpointing
        p = config.predictor_dim
        self.predictor_embed = nn.Linear(config.encoder_dim, p)
        self.mask_tokens = nn.ParameterList(nn.Parameter(torch.zeros(1, 1, p)) for _ in range(config.num_mask_tokens))
        self.predictor_blocks = nn.ModuleList(
            Block(p, config.num_heads, config.mlp_hidden_dim, config.qkv_bias) for _ in range(config.depth))
        self.predictor_norm = nn.LayerNorm(p, eps=LAYER_NORM_EPS)
        self.predictor_proj = nn.Linear(p, config.encoder_dim)
        init_transformer_weights(self)  # leaves the mask tokens at zero
        rescale_residual_branches(self.predictor_blocks)

    def forward(self, context: torch.Tensor, context_ids: torch.Tensor, target_ids: torch.Tensor,
                grid: tuple[int, int, int], mask_index: int = 0) -> torch.Tensor:
        """Predict target-token features.

        Args:
            context: ``(B, Kc, D_enc)`` encoder output for the context tokens.
            context_ids: ``(B, Kc)`` int64 flattened ids of those tokens on ``grid``.
            target_ids: ``(B, Kt)`` int64 ids of the tokens to predict.
            grid: token grid ``(T', H', W')`` the ids refer to.
            mask_index: which mask token to use (taken modulo ``num_mask_tokens``).

        Returns:
            ``(B, Kt, D_enc)`` predictions.
        """
        B, Kc, _ = context.shape
        if context_ids.shape != (B, Kc):
            raise ValueError(f"context_ids must be {(B, Kc)}, got {tuple(context_ids.shape)}")
        if target_ids.ndim != 2 or target_ids.shape[0] != B:
            raise ValueError(f"target_ids must be (B={B}, Kt), got {tuple(target_ids.shape)}")
        num_tokens = int(grid[0]) * int(grid[1]) * int(grid[2])
        for name, ids in (("context_ids", context_ids), ("target_ids", target_ids)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_tokens):
                raise ValueError(f"{name} must lie in [0, {num_tokens}) for grid {tuple(grid)}")
        token = self.mask_tokens[mask_index % len(self.mask_tokens)]
        x = torch.cat((self.predictor_embed(context), token.expand(B, target_ids.shape[1], -1)), dim=1)
        ids = torch.cat((context_ids, target_ids), dim=1)
        rope = rope_tables(ids_to_positions(ids, grid).unsqueeze(1), self.config.head_dim)  # (B, 1, K, 3d)
        for block in self.predictor_blocks:
            if self.use_activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, rope, use_reentrant=False)
            else:
                x = block(x, rope)
        x = self.predictor_norm(x)
        return self.predictor_proj(x[:, Kc:])
