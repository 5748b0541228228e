"""Online training targets: the detached final proposals of every sample are simulated and scored in their scene.

Per sample (drive_jepa.md §5 "online supervision"), for its ``Np`` proposals ``(Np, M, 3)``:

* ``score`` ``(Np,)``: the training score of each proposal, scored as NAVSIM scores an agent (next to the PDM-Closed
  reference). v2: EPDMS without EC (one frame: EC's weight is dropped, i.e. the /14 form the reference trains on);
  v1: PDMS v1.1.
* ``mapping`` ``(Np, M, 2)``: :data:`~drive_jepa_core.models.heads.MAPPING_CHANNELS` at each waypoint's simulated
  state (t = 0.5 s · (k+1)): *on_road* = all 4 ego-box corners strictly inside drivable polygons (roadblock,
  intersection, car park; NAVSIM's NON_DRIVABLE complement), *on_route* = the box centre strictly inside an on-route
  lane or lane connector (the ONCOMING complement) — the same exact point-in-polygon index the scorer uses.
* ``collision`` ``(Np, M)``: 1 if the simulated ego box touches an object box of the scorer's observation in the
  0.5 s leading to waypoint k (states 5k+1 … 5k+5) AND the proposal has an at-fault collision (NC < 1). This keeps
  the head on the reference's at-fault notion without re-deriving blame per step. (The reference's key-agent head
  regresses the colliding agents' corners too; this project's head keeps only the per-step collision logit.)

The :class:`MetricCache` of a scene (map index, observations) is built on first use and kept in a bounded per-process
LRU; the PDM-Closed reference progress is remembered for every scene. Scoring can run in worker processes
(``workers``), each scene always on the same worker so its cache is reused.
"""

from __future__ import annotations

import multiprocessing as mp
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from drive_jepa_core.constants import EGO_VEHICLE, NUM_TRAJ_POSES, SIM_DT, TRAJ_DT
from drive_jepa_core.geometry import ego_center, ego_corners
from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.metrics.scorer import ScoreResult, score_trajectories
from drive_jepa_core.scene import load_scene

STEPS_PER_POSE = round(TRAJ_DT / SIM_DT)  # 5 simulation steps of 0.1 s between 0.5 s waypoints
_EGO_RADIUS = 0.5 * float(np.hypot(EGO_VEHICLE.length, EGO_VEHICLE.width))  # bounding disc of the ego box
# MetricCaches kept per process: a generated scene's cache is ~3 MB (the scorer's sparse grids), so 1024 ≈ 3 GB.
DEFAULT_CACHE_SCENES = 1024


@dataclass
class BatchTargets:
    """Targets of one batch: ``score`` (B, Np), ``mapping`` (B, Np, M, 2), ``collision`` (B, Np, M); float32."""

    score: np.ndarray
    mapping: np.ndarray
    collision: np.ndarray


class MetricCacheStore:
    """LRU of :class:`MetricCache` by scene path (scene files are read without camera frames).

    A cache of a generated scene holds ~3 MB (the scorer's map, lane-keeping and object grids), so only
    ``capacity`` are kept. What is expensive and tiny is kept for every scene seen: the PDM-Closed reference
    progress (two floats per version, passed to MetricCache as ``reference_memo``), so a scene evicted and rebuilt
    later skips the PDM-Closed planner (about half of the rebuild time).
    """

    def __init__(self, capacity: int = DEFAULT_CACHE_SCENES) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, MetricCache] = OrderedDict()
        self._reference: dict[str, dict[str, tuple[float, float]]] = {}

    def get(self, scene_path: str | Path) -> MetricCache:
        key = str(scene_path)
        cache = self._items.get(key)
        if cache is not None:
            self._items.move_to_end(key)
            return cache
        # Shared dict: the cache fills it on first use and every later rebuild of this scene starts from it.
        memo = self._reference.setdefault(key, {})
        cache = MetricCache.from_scene(load_scene(key, load_frames=False), reference_memo=memo)
        self._items[key] = cache
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return cache

    def __len__(self) -> int:
        return len(self._items)


def waypoint_map_flags(cache: MetricCache, states: np.ndarray, num_poses: int = NUM_TRAJ_POSES) -> np.ndarray:
    """``(K, M, 2)`` float32 (on_road, on_route) at the simulated states of the M waypoints.

    Args:
        states: ``(K, 41, 11)`` simulated states (world frame) from the scorer.
    """
    idx = STEPS_PER_POSE * np.arange(1, num_poses + 1)
    poses = states[:, idx, :3]  # (K, M, 3)
    points = np.concatenate([ego_corners(poses), ego_center(poses)[:, :, None]], axis=2)  # (K, M, 5, 2)
    mp = cache.map
    sets = mp.index.query(points)
    on_road = np.all(sets.any_of(mp.drivable)[..., :4], axis=-1)
    on_route = sets.any_of(mp.route_lanes)[..., 4]
    return np.stack([on_road, on_route], axis=-1).astype(np.float32)


