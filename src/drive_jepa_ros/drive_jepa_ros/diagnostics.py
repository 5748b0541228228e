"""Health bookkeeping of the planner node and its ``diagnostic_msgs/DiagnosticArray`` (``/diagnostics``).

``diagnostic_updater`` is not available from PyPI, so this module does its job in a few lines: the node reports
events to a thread-safe :class:`NodeHealth` (inputs received, frames published, frames rejected and why, model
loaded), and :meth:`NodeHealth.statuses` turns the current state into four statuses, following Autoware's ML
planner (model loaded / input data available / inference status) and diagnostic_updater's levels:

* ``<node>: model`` — what is loaded (backend, device, Np, M, input size, checksum) or why loading failed;
* ``<node>: inputs`` — freshness of camera, odometry, camera_info and command (age since the last message);
* ``<node>: processing`` — latency per stage (p50/p99), end-to-end node latency, queue depth, dropped frames;
* ``<node>: failsafe`` — whether the last frame was published, else the fault and its detail, and fault counts.

Pure Python (the message is imported lazily in :func:`to_diagnostic_array`), unit-tested without ROS.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import numpy as np

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LATENCY_WINDOW = 200  # frames kept for latency percentiles (~7 s at 30 Hz)
HARDWARE_ID = "drive_jepa"


class Fault(str, Enum):
    """Why a camera frame produced no trajectory."""

    NOT_ACTIVE = "not_active"
    NO_CAMERA_INFO = "no_camera_info"
    BAD_CAMERA_INFO = "bad_camera_info"
    BAD_IMAGE = "bad_image"  # undecodable, unsupported encoding, wrong size
    DUPLICATE_STAMP = "duplicate_stamp"
    OUT_OF_ORDER = "out_of_order"
    TIME_JUMP_BACKWARD = "time_jump_backward"
    TIME_JUMP_FORWARD = "time_jump_forward"
    NO_PREVIOUS_FRAME = "no_previous_frame"  # nothing stored near t - 0.5 s yet
    NO_ODOMETRY = "no_odometry"  # none received, or none close enough to the image stamp
    BAD_ODOMETRY = "bad_odometry"  # NaN/inf, zero quaternion
    INFERENCE_ERROR = "inference_error"
    NONFINITE_OUTPUT = "nonfinite_output"

    @property
    def is_input_fault(self) -> bool:
        """True when the inputs were unusable (SelectionState.INPUT_FAULT), False for model/runtime failures."""
        return self not in (Fault.INFERENCE_ERROR, Fault.NONFINITE_OUTPUT, Fault.NOT_ACTIVE)


@dataclass(frozen=True)
class Status:
    """One ``diagnostic_msgs/DiagnosticStatus`` in plain Python."""

    level: int
    name: str
    message: str
    values: tuple[tuple[str, str], ...] = ()

    def value(self, key: str) -> str | None:
        return dict(self.values).get(key)


class LatencyWindow:
    """The last ``size`` latencies (ms) with percentiles."""

    def __init__(self, size: int = LATENCY_WINDOW) -> None:
        self._values: deque[float] = deque(maxlen=int(size))

    def add(self, ms: float) -> None:
        self._values.append(float(ms))

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        """``q``-th percentile (0-100, linear interpolation); NaN when empty."""
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else float("nan")

    def mean(self) -> float:
        return float(np.mean(np.fromiter(self._values, float))) if self._values else float("nan")


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def _age(now: float, last: float | None) -> str:
    return "never" if last is None else f"{now - last:.3f}"


@dataclass
class _InputState:
    last: float | None = None
    count: int = 0


@dataclass
class NodeHealth:
    """Thread-safe state behind ``/diagnostics``; time is ``time.monotonic()`` seconds (independent of sim time).

    Args:
        node_name: prefix of every status name.
        input_timeout: seconds without a message after which an input is stale.
        use_camera_info: whether camera_info is required.
    """

    node_name: str
    input_timeout: float = 0.5
    use_camera_info: bool = True
    active: bool = False
    model_message: str = "not loaded (node unconfigured)"
    model_level: int = WARN
    model_values: tuple[tuple[str, str], ...] = ()
    _inputs: dict[str, _InputState] = field(default_factory=dict)
    _faults: Counter = field(default_factory=Counter)
    _last_fault: tuple[Fault, str] | None = None
    _consecutive_faults: int = 0
    _published: int = 0
    _last_published: float | None = None
    _stage_ms: dict[str, LatencyWindow] = field(default_factory=dict)
    _queue_depth: int = 0
    _dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    INPUTS: ClassVar[tuple[str, ...]] = ("camera", "odometry", "camera_info", "command")
    # wait = image receipt -> the worker takes it; plan = Planner.plan() (preprocess + inference + selection);
    # path = receipt -> selected path published; node_total = receipt -> every output published
    STAGES: ClassVar[tuple[str, ...]] = ("wait", "preprocess", "inference", "selection", "plan", "path",
                                         "node_total")

    # --- events -----------------------------------------------------------------------------------------------------
    def model_loaded(self, message: str, values: Iterable[tuple[str, Any]]) -> None:
        with self._lock:
            self.model_level, self.model_message = OK, message
            self.model_values = tuple((str(k), str(v)) for k, v in values)

    def model_failed(self, message: str) -> None:
        with self._lock:
            self.model_level, self.model_message, self.model_values = ERROR, message, ()

    def model_unloaded(self) -> None:
        with self._lock:
            self.model_level, self.model_message, self.model_values = WARN, "not loaded (node unconfigured)", ()

    def set_active(self, active: bool) -> None:
        with self._lock:
            self.active = bool(active)
            if active:  # freshness and the last outcome restart with each activation
                self._inputs.clear()
                self._last_fault, self._consecutive_faults = None, 0

    def input_received(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._inputs.setdefault(name, _InputState())
            state.last, state.count = now, state.count + 1

    def frame_published(self, stage_ms: dict[str, float], now: float | None = None) -> None:
        """A trajectory was published; ``stage_ms`` maps stage names of :attr:`STAGES` to milliseconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._published += 1
            self._last_published = now
            self._last_fault, self._consecutive_faults = None, 0
            for stage, ms in stage_ms.items():
                self._stage_ms.setdefault(stage, LatencyWindow()).add(ms)

    def frame_failed(self, fault: Fault, detail: str) -> bool:
        """A frame produced no trajectory; returns True when the fault differs from the previous outcome."""
        with self._lock:
            changed = self._last_fault is None or self._last_fault[0] is not fault
            self._faults[fault] += 1
            self._last_fault = (fault, detail)
            self._consecutive_faults += 1
            return changed

    def set_queue(self, depth: int, dropped: int) -> None:
        with self._lock:
            self._queue_depth, self._dropped = int(depth), int(dropped)

    # --- queries ----------------------------------------------------------------------------------------------------
    @property
    def last_fault(self) -> tuple[Fault, str] | None:
        with self._lock:
            return self._last_fault

    @property
    def published(self) -> int:
        with self._lock:
            return self._published

    def fault_count(self, fault: Fault) -> int:
        with self._lock:
            return self._faults[fault]

    def latency(self, stage: str, q: float) -> float:
        with self._lock:
            window = self._stage_ms.get(stage)
            return window.percentile(q) if window else float("nan")

    def statuses(self, now: float | None = None) -> list[Status]:
        """The four statuses (model, inputs, processing, failsafe) at ``now``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [self._model_status(), self._input_status(now), self._processing_status(),
                    self._failsafe_status(now)]

    def _name(self, part: str) -> str:
        return f"{self.node_name}: {part}"

    def _model_status(self) -> Status:
        return Status(self.model_level, self._name("model"), self.model_message, self.model_values)

    def _input_status(self, now: float) -> Status:
        values = []
        problems = []
        for name in self.INPUTS:
            state = self._inputs.get(name, _InputState())
            values.append((f"{name}_age_s", _age(now, state.last)))
            values.append((f"{name}_count", str(state.count)))
            required = name in ("camera", "odometry") or (name == "camera_info" and self.use_camera_info)
            if not required or not self.active:
                continue
            if state.last is None:
                problems.append(f"no {name} received")
            elif now - state.last > self.input_timeout:
                problems.append(f"{name} stale ({now - state.last:.2f} s > {self.input_timeout:g} s)")
        if not self.active:
            return Status(OK, self._name("inputs"), "node inactive: inputs not monitored", tuple(values))
        if problems:
            return Status(ERROR, self._name("inputs"), "; ".join(problems), tuple(values))
        return Status(OK, self._name("inputs"), "camera and odometry fresh", tuple(values))

    def _processing_status(self) -> Status:
        values = [("queue_depth", str(self._queue_depth)), ("dropped_frames", str(self._dropped)),
                  ("published_frames", str(self._published))]
        for stage in self.STAGES:
            window = self._stage_ms.get(stage)
            p50 = window.percentile(50) if window else float("nan")
            p99 = window.percentile(99) if window else float("nan")
            values += [(f"{stage}_ms_p50", _ms(p50)), (f"{stage}_ms_p99", _ms(p99))]
        total = self._stage_ms.get("node_total")
        message = (f"node latency p50 {_ms(total.percentile(50))} ms" if total else "no frame processed yet")
        return Status(OK, self._name("processing"), message, tuple(values))

    def _failsafe_status(self, now: float) -> Status:
        values = [("consecutive_faults", str(self._consecutive_faults)),
                  ("last_published_age_s", _age(now, self._last_published))]
        values += [(f"faults_{f.value}", str(self._faults[f])) for f in Fault if self._faults[f]]
        if self._last_fault is not None:
            fault, detail = self._last_fault
            values.insert(0, ("fault", fault.value))
            return Status(ERROR, self._name("failsafe"), f"no trajectory: {fault.value}: {detail}", tuple(values))
        if not self.active:
            return Status(OK, self._name("failsafe"), "node inactive: nothing published", tuple(values))
        if self._last_published is None:
            return Status(WARN, self._name("failsafe"), "active, no frame planned yet", tuple(values))
        return Status(OK, self._name("failsafe"), "publishing trajectories", tuple(values))


def to_diagnostic_array(statuses: Sequence[Status], stamp: Any, hardware_id: str = HARDWARE_ID) -> Any:
    """``diagnostic_msgs/DiagnosticArray`` of ``statuses`` stamped ``stamp`` (``builtin_interfaces/Time``)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    out = DiagnosticArray()
    out.header.stamp = stamp
    for s in statuses:
        out.status.append(DiagnosticStatus(
            level=bytes([int(s.level)]), name=s.name, message=s.message, hardware_id=hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in s.values]))
    return out


__all__ = [
    "ERROR", "HARDWARE_ID", "OK", "STALE", "WARN", "Fault", "LatencyWindow", "NodeHealth", "Status",
    "to_diagnostic_array",
]
