"""Benchmark of the vehicle runtime: ``Planner.plan()`` latency per backend, split into preprocess / inference /
selection, for the tiny (``configs/train_tiny.yaml``) and the paper-size (``configs/train_vitl.yaml``: ViT-L/16 +
full planner) models at 2 x 256 x 512, random weights.

Per configuration, in two fresh processes: (1) build the model (seed 0), save it in the trained-model format, count
its FLOPs per frame (torch's ``FlopCounterMode``: matmuls, convolutions, attention; not grid sampling or element-wise
ops) and export + verify its ONNX; (2) load it through ``Planner.from_checkpoint`` for each backend (so the peak RSS
of this process is the runtime's, every backend loaded) and measure p50/p99 of every stage per available backend
(torch eager, ONNX Runtime, TensorRT when importable with a GPU), the achieved FLOP/s of the inference stage, and the
ONNX Runtime / torch-eager latency ratio measured side by side (iterations interleaved, same thread count). For the
tiny model the inference ratio is also measured at each ``--ratio-threads`` count. Frames are 1920 x 1080 (NAVSIM's
front camera), so preprocessing includes the real crop + resize; the ego drives at 10 m/s and frames are 0.5 s
apart, so momentum selection is active from the second frame on. The 1-minute load average at start is recorded:
on a shared machine, oversubscribed OpenMP threads slow torch eager far more than ONNX Runtime's thread pool.

Prints one line per configuration and backend, then a JSON summary on its LAST line.

    .venv/bin/python bench/runtime.py [--configs tiny,vitl] [--threads 2] [--iters-tiny 20] [--iters-vitl 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_SIZE = (512, 256)  # model input (W, H): 2 frames x 256 x 512 (drive_jepa.md §2.1)
SOURCE_SIZE = (1920, 1080)  # camera frames (NAVSIM CAM_F0)
FRAME_DT = 0.5  # s between planning calls (the model's frame gap)
SPEED = 10.0  # m/s


def _percentiles(values: list[float]) -> dict[str, float]:
    import numpy as np

    arr = np.asarray(values, dtype=np.float64)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p99": round(float(np.percentile(arr, 99)), 3),
            "mean": round(float(arr.mean()), 3)}


def _frames(count: int, seed: int = 0) -> list:
    """Smooth random RGB frames at the source size (camera-like low-frequency content)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (18, 32, 3)).astype(np.float32)
        out.append(cv2.resize(coarse, SOURCE_SIZE, interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8))
    return out


