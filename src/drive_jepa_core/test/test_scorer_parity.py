"""The batch scorer equals the straightforward per-trajectory reference scorer on random trajectories.

Discrete sub-scores (NC, DAC, DDC, TLC, TTC, C, LK, HC) must match exactly. EP is continuous: given the same
simulated states it must match bit for bit too (checked on the batch's own states); through the public entry points
each side simulates its own trajectory, and the tracker's batched matrix products may round differently for K = 1,
so there EP is compared to 1e-12 unless the tracker is batch-invariant.
"""

from __future__ import annotations

import numpy as np
import pytest
from scene_builders import busy_road, curved_road, junction, random_trajectories, straight_road

from drive_jepa_core.metrics.aggregate import SUBSCORE_NAMES
from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.metrics.reference_scorer import score_states_reference, score_trajectories_reference
from drive_jepa_core.metrics.scorer import ScoreResult, reference_progress, score_states, score_trajectories
from drive_jepa_core.sim import simulate_trajectories

DISCRETE = ("nc", "dac", "ddc", "tlc", "ttc", "c", "lk", "hc")
ALL = (*SUBSCORE_NAMES, "pdms", "epdms", "progress")
SCENES = {
    "straight": lambda: straight_road(),
    "junction": lambda: junction(),
    "curve": lambda: curved_road(),
    "busy": lambda: busy_road(seed=3),
}


def _tracker_batch_invariant(cache: MetricCache, trajectories: np.ndarray) -> bool:
    batch = simulate_trajectories(trajectories[:4], cache.ego_state7)
    single = np.concatenate([simulate_trajectories(t[None], cache.ego_state7) for t in trajectories[:4]])
    return bool(np.array_equal(batch, single))


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


def _assert_rows_equal(batch: ScoreResult, i: int, ref: ScoreResult, names: tuple[str, ...], label: str) -> None:
    row, other = batch.row(i), ref.row(0)
    bad = {n: (row[n], other[n]) for n in names if not _same(row[n], other[n])}
    assert not bad, f"{label} trajectory {i}: {bad}"


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_batch_equals_reference_on_random_trajectories(version):
    per_scene = 50 if version == "v2" else 25  # v2: 200 trajectories over 4 scenes, v1: 100
    checked, seen_values = 0, {n: set() for n in DISCRETE}
    for seed, (name, make) in enumerate(SCENES.items()):
        scene = make().build()
        cache = MetricCache.from_scene(scene)
        trajs = random_trajectories(scene, per_scene, seed=10 + seed, spread=1.5)
        batch = score_trajectories(cache, trajs, version)
        exact_ep = _tracker_batch_invariant(cache, trajs)
        for i in range(per_scene):
            ref = score_trajectories_reference(cache, trajs[i], version)
            _assert_rows_equal(batch, i, ref, DISCRETE, f"{name}/{version}")
            if exact_ep:
                _assert_rows_equal(batch, i, ref, ALL, f"{name}/{version}")
            else:
                np.testing.assert_allclose(batch.ep[i], ref.ep[0], rtol=0, atol=1e-12)
            for n in DISCRETE:
                seen_values[n].add(float(getattr(batch, n)[i]))
            checked += 1
    assert checked == 4 * per_scene
    # the random set exercises both outcomes of the main sub-scores
    for n in ("nc", "dac", "ttc", "ddc"):
        assert {0.0, 1.0} <= seen_values[n], (n, seen_values[n])


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_batch_equals_reference_bitwise_on_identical_states(version):
    """Given the same simulated states, every field including EP and the scores is bit-identical."""
    for seed, name in enumerate(("busy", "junction")):
        scene = SCENES[name]().build()
        cache = MetricCache.from_scene(scene)
        trajs = random_trajectories(scene, 20, seed=40 + seed, spread=1.5)
        states = simulate_trajectories(trajs, cache.ego_state7)
        batch = score_states(cache.context(version), states, version, ep_reference=reference_progress(cache, version))
        for i in range(len(trajs)):
            ref = score_states_reference(cache, states[i], version)
            _assert_rows_equal(batch, i, ref, ALL, f"{name}/{version}")


def test_human_filter_batch_equals_reference():
    scene = busy_road(seed=3).build()
    cache = MetricCache.from_scene(scene)
    trajs = random_trajectories(scene, 12, seed=7, spread=1.5)
    batch = score_trajectories(cache, trajs, "v2", human_filter=True)
    assert batch.human_filtered
    for i in range(len(trajs)):
        ref = score_trajectories_reference(cache, trajs[i], "v2", human_filter=True)
        _assert_rows_equal(batch, i, ref, DISCRETE, "busy/human-filter")
