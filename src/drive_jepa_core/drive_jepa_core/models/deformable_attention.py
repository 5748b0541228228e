"""Multi-head deformable attention in plain PyTorch (``F.grid_sample``), and its two uses in the planner.

* :class:`DeformableAttention`: each query looks at ``A`` reference points ("anchors") on a 2-D value map and samples
  ``P`` learned offsets around each, per head; the samples are mixed with softmax weights over all ``A·P`` of them
  (Deformable DETR / BEVFormer's ``MSDeformableAttention3D`` with one level). Bilinear sampling with zero padding and
  ``align_corners=False`` is the same rule as mmcv's ``ms_deform_attn`` op the reference used.
* :class:`TokenGridSelfAttention`: proposals exchange information over the ``Np × M`` waypoint-token grid
  (drive_jepa.md §4.2 a).
* :class:`WaypointCrossAttention`: every waypoint token samples the image feature map around the projected corners of
  the ego box placed at that waypoint, at several heights (§4.2 b, "WADA").

Everything is static-shape tensor code (no data-dependent Python branches, no in-place index writes), so it exports
to ONNX (``GridSample`` needs opset ≥ 16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from drive_jepa_core.models.camera_projection import project_points
from drive_jepa_core.models.planner_config import PlannerConfig

_MASKED_LOGIT = -1e9  # finite "minus infinity": a fully masked row stays NaN-free before it is zeroed


class DeformableAttention(nn.Module):
    """Deformable attention of ``Q`` queries into one value map.

    Args:
        d_model: channels ``C`` of queries and values.
        num_heads: heads ``H`` (``C / H`` channels each).
        num_anchors: reference points per query ``A``.
        num_points: learned sampling points per anchor and head ``P``.
    """

    def __init__(self, d_model: int, num_heads: int, num_anchors: int, num_points: int) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.d_model, self.num_heads = d_model, num_heads
        self.num_anchors, self.num_points = num_anchors, num_points
        samples = num_heads * num_anchors * num_points
        self.sampling_offsets = nn.Linear(d_model, samples * 2)
        self.attention_weights = nn.Linear(d_model, samples)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR init: head h starts sampling along direction 2πh/H, point k at k+1 cells; uniform weights."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.num_heads, dtype=torch.float64) * (2.0 * math.pi / self.num_heads)
        direction = torch.stack([theta.cos(), theta.sin()], dim=-1)
        direction = direction / direction.abs().max(dim=-1, keepdim=True).values  # (H, 2) on the unit square
        step = torch.arange(1, self.num_points + 1, dtype=torch.float64)
        bias = direction[:, None, None, :] * step[None, None, :, None]  # (H, 1, P, 2)
        bias = bias.expand(self.num_heads, self.num_anchors, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.reshape(-1).to(self.sampling_offsets.bias.dtype))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for layer in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, query: torch.Tensor, value: torch.Tensor, reference: torch.Tensor,
                anchor_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend.

        Args:
            query: ``(B, Q, C)`` queries (positional embedding already added if wanted).
            value: ``(B, C, Hv, Wv)`` value map.
            reference: ``(B, Q, A, 2)`` anchors in ``grid_sample`` coordinates ``(x, y) ∈ [-1, 1]``.
            anchor_mask: ``(B, Q, A)`` bool, False = ignore that anchor (its weights are removed before the softmax).
                A query with no valid anchor gets a zero sample (the output is then ``output_proj``'s bias).
        Returns:
            ``(B, Q, C)``, after ``output_proj`` (no residual).
        """
        # Sampling positions are geometry: keep the whole op in fp32 under mixed precision (as the reference did).
        dtype = self.value_proj.weight.dtype
        with torch.autocast(device_type=query.device.type, enabled=False):
            return self._attend(query.to(dtype), value.to(dtype), reference.to(dtype), anchor_mask)

    def _attend(self, query: torch.Tensor, value: torch.Tensor, reference: torch.Tensor,
                anchor_mask: torch.Tensor | None) -> torch.Tensor:
        B, Q, C = query.shape
        H, A, P = self.num_heads, self.num_anchors, self.num_points
        if value.dim() != 4 or value.shape[:2] != (B, C):
            raise ValueError(f"value must be (B={B}, C={C}, Hv, Wv), got {tuple(value.shape)}")
        if reference.shape != (B, Q, A, 2):
            raise ValueError(f"reference must be (B={B}, Q={Q}, A={A}, 2), got {tuple(reference.shape)}")
        Hv, Wv = value.shape[-2:]

        # Values, split into heads: (B·H, C/H, Hv, Wv).
        v = self.value_proj(value.flatten(2).transpose(1, 2))  # (B, Hv·Wv, C)
        v = v.reshape(B, Hv * Wv, H, C // H).permute(0, 2, 3, 1).reshape(B * H, C // H, Hv, Wv)

        # Sampling locations: anchor + offset, offsets in value-map cells -> normalized units (2 / size).
        offsets = self.sampling_offsets(query).reshape(B, Q, H, A, P, 2)
        cell = torch.tensor([2.0 / Wv, 2.0 / Hv], dtype=query.dtype, device=query.device)
        locations = reference[:, :, None, :, None, :] + offsets * cell  # (B, Q, H, A, P, 2)
        grid = locations.permute(0, 2, 1, 3, 4, 5).reshape(B * H, Q, A * P, 2)

        # Softmax over every sample of a head, restricted to valid anchors.
        logits = self.attention_weights(query).reshape(B, Q, H, A, P)
        if anchor_mask is not None:
            if anchor_mask.shape != (B, Q, A):
                raise ValueError(f"anchor_mask must be (B={B}, Q={Q}, A={A}), got {tuple(anchor_mask.shape)}")
            keep = anchor_mask[:, :, None, :, None].expand(B, Q, H, A, P)
            logits = torch.where(keep, logits, torch.full_like(logits, _MASKED_LOGIT))
        weights = logits.reshape(B, Q, H, A * P).softmax(dim=-1)
        if anchor_mask is not None:
            weights = weights * keep.reshape(B, Q, H, A * P).to(weights.dtype)
        weights = weights.permute(0, 2, 1, 3).reshape(B * H, 1, Q, A * P)

        # (B·H, C/H, Q, A·P)
        samples = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = (samples * weights).sum(dim=-1)  # (B·H, C/H, Q)
        out = out.reshape(B, C, Q).transpose(1, 2)
        return self.output_proj(out)


class TokenGridSelfAttention(nn.Module):
    """Deformable self-attention over the ``Np × M`` waypoint tokens seen as a value map (rows = proposals).

    Reference point of token ``(p, t)`` (``config.self_attn_reference``):
    * ``"waypoint"`` (iPad): its own waypoint ``(x, y) / r`` read as ``(column, row)``, i.e. forward distance indexes
      the waypoint axis and lateral offset the proposal axis (``r = config.self_attn_range``).
    * ``"grid"``: the centre of its own cell.

    Unlike the reference (drive_jepa.md §5 quirks), each sample's references come from its own waypoints. The
    reference's second "temporal" queue held the same tokens when there is no previous frame; it is dropped here.
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.num_proposals, self.num_poses = config.num_proposals, config.num_poses
        self.reference_mode, self.range = config.self_attn_reference, float(config.self_attn_range)
        self.attn = DeformableAttention(config.d_model, config.num_heads, 1, config.self_attn_points)
        cols = (torch.arange(self.num_poses, dtype=torch.float32) + 0.5) * (2.0 / self.num_poses) - 1.0
        rows = (torch.arange(self.num_proposals, dtype=torch.float32) + 0.5) * (2.0 / self.num_proposals) - 1.0
        grid = torch.stack(torch.meshgrid(cols, rows, indexing="xy"), dim=-1)  # (Np, M, 2) as (x=col, y=row)
        self.register_buffer("cell_centres", grid.reshape(-1, 2), persistent=False)

    def forward(self, tokens: torch.Tensor, query_pos: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """``tokens (B, Np·M, C)``, ``query_pos (Np·M, C)``, ``poses (B, Np, M, 3)`` → ``(B, Np·M, C)``, no residual."""
        B, N, C = tokens.shape
        value = tokens.transpose(1, 2).reshape(B, C, self.num_proposals, self.num_poses)
        if self.reference_mode == "waypoint":
            reference = poses[..., :2].reshape(B, N, 1, 2) / self.range
        else:
            reference = self.cell_centres.to(tokens.dtype).expand(B, N, 2).unsqueeze(2)
        return self.attn(tokens + query_pos, value, reference)


def waypoint_box_anchors(poses: torch.Tensor, half_length: float, half_width: float, rear_axle_to_center: float,
                         heights: tuple[float, ...]) -> torch.Tensor:
    """3-D anchors of the ego box placed at every waypoint: 4 corners × ``Z`` heights, all distinct.

    Args:
        poses: ``(B, Np, M, 3)`` rear-axle waypoints (x, y, heading) in the ego frame.
        half_length, half_width: box half extents (m); rear_axle_to_center: box centre ahead of the rear axle (m).
        heights: ``Z`` anchor heights z (m) in the ego frame.
    Returns:
        ``(B, Np·M, 4·Z, 3)``; anchor index ``z·4 + k`` with corners ``k`` = FL, RL, RR, FR (geometry.box_corners).
    """
    B, Np, M, _ = poses.shape
    cos_h, sin_h = poses[..., 2].cos(), poses[..., 2].sin()
    cx = poses[..., 0] + rear_axle_to_center * cos_h
    cy = poses[..., 1] + rear_axle_to_center * sin_h
    # Corner offsets in the box frame: (+L, +W) FL, (-L, +W) RL, (-L, -W) RR, (+L, -W) FR.
    lon = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=poses.dtype, device=poses.device) * half_length
    lat = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=poses.dtype, device=poses.device) * half_width
    x = cx[..., None] + lon * cos_h[..., None] - lat * sin_h[..., None]  # (B, Np, M, 4)
    y = cy[..., None] + lon * sin_h[..., None] + lat * cos_h[..., None]
    z = torch.tensor(heights, dtype=poses.dtype, device=poses.device)  # (Z,)
    Z = z.shape[0]
    xy = torch.stack([x, y], dim=-1).reshape(B, Np * M, 1, 4, 2).expand(B, Np * M, Z, 4, 2)
    zz = z.reshape(1, 1, Z, 1, 1).expand(B, Np * M, Z, 4, 1)
    return torch.cat([xy, zz], dim=-1).reshape(B, Np * M, Z * 4, 3)


class WaypointCrossAttention(nn.Module):
    """Waypoint-anchored deformable cross-attention into the image feature map (drive_jepa.md §4.2 b).

    Each waypoint token has ``A = 4 · len(anchor_heights)`` anchors (ego-box corners at each height) projected
    through its own sample's camera; anchors behind the camera or outside the image are masked out.
    """

    def __init__(self, config: PlannerConfig) -> None:
        super().__init__()
        self.config = config
        self.attn = DeformableAttention(config.d_model, config.num_heads, config.num_anchors, config.cross_attn_points)

    def forward(self, tokens: torch.Tensor, poses: torch.Tensor, features: torch.Tensor, ego2image: torch.Tensor,
                image_wh: tuple[int, int]) -> torch.Tensor:
        """Attend.

        Args:
            tokens: ``(B, Np·M, C)`` waypoint tokens.
            poses: ``(B, Np, M, 3)`` anchor waypoints (detached by the caller).
            features: ``(B, C, H', W')`` image feature map covering the whole model-input image.
            ego2image: ``(B, 3, 4)`` projection into the model-input image of size ``image_wh`` = (W, H) pixels.
        Returns:
            ``(B, Np·M, C)`` (no residual).
        """
        c = self.config
        anchors = waypoint_box_anchors(poses, c.box_half_length, c.box_half_width, c.rear_axle_to_center,
                                       c.anchor_heights)  # (B, N, A, 3)
        B, N, A, _ = anchors.shape
        grid, visible = project_points(anchors.reshape(B, N * A, 3), ego2image.to(anchors.dtype), image_wh,
                                       c.min_depth)
        return self.attn(tokens, features, grid.reshape(B, N, A, 2), visible.reshape(B, N, A))
