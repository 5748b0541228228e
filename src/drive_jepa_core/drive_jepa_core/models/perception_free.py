"""The perception-free "simple decoder" baseline of the paper's Sec. 3.2 (drive_jepa.md §8).

Encoder tokens as a ``H' × W'`` map → AvgPool 2×2 → Linear(D → C) (128 tokens at 256×512), plus one ego-status token
Linear(8 → C), plus a learned position embedding (129 key/value tokens) → ``nn.Transformer`` (3 + 3 layers,
post-norm) with learned queries → MLP → (x, y in units of ``config.pose_scale``, heading = tanh·π).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from drive_jepa_core.constants import DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH
from drive_jepa_core.models.planner_config import (
    EGO_STATUS_DIM,
    EGO_STATUS_INFORMATIVE,
    POSE_DIM,
    PerceptionFreeConfig,
)
from drive_jepa_core.models.proposal_planner import encode_feature_map, encoder_grid


class PerceptionFreePlanner(nn.Module):
    """Simple transformer decoder on the video encoder's tokens.

    Args:
        encoder: module with ``embed_dim`` and ``grid_shape`` (see :mod:`drive_jepa_core.models.proposal_planner`).
        config: :class:`PerceptionFreeConfig`.
        image_hw: model-input image size; fixes the number of key/value tokens (their position embedding is learned).
    """

    def __init__(self, encoder: nn.Module, config: PerceptionFreeConfig | None = None,
                 image_hw: tuple[int, int] = (DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH)) -> None:
        super().__init__()
        self.config = config = config or PerceptionFreeConfig()
        if not hasattr(encoder, "embed_dim") or not hasattr(encoder, "grid_shape"):
            raise TypeError("encoder must expose `embed_dim` and `grid_shape(video_shape)`")
        self.encoder = encoder
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        probe = torch.empty(1, 3, 2, *self.image_hw, device="meta")
        h, w = encoder_grid(encoder, probe)
        if h % config.pool or w % config.pool:
            raise ValueError(f"token grid {h}x{w} is not divisible by the pooling {config.pool}")
        self.num_image_tokens = (h // config.pool) * (w // config.pool)
        d = config.d_model
        self.pool = nn.AvgPool2d(config.pool, config.pool)
        self.input_proj = nn.Linear(int(encoder.embed_dim), d)
        self.status_proj = nn.Linear(config.ego_status_dim, d)
        self.key_pos = nn.Embedding(self.num_image_tokens + 1, d)
        self.transformer = nn.Transformer(
            d_model=d, nhead=config.num_heads, num_encoder_layers=config.num_encoder_layers,
            num_decoder_layers=config.num_decoder_layers, dim_feedforward=config.d_ffn, dropout=config.dropout,
            batch_first=True)
        self.queries = nn.Embedding(config.num_queries, d)
        self.poses_per_query = config.num_poses // config.num_queries
        self.head = nn.Sequential(nn.Linear(d, config.head_hidden), nn.ReLU(),
                                  nn.Linear(config.head_hidden, self.poses_per_query * POSE_DIM))
        self.register_buffer("xy_scale", torch.tensor(config.pose_scale[:2], dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor, ego_status: torch.Tensor,
                ego2image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Plan one trajectory.

        Args:
            images: ``(B, 3, 2, H, W)`` ImageNet-normalized frames at (t−0.5 s, t), ``(H, W) = image_hw``.
            ego_status: ``(B, 11)`` as for the proposal planner; its 8 informative entries (velocity, acceleration,
                command) form the status token.
            ego2image: unused (accepted so both planners share one call signature).
        Returns:
            ``trajectory`` (B, M, 3) and ``proposals`` (B, 1, M, 3); heading in (−π, π).
        """
        del ego2image
        B = images.shape[0]
        if tuple(images.shape[-2:]) != self.image_hw:
            raise ValueError(f"images are {tuple(images.shape[-2:])} but the model was built for {self.image_hw}")
        if ego_status.shape != (B, EGO_STATUS_DIM):
            raise ValueError(f"ego_status must be (B={B}, {EGO_STATUS_DIM}), got {tuple(ego_status.shape)}")
        feature_map = encode_feature_map(self.encoder, nn.Identity(), images)  # (B, D, H', W')
        image_tokens = self.input_proj(self.pool(feature_map).flatten(2).transpose(1, 2))  # (B, 128, C)
        status = self.status_proj(ego_status[:, EGO_STATUS_INFORMATIVE].to(image_tokens.dtype))[:, None, :]
        keys = torch.cat([image_tokens, status], dim=1) + self.key_pos.weight[None]  # (B, 129, C)
        queries = self.queries.weight[None].expand(B, -1, -1)
        decoded = self.transformer(keys, queries)  # (B, Nq, C)
        poses = self.head(decoded).reshape(B, self.config.num_poses, POSE_DIM)
        heading = torch.tanh(poses[..., 2:]) * math.pi
        trajectory = torch.cat([poses[..., :2] * self.xy_scale, heading], dim=-1)
        return {"trajectory": trajectory, "proposals": trajectory[:, None]}
