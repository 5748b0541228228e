"""The perception-based Drive-JEPA planner: video encoder → proposal-centric refinement → scored proposals.

drive_jepa.md §4.1::

    F      = Linear(D → C)(encoder(video)) as a (B, C, H', W') map          # 1024 → 256, 16 × 32
    Q_0    = E_init + Linear(11 → C)(ego_status)                            # (B, Np·M, C)
    for i in 0 .. I-1 (ONE shared refiner):
        P_i     = TrajectoryHead(Q_i)                                       # (B, Np, M, 3)
        Q_{i+1} = Refiner(Q_i, anchors = P_i.detach(), F)
    proposals = P_{I-1};  scores / mapping / collision heads read Q_I

The encoder is any module with ``embed_dim`` and ``grid_shape(video_shape) -> (T', H', W')`` mapping
``(B, 3, T, H, W)`` to ``(B, T'·H'·W', D)`` tokens (t-major, then row, then column), e.g.
:class:`drive_jepa_core.models.vit.VisionTransformer`; the planner needs ``T' = 1`` (2 frames, tubelet 2).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from drive_jepa_core.models.heads import CollisionHead, MappingHead, ScoreHead, TrajectoryHead
from drive_jepa_core.models.planner_config import PlannerConfig
from drive_jepa_core.models.refiner import ProposalRefiner


def encoder_grid(encoder: nn.Module, video: torch.Tensor) -> tuple[int, int]:
    """Spatial token grid ``(H', W')`` the encoder produces for ``video`` (B, C, T, H, W); requires ``T' = 1``."""
    if video.dim() != 5:
        raise ValueError(f"expected a video (B, 3, T, H, W), got shape {tuple(video.shape)}")
    t, h, w = (int(v) for v in encoder.grid_shape(video.shape))
    if t != 1:
        raise ValueError(f"the planner needs one temporal token slice (T'=1, e.g. 2 frames with tubelet 2), got T'={t} "
                         f"for video shape {tuple(video.shape)}")
    return h, w


