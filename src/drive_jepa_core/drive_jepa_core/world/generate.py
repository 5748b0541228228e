"""Generate train/val/test scene sets of the built-in world (the project's embedded default data).

Splits use disjoint log-seed ranges, so no map, traffic or route is shared between them; everything is
deterministic given the split, the start seed and the number of scenes (independent of ``workers``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from drive_jepa_core.scene.format import CameraCalibration, save_scene
from drive_jepa_core.world.log import WorldConfig, simulate_log
from drive_jepa_core.world.scenes import cut_scenes, make_renderer, scene_t0_indices

SPLIT_SEED_BASE = {"train": 0, "val": 10_000_000, "test": 20_000_000}
SPLIT_SEED_RANGE = 10_000_000  # seeds of a split: base .. base + range - 1
SPLITS = tuple(SPLIT_SEED_BASE)
INDEX_FILE = "index.json"


def scenes_per_log(config: WorldConfig | None = None) -> int:
    cfg = config or WorldConfig()
    return len(scene_t0_indices(int(round(cfg.duration / 0.1)) + 1))


def log_seeds(split: str, num_logs: int, seed: int | None = None) -> list[int]:
    """World seeds of the first ``num_logs`` logs of ``split`` starting at offset ``seed`` (default 0)."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    start = 0 if seed is None else int(seed)
    if start < 0 or start + num_logs > SPLIT_SEED_RANGE:
        raise ValueError(f"seed offset {start} + {num_logs} logs leaves the {split} seed range [0, {SPLIT_SEED_RANGE})")
    base = SPLIT_SEED_BASE[split]
    return [base + start + i for i in range(num_logs)]


def generate_log_scenes(world_seed: int, split: str, out_dir: str | Path, max_scenes: int | None = None,
                        frames: bool = True, camera: CameraCalibration | None = None,
                        config: WorldConfig | None = None) -> list[dict[str, Any]]:
    """Simulate one log, cut its scenes (at most ``max_scenes``), write them; returns their index rows."""
    log = simulate_log(world_seed, config)
    t0s = scene_t0_indices(log.num_steps)[: max_scenes if max_scenes is not None else None]
    renderer = None
    if frames:
        if camera is None:
            from drive_jepa_core.world.render import default_front_camera

            camera = default_front_camera()
        renderer = make_renderer(log, camera)
    rows = []
    png_cache: dict = {}  # the scenes of one log share most frames: encode each once
    for scene in cut_scenes(log, split, renderer=renderer, camera=camera, t0_indices=t0s):
        path = save_scene(scene, Path(out_dir) / f"{scene.token}.npz", png_cache=png_cache)
        rows.append({"token": scene.token, "file": path.name, "log_name": scene.log_name, "world_seed": world_seed,
                     "log_step": scene.extra["log_step"], "command": scene.command_name})
    return rows


def _job(args: tuple) -> list[dict[str, Any]]:
    return generate_log_scenes(*args)


def generate_split(split: str, num_scenes: int, out_dir: str | Path, seed: int | None = None, workers: int = 1,
                   progress: bool = True, frames: bool = True, camera: CameraCalibration | None = None,
                   config: WorldConfig | None = None) -> list[Path]:
    """Write ``num_scenes`` scenes of ``split`` to ``out_dir`` (plus ``index.json``); returns the scene paths.

    Args:
        seed: offset of the first log inside the split's seed range (default 0).
        workers: processes (one log per task); the output does not depend on it.
        frames: render the 12 camera frames per scene (False: map/agents/ego only, much faster).
    """
    if num_scenes <= 0:
        raise ValueError(f"num_scenes must be positive, got {num_scenes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    per_log = scenes_per_log(config)
    n_logs = math.ceil(num_scenes / per_log)
    seeds = log_seeds(split, n_logs, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(s, split, str(out), min(per_log, num_scenes - i * per_log), frames, camera, config)
            for i, s in enumerate(seeds)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_scenes, desc=f"world {split}", unit="scene")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for result in _run(jobs, workers):
        rows += result
        if bar is not None:
            bar.update(len(result))
    if bar is not None:
        bar.close()
    index = {"split": split, "num_scenes": len(rows), "seed_offset": 0 if seed is None else int(seed),
             "world_seeds": seeds, "frames": frames, "seconds": round(time.perf_counter() - started, 2),
             "scenes": rows}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=1))
    return [out / r["file"] for r in rows]


def _run(jobs: list[tuple], workers: int) -> Iterator[list[dict[str, Any]]]:
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            yield _job(job)
        return
    # spawn: workers must not inherit a parent's threads (torch, BLAS) mid-state
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        yield from pool.map(_job, jobs)
