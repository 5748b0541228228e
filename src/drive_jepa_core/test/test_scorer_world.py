"""Batch scorer == reference scorer on scenes of the built-in world, and sane expert scores there."""

from __future__ import annotations

import numpy as np
import pytest
from scene_builders import random_trajectories

from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.metrics.reference_scorer import score_trajectories_reference
from drive_jepa_core.metrics.scorer import reference_progress, score_trajectories
from drive_jepa_core.scene.format import load_scene

generate = pytest.importorskip("drive_jepa_core.world.generate")

DISCRETE = ("nc", "dac", "ddc", "tlc", "ttc", "c", "lk", "hc")


@pytest.fixture(scope="module")
def world_scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    paths = generate.generate_split("test", 4, out, progress=False, frames=False)
    scenes = [load_scene(p, load_frames=False) for p in paths]
    return [(scene, MetricCache.from_scene(scene)) for scene in scenes]


def test_world_batch_equals_reference(world_scenes):
    for k, (scene, cache) in enumerate(world_scenes):
        trajs = random_trajectories(scene, 20, seed=100 + k, spread=1.5)
        for version in ("v2", "v1") if k < 2 else ("v2",):
            batch = score_trajectories(cache, trajs, version)
            for i in range(len(trajs)):
                ref = score_trajectories_reference(cache, trajs[i], version)
                for name in DISCRETE:
                    a, b = getattr(batch, name)[i], getattr(ref, name)[0]
                    assert (np.isnan(a) and np.isnan(b)) or a == b, (scene.token, version, i, name, a, b)
                np.testing.assert_allclose(batch.ep[i], ref.ep[0], rtol=0, atol=1e-12)


def test_world_expert_scores_high(world_scenes):
    """The world's expert drives collision-free in its lane: its logged future scores well on average."""
    scores = []
    for scene, cache in world_scenes:
        result = score_trajectories(cache, scene.future_trajectory()[None], "v2")
        assert result.dac[0] == 1.0, scene.token
        scores.append(result.epdms[0])
    assert np.mean(scores) > 0.8


def _array_bytes(obj, seen: set[int]) -> int:
    """Bytes of the numpy arrays reachable from ``obj`` through attributes, dicts, lists and tuples (each buffer
    counted once), without the kept source scene."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        if base is not obj and id(base) in seen:
            return 0
        seen.add(id(base))
        return base.nbytes
    if isinstance(obj, dict):
        return sum(_array_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_array_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(_array_bytes(v, seen) for k, v in vars(obj).items() if k != "scene")
    return 0


def test_world_cache_memory_is_small(world_scenes):
    """Training keeps hundreds of caches: each stays well under 8 MB with every lazy index built."""
    for scene, cache in world_scenes:
        score_trajectories(cache, scene.future_trajectory()[None], "v1")  # builds PDM-Closed, the box grids
        score_trajectories(cache, scene.future_trajectory()[None], "v2")
        assert _array_bytes(cache, set()) < 8e6, scene.token


def test_reference_memo_is_shared_and_read_only(world_scenes):
    scene, cache = world_scenes[0]
    raw0, mult0 = reference_progress(cache, "v2")
    assert cache.reference_progress["v2"] == (raw0, mult0)
    with pytest.raises(TypeError):
        cache.reference_progress["v1"] = (0.0, 0.0)  # type: ignore[index]
    memo = {"v2": (raw0, mult0)}
    rebuilt = MetricCache.from_scene(scene, reference_memo=memo)
    assert rebuilt.reference_progress["v2"] == (raw0, mult0) and rebuilt._reference is memo
    reference_progress(rebuilt, "v1")
    assert set(memo) == {"v1", "v2"}  # the rebuild fills the caller's dict
