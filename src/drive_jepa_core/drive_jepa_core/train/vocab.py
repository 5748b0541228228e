"""Multimodal trajectory distillation data: the trajectory vocabulary and per-scene pseudo-teachers.

drive_jepa.md §6:

* **Vocabulary** (§6.1): k-means over the training scenes' human futures, each flattened to ``M×3`` = 24 values
  (x, y, heading; raw, not standardized, as the upstream ``faiss_kmeans.py``), ``k = 8192`` centres, seed 42.
  The upstream NAVSIM file is (8192, 40, 3) at 10 Hz subsampled to 0.5 s; ours is built directly at 0.5 s.
* **Pseudo-teachers** (§6.2, §6.3): every vocabulary trajectory is scored in every training scene with the same
  vectorized simulator + scorer as training; those with final score ≥ 0.95 are the scene's pseudo-teachers, at most
  256 of them (a random subset when more pass; upstream unseeded, here seeded by the scene name so reruns agree).

Pseudo-teachers are stored as trajectories, not vocabulary indices, so a sample is self-contained:
``<scene>.teachers.npy`` (n, M, 3) float32 next to the scene (or in a cache directory), plus one
``teachers_meta.json`` per output directory recording the vocabulary checksum, threshold and cap, so a resumed run
refuses to mix teachers from different vocabularies.
"""

from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from drive_jepa_core.constants import NUM_TRAJ_POSES
from drive_jepa_core.scene import list_scenes, load_scene
from drive_jepa_core.train.dataset import teachers_path

# drive_jepa.md §6.1 (faiss_kmeans.py): k = 8192 centres, seed 42.
VOCAB_SIZE = 8192
KMEANS_SEED = 42
# drive_jepa.md §6.3 (convert_to_index.py): final score >= 0.95, at most 256 indices per scene.
PSEUDO_TEACHER_THRESHOLD = 0.95
MAX_PSEUDO_TEACHERS_PER_SCENE = 256
# Exact (Lloyd) k-means up to this many point-centre pairs per iteration, mini-batch k-means beyond (cost bound).
FULL_KMEANS_MAX_WORK = 200_000_000
# Trajectories per scorer call: bounds the (chunk, 41, …) simulation arrays in memory.
SCORE_CHUNK = 1024
TEACHERS_META = "teachers_meta.json"


# ---------------------------------------------------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------------------------------------------------
def collect_human_futures(scene_paths: Sequence[str | Path], num_poses: int = NUM_TRAJ_POSES,
                          progress: bool = False) -> np.ndarray:
    """Human futures ``(N, num_poses, 3)`` of the given scenes (frames are not decoded)."""
    from tqdm import tqdm

    futures = []
    for path in tqdm(list(scene_paths), desc="human futures", unit="scene", disable=not progress):
        futures.append(load_scene(path, load_frames=False).future_trajectory(num_poses))
    if not futures:
        raise ValueError("no scenes given: cannot build a vocabulary")
    return np.stack(futures).astype(np.float32)


