"""Every parameter of the planner node, once: name, default, meaning, valid range, and when a change takes effect.

Pure Python (no rclpy): the node turns :data:`PARAMETERS` into ``declare_parameter`` calls with a
``ParameterDescriptor`` (ranges as ``FloatingPointRange``/``IntegerRange``, choices in ``additional_constraints``),
and its on-set-parameters callback asks :func:`check_parameter_change` whether a change is acceptable; the unit tests
exercise the same functions without a ROS graph. ``config/planner.yaml`` documents every name listed here (a test
checks that).

Two kinds of parameters:
* ``configure``: read in ``on_configure`` (model, backend, topics, camera, momentum). They can only be changed while
  the node is unconfigured; a change while configured is rejected with "cleanup first" as the reason.
* ``live``: read for every frame (tolerances, ages, output frame, markers); changes apply immediately.

Camera geometry: intrinsics come from ``camera_info`` or from ``camera.fx/fy/cx/cy`` for a ``camera.width`` x
``camera.height`` image; the extrinsics are the pose of the camera body frame (REP-103: x forward, y left, z up) in
the ego rear-axle frame, as ``camera.x/y/z`` (m) and ``camera.roll/pitch/yaw`` (rad, fixed-axis X-Y-Z, so a positive
pitch tilts the camera down). The OpenCV optical frame (x right, y down, z forward) is derived from it. Defaults are
the built-in world's front camera (``drive_jepa_core.world.render``), so the node runs on its replays as is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from drive_jepa_core.constants import DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH
from drive_jepa_core.replay.pairing import PairingConfig
from drive_jepa_core.runtime.backends import BACKENDS
from drive_jepa_core.scene.format import CameraCalibration
from drive_jepa_core.selection import MomentumConfig
from drive_jepa_core.world.render import FRONT_CAMERA_HFOV_DEG, FRONT_CAMERA_PITCH_DEG, FRONT_CAMERA_POSITION_M

NODE_NAME = "drive_jepa_planner"
IMAGE_TRANSPORTS = ("raw", "compressed")
OUTPUT_FRAMES = ("ego", "odom")
CONFIGURE, LIVE = "configure", "live"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# Built-in world camera (drive_jepa_core.world.render.default_front_camera): square pixels, principal point at the
# image centre, f = (W/2) / tan(HFOV/2).
_DEFAULT_FOCAL = (DEFAULT_IMAGE_WIDTH / 2.0) / math.tan(math.radians(FRONT_CAMERA_HFOV_DEG) / 2.0)
_DEFAULT_MOMENTUM = MomentumConfig()
_DEFAULT_PAIRING = PairingConfig()  # the input pairing's defaults live there once, with their reasons


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter.

    Attributes:
        name: ROS parameter name (dots make nested YAML keys).
        default: default value; its Python type is the parameter type (bool, int, float or str).
        description: meaning and unit, shown by ``ros2 param describe``.
        applies: :data:`CONFIGURE` or :data:`LIVE` (see the module docstring).
        low, high: inclusive numeric bounds (``None`` = unbounded); ``low_open`` makes the lower bound exclusive.
        choices: allowed strings.
    """

    name: str
    default: bool | int | float | str
    description: str
    applies: str = CONFIGURE
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def constraints(self) -> str:
        """Human-readable constraints (``ParameterDescriptor.additional_constraints``)."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "inf" if self.high is None else f"{self.high:g}"
            parts.append(f"{'(' if self.low_open else '['}{lo}, {hi}]")
        if self.name == "device":
            parts.append("auto, cpu, cuda or cuda:N")
        parts.append("changes apply immediately" if self.applies == LIVE else "read on configure; change it while "
                     "unconfigured")
        return "; ".join(parts)


def _p(name: str, default: Any, description: str, **kw: Any) -> ParamSpec:
    return ParamSpec(name, default, description, **kw)


PARAMETERS: tuple[ParamSpec, ...] = (
    # --- lifecycle ------------------------------------------------------------------------------------------------
    _p("autostart", False, "configure and activate right after start (no lifecycle manager needed)"),
    # --- model ----------------------------------------------------------------------------------------------------
    _p("model_path", "", "trained planner: run directory or .safetensors (also .onnx for onnxruntime/tensorrt, or a "
       ".engine for tensorrt); required"),
    _p("backend", "torch", "inference backend", choices=BACKENDS),
    _p("device", "auto", "inference device: auto (CUDA when available), cpu, cuda, cuda:N"),
    _p("onnx_path", "", "ONNX file for onnxruntime/tensorrt; empty = the cached export next to the checkpoint"),
    _p("engine_path", "", "TensorRT engine cache; empty = next to the ONNX file"),
    _p("fp16", False, "TensorRT: build the engine with fp16 enabled"),
    _p("workspace_mb", 0, "TensorRT builder workspace in MiB; 0 = the runtime's default", low=0, high=1 << 20),
    _p("force_engine_update", False, "TensorRT: rebuild the engine even if a valid cached one exists"),
    _p("num_threads", 0, "CPU threads for torch / ONNX Runtime; 0 = leave the library default", low=0, high=1024),
    _p("warmup_iterations", 1, "dummy inferences run on configure (allocations, autotuning)", low=0, high=100),
    # --- momentum-aware selection (drive_jepa.md §7) ----------------------------------------------------------------
    _p("momentum.score_weight", _DEFAULT_MOMENTUM.score_weight,
       "weight w of the learned score in S' = w S + (1 - w) EC (7/8 in Drive-JEPA)", low=0.0, high=1.0),
    _p("momentum.max_gap", _DEFAULT_MOMENTUM.max_gap,
       "seconds; a longer interval between planning cycles resets momentum (0.55 = NAVSIM's EC bound)",
       low=0.0, high=_DEFAULT_MOMENTUM.max_gap, low_open=True),
    # --- topics ---------------------------------------------------------------------------------------------------
    _p("image_topic", "~/input/image", "camera topic (raw); the compressed transport subscribes to "
       "<image_topic>/compressed"),
    _p("image_transport", "raw", "raw = sensor_msgs/Image, compressed = sensor_msgs/CompressedImage",
       choices=IMAGE_TRANSPORTS),
    _p("camera_info_topic", "~/input/camera_info", "sensor_msgs/CameraInfo topic (used when camera.use_camera_info)"),
    _p("odometry_topic", "~/input/odometry", "nav_msgs/Odometry topic (pose in the odometry frame, twist in the "
       "body frame)"),
    _p("command_topic", "~/input/command", "drive_jepa_msgs/DrivingCommand topic"),
    # --- camera ---------------------------------------------------------------------------------------------------
    _p("camera.use_camera_info", True, "take intrinsics and image size from camera_info instead of the camera.* "
       "intrinsics parameters"),
    _p("camera.width", DEFAULT_IMAGE_WIDTH, "image width in pixels (when not using camera_info)", low=1, high=16384),
    _p("camera.height", DEFAULT_IMAGE_HEIGHT, "image height in pixels (when not using camera_info)", low=1,
       high=16384),
    _p("camera.fx", _DEFAULT_FOCAL, "focal length x in pixels", low=0.0, high=1e6, low_open=True),
    _p("camera.fy", _DEFAULT_FOCAL, "focal length y in pixels", low=0.0, high=1e6, low_open=True),
    _p("camera.cx", DEFAULT_IMAGE_WIDTH / 2.0, "principal point x in pixels", low=-1e5, high=1e5),
    _p("camera.cy", DEFAULT_IMAGE_HEIGHT / 2.0, "principal point y in pixels", low=-1e5, high=1e5),
    _p("camera.x", float(FRONT_CAMERA_POSITION_M[0]), "camera position in the ego rear-axle frame, m (forward)",
       low=-100.0, high=100.0),
    _p("camera.y", float(FRONT_CAMERA_POSITION_M[1]), "camera position, m (left)", low=-100.0, high=100.0),
    _p("camera.z", float(FRONT_CAMERA_POSITION_M[2]), "camera position, m (up)", low=-100.0, high=100.0),
    _p("camera.roll", 0.0, "camera body roll about ego x, rad", low=-math.pi, high=math.pi),
    _p("camera.pitch", math.radians(FRONT_CAMERA_PITCH_DEG), "camera body pitch about ego y, rad (positive = "
       "looking down)", low=-math.pi / 2, high=math.pi / 2),
    _p("camera.yaw", 0.0, "camera body yaw about ego z, rad (positive = looking left)", low=-math.pi, high=math.pi),
    # --- input pairing (drive_jepa_core.replay.pairing, shared with the offline replay) and failsafe -----------------
    _p("frame_gap_tolerance", _DEFAULT_PAIRING.frame_gap_tolerance,
       f"seconds; the earlier frame must lie within this of t - {_DEFAULT_PAIRING.frame_gap:g} s",
       applies=LIVE, low=0.0, high=_DEFAULT_PAIRING.frame_gap / 2),
    _p("frame_buffer_size", _DEFAULT_PAIRING.frame_buffer_size, "decoded camera frames kept at most (they are also "
       "dropped once older than the pairing window)", applies=LIVE, low=2, high=1000),
    _p("odometry_max_age", _DEFAULT_PAIRING.odometry_max_age, "seconds; the odometry sample nearest the image stamp "
       "must be this close to it", applies=LIVE, low=0.0, high=5.0, low_open=True),
    _p("odometry_buffer_size", _DEFAULT_PAIRING.odometry_buffer_size, "odometry samples kept at most (they are also "
       "dropped once older than the acceleration window needs)", applies=LIVE, low=2, high=10000),
    _p("acceleration_window", _DEFAULT_PAIRING.acceleration_window, "seconds between the odometry samples whose "
       "velocity difference estimates the ego acceleration; 0 = feed zero acceleration", applies=LIVE, low=0.0,
       high=2.0),
    _p("input_timeout", 0.5, "seconds without a message after which an input counts as stale (diagnostics)",
       applies=LIVE, low=0.0, high=60.0, low_open=True),
    _p("time_jump_threshold", _DEFAULT_PAIRING.time_jump_threshold, "seconds; a stamp this far behind the previous "
       "one is a time jump (bag loop: buffers cleared, momentum reset); smaller steps back are out-of-order frames "
       "(dropped); a forward step this large clears that stream's buffer", applies=LIVE, low=0.0, high=3600.0,
       low_open=True),
    _p("default_command", 1, "driving command until one is received or when it is UNKNOWN: 0 left, 1 straight, "
       "2 right", applies=LIVE, low=0, high=2),
    # --- outputs --------------------------------------------------------------------------------------------------
    _p("output_frame", "ego", "ego = paths in ego_frame_id relative to the vehicle at the image stamp; odom = in the "
       "odometry frame, placed with the odometry pose at the image stamp", applies=LIVE, choices=OUTPUT_FRAMES),
    _p("ego_frame_id", "base_link", "frame id of ego-frame outputs (the rear axle)", applies=LIVE),
    _p("generator_name", "drive_jepa", "CandidateTrajectories.generator_name", applies=LIVE),
    _p("publish_markers", True, "publish ~/debug/markers", applies=LIVE),
    _p("marker_line_width", 0.15, "marker line width, m (the selected path is drawn twice as wide)", applies=LIVE,
       low=0.0, high=5.0, low_open=True),
    _p("marker_lifetime", 0.5, "seconds a marker stays visible without an update; 0 = until replaced",
       applies=LIVE, low=0.0, high=60.0),
    _p("diagnostics_period", 1.0, "seconds between /diagnostics messages (faults are also reported at once)",
       low=0.05, high=60.0),
)
PARAMETER_SPECS: dict[str, ParamSpec] = {spec.name: spec for spec in PARAMETERS}
DEFAULTS: dict[str, Any] = {spec.name: spec.default for spec in PARAMETERS}


def check_value(spec: ParamSpec, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``spec`` (``None`` when it is)."""
    expected = spec.type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # YAML "1" for a double parameter
    if type(value) is not expected:
        return f"{spec.name} must be a {expected.__name__}, got {type(value).__name__} {value!r}"
    if expected is float and not math.isfinite(value):
        return f"{spec.name} must be finite, got {value}"
    if spec.choices is not None and value not in spec.choices:
        return f"{spec.name} must be one of {', '.join(spec.choices)}; got {value!r}"
    if spec.name == "device" and not _DEVICE_RE.match(value):
        return f"device must be auto, cpu, cuda or cuda:N; got {value!r}"
    if expected in (int, float):
        if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
            bound = f"> {spec.low:g}" if spec.low_open else f">= {spec.low:g}"
            return f"{spec.name} must be {bound}, got {value}"
        if spec.high is not None and value > spec.high:
            return f"{spec.name} must be <= {spec.high:g}, got {value}"
    return None


