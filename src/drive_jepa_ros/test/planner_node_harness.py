"""Shared pieces of the planner-node tests: a real tiny checkpoint, the node as a subprocess, a test-side ROS graph.

* :func:`make_tiny_checkpoint` — a real ``ProposalPlanner`` (one-block ViT) with random weights from a fixed seed, saved
  with ``train.checkpoint.save_planner`` exactly as ``drive-jepa train`` does, so ``Planner.from_checkpoint`` loads it.
* :class:`NodeProcess` — the INSTALLED executable ``install/drive_jepa_ros/lib/drive_jepa_ros/planner_node`` started
  with ``--params-file config/planner.yaml`` in its own DDS domain.
* :class:`Graph` — a test node on its own rclpy context (same domain), spun by a SingleThreadedExecutor in the test's
  own thread (``spin_until``): no background spin thread, so nothing is lost and shutdown is clean
  (ros2_from_pypi.md pitfalls). Waits use matched publishers/subscriptions, never blind sleeps.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
EXECUTABLE = ROOT / "install" / "drive_jepa_ros" / "lib" / "drive_jepa_ros" / "planner_node"
PARAMS_FILE = ROOT / "config" / "planner.yaml"
NODE = "/drive_jepa_planner"

# The tiny test model: 128x64 input, 8 proposals of 8 poses; the camera is 256x128 (twice the input, centre crop = all).
CAMERA_W, CAMERA_H = 256, 128
MODEL_W, MODEL_H = 128, 64
NUM_PROPOSALS = 8
TINY_PLANNER = {"num_proposals": NUM_PROPOSALS, "d_model": 32, "d_ffn": 64, "num_heads": 4, "head_hidden": 32,
                "num_iterations": 2}
TINY_ENCODER = {"depth": 1, "embed_dim": 32, "num_heads": 2}


def make_tiny_checkpoint(path: Path, seed: int = 0, nan_weights: bool = False) -> Path:
    """Save a tiny real planner with random weights (``seed``); ``nan_weights`` poisons the score head's output bias,
    so the model returns NaN scores (a model fault the runtime must catch)."""
    import torch

    from drive_jepa_core.train.checkpoint import create_model, save_planner

    torch.manual_seed(seed)
    model, spec = create_model("proposal", "tiny", dict(TINY_PLANNER), (MODEL_W, MODEL_H),
                               encoder_overrides=dict(TINY_ENCODER))
    if nan_weights:
        with torch.no_grad():
            for name, tensor in model.named_parameters():
                if name.startswith("score_head") and name.endswith("bias"):
                    tensor.fill_(float("nan"))
    return save_planner(model, spec, path)


def domain_id(offset: int) -> int:
    """A DDS domain for one test module, away from scripts/test.sh's 1-100 and from other modules/processes."""
    return 120 + (os.getpid() * 7 + offset) % 100


def require_workspace() -> None:
    """Fail (not skip) when the colcon workspace is missing: a missing build is a broken set-up."""
    if not EXECUTABLE.is_file():
        pytest.fail(f"{EXECUTABLE} is missing: run bash scripts/setup_env.sh")
    try:
        import drive_jepa_msgs.msg  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"drive_jepa_msgs is not importable ({exc}): source scripts/env.sh first")


class NodeProcess:
    """The installed planner node in a subprocess; its log goes to ``log_path``."""

    def __init__(self, domain: int, log_path: Path, params: dict[str, Any] | None = None,
                 params_file: Path = PARAMS_FILE) -> None:
        args = [str(EXECUTABLE), "--ros-args", "--params-file", str(params_file)]
        for name, value in (params or {}).items():
            args += ["-p", f"{name}:={_ros_arg(value)}"]
        env = dict(os.environ) | {"ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                  "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
                                  "RCUTILS_LOGGING_BUFFERED_STREAM": "1"}
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT, wait; returns the exit code (kills after ``timeout`` and fails the caller's assertion)."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def wait_exit(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._log.close()
        return code


def _ros_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    return repr(value)


class Graph:
    """A test-side rclpy node on its own context in ``domain``."""

    def __init__(self, domain: int, name: str = "planner_node_test") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    # --- topics -----------------------------------------------------------------------------------------------------
    def publisher(self, msg_type: Any, topic: str, qos: Any = 10) -> Any:
        return self.node.create_publisher(msg_type, topic, qos)

    def subscribe(self, msg_type: Any, topic: str, qos: Any = 50) -> list[Any]:
        """Collect every message of ``topic`` into the returned list (also ``self.received[topic]``)."""
        box = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, box.append, qos)
        return box

    def spin_until(self, predicate: Callable[[], Any], timeout: float, what: str = "condition") -> Any:
        """Spin until ``predicate()`` is truthy and return its value; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def wait_matched(self, publishers: list[Any], topics: list[str], timeout: float = 30.0) -> None:
        """Every publisher has a subscriber and every topic in ``topics`` a publisher (discovery done)."""
        self.spin_until(lambda: all(p.get_subscription_count() > 0 for p in publishers)
                        and all(self.node.count_publishers(t) > 0 for t in topics), timeout, "DDS discovery")

    # --- services ---------------------------------------------------------------------------------------------------
    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(client.service_is_ready, timeout, f"service {name}")
            future = client.call_async(request)
            self.spin_until(future.done, timeout, f"response of {name}")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(self, node: str, values: dict[str, Any]) -> list[Any]:
        """``SetParameters`` on ``node``; returns the ``SetParametersResult`` list."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                    for k, v in values.items()])
        return list(self.call(SetParameters, f"{node}/set_parameters", request).results)

    def change_state(self, node: str, transition_id: int, timeout: float = 60.0) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=transition_id))
        return bool(self.call(ChangeState, f"{node}/change_state", request, timeout).success)

    def get_state(self, node: str) -> str:
        from lifecycle_msgs.srv import GetState

        return str(self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label)


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------
def stamp(seconds: float) -> Any:
    from builtin_interfaces.msg import Time

    sec = math.floor(seconds)
    return Time(sec=int(sec), nanosec=round((seconds - sec) * 1e9) % 1_000_000_000)


