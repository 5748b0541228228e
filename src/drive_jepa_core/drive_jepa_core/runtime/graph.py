"""The one inference graph every backend runs: encoder + planner + scorer, tuple in, tuple out.

The torch backend calls this module eagerly and the ONNX exporter traces this very module, so the three backends
(torch, ONNX Runtime, TensorRT built from that ONNX) compute the same function by construction.

Inputs (static shapes, batch 1 on the vehicle):
    ``video`` (B, 3, 2, H, W) float32 ImageNet-normalized frames (t-0.5 s, t) — :func:`preprocess.prepare_video`;
    ``ego_status`` (B, 11) float32 — :func:`preprocess.ego_status_vector`;
    ``ego2image`` (B, 3, 4) float32 projection into the model-input image — ``ImageGeometry.adjust_projection``.
Outputs:
    ``proposals`` (B, Np, M, 3) ego-frame (x, y, heading) at 0.5 s;
    ``scores`` (B, Np) logits of each proposal's expected (E)PDMS (sigmoid → learned score S, drive_jepa.md §7.6).
"""

from __future__ import annotations

import torch
from torch import nn

INPUT_NAMES: tuple[str, str, str] = ("video", "ego_status", "ego2image")
OUTPUT_NAMES: tuple[str, str] = ("proposals", "scores")


class InferenceGraph(nn.Module):
    """Wrap a trained planner (``ProposalPlanner`` or ``PerceptionFreePlanner``) as ``(video, ego, P) → (proposals,
    scores)``; the auxiliary training heads (mapping, collision) are skipped.

    The perception-free baseline predicts one trajectory and no score: it gets ``Np = 1`` and a constant logit 0
    (S = 0.5), so selection always picks it and the runtime API stays the same for both variants.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.has_scores = hasattr(model, "score_head")

    def forward(self, video: torch.Tensor, ego_status: torch.Tensor,
                ego2image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.has_scores:
            out = self.model(video, ego_status, ego2image, aux_heads=False)
            return out["proposals"], out["scores"]
        proposals = self.model(video, ego_status, ego2image)["proposals"]  # (B, 1, M, 3)
        # A zero logit computed from ego2image (which this model ignores) keeps all three graph inputs in the export:
        # the exporter drops unused inputs, and every runtime model has the same I/O contract.
        scores = (ego2image[:, 0, :1] * 0.0).expand(proposals.shape[0], proposals.shape[1])
        return proposals, scores