def check_parameter_change(changes: Mapping[str, Any], configured: bool) -> str | None:
    """Why a set of parameter changes must be rejected (``None`` = accept them all).

    Args:
        changes: parameter name -> new value (only the parameters being set).
        configured: whether the node currently holds a configuration (inactive or active).
    """
    for name, value in changes.items():
        spec = PARAMETER_SPECS.get(name)
        if spec is None:
            continue  # parameters the node does not own (use_sim_time, qos overrides, ...)
        reason = check_value(spec, value)
        if reason:
            return reason
        if configured and spec.applies == CONFIGURE:
            return (f"{name} is read when the node is configured: deactivate and clean up the node, set it, then "
                    f"configure again")
    return None


# --------------------------------------------------------------------------------------------------------------------
# Typed settings
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeSettings:
    """All parameter values, typed; the field name is the parameter name with dots replaced by underscores."""

    autostart: bool
    model_path: str
    backend: str
    device: str
    onnx_path: str
    engine_path: str
    fp16: bool
    workspace_mb: int
    force_engine_update: bool
    num_threads: int
    warmup_iterations: int
    momentum_score_weight: float
    momentum_max_gap: float
    image_topic: str
    image_transport: str
    camera_info_topic: str
    odometry_topic: str
    command_topic: str
    camera_use_camera_info: bool
    camera_width: int
    camera_height: int
    camera_fx: float
    camera_fy: float
    camera_cx: float
    camera_cy: float
    camera_x: float
    camera_y: float
    camera_z: float
    camera_roll: float
    camera_pitch: float
    camera_yaw: float
    frame_gap_tolerance: float
    frame_buffer_size: int
    odometry_max_age: float
    odometry_buffer_size: int
    acceleration_window: float
    input_timeout: float
    time_jump_threshold: float
    default_command: int
    output_frame: str
    ego_frame_id: str
    generator_name: str
    publish_markers: bool
    marker_line_width: float
    marker_lifetime: float
    diagnostics_period: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> NodeSettings:
        """Validate every value (missing ones take the default) and the combinations; ValueError names the problem."""
        kwargs = {}
        for spec in PARAMETERS:
            value = values.get(spec.name, spec.default)
            reason = check_value(spec, value)
            if reason:
                raise ValueError(reason)
            kwargs[spec.name.replace(".", "_")] = spec.type(value)
        settings = cls(**kwargs)
        if not settings.model_path.strip():
            raise ValueError("model_path is empty: set it to a trained planner (run directory or .safetensors)")
        if not settings.image_topic.strip():
            raise ValueError("image_topic is empty")
        settings.pairing  # noqa: B018 -- PairingConfig checks the thresholds together (ValueError)
        return settings

    @property
    def momentum(self) -> MomentumConfig:
        return MomentumConfig(score_weight=self.momentum_score_weight, max_gap=self.momentum_max_gap)

    @property
    def pairing(self) -> PairingConfig:
        """The input pairing thresholds (the same :class:`PairingConfig` the offline replay takes)."""
        return PairingConfig(frame_gap_tolerance=self.frame_gap_tolerance, frame_buffer_size=self.frame_buffer_size,
                             odometry_max_age=self.odometry_max_age, odometry_buffer_size=self.odometry_buffer_size,
                             acceleration_window=self.acceleration_window,
                             time_jump_threshold=self.time_jump_threshold)

    @property
    def subscribed_image_topic(self) -> str:
        """The topic actually subscribed: image_transport's ``<base>/compressed`` for compressed images."""
        base = self.image_topic.rstrip("/")
        return base + "/compressed" if self.image_transport == "compressed" else base

    def camera_sensor2ego(self) -> np.ndarray:
        """``(4, 4)`` optical frame -> ego rear-axle frame from the camera.* extrinsics."""
        return camera_sensor2ego((self.camera_x, self.camera_y, self.camera_z),
                                 (self.camera_roll, self.camera_pitch, self.camera_yaw))

    def parameter_intrinsics(self) -> tuple[int, int, np.ndarray]:
        """``(width, height, K (3, 3))`` from the camera.* intrinsics parameters."""
        K = intrinsics_matrix(self.camera_fx, self.camera_fy, self.camera_cx, self.camera_cy)
        return self.camera_width, self.camera_height, K

    def calibration(self, width: int, height: int, K: np.ndarray) -> CameraCalibration:
        """The front camera of ``width`` x ``height`` pixels with intrinsics ``K`` and the parameter extrinsics."""
        return CameraCalibration(name="front", width=int(width), height=int(height),
                                 intrinsics=np.asarray(K, np.float64), sensor2ego=self.camera_sensor2ego())


