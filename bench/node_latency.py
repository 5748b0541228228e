"""Benchmark of the planner node over Fast DDS: latency overhead against Planner.plan, and steady state under a camera
faster than the model.

Runs the INSTALLED node (``install/drive_jepa_ros/lib/drive_jepa_ros/planner_node --params-file config/planner.yaml``)
in its own DDS domain with a real model (default: the ``train_tiny`` architecture with random weights from seed 0, or
``--model``), and a publisher/subscriber in this process:

1. core: ``Planner.plan`` on the same frames in this process before the node starts (p50/p99 per stage);
2. latency: one frame at a time (the next is sent when the previous path arrived): image publish -> path receive
   p50/p99, against the node's own ``Planner.plan`` time on the same frames (from its /diagnostics). The node's
   overhead is their difference; the goal is <= 5 % of the plan time for the tiny model;
3. flood: a second node with a model slower than the camera (the same architecture with ViT-Ti's full 12-block
   encoder and 32 proposals) and the camera at ``--rate`` Hz (30) for ``--flood-frames`` frames (2000): the node's
   mailbox depth (0/1, from /diagnostics), its RSS (/proc) and the path latency (per quarter of the run) must stay
   flat.

Prints progress to stderr and a JSON summary on its LAST line. Needs ``bash scripts/setup_env.sh`` and
``source scripts/env.sh``; about 2.5 minutes on 2 CPU cores.

    python bench/node_latency.py [--frames 200] [--flood-frames 2000] [--rate 30] [--model RUN_OR_SAFETENSORS]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
EXECUTABLE = REPO / "install" / "drive_jepa_ros" / "lib" / "drive_jepa_ros" / "planner_node"
PARAMS_FILE = REPO / "config" / "planner.yaml"
TINY_CONFIG = REPO / "src" / "drive_jepa_core" / "drive_jepa_core" / "configs" / "train_tiny.yaml"
NODE = "/drive_jepa_planner"
OVERHEAD_GOAL_PCT = 5.0  # node overhead budget relative to Planner.plan for the tiny model
WARMUP_FRAMES = 6  # the first 5 frames have no frame 0.5 s earlier (10 Hz stamps)
# Flood model: ViT-Ti's full depth and the planner's default 32 proposals: clearly slower than a 30 Hz camera on CPU.
FLOOD_ENCODER_DEPTH = 12
FLOOD_PROPOSALS = 32


def log(message: str) -> None:
    print(f"[node_latency] {message}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {"p50": math.nan, "p99": math.nan, "mean": math.nan}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def make_tiny_model(folder: Path, encoder_depth: int | None = None, num_proposals: int | None = None) -> Path:
    """The train_tiny architecture (configs/train_tiny.yaml) with random weights from seed 0 (optionally another
    encoder depth and number of proposals)."""
    import torch

    from drive_jepa_core.train.checkpoint import create_model, save_planner

    config = yaml.safe_load(TINY_CONFIG.read_text())
    model_cfg, data_cfg = config["model"], config["data"]
    overrides = dict(model_cfg.get("encoder_overrides") or {})
    if encoder_depth is not None:
        overrides["depth"] = int(encoder_depth)
    planner = dict(model_cfg["planner"])
    if num_proposals is not None:
        planner["num_proposals"] = int(num_proposals)
    torch.manual_seed(0)
    model, spec = create_model(model_cfg["variant"], model_cfg["encoder_size"], planner,
                               (data_cfg["image_width"], data_cfg["image_height"]), encoder_overrides=overrides)
    name = f"tiny_d{overrides.get('depth', 'x')}_np{planner.get('num_proposals', 'x')}.safetensors"
    return save_planner(model, spec, folder / name)


def frames(count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth random RGB frames (a camera image is far smoother than noise), reused cyclically."""
    import cv2

    rng = np.random.default_rng(0)
    return [cv2.resize(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8), (width, height),
                       interpolation=cv2.INTER_LINEAR) for _ in range(count)]