def build_vocabulary(trajectories: np.ndarray, k: int = VOCAB_SIZE, seed: int = KMEANS_SEED,
                     max_iter: int = 100) -> np.ndarray:
    """k-means centres of trajectories.

    Args:
        trajectories: ``(N, M, 3)`` ego-frame poses.
        k: number of centres; capped at the number of distinct trajectories (with a warning).
        seed: k-means initialization seed. Exact k-means while ``N·k`` is at most :data:`FULL_KMEANS_MAX_WORK`,
            scikit-learn's MiniBatchKMeans beyond.
    Returns:
        ``(K, M, 3)`` float32 centres, ``K = min(k, distinct N)``, sorted by final x then y for readability.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    trajectories = np.asarray(trajectories, dtype=np.float64)
    if trajectories.ndim != 3 or trajectories.shape[-1] != 3 or trajectories.shape[0] == 0:
        raise ValueError(f"trajectories must be (N>0, M, 3), got {trajectories.shape}")
    if not np.all(np.isfinite(trajectories)):
        raise ValueError("trajectories contain NaN/inf")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    N, M, _ = trajectories.shape
    flat = trajectories.reshape(N, M * 3)
    distinct = np.unique(flat, axis=0)
    if k > len(distinct):
        warnings.warn(f"vocabulary size k={k} exceeds the {len(distinct)} distinct training trajectories "
                      f"(of {N}); capping k at {len(distinct)}", stacklevel=2)
        k = len(distinct)
    if k == len(distinct):
        centres = distinct  # every trajectory is its own centre: k-means would return them anyway
    elif N * k <= FULL_KMEANS_MAX_WORK:
        centres = KMeans(n_clusters=k, random_state=seed, max_iter=max_iter, n_init=1).fit(flat).cluster_centers_
    else:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, max_iter=max_iter, n_init=3,
                             batch_size=max(1024, 2 * k))
        centres = km.fit(flat).cluster_centers_
    centres = centres.reshape(-1, M, 3)
    order = np.lexsort((centres[:, -1, 1], centres[:, -1, 0]))
    return centres[order].astype(np.float32)


def load_vocabulary(path: str | Path, num_poses: int = NUM_TRAJ_POSES) -> np.ndarray:
    """Read a vocabulary ``(K, M, 3)``; an upstream 10 Hz file ``(K, 40, 3)`` is subsampled ``[:, 4::5]``."""
    vocab = np.load(path, allow_pickle=False)
    if vocab.ndim == 3 and vocab.shape[1] == 5 * num_poses and vocab.shape[2] == 3:
        vocab = vocab[:, 4::5]  # drive_jepa.md §6.1: 10 Hz -> poses at 0.5 … 4.0 s
    if vocab.ndim != 3 or vocab.shape[1:] != (num_poses, 3):
        raise ValueError(f"{path}: vocabulary must have shape (K, {num_poses}, 3), got {vocab.shape}")
    if not np.all(np.isfinite(vocab)):
        raise ValueError(f"{path}: vocabulary contains NaN/inf")
    return vocab.astype(np.float32)


def vocabulary_checksum(vocab: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vocab, dtype=np.float32).tobytes()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------------
# Pseudo-teachers
# ---------------------------------------------------------------------------------------------------------------------
def select_pseudo_teachers(scores: np.ndarray, threshold: float = PSEUDO_TEACHER_THRESHOLD,
                           cap: int = MAX_PSEUDO_TEACHERS_PER_SCENE,
                           rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices (sorted, int64) of vocabulary entries with ``score >= threshold``; a random subset of ``cap`` of them
    when more pass. NaN scores never pass."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be (V,), got {scores.shape}")
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    with np.errstate(invalid="ignore"):
        idx = np.flatnonzero(scores >= threshold)
    if len(idx) > cap:
        rng = rng if rng is not None else np.random.default_rng()
        idx = np.sort(rng.choice(idx, size=cap, replace=False))
    return idx.astype(np.int64)


def scene_rng(scene_path: str | Path, seed: int = 0) -> np.random.Generator:
    """Deterministic per-scene generator (same scene name → same teacher subset on every run and worker)."""
    return np.random.default_rng([seed, zlib.crc32(Path(scene_path).name.encode("utf-8"))])


def score_vocabulary(scene: Any, vocab: np.ndarray, version: str = "v2", chunk: int = SCORE_CHUNK) -> np.ndarray:
    """Final score ``(V,)`` of every vocabulary trajectory in one scene (v2: EPDMS without EC, the training score of
    drive_jepa.md §5; v1: PDMS)."""
    from drive_jepa_core.metrics.metric_cache import MetricCache
    from drive_jepa_core.metrics.scorer import score_trajectories

    cache = MetricCache.from_scene(scene)
    out = np.empty(len(vocab), np.float64)
    for start in range(0, len(vocab), chunk):
        result = score_trajectories(cache, vocab[start:start + chunk], version=version)
        out[start:start + chunk] = result.epdms if version == "v2" else result.pdms
    return out


def _meta(vocab: np.ndarray, version: str, threshold: float, cap: int, seed: int) -> dict[str, Any]:
    return {"vocab_checksum": vocabulary_checksum(vocab), "vocab_size": len(vocab), "score_version": version,
            "threshold": threshold, "cap": cap, "seed": seed}


def _check_meta(folder: Path, meta: dict[str, Any], overwrite: bool) -> None:
    path = folder / TEACHERS_META
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        if old != meta:
            raise ValueError(f"{path} records pseudo-teachers from different settings {old}; now {meta}. Use "
                             f"--overwrite to recompute them all, or another --out-dir")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=1))


def _score_one(args: tuple[Path, Path, np.ndarray, str, float, int, int]) -> tuple[str, int, int]:
    scene_path, out_path, vocab, version, threshold, cap, seed = args
    scene = load_scene(scene_path, load_frames=False)
    scores = score_vocabulary(scene, vocab, version)
    idx = select_pseudo_teachers(scores, threshold, cap, scene_rng(scene_path, seed))
    with np.errstate(invalid="ignore"):
        passing = int(np.sum(scores >= threshold))
    tmp = out_path.with_name(out_path.name + ".tmp.npy")
    np.save(tmp, vocab[idx].astype(np.float32))
    tmp.replace(out_path)  # atomic: an interrupted run never leaves a truncated file that resume would skip
    return str(scene_path), passing, len(idx)


def compute_pseudo_teachers(scenes: str | Path | Sequence[str | Path], vocab: np.ndarray,
                            teachers_dir: str | Path | None = None, version: str = "v2",
                            threshold: float = PSEUDO_TEACHER_THRESHOLD, cap: int = MAX_PSEUDO_TEACHERS_PER_SCENE,
                            seed: int = 0, workers: int = 1, overwrite: bool = False,
                            progress: bool = True) -> dict[str, Any]:
    """Score the vocabulary in every scene and write ``<scene>.teachers.npy``; scenes already done are skipped
    (resumable). Returns a summary: scenes done/skipped, mean passing and kept teachers, fraction with none."""
    from tqdm import tqdm

    if version not in ("v1", "v2"):
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    paths = list_scenes(scenes) if isinstance(scenes, (str, Path)) else [Path(p) for p in scenes]
    if not paths:
        raise ValueError(f"no scene files found in {scenes}")
    vocab = np.asarray(vocab, dtype=np.float32)
    meta = _meta(vocab, version, threshold, cap, seed)
    folders = {teachers_path(p, teachers_dir).parent for p in paths}
    for folder in sorted(folders):
        _check_meta(folder, meta, overwrite)
    jobs = []
    skipped = 0
    for p in paths:
        out = teachers_path(p, teachers_dir)
        if out.exists() and not overwrite:
            skipped += 1
            continue
        jobs.append((p, out, vocab, version, threshold, cap, seed))
    passing, kept = [], []
    bar = tqdm(total=len(jobs), desc="pseudo-teachers", unit="scene", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _, n_pass, n_kept in pool.map(_score_one, jobs, chunksize=1):
                passing.append(n_pass)
                kept.append(n_kept)
                bar.update()
    else:
        for job in jobs:
            _, n_pass, n_kept = _score_one(job)
            passing.append(n_pass)
            kept.append(n_kept)
            bar.update()
    bar.close()
    return {
        "scenes": len(paths), "scored": len(jobs), "skipped": skipped, "vocab_size": len(vocab),
        "mean_passing": float(np.mean(passing)) if passing else None,
        "mean_kept": float(np.mean(kept)) if kept else None,
        "fraction_without_teachers": float(np.mean(np.asarray(kept) == 0)) if kept else None,
    }


__all__ = [
    "KMEANS_SEED", "MAX_PSEUDO_TEACHERS_PER_SCENE", "PSEUDO_TEACHER_THRESHOLD", "VOCAB_SIZE", "build_vocabulary",
    "collect_human_futures", "compute_pseudo_teachers", "load_vocabulary", "score_vocabulary", "scene_rng",
    "select_pseudo_teachers", "vocabulary_checksum",
]
