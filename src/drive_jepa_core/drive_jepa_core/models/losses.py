"""Training losses of the Drive-JEPA planners (drive_jepa.md §5, §6.3, §8).

Proposal planner, per refinement iteration i of I::

    imit_i   = mean_b  min_p  mean_t Σ_{x,y,θ} |P_i[b,p,t] − GT[b,t]|
    pseudo_i = mean over samples with ≥1 pseudo-teacher of  mean_k min_p mean_t Σ |P_i[b,p,t] − A[b,k,t]|
    L_traj   = Σ_i λ^(I−1−i) (imit_i + 0.5 · pseudo_i)      λ = 0.1: weights 0.001, 0.01, 0.1, 1 for I = 4

exactly the reference's nesting ``0.1·(0.1·(0.1·L0 + L1) + L2) + L3`` (the LAST iteration weighs 1). Then
``total = 1·L_traj + 1·BCE(score) + 2·BCE(mapping) + 1·BCE(collision)``.

Reference quirks fixed here (§5, §13): every iteration is supervised whatever the batch size (upstream ``zip``
truncation), and the pseudo-teacher term is averaged over the samples that have pseudo-teachers (upstream divided by
the whole batch). Headings are compared raw (not wrapped), as upstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from drive_jepa_core.models.planner_config import PlannerLossWeights


@dataclass
class PlannerTargets:
    """What the caller supplies; optional terms that are ``None`` contribute 0.

    Attributes:
        trajectory: ``(B, M, 3)`` human (logged) future poses in the current rear-axle frame.
        pseudo_teachers: ``(B, K, M, 3)`` with K ≤ 4 vocabulary anchors drawn from each sample's pseudo-teacher set,
            or ``(I, B, K, M, 3)`` with a separate draw per iteration (as upstream).
        pseudo_teacher_mask: ``(B, K)`` / ``(I, B, K)`` bool, False for padding (samples with fewer teachers).
        score: ``(B, Np)`` simulated (E)PDMS in [0, 1] of the final, detached proposals.
        mapping: ``(B, Np, M, 2)`` in {0, 1}, heads.MAPPING_CHANNELS (on-road, on-route) of the final proposals.
        collision: ``(B, Np, M)`` in {0, 1}, collision in the 0.5 s leading to each pose of the final proposals.
    """

    trajectory: torch.Tensor
    pseudo_teachers: torch.Tensor | None = None
    pseudo_teacher_mask: torch.Tensor | None = None
    score: torch.Tensor | None = None
    mapping: torch.Tensor | None = None
    collision: torch.Tensor | None = None


def min_over_proposals_l1(proposals: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Distance of each target to its closest proposal.

    Args:
        proposals: ``(..., Np, M, 3)``.
        targets: ``(..., K, M, 3)`` (same leading dims).
    Returns:
        ``(..., K)``: ``min_p mean_t Σ_d |proposals[p, t, d] − targets[k, t, d]|``.
    """
    diff = (proposals.unsqueeze(-4) - targets.unsqueeze(-3)).abs()  # (..., K, Np, M, 3)
    return diff.sum(dim=-1).mean(dim=-1).amin(dim=-1)


def iteration_weights(num_iterations: int, discount: float) -> torch.Tensor:
    """``(I,)`` weights ``discount^(I−1−i)``: the last iteration weighs 1 (upstream's nested ``prev_weight``)."""
    return discount ** torch.arange(num_iterations - 1, -1, -1, dtype=torch.float64)


def imitation_loss(proposals_per_iter: torch.Tensor, trajectory: torch.Tensor) -> torch.Tensor:
    """``(I, B, Np, M, 3)`` proposals and ``(B, M, 3)`` ground truth → ``(I,)`` min-over-proposals L1, batch mean."""
    shape = proposals_per_iter.shape
    if proposals_per_iter.dim() != 5 or tuple(trajectory.shape) != (shape[1], *shape[3:]):
        raise ValueError(f"expected proposals (I, B, Np, M, 3) and trajectory (B, M, 3), got "
                         f"{tuple(proposals_per_iter.shape)} and {tuple(trajectory.shape)}")
    target = trajectory.to(proposals_per_iter.dtype)[None, :, None].expand(proposals_per_iter.shape[0], -1, 1, -1, -1)
    return min_over_proposals_l1(proposals_per_iter, target).squeeze(-1).mean(dim=-1)


