"""One proposal-refinement layer (iPad's ProFormer / BEVFormer layer, drive_jepa.md §4.2), post-norm:

``tokens → +self_attn → LN → +cross_attn → LN → +FFN → LN``

The planner applies ONE instance of this layer ``num_iterations`` times (shared weights); the poses decoded from the
tokens before each pass are the (detached) anchors of that pass, so the proposals are refined iteratively.
"""

from __future__ import annotations

import torch
from torch import nn

from drive_jepa_core.models.deformable_attention import TokenGridSelfAttention, WaypointCrossAttention
from drive_jepa_core.models.planner_config import PlannerConfig


class ProposalRefiner(nn.Module):
    """Refine waypoint tokens with the token grid and the image around the current proposals."""

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        d = config.d_model
        self.self_attn = TokenGridSelfAttention(config)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = WaypointCrossAttention(config)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, config.d_ffn), nn.ReLU(), nn.Dropout(config.dropout),
                                 nn.Linear(config.d_ffn, d))
        self.norm3 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, tokens: torch.Tensor, query_pos: torch.Tensor, poses: torch.Tensor, features: torch.Tensor,
                ego2image: torch.Tensor, image_wh: tuple[int, int]) -> torch.Tensor:
        """One pass.

        Args:
            tokens: ``(B, Np·M, C)`` waypoint tokens.
            query_pos: ``(Np·M, C)`` learned token-grid position embedding (added inside the self-attention only).
            poses: ``(B, Np, M, 3)`` proposals decoded from ``tokens``; used as anchors only (detach before calling).
            features: ``(B, C, H', W')`` image feature map.
            ego2image: ``(B, 3, 4)`` projection into the model-input image of ``image_wh`` = (W, H) pixels.
        Returns:
            ``(B, Np·M, C)`` refined tokens.
        """
        tokens = self.norm1(tokens + self.dropout(self.self_attn(tokens, query_pos, poses)))
        tokens = self.norm2(tokens + self.dropout(self.cross_attn(tokens, poses, features, ego2image, image_wh)))
        return self.norm3(tokens + self.dropout(self.ffn(tokens)))
