"""Prediction heads on the waypoint tokens of the proposal planner (drive_jepa.md §4.1, §4.3).

Every head is the reference's MLP ``Linear → LN → ReLU → Linear → LN → ReLU → Linear`` (hidden 1024).
Token layout: ``(B, Np·M, C)`` with token index ``p·M + t``.
"""

from __future__ import annotations

import torch
from torch import nn

from drive_jepa_core.models.planner_config import POSE_DIM, PlannerConfig

# Channels of the proposal-centric mapping head, per waypoint. Targets are 1 when the ego box at that waypoint is
# on drivable area (all corners inside it) / on route (centre inside an on-route lane or lane connector); the
# reference predicts the complements (NON_DRIVABLE_AREA, off-route), which is the same BCE with flipped labels.
MAPPING_CHANNELS = ("on_road", "on_route")


class MLP(nn.Module):
    """``(..., in_dim)`` → ``(..., out_dim)`` through two LayerNorm-ReLU hidden layers."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TrajectoryHead(nn.Module):
    """Decode one pose per waypoint token: ``(B, Np·M, C)`` → ``(B, Np, M, 3)`` (x m, y m, raw heading rad).

    The MLP's output is in units of ``config.pose_scale`` (see :data:`planner_config.DEFAULT_POSE_SCALE`).
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.num_proposals, self.num_poses = config.num_proposals, config.num_poses
        self.mlp = MLP(config.d_model, config.head_hidden, POSE_DIM)
        self.register_buffer("pose_scale", torch.tensor(config.pose_scale, dtype=torch.float32), persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # Metric poses in fp32 even under mixed precision: bf16 resolves only 0.25 m at 50 m.
        with torch.autocast(device_type=tokens.device.type, enabled=False):
            poses = self.mlp(tokens.to(self.mlp.layers[0].weight.dtype)) * self.pose_scale
        return poses.reshape(tokens.shape[0], self.num_proposals, self.num_poses, POSE_DIM)


class ScoreHead(nn.Module):
    """One logit per proposal of its expected (E)PDMS: max over its M tokens → MLP.

    ``(B, Np·M, C)`` → ``(B, Np)``. The reference's head emits 6 logits and trains only the last (sub-score weight 0);
    only that one is kept.
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.num_proposals, self.num_poses = config.num_proposals, config.num_poses
        self.mlp = MLP(config.d_model, config.head_hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        B, _, C = tokens.shape
        proposal_features = tokens.reshape(B, self.num_proposals, self.num_poses, C).amax(dim=2)
        return self.mlp(proposal_features).squeeze(-1)


class MappingHead(nn.Module):
    """Proposal-centric mapping: per waypoint token, logits of :data:`MAPPING_CHANNELS`.

    ``(B, Np·M, C)`` → ``(B, Np, M, 2)``. (The reference predicts the 5 sub-steps at 10 Hz per token; here one value per
    0.5 s waypoint.)
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.num_proposals, self.num_poses = config.num_proposals, config.num_poses
        self.mlp = MLP(config.d_model, config.head_hidden, len(MAPPING_CHANNELS))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens).reshape(tokens.shape[0], self.num_proposals, self.num_poses, len(MAPPING_CHANNELS))


class CollisionHead(nn.Module):
    """Per waypoint token, the logit that proposal p is in an (at-fault) collision in the 0.5 s leading to pose t.

    ``(B, Np·M, C)`` → ``(B, Np, M)``. Replaces the reference's key-agent validity logits (same weight); the targets
    come from the caller's simulation of the proposals.
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.num_proposals, self.num_poses = config.num_proposals, config.num_poses
        self.mlp = MLP(config.d_model, config.head_hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp(tokens).reshape(tokens.shape[0], self.num_proposals, self.num_poses)