def ego_state(t: float) -> np.ndarray:
    """Straight drive at 8 m/s along x."""
    return np.array([8.0 * t, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return math.nan


# --------------------------------------------------------------------------------------------------------------------
def core_baseline(model: Path, images: list[np.ndarray], camera: Any, n: int) -> dict[str, Any]:
    """Planner.plan in this process on the frames the node will see (pairs 5 apart, 10 Hz stamps)."""
    from drive_jepa_core.runtime.planner import Planner

    planner = Planner.from_checkpoint(model, backend="torch", device="cpu", camera=camera)
    planner.warmup(2)
    totals, inference = [], []
    for k in range(n):
        t = 0.1 * (k + 5)
        r = planner.plan(images[(k + 5) % len(images)], images[k % len(images)], ego_state(t), 1, t)
        totals.append(r.timings.total_ms)
        inference.append(r.timings.inference_ms)
    info = planner.info
    return {"plan_ms": percentiles(totals), "inference_ms": percentiles(inference),
            "model": {"variant": info.variant, "input": f"{info.image_width}x{info.image_height}",
                      "num_proposals": info.num_proposals, "num_poses": info.num_poses}}


class Bench:
    """Test-side graph: image/camera_info/odometry publishers, path/state/diagnostics subscriptions."""

    def __init__(self, domain: int, camera: Any) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from nav_msgs.msg import Path as PathMsg
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image

        from drive_jepa_msgs.msg import SelectionState

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("node_latency_bench", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.camera = camera
        self.image = self.node.create_publisher(Image, "/camera/image_raw", 10)
        self.info = self.node.create_publisher(CameraInfo, "/camera/camera_info", 10)
        self.odom = self.node.create_publisher(Odometry, "/odom", 100)
        self.published: dict[int, float] = {}  # stamp ns -> publish time
        self.path_latency: dict[int, float] = {}  # stamp ns -> ms
        self.states: set[int] = set()
        self.processing: dict[str, str] = {}
        self.node.create_subscription(PathMsg, f"{NODE}/output/path", self._on_path, 50)
        self.node.create_subscription(SelectionState, f"{NODE}/output/selection_state", self._on_state, 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    @staticmethod
    def _ns(stamp: Any) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    def _on_path(self, msg: Any) -> None:
        now = time.perf_counter()
        key = self._ns(msg.header.stamp)
        if key in self.published:
            self.path_latency[key] = (now - self.published[key]) * 1e3

    def _on_state(self, msg: Any) -> None:
        self.states.add(self._ns(msg.header.stamp))

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.endswith(": processing"):
                self.processing = {kv.key: kv.value for kv in status.values}

    def spin_until(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.005)
        return True

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.005))

    def send_odometry(self, t: float) -> None:
        from nav_msgs.msg import Odometry

        msg = Odometry(child_frame_id="base_link")
        msg.header.frame_id = "odom"
        msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), round((t - int(t)) * 1e9)
        x, y, yaw, vx, vy = ego_state(t)[:5]
        msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        msg.twist.twist.linear.x, msg.twist.twist.linear.y = float(vx), float(vy)
        self.odom.publish(msg)

    def send_frame(self, t: float, pixels: np.ndarray) -> int:
        from sensor_msgs.msg import CameraInfo, Image

        sec, nanosec = int(t), round((t - int(t)) * 1e9)
        info = CameraInfo(width=pixels.shape[1], height=pixels.shape[0])
        info.header.stamp.sec, info.header.stamp.nanosec = sec, nanosec
        info.k = [float(v) for v in self.camera.intrinsics.reshape(9)]
        self.info.publish(info)
        msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding="rgb8", step=pixels.shape[1] * 3)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        msg.data = pixels.tobytes()
        key = sec * 1_000_000_000 + nanosec
        self.published[key] = time.perf_counter()
        self.image.publish(msg)
        return key

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class NodeUnderTest:
    """The installed node in a subprocess (``with`` stops it with SIGINT and keeps its exit code)."""

    def __init__(self, model: Path, domain: int, log_path: Path) -> None:
        env = dict(os.environ) | {"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                  "OMP_NUM_THREADS": "1"}
        cmd = [str(EXECUTABLE), "--ros-args", "--params-file", str(PARAMS_FILE), "-p", f"model_path:={model}",
               "-p", "diagnostics_period:=0.25", "-p", "num_threads:=1"]
        self.log_path = log_path
        self._log = open(log_path, "w")  # closed in __exit__
        self.process = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        self.exit_code: int | None = None

    def wait_up(self, bench: Bench) -> None:
        """Until both sides have discovered each other (the node subscribes when it is active)."""
        ok = bench.spin_until(lambda: all(p.get_subscription_count() > 0 for p in (bench.image, bench.info, bench.odom))
                              and all(bench.node.count_publishers(topic) > 0 for topic in (
                                  f"{NODE}/output/path", f"{NODE}/output/selection_state", "/diagnostics")), 60.0)
        if not ok:
            raise RuntimeError(f"the node did not come up; log: {self.log_path.read_text()[-2000:]}")

    def __enter__(self) -> NodeUnderTest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.exit_code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.exit_code = self.process.wait()
        self._log.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both phases; the temporary models and node logs are removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="node_latency_"))
    try:
        return _run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from drive_jepa_core.world.render import default_front_camera

    if not EXECUTABLE.is_file():
        raise SystemExit(f"{EXECUTABLE} is missing: run bash scripts/setup_env.sh and source scripts/env.sh")
    load_start = os.getloadavg()[0]
    width, height = (int(v) for v in args.camera.lower().split("x"))
    camera = default_front_camera(width, height)  # = the camera.* extrinsics of config/planner.yaml
    images = frames(30, width, height)
    model = Path(args.model) if args.model else make_tiny_model(tmp)

    log(f"core Planner.plan baseline on {args.core_frames} frames")
    core = core_baseline(model, images, camera, args.core_frames)
    log(f"core plan p50 {core['plan_ms']['p50']:.1f} ms (inference {core['inference_ms']['p50']:.1f} ms)")

    domain = 150 + os.getpid() % 80
    with NodeUnderTest(model, domain, tmp / "node_latency.log") as node:
        bench = Bench(domain, camera)
        try:
            node.wait_up(bench)
            latency = latency_phase(bench, images, args.frames)
        finally:
            bench.close()
    exit_codes = [node.exit_code]

    # The flood needs a model slower than the camera (unless --model was given: then that one).
    flood_model = model if args.model else make_tiny_model(tmp, FLOOD_ENCODER_DEPTH, FLOOD_PROPOSALS)
    flood_core = core_baseline(flood_model, images, camera, 10)
    log(f"flood model: core plan p50 {flood_core['plan_ms']['p50']:.1f} ms vs camera period "
        f"{1000.0 / args.rate:.1f} ms")
    with NodeUnderTest(flood_model, domain + 1, tmp / "node_flood.log") as node:
        bench = Bench(domain + 1, camera)
        try:
            node.wait_up(bench)
            flood = flood_phase(bench, images, node.process.pid, args.flood_frames, args.rate, start_k=10)
        finally:
            bench.close()
    exit_codes.append(node.exit_code)
    flood |= {"model": flood_core["model"] | {"encoder_depth": FLOOD_ENCODER_DEPTH if not args.model else None},
              "core_plan_ms": flood_core["plan_ms"],
              "model_slower_than_camera": bool(flood["node_plan_ms_p50"] > 1000.0 / args.rate)}

    plan_p50 = latency["node_plan_ms"]["p50"]
    overhead = latency["e2e_ms"]["p50"] - plan_p50  # DDS both ways + everything the node does besides plan()
    in_node = latency["node_path_ms"]["p50"] - plan_p50  # receipt -> path published, besides plan()
    return {
        "benchmark": "node_latency",
        "model": core["model"] | {"path": str(model) if args.model else "train_tiny architecture, random weights"},
        "camera": f"{width}x{height} rgb8",
        "core": core,
        "latency": latency | {
            "overhead_ms_p50": overhead,
            "overhead_pct_of_plan": 100.0 * overhead / plan_p50,
            "overhead_pct_of_inference": 100.0 * overhead / latency["node_inference_ms"]["p50"],
            "in_node_overhead_ms_p50": in_node,
            "in_node_overhead_pct_of_plan": 100.0 * in_node / plan_p50,
            "goal_overhead_pct_of_plan": OVERHEAD_GOAL_PCT,
            "goal_met": bool(100.0 * overhead / plan_p50 <= OVERHEAD_GOAL_PCT),
        },
        "flood": flood,
        "node_exit_codes": exit_codes,
        "cpu_count": os.cpu_count(),
        "load_average_1min_start_end": [load_start, os.getloadavg()[0]],  # other processes share these cores
    }