def pseudo_teacher_loss(proposals_per_iter: torch.Tensor, teachers: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """Multimodal trajectory distillation term per iteration.

    Args:
        proposals_per_iter: ``(I, B, Np, M, 3)``.
        teachers: ``(B, K, M, 3)`` or ``(I, B, K, M, 3)``.
        mask: ``(B, K)`` or ``(I, B, K)`` bool.
    Returns:
        ``(I,)``: per sample the mean over its valid teachers of the distance to the closest proposal, averaged over
        the samples with at least one teacher (0 when no sample has one).
    """
    I, B = proposals_per_iter.shape[:2]
    if teachers.dim() == 4:
        teachers, mask = teachers.expand(I, *teachers.shape), mask.expand(I, *mask.shape)
    if teachers.dim() != 5 or teachers.shape[:2] != (I, B) or teachers.shape[3:] != proposals_per_iter.shape[3:]:
        raise ValueError(f"pseudo_teachers must be (B={B}, K, M, 3) or (I={I}, B, K, M, 3), "
                         f"got {tuple(teachers.shape)}")
    if mask.shape != teachers.shape[:3]:
        raise ValueError(f"pseudo_teacher_mask must be {tuple(teachers.shape[:3])}, got {tuple(mask.shape)}")
    mask = mask.to(proposals_per_iter.dtype)
    dist = min_over_proposals_l1(proposals_per_iter, teachers.to(proposals_per_iter.dtype))  # (I, B, K)
    per_sample = (dist * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)  # (I, B)
    has_teacher = (mask.sum(dim=-1) > 0).to(dist.dtype)
    return (per_sample * has_teacher).sum(dim=-1) / has_teacher.sum(dim=-1).clamp(min=1.0)


def _bce(logits: torch.Tensor, target: torch.Tensor | None, name: str) -> torch.Tensor:
    if target is None:
        return logits.new_zeros(())
    if target.shape != logits.shape:
        raise ValueError(f"{name} target must have shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def _require(outputs: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in outputs:
        raise ValueError(f"a {name} target was given but the outputs have no '{name}' (run with aux_heads=True)")
    return outputs[name]


def planner_loss(outputs: dict[str, torch.Tensor], targets: PlannerTargets,
                 weights: PlannerLossWeights | None = None) -> dict[str, torch.Tensor]:
    """All proposal-planner losses.

    Args:
        outputs: :meth:`ProposalPlanner.forward`'s dict (``proposals_per_iter``, ``scores``, and ``mapping`` /
            ``collision`` when those targets are given).
        targets: :class:`PlannerTargets`.
        weights: :class:`PlannerLossWeights` (paper values by default).
    Returns:
        Scalars ``imitation`` and ``pseudo_teacher`` (final iteration, unweighted), ``trajectory`` (discounted sum over
        iterations), ``score``, ``mapping``, ``collision`` (unweighted BCEs) and ``total`` (weighted sum).
    """
    w = weights or PlannerLossWeights()
    per_iter = outputs["proposals_per_iter"]
    imit = imitation_loss(per_iter, targets.trajectory)  # (I,)
    if targets.pseudo_teachers is not None:
        if targets.pseudo_teacher_mask is None:
            raise ValueError("pseudo_teachers were given without pseudo_teacher_mask")
        pseudo = pseudo_teacher_loss(per_iter, targets.pseudo_teachers, targets.pseudo_teacher_mask)
    else:
        pseudo = torch.zeros_like(imit)
    discount = iteration_weights(per_iter.shape[0], w.iteration_discount).to(imit)
    trajectory = (discount * (imit + w.pseudo_teacher * pseudo)).sum()
    score = _bce(outputs["scores"], targets.score, "score")
    aux = {}
    for name in ("mapping", "collision"):  # training-only heads, each optional
        target = getattr(targets, name)
        aux[name] = score.new_zeros(()) if target is None else _bce(_require(outputs, name), target, name)
    mapping, collision = aux["mapping"], aux["collision"]
    total = w.trajectory * trajectory + w.score * score + w.mapping * mapping + w.collision * collision
    return {"imitation": imit[-1], "pseudo_teacher": pseudo[-1], "trajectory": trajectory, "score": score,
            "mapping": mapping, "collision": collision, "total": total}


def length_normalized_l1(prediction: torch.Tensor, target: torch.Tensor, alpha: float = 5.0,
                         eps: float = 1e-6) -> torch.Tensor:
    """Perception-free loss (drive_jepa.md §8): per-sample mean L1 over (t, x/y/θ), weighted by ``1 / (α + arc)``.

    ``arc`` is the ground truth's xy polyline length over its M poses; the weights are rescaled to mean 1 over the
    batch (constants, no gradient). ``prediction``, ``target``: ``(B, M, 3)``. Returns a scalar.
    """
    if prediction.shape != target.shape or prediction.dim() != 3:
        raise ValueError(f"expected matching (B, M, 3) tensors, got {tuple(prediction.shape)} "
                         f"and {tuple(target.shape)}")
    target = target.to(prediction.dtype)
    per_sample = (prediction - target).abs().mean(dim=(1, 2))
    arc = (target[:, 1:, :2] - target[:, :-1, :2]).norm(dim=-1).sum(dim=1)
    w = 1.0 / (alpha + arc)
    w = w * (w.numel() / (w.sum() + eps))
    return (w * per_sample).mean()
