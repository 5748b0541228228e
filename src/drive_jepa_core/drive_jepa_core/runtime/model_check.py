"""Load-time validation of model files: a missing, truncated or mismatched model fails when it is LOADED, with a
message naming the file and what differs — never at the first camera frame.

Every backend describes what it loaded as a :class:`ModelInfo` (input size, Np, M, …) read from the file itself
(checkpoint spec, ONNX graph I/O + metadata, TensorRT engine bindings), and compares it with a
:class:`ModelExpectation` (what the caller's configuration and, for exported files, the source checkpoint say).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from drive_jepa_core.checkpoints import CheckpointError
from drive_jepa_core.preprocess import EGO_STATUS_DIM
from drive_jepa_core.runtime.graph import INPUT_NAMES, OUTPUT_NAMES

# Written into the ONNX metadata_props (and the engine sidecar) so a file describes itself.
RUNTIME_FORMAT = "drive_jepa_runtime"
RUNTIME_FORMAT_VERSION = "1"
POSE_DIM = 3  # (x, y, heading), drive_jepa.md §2.3
_HASH_CHUNK = 1 << 24  # 16 MiB reads for sha256 of weight files


class ModelCheckError(ValueError):
    """A model file is missing, unreadable, or does not match what the runtime was configured for."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model computes: ``video (1, 3, 2, H, W)`` → ``proposals (1, Np, M, 3)``, ``scores (1, Np)``."""

    image_width: int
    image_height: int
    num_proposals: int
    num_poses: int
    ego_status_dim: int = EGO_STATUS_DIM
    variant: str = "proposal"
    checkpoint_sha256: str = ""  # sha256 of the safetensors the weights came from ("" = unknown)

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input ``(width, height)``."""
        return self.image_width, self.image_height

    def input_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        return {
            "video": (batch, 3, 2, self.image_height, self.image_width),
            "ego_status": (batch, self.ego_status_dim),
            "ego2image": (batch, 3, 4),
        }

    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        return {"proposals": (batch, self.num_proposals, self.num_poses, POSE_DIM),
                "scores": (batch, self.num_proposals)}

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` / JSON sidecars."""
        out = {"format": RUNTIME_FORMAT, "format_version": RUNTIME_FORMAT_VERSION}
        out.update({f.name: str(getattr(self, f.name)) for f in fields(self)})
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_spec(cls, spec: Any, checkpoint_sha256: str = "") -> ModelInfo:
        """From a :class:`drive_jepa_core.train.checkpoint.ModelSpec`."""
        config = spec.planner_config()
        num_proposals = getattr(config, "num_proposals", 1)  # the perception-free baseline has one trajectory
        ego_dim = getattr(config, "ego_status_dim", EGO_STATUS_DIM)
        if spec.variant == "perception_free":
            ego_dim = EGO_STATUS_DIM  # it reads the informative slice of the same (11,) vector
        return cls(image_width=int(spec.image_width), image_height=int(spec.image_height),
                   num_proposals=int(num_proposals), num_poses=int(config.num_poses), ego_status_dim=int(ego_dim),
                   variant=str(spec.variant), checkpoint_sha256=checkpoint_sha256)


