"""RoPE multi-head self-attention and the pre-norm transformer block built on it (V-JEPA 2 ``RoPEAttention`` and
``Block``, vjepa2.md A1). Parameter names match the upstream state dict: ``norm1``, ``attn.qkv``, ``attn.proj``,
``norm2``, ``mlp.fc1``, ``mlp.fc2``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from drive_jepa_core.models.rope import apply_rope

LAYER_NORM_EPS = 1e-6  # every LayerNorm of encoder and predictor (vjepa2.md A1)

RopeTables = tuple[torch.Tensor, torch.Tensor]  # (cos, sin), see rope.rope_tables


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection, 3-D RoPE on queries and keys, SDPA, ``proj``.

    Scale is the SDPA default ``head_dim ** -0.5``; no dropout (upstream's ``proj_drop_prob`` is 0 in every config).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = int(num_heads)
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """``x (B, N, D)``, ``rope`` cos/sin broadcastable to ``(B, heads, N, 3d)`` → ``(B, N, D)``."""
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each (B, heads, N, head_dim)
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    """``fc1 → GELU (exact erf) → fc2``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``. No layer-scale, no drop-path."""

    def __init__(self, dim: int, num_heads: int, mlp_hidden_dim: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, mlp_hidden_dim)

    def forward(self, x: torch.Tensor, rope: RopeTables | None = None) -> torch.Tensor:
        """``(B, N, D)`` → ``(B, N, D)``."""
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


def init_transformer_weights(module: nn.Module, std: float = 0.02) -> None:
    """V-JEPA 2 initialization: truncated-normal (std 0.02) Linear/Conv weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_residual_branches(blocks: nn.ModuleList) -> None:
    """Divide ``attn.proj`` and ``mlp.fc2`` weights of block ``i`` by ``sqrt(2 (i + 1))`` (upstream init; only
    matters when training from scratch)."""
    with torch.no_grad():
        for i, block in enumerate(blocks):
            scale = (2.0 * (i + 1)) ** 0.5
            block.attn.proj.weight.div_(scale)
            block.mlp.fc2.weight.div_(scale)
