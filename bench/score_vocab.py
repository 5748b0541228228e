"""Vocabulary scoring speed: the batch PDM scorer against the per-trajectory reference scorer, on ONE core.

For each scene, K (default 8192) perturbations of the logged expert trajectory — a vocabulary-sized candidate set —
are scored with :func:`drive_jepa_core.metrics.scorer.score_trajectories` (v2 EPDMS and v1 PDMS, simulation
included). The reference scorer is timed on a random subset of ``--ref`` trajectories per scene and extrapolated
linearly to K (it is O(K) by construction); the subset also checks parity (discrete sub-scores exactly, EP to
1e-12). The process is pinned to CPU 0 with single-threaded BLAS (``taskset -c 0`` semantics). Per-scene cache
building (map index, centerline, observations, PDM-Closed for both versions) is reported separately.

    .venv/bin/python bench/score_vocab.py [--scenes DIR] [--num-scenes 5] [--k 8192] [--ref 16]

Scenes: ``--scenes DIR`` or, by default, ``--num-scenes`` freshly generated scenes of the built-in world (test
split, no camera frames) in a temporary directory. Prints progress, then a JSON summary on its LAST line.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy is imported
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

DISCRETE = ("nc", "dac", "ddc", "tlc", "ttc", "c", "lk", "hc")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def perturbed_vocabulary(future: np.ndarray, num: int, seed: int) -> np.ndarray:
    """``(num, 8, 3)`` local trajectories around the expert's: speed scale, lateral drift, curvature, heading noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, 9) * 0.5
    scale = rng.uniform(0.0, 1.5, (num, 1))
    x = future[None, :, 0] * scale
    lateral = rng.normal(0.0, 1.5, (num, 1)) * (t / 4.0) ** 2 + rng.normal(0.0, 0.02, (num, 1)) * x**2
    y = future[None, :, 1] + lateral
    out = np.zeros((num, 8, 3))
    out[..., 0], out[..., 1] = x, y
    out[..., 2] = np.arctan2(np.gradient(y, axis=1), np.maximum(np.gradient(x, axis=1), 1e-3))
    out[..., 2] += rng.normal(0.0, 0.02, (num, 8))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=None, help="scene directory (default: generate)")
    parser.add_argument("--num-scenes", type=int, default=5)
    parser.add_argument("--k", type=int, default=8192, help="trajectories per scene")
    parser.add_argument("--ref", type=int, default=16, help="reference-scored trajectories per scene")
    parser.add_argument("--repeats", type=int, default=2, help="batch timings per scene (the best is kept)")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from drive_jepa_core.metrics.metric_cache import MetricCache
    from drive_jepa_core.metrics.reference_scorer import score_trajectories_reference
    from drive_jepa_core.metrics.scorer import score_trajectories
    from drive_jepa_core.scene.format import list_scenes, load_scene

    started = time.perf_counter()
    tmp = None
    if args.scenes is None:
        from drive_jepa_core.world.generate import generate_split

        tmp = tempfile.TemporaryDirectory(prefix="score_vocab_")
        _log(f"generating {args.num_scenes} world scenes (no frames) in {tmp.name}")
        paths = generate_split("test", args.num_scenes, tmp.name, progress=False, frames=False)
        source = "built-in world (drive_jepa_core.world.generate, test split)"
    else:
        paths = list_scenes(args.scenes)[: args.num_scenes]
        source = str(args.scenes)
    if not paths:
        raise SystemExit(f"no scenes found under {args.scenes}")

    per_scene = []
    mismatches = 0
    for n, path in enumerate(paths):
        scene = load_scene(path, load_frames=False)
        t0 = time.perf_counter()
        cache = MetricCache.from_scene(scene)
        for version in ("v2", "v1"):
            cache.pdm_reference(version)
            score_trajectories(cache, scene.future_trajectory()[None], version)  # warm proposal 0 / lazy indices
        cache_s = time.perf_counter() - t0
        vocab = perturbed_vocabulary(scene.future_trajectory(), args.k, seed=n)
        row: dict = {"token": scene.token, "objects": int(scene.agent_ids.shape[0]),
                     "map_polygons": len(scene.map_polygons), "cache_build_s": round(cache_s, 3)}
        subset = np.random.default_rng(1000 + n).choice(args.k, size=min(args.ref, args.k), replace=False)
        for version in ("v2", "v1"):
            wall, cpu = [], []
            for _ in range(args.repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                result = score_trajectories(cache, vocab, version)
                wall.append(time.perf_counter() - w0)
                cpu.append(time.process_time() - c0)
            w0 = time.perf_counter()
            refs = [score_trajectories_reference(cache, vocab[i], version) for i in subset]
            ref_per_traj = (time.perf_counter() - w0) / len(subset)
            for i, ref in zip(subset, refs, strict=True):
                pairs = [(k, getattr(result, k)[i], getattr(ref, k)[0]) for k in DISCRETE]
                bad = [k for k, a, b in pairs if not (a == b or (np.isnan(a) and np.isnan(b)))]
                if bad or abs(result.ep[i] - ref.ep[0]) > 1e-12:
                    mismatches += 1
                    _log(f"MISMATCH {scene.token} {version} trajectory {i}: {bad}")
            batch_s = min(wall)
            ref_extrapolated = ref_per_traj * args.k
            row[version] = {
                "batch_s": round(batch_s, 4), "batch_cpu_s": round(min(cpu), 4),
                "reference_s_per_trajectory": round(ref_per_traj, 5),
                "reference_s_extrapolated": round(ref_extrapolated, 2),
                "speedup": round(ref_extrapolated / batch_s, 1),
                "mean_score": round(float(np.nanmean(result.score)), 4),
            }
            _log(f"[{n + 1}/{len(paths)}] {scene.token} {version}: batch {batch_s:.3f} s "
                 f"(cpu {min(cpu):.3f} s) for K={args.k}; reference {ref_per_traj * 1e3:.1f} ms/trajectory -> "
                 f"{ref_extrapolated:.0f} s; speedup x{ref_extrapolated / batch_s:.0f}")
        per_scene.append(row)

    summary = {"bench": "score_vocab", "K": args.k, "num_scenes": len(per_scene), "scene_source": source,
               "cores": 1, "reference_note": f"reference scorer timed on {min(args.ref, args.k)} random trajectories "
                                             "per scene and extrapolated linearly to K",
               "parity_mismatches": mismatches}
    for version in ("v2", "v1"):
        batch = np.array([r[version]["batch_s"] for r in per_scene])
        ref = np.array([r[version]["reference_s_extrapolated"] for r in per_scene])
        summary[version] = {"batch_s_per_scene": [float(b) for b in batch],
                            "reference_s_per_scene": [float(x) for x in ref],
                            "batch_s_mean": round(float(batch.mean()), 4), "batch_s_max": round(float(batch.max()), 4),
                            "speedup_mean": round(float((ref / batch).mean()), 1),
                            "speedup_min": round(float((ref / batch).min()), 1)}
    summary["cache_build_s_mean"] = round(float(np.mean([r["cache_build_s"] for r in per_scene])), 3)
    summary["per_scene"] = per_scene
    summary["total_s"] = round(time.perf_counter() - started, 1)
    if tmp is not None:
        tmp.cleanup()
    print(json.dumps(summary))
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
