"""Vocabulary k-means and pseudo-teacher selection (drive_jepa.md §6)."""

import numpy as np
import pytest
from _train_scenes import write_scenes

from drive_jepa_core.train.vocab import (
    build_vocabulary,
    collect_human_futures,
    load_vocabulary,
    scene_rng,
    select_pseudo_teachers,
)


def _two_clusters(n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    k = np.arange(1, 9)
    straight = np.stack([4.0 * k, np.zeros(8), np.zeros(8)], -1)
    left = np.stack([3.0 * k, 0.3 * k ** 2, 0.1 * k], -1)
    base = np.stack([straight if i % 2 else left for i in range(n)])
    return base + rng.normal(0.0, 0.05, base.shape)


def test_kmeans_finds_the_two_modes():
    trajs = _two_clusters()
    vocab = build_vocabulary(trajs, k=2, seed=42)
    assert vocab.shape == (2, 8, 3) and vocab.dtype == np.float32
    # Sorted by final x: the left turn (x_8 = 24) first, then straight (x_8 = 32); centres are the cluster means.
    np.testing.assert_allclose(vocab[0], trajs[0::2].mean(0), atol=1e-3)
    np.testing.assert_allclose(vocab[1], trajs[1::2].mean(0), atol=1e-3)
    # Same seed, same result.
    np.testing.assert_array_equal(build_vocabulary(trajs, k=2, seed=42), vocab)


def test_k_larger_than_data_is_capped():
    trajs = _two_clusters(6)
    with pytest.warns(UserWarning, match="capping k at 6"):
        vocab = build_vocabulary(trajs, k=50)
    assert vocab.shape == (6, 8, 3)
    with pytest.raises(ValueError, match=r"\(N>0, M, 3\)"):
        build_vocabulary(np.zeros((0, 8, 3)))


def test_vocab_from_scenes_and_upstream_layout(tmp_path):
    write_scenes(tmp_path / "scenes", 3)
    futures = collect_human_futures(sorted((tmp_path / "scenes").glob("*.npz")))
    assert futures.shape == (3, 8, 3)
    np.testing.assert_allclose(futures[2, :, 0], 4.0 * np.arange(1, 9), atol=1e-5)  # 8 m/s
    # An upstream (K, 40, 3) 10 Hz file is subsampled [:, 4::5] to the 0.5 s poses.
    upstream = np.zeros((5, 40, 3), np.float32)
    upstream[:, :, 0] = np.arange(1, 41) * 0.1
    np.save(tmp_path / "v.npy", upstream)
    vocab = load_vocabulary(tmp_path / "v.npy")
    np.testing.assert_allclose(vocab[0, :, 0], 0.5 * np.arange(1, 9), atol=1e-6)
    np.save(tmp_path / "bad.npy", np.zeros((5, 7, 3)))
    with pytest.raises(ValueError, match="must have shape"):
        load_vocabulary(tmp_path / "bad.npy")


def test_pseudo_teacher_threshold_and_cap():
    scores = np.array([0.2, 0.95, 0.949999, 1.0, np.nan, 0.97])
    np.testing.assert_array_equal(select_pseudo_teachers(scores), [1, 3, 5])  # >= 0.95, NaN never passes
    assert select_pseudo_teachers(np.zeros(10)).size == 0  # may be empty
    many = np.ones(1000)
    many[::2] = 0.5  # 500 pass
    picked = select_pseudo_teachers(many, cap=256, rng=np.random.default_rng(0))
    assert len(picked) == 256 and len(set(picked.tolist())) == 256 and np.all(many[picked] >= 0.95)
    assert np.all(np.diff(picked) > 0)
    # Per-scene generator: the same scene name gives the same subset.
    a = select_pseudo_teachers(many, rng=scene_rng("dir1/s.npz"))
    b = select_pseudo_teachers(many, rng=scene_rng("dir2/s.npz"))
    np.testing.assert_array_equal(a, b)
