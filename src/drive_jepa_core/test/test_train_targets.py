"""Online targets (score, per-waypoint on-road / on-route / collision) and vocabulary scoring into pseudo-teachers."""

import json

import numpy as np
import pytest
from _train_scenes import make_scene, write_scenes

from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.scene import save_scene
from drive_jepa_core.train.dataset import load_teachers, teachers_path
from drive_jepa_core.train.targets import OnlineTargets, proposal_targets
from drive_jepa_core.train.vocab import compute_pseudo_teachers

K = np.arange(1, 9)


def _straight(speed: float, lateral: np.ndarray | float = 0.0) -> np.ndarray:
    traj = np.zeros((8, 3))
    traj[:, 0] = speed * 0.5 * K
    traj[:, 1] = lateral
    return traj


def test_targets_for_hand_made_proposals():
    # Ego at 8 m/s in lane 1 (y in [-2, 2]); road y in [-2, 6]; a car stopped 25 m ahead in the ego lane.
    cache = MetricCache.from_scene(make_scene(0, speed=8.0, with_agent=True, agent_speed=0.0))
    stop = np.zeros((8, 3))
    # Planned 10 m/s: the front bumper (rear axle + 4.05 m) meets the car's rear (x = 22.75) at ~1.9 s, the rear
    # bumper (rear axle - 1.13 m) clears its front (x = 27.25) at ~2.8 s; the simulated ego starts at 8 m/s and lags
    # the plan by up to ~0.5 s, so contact falls in the intervals ending at 2.0 … 3.5 s, never before 1.5 s or at 4 s.
    crash = _straight(10.0)
    score, mapping, collision, result = proposal_targets(cache, np.stack([stop, crash]), "v2")
    assert score.shape == (2,) and mapping.shape == (2, 8, 2) and collision.shape == (2, 8)
    assert score.dtype == np.float32 and np.all((score >= 0) & (score <= 1))
    # Standing still: on road, on route, no contact.
    assert mapping[0].min() == 1.0 and collision[0].max() == 0.0
    # Driving through the stopped car: at-fault (NC 0, EPDMS 0), contact around waypoints 3..6 only.
    assert result.nc[1] == 0.0 and score[1] == 0.0
    assert collision[1, :3].max() == 0.0 and collision[1, 3:7].sum() >= 2 and collision[1, 7] == 0.0
    # Leaving the road (no traffic): y = 0.25 k^2 is 0.25 m at 0.5 s and 16 m at 4 s, far beyond the road edge at
    # y = 6: on road and route first, off both at the end; DAC fails.
    off_road = _straight(8.0, lateral=0.25 * K ** 2)
    score, mapping, collision, result = proposal_targets(MetricCache.from_scene(make_scene(0)), off_road[None])
    assert mapping[0, 0].tolist() == [1.0, 1.0] and mapping[0, -1].tolist() == [0.0, 0.0]
    assert result.dac[0] == 0.0 and score[0] == 0.0 and collision.max() == 0.0


def test_online_targets_batch_and_non_finite(tmp_path):
    paths = write_scenes(tmp_path, 2)
    targets = OnlineTargets("v1")
    props = np.stack([np.stack([_straight(s) for s in (4.0, 6.0, 8.0)])] * 2)
    props[1, 2] = np.nan  # a diverged proposal is a failure, not a crash
    out = targets([str(p) for p in paths], props)
    assert out.score.shape == (2, 3) and out.mapping.shape == (2, 3, 8, 2) and out.collision.shape == (2, 3, 8)
    assert out.score[1, 2] == 0.0 and np.all(out.mapping[1, 2] == 0)
    assert np.all(out.score[0] > 0.5) and len(targets.caches) == 2
    with pytest.raises(ValueError, match="proposals must be"):
        targets([str(paths[0])], props)


def test_worker_processes_match_in_process_scoring(tmp_path):
    paths = [str(p) for p in write_scenes(tmp_path, 3, with_agent=True)]
    props = np.stack([np.stack([_straight(s, 0.1 * s * K) for s in (3.0, 8.0, 12.0)])] * 3)
    expected = OnlineTargets("v2")(paths, props)
    pooled = OnlineTargets("v2", workers=2)
    try:
        got = pooled(paths, props)
    finally:
        pooled.close()
    for name in ("score", "mapping", "collision"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_vocab_scoring_writes_resumable_teachers(tmp_path):
    paths = write_scenes(tmp_path / "scenes", 2)
    vocab = np.stack([np.zeros((8, 3)), _straight(7.0), _straight(8.0), _straight(8.0, 0.25 * K ** 2)]).astype(
        np.float32)
    # Threshold 0.7: standing still fails history comfort (EPDMS ~0.57), leaving the road fails DAC (0), driving on
    # at 7 or 8 m/s scores > 0.9.
    summary = compute_pseudo_teachers(tmp_path / "scenes", vocab, threshold=0.7, progress=False)
    assert summary["scored"] == 2 and summary["skipped"] == 0
    for p in paths:
        teachers = load_teachers(teachers_path(p))
        assert sorted(float(t[-1, 0]) for t in teachers) == [28.0, 32.0]
        assert not np.any(np.abs(teachers[:, :, 1]) > 0)
    meta = json.loads((tmp_path / "scenes" / "teachers_meta.json").read_text())
    assert meta["threshold"] == 0.7 and meta["vocab_size"] == 4
    # Resume: nothing left to do; a different vocabulary is refused unless overwriting.
    assert compute_pseudo_teachers(tmp_path / "scenes", vocab, threshold=0.7, progress=False)["skipped"] == 2
    with pytest.raises(ValueError, match="different settings"):
        compute_pseudo_teachers(tmp_path / "scenes", vocab[:3], threshold=0.7, progress=False)
    # Separate cache directory and the cap.
    out = compute_pseudo_teachers(tmp_path / "scenes", vocab, teachers_dir=tmp_path / "cache", threshold=0.0,
                                  cap=1, progress=False)
    assert out["mean_kept"] == 1.0 and len(load_teachers(teachers_path(paths[0], tmp_path / "cache"))) == 1


def test_scene_without_map_scores_everything_off_road(tmp_path):
    scene = make_scene(1)
    scene.map_polygons, scene.map_polygon_ids, scene.map_polygon_layers = [], np.zeros(0, np.int64), np.zeros(
        0, np.int64)
    path = save_scene(scene, tmp_path / "nomap.npz")
    out = OnlineTargets()([str(path)], _straight(8.0)[None, None])
    assert out.mapping.max() == 0.0 and out.score[0, 0] == 0.0
