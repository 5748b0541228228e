"""Exponential moving average target encoder (vjepa2.md A4): ``target ← m·target + (1 − m)·online`` over all
parameters, with ``m`` linear from ``ema[0]`` to ``ema[1]`` over training (upstream: constant 0.99925)."""

from __future__ import annotations

import torch
from torch import nn


def momentum_at(step: int, total_steps: int, start: float, end: float) -> float:
    """EMA momentum at ``step`` (0-based): linear from ``start`` (step 0) to ``end`` (step ``total_steps``)."""
    if total_steps <= 0:
        return float(end)
    frac = min(max(step / total_steps, 0.0), 1.0)
    return float(start + (end - start) * frac)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place: every target parameter becomes ``momentum · target + (1 − momentum) · online``.

    The two modules must have the same parameter names and shapes (the target is a copy of the online encoder).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
    t_params = dict(target.named_parameters())
    o_params = dict(online.named_parameters())
    if t_params.keys() != o_params.keys():
        raise ValueError("EMA target and online modules have different parameters: "
                         f"{sorted(t_params.keys() ^ o_params.keys())[:10]}")
    names = list(t_params)
    targets = [t_params[n] for n in names]
    onlines = [o_params[n].detach().to(t_params[n].dtype) for n in names]
    torch._foreach_mul_(targets, momentum)
    torch._foreach_add_(targets, onlines, alpha=1.0 - momentum)
