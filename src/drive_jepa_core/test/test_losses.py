"""Planner losses on tiny examples whose values are computed by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from drive_jepa_core.models.losses import (
    PlannerTargets,
    imitation_loss,
    iteration_weights,
    length_normalized_l1,
    min_over_proposals_l1,
    planner_loss,
    pseudo_teacher_loss,
)
from drive_jepa_core.models.planner_config import PlannerLossWeights

GT = torch.tensor([[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]]])  # (B=1, M=2, 3)


def two_proposals(offset: float) -> torch.Tensor:
    """(B=1, Np=2, M=2, 3): proposal 0 at rest (L1 to GT: t0 1, t1 2 -> mean 1.5); proposal 1 = GT + offset in x."""
    return torch.stack([torch.zeros(2, 3), GT[0] + torch.tensor([offset, 0.0, 0.0])])[None]


def test_min_over_proposals_picks_the_closest() -> None:
    assert float(imitation_loss(two_proposals(0.1)[None], GT)[0]) == pytest.approx(0.1)
    assert float(imitation_loss(two_proposals(5.0)[None], GT)[0]) == pytest.approx(1.5)  # now proposal 0 is closer
    # x, y and heading errors add up (sum over d), then average over t: |0.2|+|0.3|+|0.5| = 1.0 at both steps
    p = (GT + torch.tensor([0.2, -0.3, 0.5]))[:, None]
    assert float(min_over_proposals_l1(p, GT[:, None])) == pytest.approx(1.0)


def test_imitation_gradient_reaches_only_the_closest_proposal() -> None:
    p = two_proposals(0.1).requires_grad_()
    imitation_loss(p[None], GT)[0].backward()
    assert float(p.grad[0, 0].abs().sum()) == 0.0
    assert float(p.grad[0, 1].abs().sum()) > 0.0


def test_iteration_discount_follows_the_reference_nesting() -> None:
    # 0.1·(0.1·(0.1·L0 + L1) + L2) + L3 = 0.001 L0 + 0.01 L1 + 0.1 L2 + L3
    assert iteration_weights(4, 0.1).tolist() == pytest.approx([0.001, 0.01, 0.1, 1.0])
    # iterations with imitation 1.5 (proposal 0 closest), 1.0, 0.1:
    per_iter = torch.stack([two_proposals(9.0), two_proposals(1.0), two_proposals(0.1)])
    losses = planner_loss({"proposals_per_iter": per_iter, "scores": torch.zeros(1, 2)}, PlannerTargets(GT))
    assert float(losses["trajectory"]) == pytest.approx(0.01 * 1.5 + 0.1 * 1.0 + 0.1)
    assert float(losses["imitation"]) == pytest.approx(0.1)  # the final iteration, unweighted
    # no score target -> score term 0; total = trajectory
    assert float(losses["total"]) == pytest.approx(float(losses["trajectory"]))


def test_pseudo_teacher_mask_and_averaging() -> None:
    proposals = torch.cat([two_proposals(0.1), two_proposals(0.1)])  # (B=2, Np=2, M=2, 3)
    teachers = torch.zeros(2, 3, 2, 3)
    teachers[0, 0] = GT[0]  # distance 0.1 (to proposal 1)
    teachers[0, 1] = GT[0] + torch.tensor([0.0, 0.4, 0.0])  # |0.1| + |0.4| = 0.5 (to proposal 1)
    teachers[0, 2] = 100.0  # padding, masked out
    mask = torch.tensor([[True, True, False], [False, False, False]])  # sample 1 has no pseudo-teacher
    # sample 0: mean(0.1, 0.5) = 0.3; sample 1 does not count in the average (upstream divided by B = 2 -> 0.15)
    value = pseudo_teacher_loss(proposals[None], teachers, mask)
    assert value.tolist() == pytest.approx([0.3])
    # no teacher anywhere -> 0, not NaN
    assert pseudo_teacher_loss(proposals[None], teachers, torch.zeros_like(mask)).tolist() == [0.0]
    # a separate draw per iteration: (I, B, K, M, 3)
    per_iter = torch.stack([proposals, proposals])
    value = pseudo_teacher_loss(per_iter, torch.stack([teachers, teachers]), torch.stack([mask, mask.logical_not()]))
    # iteration 1: sample 0 keeps only the far teacher; sample 1 has three teachers at 0 = proposal 0 (distance 0)
    far = float(min_over_proposals_l1(proposals[:1], teachers[:1, 2:]))
    sample1 = 0.0
    assert value.tolist() == pytest.approx([0.3, (far + sample1) / 2])


def test_mtd_weight_inside_each_iteration() -> None:
    per_iter = torch.stack([two_proposals(0.1), two_proposals(0.1)])  # I=2, imitation 0.1 each
    teachers = (GT[0] + torch.tensor([0.0, 0.4, 0.0]))[None, None]  # distance 0.5
    targets = PlannerTargets(GT, pseudo_teachers=teachers, pseudo_teacher_mask=torch.ones(1, 1, dtype=torch.bool))
    losses = planner_loss({"proposals_per_iter": per_iter, "scores": torch.zeros(1, 2)}, targets)
    # (0.1 + 0.5·0.5) · (0.1 + 1)
    assert float(losses["trajectory"]) == pytest.approx(0.35 * 1.1)
    assert float(losses["pseudo_teacher"]) == pytest.approx(0.5)


def test_bce_terms_and_weights() -> None:
    log3 = math.log(3.0)  # sigmoid(log 3) = 0.75
    outputs = {
        "proposals_per_iter": two_proposals(0.0)[None],  # imitation 0
        "scores": torch.full((1, 2), log3),
        "mapping": torch.full((1, 2, 2, 2), log3),
        "collision": torch.full((1, 2, 2), -log3),  # sigmoid = 0.25
    }
    targets = PlannerTargets(GT, score=torch.tensor([[1.0, 0.0]]), mapping=torch.ones(1, 2, 2, 2),
                             collision=torch.zeros(1, 2, 2))
    losses = planner_loss(outputs, targets)
    score = (-math.log(0.75) - math.log(0.25)) / 2  # soft targets 1 and 0
    assert float(losses["score"]) == pytest.approx(score)
    assert float(losses["mapping"]) == pytest.approx(-math.log(0.75))
    assert float(losses["collision"]) == pytest.approx(-math.log(0.75))
    assert float(losses["total"]) == pytest.approx(score + 2 * -math.log(0.75) + 1 * -math.log(0.75))
    weights = PlannerLossWeights(mapping=0.0, collision=0.0)
    assert float(planner_loss(outputs, targets, weights)["total"]) == pytest.approx(score)


def test_length_normalized_l1_by_hand() -> None:
    gt = torch.zeros(2, 3, 3)
    gt[0, :, 0] = torch.tensor([0.0, 4.0, 10.0])  # arc length 10 -> w = 1/15
    # sample 1 stands still: arc 0 -> w = 1/5; normalized to mean 1: (1/15, 1/5) · 2 / (4/15) = (0.5, 1.5)
    pred = gt.clone()
    pred[0, :, 1] += 0.9  # mean over (t, d) of |err| = 0.9 / 3 = 0.3
    pred[1, 0, 2] += 0.9  # 0.9 / 9 = 0.1
    expected = (0.5 * 0.3 + 1.5 * 0.1) / 2
    assert float(length_normalized_l1(pred, gt)) == pytest.approx(expected, rel=1e-5)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="trajectory"):
        imitation_loss(two_proposals(0.0)[None], torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="pseudo_teachers"):
        pseudo_teacher_loss(two_proposals(0.0)[None], torch.zeros(2, 1, 2, 3), torch.ones(2, 1, dtype=bool))
    with pytest.raises(ValueError, match="score"):
        planner_loss({"proposals_per_iter": two_proposals(0.0)[None], "scores": torch.zeros(1, 2)},
                     PlannerTargets(GT, score=torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="mask"):
        planner_loss({"proposals_per_iter": two_proposals(0.0)[None], "scores": torch.zeros(1, 2)},
                     PlannerTargets(GT, pseudo_teachers=torch.zeros(1, 1, 2, 3)))