def waypoint_contacts(cache: MetricCache, states: np.ndarray, version: str = "v2",
                      num_poses: int = NUM_TRAJ_POSES) -> np.ndarray:
    """``(K, M)`` bool: the ego box touches any object box in the 0.5 s leading to each waypoint.

    Objects are the scorer's ``version`` observation (v2: objects overlapping the ego at t0 removed). Bounding-disc
    broad phase, then exact ``shapely.intersects`` of the boxes.
    """
    obs = cache.observations[version]
    K = states.shape[0]
    steps = STEPS_PER_POSE * num_poses + 1  # states 0 … 40
    poses = states[:, :steps, :3]
    contact = np.zeros((K, steps), dtype=bool)
    valid = np.asarray(obs.valid[:steps], dtype=bool)  # (T, A)
    if valid.size and valid.any():
        centres = ego_center(poses)  # (K, T, 2)
        reach = _EGO_RADIUS + 0.5 * np.hypot(obs.lengths, obs.widths)  # (A,)
        d = centres[:, :, None, :] - obs.centres[None, :steps]  # (K, T, A, 2)
        near = valid[None] & (np.hypot(d[..., 0], d[..., 1]) <= reach + 1e-6)
        k, t, a = np.nonzero(near)
        if k.size:
            ego = shapely.polygons(ego_corners(poses[k, t]))
            other = shapely.polygons(obs.corners[t, a])
            hit = shapely.intersects(ego, other)
            contact[k[hit], t[hit]] = True
    # Interval k covers states 5k+1 … 5k+5 (the 0.5 s ending at waypoint k).
    return contact[:, 1:].reshape(K, num_poses, STEPS_PER_POSE).any(axis=-1)


def proposal_targets(cache: MetricCache, proposals: np.ndarray, version: str = "v2"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, ScoreResult]:
    """Targets of one sample's proposals ``(Np, M, 3)``: score ``(Np,)``, mapping ``(Np, M, 2)``, collision
    ``(Np, M)`` (float32), and the scorer's full result."""
    proposals = np.asarray(proposals, dtype=np.float64)
    if proposals.ndim != 3 or proposals.shape[-1] != 3:
        raise ValueError(f"proposals must be (Np, M, 3), got {proposals.shape}")
    # Diverged heads can emit NaN/inf; score those as failures instead of aborting the run.
    finite = np.all(np.isfinite(proposals), axis=(1, 2))
    safe = np.where(finite[:, None, None], proposals, 0.0)
    result = score_trajectories(cache, safe, version=version)
    score = np.where(finite, result.score, 0.0).astype(np.float32)
    score = np.nan_to_num(score, nan=0.0)
    mapping = waypoint_map_flags(cache, result.states, proposals.shape[1])
    mapping[~finite] = 0.0
    at_fault = (result.nc < 1.0) & finite
    collision = (waypoint_contacts(cache, result.states, version, proposals.shape[1])
                 & at_fault[:, None]).astype(np.float32)
    return score, mapping, collision, result


def _batch_targets(caches: MetricCacheStore, scene_paths: Sequence[str], proposals: np.ndarray,
                   version: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores, mappings, collisions = [], [], []
    for path, props in zip(scene_paths, proposals, strict=True):
        s, m, c, _ = proposal_targets(caches.get(path), props, version)
        scores.append(s)
        mappings.append(m)
        collisions.append(c)
    return np.stack(scores), np.stack(mappings), np.stack(collisions)


_WORKER_STORE: MetricCacheStore | None = None


def _worker_init(cache_scenes: int) -> None:
    global _WORKER_STORE
    _WORKER_STORE = MetricCacheStore(cache_scenes)


def _worker_targets(scene_paths: list[str], proposals: np.ndarray,
                    version: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    assert _WORKER_STORE is not None
    return _batch_targets(_WORKER_STORE, scene_paths, proposals, version)


class OnlineTargets:
    """Callable ``(scene_paths, proposals (B, Np, M, 3)) -> BatchTargets``.

    Args:
        version: training score, "v2" (EPDMS without EC) or "v1" (PDMS).
        cache_scenes: MetricCaches kept per process (LRU).
        workers: 0 scores in this process; N > 0 uses N worker processes, each scene always routed to the same
            worker (by a hash of its path) so its cache is reused there.
    """

    def __init__(self, version: str = "v2", cache_scenes: int = DEFAULT_CACHE_SCENES, workers: int = 0) -> None:
        if version not in ("v1", "v2"):
            raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.version = version
        self.caches = MetricCacheStore(cache_scenes)
        self._pools: list[ProcessPoolExecutor] = []
        if workers:
            ctx = mp.get_context("spawn")  # never fork a process that already runs torch threads
            self._pools = [ProcessPoolExecutor(1, mp_context=ctx, initializer=_worker_init, initargs=(cache_scenes,))
                           for _ in range(workers)]

    def __call__(self, scene_paths: Sequence[str | Path], proposals: np.ndarray) -> BatchTargets:
        proposals = np.asarray(proposals)
        if proposals.ndim != 4 or proposals.shape[0] != len(scene_paths):
            raise ValueError(f"proposals must be (B={len(scene_paths)}, Np, M, 3), got {proposals.shape}")
        paths = [str(p) for p in scene_paths]
        if not self._pools:
            return BatchTargets(*_batch_targets(self.caches, paths, proposals, self.version))
        routes: dict[int, list[int]] = {}
        for i, p in enumerate(paths):
            routes.setdefault(zlib.crc32(p.encode("utf-8")) % len(self._pools), []).append(i)
        futures = {w: self._pools[w].submit(_worker_targets, [paths[i] for i in idx], proposals[idx], self.version)
                   for w, idx in routes.items()}
        B, Np, M = proposals.shape[:3]
        out = BatchTargets(np.zeros((B, Np), np.float32), np.zeros((B, Np, M, 2), np.float32),
                           np.zeros((B, Np, M), np.float32))
        for w, fut in futures.items():
            score, mapping, collision = fut.result()
            idx = routes[w]
            out.score[idx], out.mapping[idx], out.collision[idx] = score, mapping, collision
        return out

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)
        self._pools = []


__all__ = ["BatchTargets", "MetricCacheStore", "OnlineTargets", "proposal_targets", "waypoint_contacts",
           "waypoint_map_flags"]