def export_worker(config: str, threads: int, folder: Path) -> None:
    """Phase 1 (own process): build the random-init model, count its FLOPs, save it in the trained-model format and
    export + verify its ONNX; writes ``folder/export.json``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from drive_jepa_core.runtime.export_onnx import export_module_onnx, random_inputs
    from drive_jepa_core.runtime.graph import InferenceGraph
    from drive_jepa_core.runtime.model_check import ModelInfo, file_sha256
    from drive_jepa_core.train.checkpoint import create_model, save_planner
    from drive_jepa_core.train.config import load_train_config

    torch.set_num_threads(threads)
    section = load_train_config(config).model
    torch.manual_seed(0)
    started = time.perf_counter()
    model, spec = create_model(section.variant, section.encoder_size, section.planner, IMAGE_SIZE,
                               encoder_overrides=section.encoder_overrides)
    model.eval()
    result: dict = {"build_s": round(time.perf_counter() - started, 2),
                    "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "encoder": spec.encoder}
    weights = save_planner(model, spec, folder / "model.safetensors")
    info = ModelInfo.from_spec(spec, file_sha256(weights))
    result["num_proposals"], result["num_poses"] = info.num_proposals, info.num_poses

    inputs = [torch.from_numpy(x) for x in random_inputs(info)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        InferenceGraph(model).eval()(*inputs)
    result["flops_per_frame"] = int(counter.get_total_flops())

    started = time.perf_counter()
    report = export_module_onnx(model, info, folder / "model.onnx")
    result["onnx"] = {"export_and_verify_s": round(time.perf_counter() - started, 2),
                      "mb": round(report.bytes / 1e6, 1), "relative_errors": report.errors,
                      "fp32_conditioning": report.conditioning}
    result["export_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (folder / "export.json").write_text(json.dumps(result))


def timing_worker(config: str, threads: int, iters: int, ratio_threads: list[int], folder: Path) -> None:
    """Phase 2 (own process, so its peak RSS is the runtime's): load the saved model through
    ``Planner.from_checkpoint`` for every available backend and time ``plan()``; writes ``folder/timing.json``."""
    import numpy as np
    import torch

    from drive_jepa_core.runtime.backends import OnnxRuntimeBackend, import_tensorrt
    from drive_jepa_core.runtime.export_onnx import random_inputs
    from drive_jepa_core.runtime.planner import Planner
    from drive_jepa_core.world.render import default_front_camera

    torch.set_num_threads(threads)
    camera = default_front_camera(*SOURCE_SIZE)
    onnx_path = folder / "model.onnx"
    result: dict = {"load_s": {}}
    options = {"torch": {"device": "cpu"}, "onnxruntime": {"onnx_path": onnx_path, "intra_op_threads": threads}}
    try:
        import_tensorrt()
        options["tensorrt"] = {"onnx_path": onnx_path}
    except Exception as exc:  # BackendUnavailableError without tensorrt / GPU
        result["tensorrt"] = f"skipped: {exc}"
    planners = {}
    for name, kwargs in options.items():
        started = time.perf_counter()
        planners[name] = Planner.from_checkpoint(folder, backend=name, camera=camera, **kwargs)
        result["load_s"][name] = round(time.perf_counter() - started, 2)

    frames = _frames(iters + 1)
    for planner in planners.values():  # one untimed frame: first-call allocations, ORT arena growth
        planner.plan(frames[1], frames[0], np.array([0.0, 0, 0, SPEED, 0, 0, 0]), 1, -FRAME_DT)
        planner.reset()
    timings: dict[str, dict[str, list[float]]] = {
        name: {"preprocess": [], "inference": [], "selection": [], "total": []} for name in planners}
    for i in range(iters):
        state = np.array([SPEED * FRAME_DT * i, 0.0, 0.0, SPEED, 0.0, 0.0, 0.0])
        for name, planner in planners.items():  # interleaved: load drift hits every backend alike
            t = planner.plan(frames[i + 1], frames[i], state, 1, FRAME_DT * i).timings
            for stage, value in (("preprocess", t.preprocess_ms), ("inference", t.inference_ms),
                                 ("selection", t.selection_ms), ("total", t.total_ms)):
                timings[name][stage].append(value)
    result["backends"] = {name: {stage: _percentiles(values) for stage, values in stages.items()}
                          for name, stages in timings.items()}

    if ratio_threads:  # inference only, torch vs ONNX Runtime at equal thread counts
        torch_backend = planners["torch"].backend
        x = random_inputs(torch_backend.info)
        by_threads = {}
        for n in ratio_threads:
            torch.set_num_threads(n)
            pair = {"torch": torch_backend, "onnxruntime": OnnxRuntimeBackend(onnx_path, intra_op_threads=n)}
            for backend in pair.values():
                backend.run(*x)
            samples: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            for _ in range(iters):
                for name, backend in pair.items():
                    t0 = time.perf_counter()
                    backend.run(*x)
                    samples[name].append((time.perf_counter() - t0) * 1e3)
            p50 = {name: _percentiles(v)["p50"] for name, v in samples.items()}
            by_threads[str(n)] = {"torch_ms": p50["torch"], "onnxruntime_ms": p50["onnxruntime"],
                                  "speedup": round(p50["torch"] / p50["onnxruntime"], 3)}
        result["inference_speedup_by_threads"] = by_threads
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (folder / "timing.json").write_text(json.dumps(result))


def run_config(config: str, args: argparse.Namespace) -> dict:
    """Both phases of one configuration in fresh processes; the merged result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory(prefix=f"bench_runtime_{config}_") as tmp:
        for phase in ("export", "timing"):
            cmd = [sys.executable, __file__, "--worker", f"{phase}:{config}", "--folder", tmp,
                   "--threads", str(args.threads), "--iters-tiny", str(args.iters_tiny),
                   "--iters-vitl", str(args.iters_vitl), "--ratio-threads", args.ratio_threads]
            if subprocess.run(cmd, env=env, cwd=REPO).returncode != 0:
                return {"error": f"{phase} worker failed"}
        result = {"config": config, "threads": args.threads, "image_size": list(IMAGE_SIZE),
                  "source_size": list(SOURCE_SIZE),
                  "iterations": args.iters_tiny if config == "tiny" else args.iters_vitl,
                  **json.loads((Path(tmp) / "export.json").read_text()),
                  **json.loads((Path(tmp) / "timing.json").read_text())}
    flops = result["flops_per_frame"]
    result["gflops_per_frame"] = round(flops / 1e9, 3)
    for stats in result["backends"].values():
        stats["inference_gflop_per_s"] = round(flops / (stats["inference"]["p50"] * 1e-3) / 1e9, 2)
    b = result["backends"]
    result["ort_over_torch_inference_speedup"] = round(b["torch"]["inference"]["p50"]
                                                       / b["onnxruntime"]["inference"]["p50"], 3)
    result["ort_over_torch_plan_speedup"] = round(b["torch"]["total"]["p50"] / b["onnxruntime"]["total"]["p50"], 3)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="tiny,vitl", help="comma-separated training configs to benchmark")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads, both backends")
    parser.add_argument("--iters-tiny", type=int, default=20)
    parser.add_argument("--iters-vitl", type=int, default=3)
    parser.add_argument("--ratio-threads", default="1,2", help="tiny only: thread counts of the inference ratio")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ratio_threads = [int(t) for t in args.ratio_threads.split(",") if t.strip()]

    if args.worker:
        phase, config = args.worker.split(":")
        if phase == "export":
            export_worker(config, args.threads, Path(args.folder))
        else:
            iters = args.iters_tiny if config == "tiny" else args.iters_vitl
            timing_worker(config, args.threads, iters, ratio_threads if config == "tiny" else [], Path(args.folder))
        return 0

    started = time.perf_counter()
    summary: dict = {"threads": args.threads, "cpus": os.cpu_count(),
                     "load_avg_1min_at_start": round(os.getloadavg()[0], 2), "configs": {}}
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        res = run_config(config, args)
        summary["configs"][config] = res
        if "error" in res:
            print(f"{config}: {res['error']}", flush=True)
            continue
        for name, stats in res["backends"].items():
            print(f"{config:5s} {name:12s} plan p50 {stats['total']['p50']:9.1f} ms  p99 {stats['total']['p99']:9.1f} "
                  f"| preprocess {stats['preprocess']['p50']:6.1f}  inference {stats['inference']['p50']:9.1f}  "
                  f"selection {stats['selection']['p50']:6.1f} ms | {stats['inference_gflop_per_s']:7.1f} GFLOP/s "
                  f"({res['gflops_per_frame']:.1f} GFLOP/frame)", flush=True)
        print(f"{config:5s} ONNX Runtime / torch eager speedup: inference {res['ort_over_torch_inference_speedup']}x, "
              f"plan {res['ort_over_torch_plan_speedup']}x; runtime peak RSS {res['peak_rss_mb']} MB (export "
              f"{res['export_peak_rss_mb']} MB)", flush=True)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