def encode_feature_map(encoder: nn.Module, projection: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Encoder tokens → projected feature map.

    Args:
        encoder: see the module docstring.
        projection: per-token ``Linear(D → C)`` (or identity).
        video: ``(B, 3, T, H, W)`` ImageNet-normalized.
    Returns:
        ``(B, C, H', W')``.
    """
    h, w = encoder_grid(encoder, video)
    tokens = encoder(video)  # (B, H'·W', D)
    if tokens.dim() != 3 or tokens.shape[1] != h * w:
        raise ValueError(f"encoder returned {tuple(tokens.shape)}, expected (B, {h * w}, D) for a {h}x{w} grid")
    tokens = projection(tokens)
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


class ProposalPlanner(nn.Module):
    """Drive-JEPA perception-based planner (iPad ProFormer on a V-JEPA encoder).

    Args:
        encoder: video encoder (see the module docstring); trained with ``config.encoder_lr_scale`` × the LR.
        config: :class:`PlannerConfig`.
    """

    def __init__(self, encoder: nn.Module, config: PlannerConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PlannerConfig()
        if not hasattr(encoder, "embed_dim") or not hasattr(encoder, "grid_shape"):
            raise TypeError("encoder must expose `embed_dim` and `grid_shape(video_shape)`")
        d = config.d_model
        self.encoder = encoder
        self.input_proj = nn.Linear(int(encoder.embed_dim), d)  # the reference's "projector", 1024 -> 256
        self.ego_proj = nn.Linear(config.ego_status_dim, d)
        self.query_embed = nn.Embedding(config.num_tokens, d)  # E_init, token index p·M + t
        # mmdet LearnedPositionalEncoding: [column (waypoint) half, row (proposal) half]
        self.pos_col = nn.Embedding(config.num_poses, d // 2)
        self.pos_row = nn.Embedding(config.num_proposals, d - d // 2)
        self.refiner = ProposalRefiner(config)  # ONE layer, reused num_iterations times
        self.trajectory_head = TrajectoryHead(config)
        self.score_head = ScoreHead(config)
        self.mapping_head = MappingHead(config)
        self.collision_head = CollisionHead(config)
        nn.init.uniform_(self.pos_col.weight)  # mmdet's init for LearnedPositionalEncoding
        nn.init.uniform_(self.pos_row.weight)

    def query_pos(self) -> torch.Tensor:
        """``(Np·M, C)`` position embedding of the token grid."""
        c = self.config
        col = self.pos_col.weight[None, :, :].expand(c.num_proposals, c.num_poses, -1)
        row = self.pos_row.weight[:, None, :].expand(c.num_proposals, c.num_poses, -1)
        return torch.cat([col, row], dim=-1).reshape(c.num_tokens, c.d_model)

    def _check_inputs(self, images: torch.Tensor, ego_status: torch.Tensor, ego2image: torch.Tensor) -> None:
        if images.dim() != 5 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, T, H, W), got {tuple(images.shape)}")
        B = images.shape[0]
        if ego_status.shape != (B, self.config.ego_status_dim):
            raise ValueError(f"ego_status must be (B={B}, {self.config.ego_status_dim}), got {tuple(ego_status.shape)}")
        if ego2image.shape != (B, 3, 4):
            raise ValueError(f"ego2image must be (B={B}, 3, 4), got {tuple(ego2image.shape)}")

    def forward(self, images: torch.Tensor, ego_status: torch.Tensor, ego2image: torch.Tensor,
                aux_heads: bool = True) -> dict[str, torch.Tensor]:
        """Plan.

        Args:
            images: ``(B, 3, 2, H, W)`` ImageNet-normalized frames at (t−0.5 s, t).
            ego_status: ``(B, 11)`` [x, y, heading (= 0), vx, vy, ax, ay, command one-hot (4)] (drive_jepa.md §2.2).
            ego2image: ``(B, 3, 4)`` front-camera projection into the ``H × W`` model-input image.
            aux_heads: also run the mapping and collision heads (training); inference can skip them.
        Returns:
            ``proposals`` (B, Np, M, 3) final proposals, heading raw;
            ``proposals_per_iter`` (I, B, Np, M, 3);
            ``scores`` (B, Np) logits of each proposal's expected (E)PDMS;
            ``trajectory`` (B, M, 3) the highest-scoring proposal;
            ``mapping`` (B, Np, M, 2) logits (heads.MAPPING_CHANNELS) and ``collision`` (B, Np, M) logits, if
            ``aux_heads``.
        """
        self._check_inputs(images, ego_status, ego2image)
        c = self.config
        B = images.shape[0]
        image_wh = (int(images.shape[-1]), int(images.shape[-2]))
        features = encode_feature_map(self.encoder, self.input_proj, images)  # (B, C, H', W')

        tokens = self.query_embed.weight[None] + self.ego_proj(ego_status.to(self.ego_proj.weight.dtype))[:, None, :]
        query_pos = self.query_pos()
        per_iter = []
        poses = None
        for _ in range(c.num_iterations):
            decoded = self.trajectory_head(tokens)  # (B, Np, M, 3)
            poses = decoded if poses is None or not c.residual_refinement else poses.detach() + decoded
            per_iter.append(poses)
            tokens = self.refiner(tokens, query_pos, poses.detach(), features, ego2image, image_wh)

        proposals = per_iter[-1]
        scores = self.score_head(tokens)  # (B, Np)
        best = scores.argmax(dim=1)  # (B,)
        trajectory = torch.gather(proposals, 1, best.reshape(B, 1, 1, 1).expand(B, 1, c.num_poses, 3)).squeeze(1)
        out = {
            "proposals": proposals,
            "proposals_per_iter": torch.stack(per_iter, dim=0),
            "scores": scores,
            "trajectory": trajectory,
        }
        if aux_heads:
            out["mapping"] = self.mapping_head(tokens)
            out["collision"] = self.collision_head(tokens)
        return out

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer groups: the encoder at ``lr × encoder_lr_scale`` (0.1), everything else at ``lr`` (§3, §10)."""
        encoder_ids = {id(p) for p in self.encoder.parameters()}
        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        planner_params = [p for p in self.parameters() if id(p) not in encoder_ids and p.requires_grad]
        return [
            {"params": encoder_params, "lr": lr * self.config.encoder_lr_scale, "name": "encoder"},
            {"params": planner_params, "lr": lr, "name": "planner"},
        ]