def latency_phase(bench: Bench, images: list[np.ndarray], n: int) -> dict[str, Any]:
    """One frame at a time at 10 Hz stamps; odometry one frame ahead so it is always there before the image."""
    log(f"latency: {n} frames, one at a time")
    bench.send_odometry(0.0)
    total = n + WARMUP_FRAMES
    for k in range(total):
        t = 0.1 * k
        bench.send_odometry(t + 0.1)
        warming = k < WARMUP_FRAMES - 1
        for _attempt in range(10):  # best-effort camera QoS: the first samples after discovery can be lost
            key = bench.send_frame(t, images[k % len(images)])
            if bench.spin_until(lambda key=key, warming=warming: key in bench.path_latency or (
                    warming and key in bench.states), 3.0):
                break
        else:
            raise RuntimeError(f"no output for frame {k}")
    planned = [bench.path_latency[key] for key in sorted(bench.path_latency)][1:]  # the first has no momentum yet
    bench.spin_for(0.6)  # one more diagnostics period: the node's stage latencies over the same frames
    p = bench.processing
    values = {name: {"p50": float(p.get(f"{name}_ms_p50", "nan")), "p99": float(p.get(f"{name}_ms_p99", "nan"))}
              for name in ("wait", "plan", "inference", "path", "node_total")}
    # e2e: image publish -> path receive (DDS both ways), what a consumer sees; node_path: receipt -> path published
    result = {"frames": len(planned), "e2e_ms": percentiles(planned), "node_plan_ms": values["plan"],
              "node_inference_ms": values["inference"], "node_wait_ms": values["wait"], "node_path_ms": values["path"],
              "node_total_ms": values["node_total"]}
    log(f"latency: e2e p50 {result['e2e_ms']['p50']:.1f} ms p99 {result['e2e_ms']['p99']:.1f} ms; node plan p50 "
        f"{values['plan']['p50']:.1f} ms")
    return result


