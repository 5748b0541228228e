"""Aggregation of PDM sub-scores: PDMS v1.1, EPDMS v2 (EC NaN handling, human false-positive filter), split means.

Follows shared/reference/navsim_metrics.md §6. Sub-scores are dicts or objects with ``(K,)`` arrays named ``nc``,
``dac``, ``ddc``, ``tlc``, ``ep``, ``ttc``, ``c``, ``lk``, ``hc``, ``ec``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from drive_jepa_core.metrics.params import EPDMS_WEIGHTS, HUMAN_FILTER_COLUMNS, PDMS_WEIGHTS

SUBSCORE_NAMES = ("nc", "dac", "ddc", "tlc", "ep", "ttc", "c", "lk", "hc", "ec")
SCORE_NAMES = ("pdms", "epdms")


def pdms_v11(nc: np.ndarray, dac: np.ndarray, ep: np.ndarray, ttc: np.ndarray, c: np.ndarray) -> np.ndarray:
    """PDMS v1.1 = NC · DAC · (5 EP + 5 TTC + 2 C) / 12 (DDC has weight 0) (§6.1). All ``(K,)``."""
    w = PDMS_WEIGHTS
    weighted = (w.ep * np.asarray(ep) + w.ttc * np.asarray(ttc) + w.c * np.asarray(c)) / (w.ep + w.ttc + w.c)
    return np.asarray(nc, dtype=np.float64) * np.asarray(dac) * weighted


def epdms_v2(nc: np.ndarray, dac: np.ndarray, ddc: np.ndarray, tlc: np.ndarray, ep: np.ndarray, ttc: np.ndarray,
             lk: np.ndarray, hc: np.ndarray, ec: np.ndarray) -> np.ndarray:
    """EPDMS v2 = NC · DAC · DDC · TLC · (5 EP + 5 TTC + 2 LK + 2 HC [+ 2 EC]) / (14 [+ 2]) (§6.2).

    Where EC is NaN (no predecessor frame) it and its weight are dropped. All ``(K,)``.
    """
    w = EPDMS_WEIGHTS
    ec = np.asarray(ec, dtype=np.float64)
    base = w.ep * np.asarray(ep) + w.ttc * np.asarray(ttc) + w.lk * np.asarray(lk) + w.hc * np.asarray(hc)
    base_w = w.ep + w.ttc + w.lk + w.hc
    has_ec = ~np.isnan(ec)
    weighted = np.where(has_ec, (base + w.ec * np.where(has_ec, ec, 0.0)) / (base_w + w.ec), base / base_w)
    return np.asarray(nc, dtype=np.float64) * np.asarray(dac) * np.asarray(ddc) * np.asarray(tlc) * weighted


def human_filtered(subscores: Mapping[str, np.ndarray], human: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The v2 human false-positive filter (§6.2): where the human's sub-score is exactly 0, the agent's becomes 1.

    Args:
        subscores: agent sub-scores ``(K,)`` by name.
        human: the logged human trajectory's sub-scores (scalars or ``(1,)`` arrays), scored alone.
    Returns:
        A copy of ``subscores`` with the filtered columns (:data:`HUMAN_FILTER_COLUMNS`) replaced.
    """
    out = {k: np.array(v, dtype=np.float64, copy=True) for k, v in subscores.items()}
    for name in HUMAN_FILTER_COLUMNS:
        value = float(np.asarray(human[name], dtype=np.float64).reshape(-1)[0])
        if value == 0.0:
            out[name] = np.ones_like(out[name])
    return out


def epdms_with_human_filter(result: Any, human: Any) -> Any:
    """Return a copy of a v2 :class:`~drive_jepa_core.metrics.scorer.ScoreResult` with the human filter applied.

    ``human`` is the human trajectory's ScoreResult (K = 1, scored alone) or a mapping of its sub-scores. The
    filtered sub-scores replace the originals and EPDMS is recomputed from them (behaviour after NAVSIM commit
    ``359c7f7``; §6.2).
    """
    if result.version != "v2":
        raise ValueError(f"the human filter is defined for EPDMS v2 only, got a {result.version} result")
    human_map = human if isinstance(human, Mapping) else {n: getattr(human, n) for n in HUMAN_FILTER_COLUMNS}
    filtered = human_filtered({n: getattr(result, n) for n in HUMAN_FILTER_COLUMNS}, human_map)
    epdms = epdms_v2(filtered["nc"], filtered["dac"], filtered["ddc"], filtered["tlc"], filtered["ep"],
                     filtered["ttc"], filtered["lk"], filtered["hc"], result.ec)
    return dataclasses.replace(result, **filtered, epdms=epdms, human_filtered=True)


def split_means(rows: Iterable[Mapping[str, Any]], names: Iterable[str] = SUBSCORE_NAMES + SCORE_NAMES
                ) -> dict[str, float]:
    """Benchmark means over scenes (§6.1, §6.3 one-stage): per column, the mean of the finite per-scene values.

    NaN entries (failed agents, EC without predecessor, columns a version does not define) are skipped; a column
    with no finite value is NaN. The mean PDMS is not the product of the sub-score means.
    """
    rows = list(rows)
    out: dict[str, float] = {}
    for name in names:
        values = np.array([float(r[name]) for r in rows if name in r and r[name] is not None], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else math.nan
    out["num_scenes"] = len(rows)
    return out
