"""3-D rotary position embedding exactly as V-JEPA 2 computes it (vjepa2.md A1 "3D RoPE", A6 export rewrite).

Each attention head of width ``head_dim`` is split into ``[time | height | width | rest]``: the three axes get
``d = 2 * ((head_dim // 3) // 2)`` channels each (20 for head_dim 64, 26 for 80, 10 for 32) and the remaining
``head_dim - 3d`` channels are left unrotated. Positions are the raw integer token coordinates ``(t, row, col)`` of
the ``(T', H', W')`` token grid, neither normalized nor scaled.

Within one axis block of ``d`` channels there are ``n = d / 2`` frequencies ``ω_j = θ^(-j / n)``, ``θ = 10000``.
**Layout quirk the released weights depend on:** the cos/sin tables are the ``n`` angles *tiled* twice,
``[a_0 … a_{n-1}, a_0 … a_{n-1}]``, while the rotation pairs *adjacent* channels ``(2i, 2i+1) → (-x_{2i+1}, x_{2i})``.
So channel ``c`` of a block uses angle ``a_{c mod n}``, and the two channels of a pair generally get different angles:

    out[2i]   = x[2i]   · cos(a_{2i mod n})     − x[2i+1] · sin(a_{2i mod n})
    out[2i+1] = x[2i+1] · cos(a_{(2i+1) mod n}) + x[2i]   · sin(a_{(2i+1) mod n})

Export notes (vjepa2.md A6): angles are computed as ``float position × float frequency`` (no einsum over int64), the
tables are built by concatenation (no squeeze), and the sin/cos math runs in float32 whatever the activations' dtype.
"""

from __future__ import annotations

import torch

ROPE_THETA = 10000.0  # base of the frequency ladder (vjepa2.md A1)


def rope_axis_dim(head_dim: int) -> int:
    """Channels rotated per axis: ``2 * ((head_dim // 3) // 2)`` (vjepa2.md A1)."""
    return 2 * ((int(head_dim) // 3) // 2)


def rope_frequencies(axis_dim: int, theta: float = ROPE_THETA, device: torch.device | None = None) -> torch.Tensor:
    """``(axis_dim / 2,)`` float32 frequencies ``ω_j = θ^(-j / n)`` with ``n = axis_dim / 2``."""
    n = axis_dim // 2
    exponent = torch.arange(n, dtype=torch.float32, device=device) / float(n)
    return 1.0 / (theta ** exponent)


def grid_positions(grid: tuple[int, int, int], device: torch.device | None = None) -> torch.Tensor:
    """``(T'H'W', 3)`` float32 ``(t, row, col)`` of every token of a ``(T', H', W')`` grid, t-major order.

    Built from ``arange``s (no integer division), so a traced graph folds it to a constant.
    """
    t, h, w = (int(s) for s in grid)
    tt = torch.arange(t, dtype=torch.float32, device=device).view(t, 1, 1).expand(t, h, w)
    hh = torch.arange(h, dtype=torch.float32, device=device).view(1, h, 1).expand(t, h, w)
    ww = torch.arange(w, dtype=torch.float32, device=device).view(1, 1, w).expand(t, h, w)
    return torch.stack((tt, hh, ww), dim=-1).reshape(t * h * w, 3)


def ids_to_positions(ids: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Flattened token ids ``(..., K)`` (int) → float32 ``(..., K, 3)`` ``(t, row, col)`` on a ``(T', H', W')`` grid.

    ``t = id // (H'W')``, ``row = (id mod H'W') // W'``, ``col = id mod W'`` — the real ``H'`` and ``W'``, so
    non-square grids (e.g. 1×16×32) are handled (V-JEPA 2 ``handle_nonsquare_inputs=True``).
    """
    _, h, w = (int(s) for s in grid)
    if ids.dtype.is_floating_point:
        raise TypeError(f"token ids must be an integer tensor, got {ids.dtype}")
    per_frame = h * w
    t = torch.div(ids, per_frame, rounding_mode="floor")
    rem = ids - t * per_frame
    row = torch.div(rem, w, rounding_mode="floor")
    col = rem - row * w
    return torch.stack((t, row, col), dim=-1).to(torch.float32)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float = ROPE_THETA) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for ``positions`` ``(..., N, 3)`` → each ``(..., N, head_dim)`` float32.

    Channels ``[0, 3d)``: per axis the ``n`` angles ``pos · ω`` tiled ``[a, a]`` (the released-weights layout, module
    docstring), axis blocks in the order time, height, width. Channels ``[3d, head_dim)`` are the unrotated rest:
    cos = 1, sin = 0, so :func:`apply_rope` needs no slicing, concatenation or shape-dependent branch.
    """
    d = rope_axis_dim(head_dim)
    if d == 0 or head_dim % 2:
        raise ValueError(f"3-D RoPE needs an even head_dim of at least 6, got {head_dim}")
    omega = rope_frequencies(d, theta, positions.device)  # (n,)
    angles = positions.to(torch.float32).unsqueeze(-1) * omega  # (..., N, 3, n)
    angles = torch.cat((angles, angles), dim=-1).flatten(-2)  # (..., N, 3 * d)
    cos, sin = torch.cos(angles), torch.sin(angles)
    rest = head_dim - 3 * d
    if rest:
        pad = angles.new_zeros((*angles.shape[:-1], rest))
        cos, sin = torch.cat((cos, pad + 1.0), dim=-1), torch.cat((sin, pad), dim=-1)
    return cos, sin


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, heads, N, head_dim)`` with tables from :func:`rope_tables`.

    ``cos``/``sin`` broadcast against ``x``: ``(N, head_dim)`` for a full grid or ``(B, 1, N, head_dim)`` for
    per-sample token subsets. Computed in float32 and cast back to ``x.dtype``.
    """
    xf = x.to(torch.float32)
    # adjacent-pair rotation (x_{2i}, x_{2i+1}) -> (-x_{2i+1}, x_{2i}); strided slices export as plain Slice ops
    paired = torch.stack((-xf[..., 1::2], xf[..., 0::2]), dim=-1).flatten(-2)
    return (xf * cos + paired * sin).to(x.dtype)