def frame_pixels(k: int) -> np.ndarray:
    """Deterministic smooth ``(CAMERA_H, CAMERA_W, 3)`` uint8 RGB test frame number ``k``."""
    import cv2

    rng = np.random.default_rng(1000 + k)
    coarse = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    return cv2.resize(coarse, (CAMERA_W, CAMERA_H), interpolation=cv2.INTER_LINEAR)


def image_msg(pixels: np.ndarray, t: float, encoding: str = "rgb8", frame_id: str = "camera") -> Any:
    from sensor_msgs.msg import Image

    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                step=pixels.shape[1] * pixels.shape[2] * pixels.itemsize)
    msg.header.stamp, msg.header.frame_id = stamp(t), frame_id
    msg.data = pixels.tobytes()
    return msg


def compressed_msg(pixels: np.ndarray, t: float, data: bytes | None = None) -> Any:
    """``sensor_msgs/CompressedImage`` of RGB ``pixels`` as PNG (lossless), or with raw ``data`` bytes."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    if data is None:
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        assert ok
        data = encoded.tobytes()
    msg = CompressedImage(format="rgb8; png compressed bgr8")
    msg.header.stamp, msg.header.frame_id = stamp(t), "camera"
    msg.data = data
    return msg


def camera_info_msg(K: np.ndarray, width: int = CAMERA_W, height: int = CAMERA_H) -> Any:
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    msg.header.frame_id = "camera"
    msg.k = [float(v) for v in np.asarray(K, float).reshape(9)]
    return msg


def odometry_msg(t: float, state7: np.ndarray, frame_id: str = "odom") -> Any:
    """Odometry with pose (x, y, yaw) and body-frame twist (vx, vy) of ``state7``."""
    from nav_msgs.msg import Odometry

    msg = Odometry(child_frame_id="base_link")
    msg.header.stamp, msg.header.frame_id = stamp(t), frame_id
    x, y, yaw, vx, vy = (float(v) for v in np.asarray(state7)[:5])
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = vx, vy
    return msg


def ego_state(t: float, t0: float = 0.0) -> np.ndarray:
    """``(7,)`` state of the test drive: straight along yaw 0.3 from (10, -4), v = 4 + 1.0 (t - t0), a = (1, 0)."""
    yaw, tau = 0.3, t - t0
    s = 4.0 * tau + 0.5 * tau * tau
    v = 4.0 + tau
    return np.array([10.0 + s * math.cos(yaw), -4.0 + s * math.sin(yaw), yaw, v, 0.0, 1.0, 0.0])


def stamp_of(msg: Any) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def find_stamped(messages: list[Any], t: float) -> Any:
    """The first message whose header stamp is ``t`` (to the nanosecond), or None."""
    target = stamp(t)
    for m in messages:
        if m.header.stamp.sec == target.sec and m.header.stamp.nanosec == target.nanosec:
            return m
    return None


def failsafe_status(diagnostics: list[Any]) -> Any:
    """The ``drive_jepa_planner: failsafe`` status of the newest /diagnostics message, or None."""
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name.endswith(": failsafe"):
                return status
    return None


def status_values(status: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def diagnostic_with(diagnostics: list[Any], part: str, predicate: Callable[[Any], bool]) -> Any:
    """The newest status named ``<node>: <part>`` that satisfies ``predicate``, searching every message."""
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name.endswith(f": {part}") and predicate(status):
                return status
    return None


class PlannerIO:
    """The node's inputs (publishers) and outputs (collected messages) on a :class:`Graph`, default topic names of
    config/planner.yaml without a namespace."""

    def __init__(self, graph: Graph, transport: str = "raw") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry, Path
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from std_msgs.msg import Float64
        from visualization_msgs.msg import MarkerArray

        from drive_jepa_msgs.msg import CandidateTrajectories, DrivingCommand, SelectionState

        self.graph = graph
        self.compressed = compressed = transport == "compressed"
        self.image = graph.publisher(CompressedImage if compressed else Image,
                                     "/camera/image_raw/compressed" if compressed else "/camera/image_raw")
        self.info = graph.publisher(CameraInfo, "/camera/camera_info")
        self.odom = graph.publisher(Odometry, "/odom", 100)
        self.command = graph.publisher(DrivingCommand, "/driving_command")
        self.paths = graph.subscribe(Path, f"{NODE}/output/path")
        self.candidates = graph.subscribe(CandidateTrajectories, f"{NODE}/output/candidates")
        self.states = graph.subscribe(SelectionState, f"{NODE}/output/selection_state")
        self.markers = graph.subscribe(MarkerArray, f"{NODE}/debug/markers")
        self.times = graph.subscribe(Float64, f"{NODE}/debug/processing_time_ms")
        self.diagnostics = graph.subscribe(DiagnosticArray, "/diagnostics")
        self.output_topics = [f"{NODE}/output/path", f"{NODE}/output/candidates", f"{NODE}/output/selection_state",
                              f"{NODE}/debug/markers", f"{NODE}/debug/processing_time_ms", "/diagnostics"]

    def wait_ready(self, timeout: float = 60.0, camera_info: bool = True) -> None:
        """Discovery both ways (the node must be active: it subscribes on activation; to camera_info only when
        ``camera.use_camera_info``)."""
        publishers = [self.image, self.odom, self.command] + ([self.info] if camera_info else [])
        self.graph.wait_matched(publishers, self.output_topics, timeout)

    def wait_diagnostic(self, part: str, predicate: Callable[[Any], bool], timeout: float = 10.0,
                        what: str = "") -> Any:
        return self.graph.spin_until(lambda: diagnostic_with(self.diagnostics, part, predicate), timeout,
                                     what or f"diagnostics {part}")

    def wait_inputs(self, **counts: int) -> None:
        """Until /diagnostics reports at least ``<input>_count`` messages received per input, e.g. odometry=12."""
        def enough(status: Any) -> bool:
            values = status_values(status)
            return all(int(values.get(f"{name}_count", "0")) >= n for name, n in counts.items())
        self.wait_diagnostic("inputs", enough, 15.0, f"the node to receive {counts}")

    def send_odometry(self, t: float, state7: np.ndarray, frame_id: str = "odom") -> None:
        self.odom.publish(odometry_msg(t, state7, frame_id))

    def send_frame(self, t: float, pixels: np.ndarray, K: np.ndarray | None = None, encoding: str = "rgb8") -> Any:
        """camera_info (when ``K`` is given) then the image stamped ``t``; returns the image message."""
        if K is not None:
            info = camera_info_msg(K)  # the camera's size, whatever the image claims
            info.header.stamp = stamp(t)
            self.info.publish(info)
        msg = compressed_msg(pixels, t) if self.compressed else image_msg(pixels, t, encoding)
        self.image.publish(msg)
        return msg

    def outcome(self, t: float, resend: Callable[[], Any] | None = None, timeout: float = 15.0) -> Any:
        """The SelectionState the node published for the frame stamped ``t`` (planned or INPUT_FAULT).

        ``resend`` republishes the frame if nothing came back within a few seconds (the camera QoS is best effort).
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.graph.spin_until(lambda: find_stamped(self.states, t), 4.0, f"selection state at {t}")
            except AssertionError:
                if resend is None or time.monotonic() > deadline:
                    raise
                resend()


