"""Training throughput on CPU: V-JEPA pretraining steps, planner training steps (the tiny config), and planner
training with 2 DDP processes (gloo) against 1 process, measured in the same run on the same scenes.

Planner numbers are steady state: every scene's frames and scoring cache are warmed first (what every epoch after
the first sees), then ``--steps`` optimizer steps are timed, including the online scoring of the proposals. The
same cores are used three ways: 1 process with all threads, 1 process with 1 thread, 2 DDP processes with
cores / 2 threads each. Also reported: the share of a step spent in online scoring, vocabulary scoring speed
(trajectories per second) for the pseudo-teacher pass, and the machine's load average (shared machines make
multi-threaded numbers noisy).

    .venv/bin/python bench/train.py [--scenes DIR] [--num-scenes 32] [--steps 8] [--config tiny] [--set K=V ...]

Prints progress lines, then a JSON summary on its LAST line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------------------------------
def make_scenes(folder: Path, count: int) -> str:
    """Generated world scenes when the world generator is available, else the test suite's hand-built road scenes.
    Returns which source was used."""
    try:
        from drive_jepa_core.world.generate import generate_split
    except ImportError:
        generate_split = None
    if generate_split is not None:
        generate_split("train", count, folder, seed=0, workers=1, progress=False)
        return "world.generate"
    path = REPO / "src" / "drive_jepa_core" / "test" / "_train_scenes.py"
    spec = importlib.util.spec_from_file_location("_train_scenes", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.write_scenes(folder, count, with_agent=True)
    return "hand-built straight road (test helper)"


# ---------------------------------------------------------------------------------------------------------------------
# Pretraining
# ---------------------------------------------------------------------------------------------------------------------
def bench_pretrain(steps: int, threads: int) -> dict:
    from drive_jepa_core.pretrain.train import VJEPATrainer, build_models, load_pretrain_config

    torch.set_num_threads(threads)
    config = load_pretrain_config(REPO / "src/drive_jepa_core/drive_jepa_core/configs/pretrain_tiny.yaml")
    encoder, target, predictor = build_models(config, log=lambda *_: None)
    trainer = VJEPATrainer(config, encoder, predictor, target, device="cpu")
    clip = config.data
    B = config.optim.batch_size
    video = torch.randn(B, 3, clip.num_frames, clip.height, clip.width, generator=torch.Generator().manual_seed(0))
    trainer.train_step(video)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(video)
    dt = time.perf_counter() - t0
    return {"config": "pretrain_tiny.yaml", "batch_size": B, "clip": [clip.num_frames, clip.height, clip.width],
            "steps": steps, "threads": threads, "step_s": dt / steps, "clips_per_s": B * steps / dt}


# ---------------------------------------------------------------------------------------------------------------------
# Planner training (1 process or DDP)
# ---------------------------------------------------------------------------------------------------------------------
def _planner_worker(rank: int, world: int, port: int, config_name: str, overrides: list[str], scenes: str,
                    out: str, steps: int, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    import torch.distributed as dist

    from drive_jepa_core.train.config import load_train_config
    from drive_jepa_core.train.loop import Trainer

    trainer = Trainer(load_train_config(config_name, overrides), scenes, Path(out) / f"w{world}", device="cpu",
                      progress=False)
    # Warm every scene's prepared sample and scoring cache (what epochs after the first see).
    for i in range(len(trainer.dataset)):
        trainer.dataset[i]
    num_poses = trainer.planner_config.num_poses
    if trainer.targets is not None:
        for p in trainer.dataset.paths:
            trainer.targets([str(p)], np.zeros((1, 1, num_poses, 3)))
    batches = []
    epoch = 0
    while len(batches) < steps + 1:
        batches.extend(trainer._loader(epoch, 0))
        epoch += 1
    trainer.train_step(batches[0])  # warm-up step (allocator, autograd graph)
    trainer.seconds = {"targets": 0.0, "steps": 0.0}
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    samples = 0
    for b in batches[1:steps + 1]:
        trainer.train_step(b)
        samples += len(b["scene_path"])
    dt = time.perf_counter() - t0
    result = {"rank": rank, "seconds": dt, "samples": samples, "target_seconds": trainer.seconds["targets"],
              "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6}
    trainer.close()
    (Path(out) / f"result_w{world}_r{rank}.json").write_text(json.dumps(result))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_planner(world: int, config_name: str, overrides: list[str], scenes: Path, out: Path, steps: int,
                  threads: int) -> dict:
    import torch.multiprocessing as mp

    mp.start_processes(_planner_worker, args=(world, _free_port(), config_name, overrides, str(scenes), str(out),
                                              steps, threads), nprocs=world, join=True, start_method="spawn")
    ranks = [json.loads((out / f"result_w{world}_r{r}.json").read_text()) for r in range(world)]
    for r in range(world):
        (out / f"result_w{world}_r{r}.json").unlink()
    seconds = max(r["seconds"] for r in ranks)
    samples = sum(r["samples"] for r in ranks)
    return {"processes": world, "threads_per_process": threads, "steps": steps,
            "batch_per_process": ranks[0]["samples"] // steps, "seconds": seconds, "step_s": seconds / steps,
            "samples_per_s": samples / seconds,
            "scoring_share": float(np.mean([r["target_seconds"] / r["seconds"] for r in ranks])),
            "params_m": ranks[0]["params_m"]}


def bench_vocab_scoring(scenes: list[Path], vocab_size: int) -> dict:
    """Pseudo-teacher pass: per scene, the scoring cache (map index, observations, PDM-Closed reference) is built
    once, then the whole vocabulary is scored; both parts are timed separately."""
    from drive_jepa_core.metrics.metric_cache import MetricCache
    from drive_jepa_core.metrics.scorer import reference_progress, score_trajectories
    from drive_jepa_core.scene import load_scene
    from drive_jepa_core.train.vocab import SCORE_CHUNK, build_vocabulary, collect_human_futures

    futures = collect_human_futures(scenes)
    rng = np.random.default_rng(0)
    # Human futures jittered into a vocabulary of the requested size (k-means would cap at the few distinct ones).
    base = futures[rng.integers(0, len(futures), vocab_size)]
    vocab = (base + rng.normal(0, 0.5, base.shape) * np.array([1.0, 1.0, 0.02])).astype(np.float32)
    t0 = time.perf_counter()
    build_vocabulary(vocab, k=min(64, vocab_size))
    kmeans_s = time.perf_counter() - t0
    n = min(4, len(scenes))
    cache_s, score_s = 0.0, 0.0
    for p in scenes[:n]:
        t0 = time.perf_counter()
        cache = MetricCache.from_scene(load_scene(p, load_frames=False))
        reference_progress(cache, "v2")
        t1 = time.perf_counter()
        for start in range(0, vocab_size, SCORE_CHUNK):
            score_trajectories(cache, vocab[start:start + SCORE_CHUNK], version="v2")
        cache_s += t1 - t0
        score_s += time.perf_counter() - t1
    rate = vocab_size * n / score_s
    return {"vocab_size": vocab_size, "scenes": n, "cache_seconds_per_scene": cache_s / n, "trajectories_per_s": rate,
            "seconds_per_scene_8192": cache_s / n + 8192 / rate,
            "kmeans_k64_seconds": kmeans_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default=None, help="scene directory (default: make --num-scenes in a temp dir)")
    parser.add_argument("--num-scenes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed planner steps per setting")
    parser.add_argument("--pretrain-steps", type=int, default=3)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--set", action="append", default=[], help="planner config override SECTION.KEY=VALUE")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--no-ddp", action="store_true")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    result: dict = {"cores": cores, "torch": torch.__version__, "load_average_1min_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp_path = Path(tmp)
        if args.scenes:
            scenes = Path(args.scenes)
            result["scenes_source"] = str(scenes)
        else:
            scenes = tmp_path / "scenes"
            _log(f"making {args.num_scenes} scenes ...")
            result["scenes_source"] = make_scenes(scenes, args.num_scenes)
        from drive_jepa_core.scene import list_scenes

        paths = list_scenes(scenes)
        result["num_scenes"] = len(paths)
        _log("pretraining ...")
        result["pretrain"] = bench_pretrain(args.pretrain_steps, 1)
        _log(f"pretrain (1 thread): {result['pretrain']['clips_per_s']:.2f} clips/s")
        _log("vocabulary scoring ...")
        result["vocab_scoring"] = bench_vocab_scoring(paths, args.vocab_size)
        _log(f"vocab scoring: {result['vocab_scoring']['trajectories_per_s']:.0f} trajectories/s")
        overrides = list(args.set)
        result["planner_config"] = {"name": args.config, "overrides": overrides}
        # Same cores three ways: 1 process x all threads, 1 process x 1 thread, 2 DDP processes x cores/2 threads.
        _log(f"planner training, 1 process x {cores} threads ...")
        one = bench_planner(1, args.config, overrides, scenes, tmp_path, args.steps, cores)
        result["planner_1proc"] = one
        _log(f"planner 1 process x {cores} threads: {one['samples_per_s']:.2f} samples/s")
        if cores > 1:
            _log("planner training, 1 process x 1 thread ...")
            one_t1 = bench_planner(1, args.config, overrides, scenes, tmp_path, args.steps, 1)
            result["planner_1proc_1thread"] = one_t1
            _log(f"planner 1 process x 1 thread: {one_t1['samples_per_s']:.2f} samples/s")
        if not args.no_ddp:
            _log("planner training, 2 DDP processes (gloo) ...")
            two = bench_planner(2, args.config, overrides, scenes, tmp_path, args.steps, max(1, cores // 2))
            result["planner_ddp2"] = two
            result["ddp2_speedup"] = two["samples_per_s"] / one["samples_per_s"]
            _log(f"planner 2 processes: {two['samples_per_s']:.2f} samples/s "
                 f"(x{result['ddp2_speedup']:.2f} vs 1 process x {cores} threads)")
        result["load_average_1min_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