@dataclass(frozen=True)
class ModelExpectation:
    """What the caller requires of a model; ``None`` fields are not checked.

    Attributes:
        image_size: model input ``(width, height)``.
        num_proposals: Np.
        num_poses: M.
        checkpoint_sha256: sha256 of the checkpoint an exported file must have been made from.
        source: where the expectation comes from, for messages (e.g. "checkpoint runs/a/model.safetensors").
    """

    image_size: tuple[int, int] | None = None
    num_proposals: int | None = None
    num_poses: int | None = None
    checkpoint_sha256: str | None = None
    source: str = "the runtime configuration"

    @classmethod
    def from_info(cls, info: ModelInfo, source: str) -> ModelExpectation:
        return cls(image_size=info.image_size, num_proposals=info.num_proposals, num_poses=info.num_poses,
                   checkpoint_sha256=info.checkpoint_sha256 or None, source=source)

    def merged(self, other: ModelExpectation) -> ModelExpectation:
        """``self`` with the unset fields taken from ``other``; conflicting set fields raise."""
        values: dict[str, Any] = {}
        for name in ("image_size", "num_proposals", "num_poses", "checkpoint_sha256"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and tuple(_as_tuple(mine)) != tuple(_as_tuple(theirs)):
                raise ModelCheckError(f"{name} is {_fmt(name, mine)} in {self.source} but {_fmt(name, theirs)} in "
                                      f"{other.source}")
            values[name] = mine if mine is not None else theirs
        used = [e.source for e in (self, other) if e.is_set()]
        sources = " and ".join(dict.fromkeys(used)) or self.source
        return ModelExpectation(**values, source=sources)

    def is_set(self) -> bool:
        """True when at least one requirement is given."""
        return any(getattr(self, n) is not None for n in ("image_size", "num_proposals", "num_poses",
                                                          "checkpoint_sha256"))

    def differences(self, info: ModelInfo) -> list[str]:
        """Human-readable mismatches of ``info`` against this expectation (empty when it fits)."""
        diffs = []
        if self.image_size is not None and tuple(self.image_size) != info.image_size:
            diffs.append(f"input size is {_fmt('image_size', info.image_size)} (W x H) but "
                         f"{_fmt('image_size', self.image_size)} is expected")
        if self.num_proposals is not None and int(self.num_proposals) != info.num_proposals:
            diffs.append(f"number of proposals Np is {info.num_proposals} but {self.num_proposals} is expected")
        if self.num_poses is not None and int(self.num_poses) != info.num_poses:
            diffs.append(f"poses per proposal M is {info.num_poses} but {self.num_poses} is expected")
        if self.checkpoint_sha256 and info.checkpoint_sha256 and self.checkpoint_sha256 != info.checkpoint_sha256:
            diffs.append(f"it was made from checkpoint sha256 {info.checkpoint_sha256[:12]}… but the checkpoint "
                         f"has sha256 {self.checkpoint_sha256[:12]}… (re-export it)")
        return diffs

    def check(self, info: ModelInfo, path: str | Path) -> None:
        """Raise :class:`ModelCheckError` naming ``path`` and every difference."""
        diffs = self.differences(info)
        if diffs:
            raise ModelCheckError(f"{path}: model does not match {self.source}: " + "; ".join(diffs))


def _as_tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _fmt(name: str, value: Any) -> str:
    if name == "image_size":
        return f"{int(value[0])}x{int(value[1])}"
    if name == "checkpoint_sha256":
        return f"{str(value)[:12]}…"
    return str(value)


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path; raises :class:`ModelCheckError` if it is missing, not a file, or empty."""
    path = Path(path)
    if not path.exists():
        raise ModelCheckError(f"{path}: {what} does not exist")
    if not path.is_file():
        raise ModelCheckError(f"{path}: {what} is not a file")
    if path.stat().st_size == 0:
        raise ModelCheckError(f"{path}: {what} is empty (0 bytes; an interrupted copy or export?)")
    return path


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_checkpoint(path: str | Path, expect: ModelExpectation | None = None,
                     prefer_best: bool = False) -> tuple[Path, Any, ModelInfo]:
    """Validate a trained planner (safetensors file or run directory) without building the model.

    Returns:
        (resolved weights file, its ``ModelSpec``, :class:`ModelInfo` with the file's sha256).
    """
    from drive_jepa_core.train.checkpoint import read_planner_spec, resolve_planner_path

    try:
        resolved = resolve_planner_path(path, prefer_best)
    except CheckpointError as exc:
        raise ModelCheckError(f"{path}: no planner checkpoint ({exc})") from exc
    require_file(resolved, "planner checkpoint")
    try:
        spec, _ = read_planner_spec(resolved)
    except CheckpointError as exc:
        raise ModelCheckError(str(exc)) from exc
    info = ModelInfo.from_spec(spec, file_sha256(resolved))
    if expect is not None:
        expect.check(info, resolved)
    return resolved, spec, info


def check_io(path: str | Path, inputs: Mapping[str, Sequence[Any]], outputs: Mapping[str, Sequence[Any]],
             metadata: Mapping[str, str], expect: ModelExpectation | None = None) -> ModelInfo:
    """Validate an exported model's tensors and metadata (from an ONNX Runtime session or a TensorRT engine).

    Args:
        path: the file, for messages.
        inputs / outputs: tensor name → shape (ints; a non-int entry is a dynamic dimension).
        metadata: the runtime metadata written at export (``ModelInfo.to_metadata``); may be empty.
        expect: requirements to check.
    Returns:
        :class:`ModelInfo` of the file.
    """
    if set(inputs) != set(INPUT_NAMES):
        raise ModelCheckError(f"{path}: inputs are {sorted(inputs)} but a Drive-JEPA runtime model has "
                              f"{list(INPUT_NAMES)} (export it with `drive-jepa export onnx`)")
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ModelCheckError(f"{path}: outputs {missing} are missing (has {sorted(outputs)}; expected "
                              f"{list(OUTPUT_NAMES)})")
    shapes = {**{k: tuple(v) for k, v in inputs.items()}, **{k: tuple(outputs[k]) for k in OUTPUT_NAMES}}
    for name, shape in shapes.items():
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise ModelCheckError(f"{path}: tensor '{name}' has dynamic or invalid shape {shape}; the runtime needs "
                                  f"a static-shape graph (re-export with `drive-jepa export onnx`)")
    video, proposals = shapes["video"], shapes["proposals"]
    if len(video) != 5 or video[:3] != (1, 3, 2):
        raise ModelCheckError(f"{path}: input 'video' is {video}, expected (1, 3, 2, H, W)")
    if len(proposals) != 4 or proposals[0] != 1 or proposals[3] != POSE_DIM:
        raise ModelCheckError(f"{path}: output 'proposals' is {proposals}, expected (1, Np, M, {POSE_DIM})")
    info = ModelInfo(image_width=video[4], image_height=video[3], num_proposals=proposals[1],
                     num_poses=proposals[2], ego_status_dim=shapes["ego_status"][-1],
                     variant=metadata.get("variant", "proposal"),
                     checkpoint_sha256=metadata.get("checkpoint_sha256", ""))
    wrong = [f"'{k}' is {shapes[k]}, expected {v}" for d in (info.input_shapes(), info.output_shapes())
             for k, v in d.items() if shapes[k] != v]
    if wrong:
        raise ModelCheckError(f"{path}: inconsistent tensor shapes: " + "; ".join(wrong))
    if info.ego_status_dim != EGO_STATUS_DIM:
        raise ModelCheckError(f"{path}: input 'ego_status' has {info.ego_status_dim} values, the runtime builds "
                              f"{EGO_STATUS_DIM} (drive_jepa.md §2.2)")
    stale = [f"metadata {k}={metadata[k]} but the graph has {getattr(info, k)}"
             for k in ("image_width", "image_height", "num_proposals", "num_poses")
             if k in metadata and str(getattr(info, k)) != metadata[k]]
    if stale:
        raise ModelCheckError(f"{path}: " + "; ".join(stale))
    if expect is not None:
        expect.check(info, path)
    return info


def check_onnx_file(path: str | Path, expect: ModelExpectation | None = None) -> ModelInfo:
    """Validate an ONNX file from its graph I/O and metadata, without creating an inference session (used before a
    TensorRT build, which takes minutes, so a wrong file fails first)."""
    import onnx

    path = require_file(path, "ONNX model")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise ModelCheckError(f"{path}: cannot be loaded as an ONNX model ({type(exc).__name__}: {exc}); the file is "
                              f"truncated or corrupt — re-export it with `drive-jepa export onnx`") from exc
    initializers = {i.name for i in proto.graph.initializer}

    def dims(value_info: Any) -> tuple[Any, ...]:
        return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                     for d in value_info.type.tensor_type.shape.dim)

    inputs = {i.name: dims(i) for i in proto.graph.input if i.name not in initializers}
    outputs = {o.name: dims(o) for o in proto.graph.output}
    metadata = {p.key: p.value for p in proto.metadata_props}
    return check_io(path, inputs, outputs, metadata, expect)


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """A JSON sidecar as a dict, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


__all__ = [
    "ModelCheckError", "ModelExpectation", "ModelInfo", "RUNTIME_FORMAT", "RUNTIME_FORMAT_VERSION", "check_checkpoint",
    "check_io", "check_onnx_file", "file_sha256", "read_sidecar", "require_file",
]