class Driver:
    """Feeds the node a consistent drive: odometry ahead of the frames (synchronised through /diagnostics, because
    odometry and images travel on different topics), then frames one at a time, each waited for.

    Args:
        io: the node's inputs/outputs.
        K: camera_info intrinsics sent with every frame (``None``: no camera_info).
        t: stamp of the next frame, s.
    """

    def __init__(self, io: PlannerIO, K: np.ndarray | None, t: float, t0: float = 0.0) -> None:
        self.io, self.K, self.t, self.t0 = io, K, t, t0
        self.odometry_sent = 0
        self.frame_index = 0

    def odometry(self, t_from: float, t_to: float, step: float = 0.1) -> None:
        """Publish odometry of the test drive at ``t_from, t_from + step, ... <= t_to`` and wait until received."""
        n = int(round((t_to - t_from) / step)) + 1
        for i in range(n):
            t = t_from + i * step
            self.io.send_odometry(t, ego_state(t, self.t0))
        self.odometry_sent += n
        self.io.wait_inputs(odometry=self.odometry_sent)

    def frame(self, t: float | None = None, pixels: np.ndarray | None = None, encoding: str = "rgb8",
              with_info: bool = True) -> Any:
        """Send one frame (default: the next stamp, the next test picture); returns its SelectionState."""
        t = self.t if t is None else t
        pixels = frame_pixels(self.frame_index) if pixels is None else pixels
        self.frame_index += 1
        K = self.K if with_info else None
        self.io.send_frame(t, pixels, K, encoding)
        state = self.io.outcome(t, resend=lambda: self.io.send_frame(t, pixels, K, encoding))
        self.t = t + 0.1
        return state

    def run(self, frames: int) -> list[Any]:
        """``frames`` consecutive frames 0.1 s apart with odometry covering them; their SelectionStates."""
        self.odometry(self.t - 0.3, self.t + (frames - 1) * 0.1)
        return [self.frame() for _ in range(frames)]
