"""Batch scorer == reference scorer on scenes of the built-in world, and sane expert scores there."""

from __future__ import annotations

import numpy as np
import pytest
from scene_builders import random_trajectories

from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.metrics.reference_scorer import score_trajectories_reference
from drive_jepa_core.metrics.scorer import score_trajectories
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