def flood_phase(bench: Bench, images: list[np.ndarray], pid: int, n: int, rate: float, start_k: int) -> dict:
    """Camera at ``rate`` Hz for ``n`` frames; sample RSS and the node's queue depth."""
    log(f"flood: {n} frames at {rate:g} Hz ({n / rate:.0f} s)")
    period = 1.0 / rate
    dt = 1.0 / rate  # stamps advance like the camera clock
    t0_stamp = 0.1 * start_k
    first_key: int | None = None
    samples: list[tuple[int, float]] = []  # (frames sent, rss MB)
    depths: list[int] = []
    dropped: list[int] = []
    bench.send_odometry(t0_stamp)
    start = time.perf_counter()
    next_sample = start
    for k in range(n):
        t = t0_stamp + k * dt
        bench.send_odometry(t + dt)
        key = bench.send_frame(t, images[k % len(images)])
        first_key = key if first_key is None else first_key
        now = time.perf_counter()
        if now >= next_sample:
            samples.append((k, rss_mb(pid)))
            if bench.processing:
                depths.append(int(bench.processing.get("queue_depth", "0")))
                dropped.append(int(bench.processing.get("dropped_frames", "0")))
            next_sample = now + 0.5
        bench.spin_for(start + (k + 1) * period - time.perf_counter())
    elapsed = time.perf_counter() - start
    bench.spin_for(1.0)
    samples.append((n, rss_mb(pid)))
    flood_lat = [bench.path_latency[key] for key in sorted(bench.path_latency) if key >= first_key]
    quarter = max(len(flood_lat) // 4, 1)
    steady = [s for s in samples if s[0] >= n // 10]  # after the first 10 % (allocator warm-up)
    x = np.array([s[0] for s in steady], float)
    y = np.array([s[1] for s in steady], float)
    slope = float(np.polyfit(x, y, 1)[0] * 1000.0) if len(steady) >= 3 else math.nan
    p = bench.processing
    result = {
        "frames_sent": n, "rate_hz_requested": rate, "rate_hz_achieved": n / elapsed, "duration_s": elapsed,
        "paths_received": len(flood_lat), "planned_hz": len(flood_lat) / elapsed,
        "dropped_frames_total": int(p.get("dropped_frames", "0")),
        "node_plan_ms_p50": float(p.get("plan_ms_p50", "nan")),  # the node's Planner.plan during the flood
        "queue_depth_max": max(depths) if depths else None,
        "queue_depth_samples": len(depths),
        "rss_mb_start": samples[0][1], "rss_mb_end": samples[-1][1], "rss_mb_max": max(s[1] for s in samples),
        "rss_mb_steady_range": float(y.max() - y.min()) if y.size else math.nan,
        "rss_slope_mb_per_1000_frames": slope,
        "path_latency_ms": percentiles(flood_lat),
        # flat (no queue building up) = about the same in every quarter of the run
        "path_latency_ms_p50_by_quarter": [percentiles(flood_lat[i * quarter:(i + 1) * quarter])["p50"]
                                           for i in range(4)],
        "rss_mb_samples": len(samples),
    }
    log(f"flood: {result['paths_received']} paths, queue depth max {result['queue_depth_max']}, RSS "
        f"{result['rss_mb_start']:.0f} -> {result['rss_mb_end']:.0f} MB (slope {slope:.2f} MB/1000 frames)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="latency frames (one at a time)")
    parser.add_argument("--core-frames", type=int, default=60, help="in-process Planner.plan frames")
    parser.add_argument("--flood-frames", type=int, default=2000, help="frames at --rate")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the flood phase, Hz")
    parser.add_argument("--camera", default="512x256", help="camera image WxH")
    parser.add_argument("--model", default="", help="trained planner (default: train_tiny architecture, random)")
    args = parser.parse_args()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