SETTINGS_FIELDS = tuple(f.name for f in fields(NodeSettings))


def descriptor(spec: ParamSpec) -> Any:
    """``rcl_interfaces/ParameterDescriptor`` of ``spec``: type, description, range, constraints text."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    types = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    out = ParameterDescriptor(name=spec.name, type=types[spec.type], description=spec.description,
                              additional_constraints=spec.constraints())
    if spec.type in (int, float) and (spec.low is not None or spec.high is not None):
        if spec.type is float:
            low = -math.inf if spec.low is None else float(spec.low)
            high = math.inf if spec.high is None else float(spec.high)
            out.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
        else:
            low = -(2**63) if spec.low is None else int(spec.low)
            high = 2**63 - 1 if spec.high is None else int(spec.high)
            out.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
    return out


# --------------------------------------------------------------------------------------------------------------------
# Camera geometry
# --------------------------------------------------------------------------------------------------------------------
# Optical frame axes (x right, y down, z forward) expressed in the camera body frame (x forward, y left, z up).
_OPTICAL_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """``(3, 3)`` rotation ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (REP-103 fixed-axis roll, pitch, yaw)."""
    cr, sr, cp, sp, cy, sy = (math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw),
                              math.sin(yaw))
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def camera_sensor2ego(position: tuple[float, float, float], rpy: tuple[float, float, float]) -> np.ndarray:
    """``(4, 4)`` transform from the camera's OpenCV optical frame to the ego frame.

    Args:
        position: camera origin in the ego frame, m.
        rpy: orientation of the camera body frame (x forward, y left, z up) in the ego frame, rad.
    """
    values = np.asarray([*position, *rpy], dtype=np.float64)
    if values.shape != (6,) or not np.all(np.isfinite(values)):
        raise ValueError(f"camera extrinsics must be 3 finite positions and 3 finite angles, got {values.tolist()}")
    out = np.eye(4)
    out[:3, :3] = rpy_matrix(*values[3:]) @ _OPTICAL_IN_BODY
    out[:3, 3] = values[:3]
    return out


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """``(3, 3)`` pinhole K."""
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)
    if not np.all(np.isfinite(K)) or fx <= 0 or fy <= 0:
        raise ValueError(f"intrinsics must be finite with positive focal lengths, got fx={fx} fy={fy} cx={cx} cy={cy}")
    return K


def camera_info_intrinsics(msg: Any) -> tuple[int, int, np.ndarray]:
    """``(width, height, K (3, 3))`` of a ``sensor_msgs/CameraInfo`` (duck-typed).

    K of the raw image is used: the planner assumes a rectified (or undistorted) image, as the renderer and NAVSIM
    cameras are, so the distortion model is ignored.

    Raises:
        ValueError: zero size, or a K that is not a finite pinhole matrix with positive focal lengths.
    """
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise ValueError(f"camera_info has no image size ({width}x{height})")
    k = np.asarray(msg.k, dtype=np.float64)
    if k.shape != (9,):
        raise ValueError(f"camera_info K must have 9 values, got {k.shape}")
    K = k.reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.allclose(K[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"camera_info K is not a pinhole matrix: {K.tolist()}")
    return width, height, K


__all__ = [
    "CONFIGURE", "DEFAULTS", "IMAGE_TRANSPORTS", "LIVE", "NODE_NAME", "OUTPUT_FRAMES", "PARAMETERS",
    "PARAMETER_SPECS", "SETTINGS_FIELDS", "NodeSettings", "ParamSpec", "camera_info_intrinsics", "camera_sensor2ego",
    "check_parameter_change", "check_value", "descriptor", "intrinsics_matrix", "rpy_matrix",
]
