"""Trained planners on disk, and the resumable training state.

A planner is saved as one safetensors file whose header metadata carries the :class:`ModelSpec` JSON (everything
needed to rebuild the module: variant, encoder architecture, planner config, input image size), plus a readable
``.json`` sidecar. Nothing is unpickled when loading.

A training run directory (``drive-jepa train --out RUN_DIR``) holds::

    RUN_DIR/config.yaml              the resolved training config
    RUN_DIR/model.safetensors (+.json)   latest weights (what `drive-jepa eval --model RUN_DIR` and the runtime load)
    RUN_DIR/best.safetensors (+.json)    best validation score, when validating
    RUN_DIR/checkpoint/model.safetensors, optimizer.pt, state.json   resumable state (--resume)
    RUN_DIR/log.jsonl                one JSON record per logged step / epoch

``optimizer.pt`` is ``torch.save`` of ``optimizer.state_dict()`` (tensors, numbers, strings, lists, dicts only) and is
read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from drive_jepa_core.checkpoints import CheckpointError, load_state_strict, load_vjepa2_encoder
from drive_jepa_core.models.planner_config import (
    LEGACY_POSE_SCALE,
    PerceptionFreeConfig,
    PlannerConfig,
    PlannerLossWeights,
)
from drive_jepa_core.models.vit import EncoderConfig, VisionTransformer, encoder_config

PLANNER_FORMAT = "drive_jepa_planner"
PLANNER_FORMAT_VERSION = "1"
MODEL_FILE = "model.safetensors"
BEST_FILE = "best.safetensors"
STATE_DIR = "checkpoint"


@dataclass
class ModelSpec:
    """How to rebuild a trained planner."""

    variant: str  # "proposal" | "perception_free"
    encoder: dict[str, Any]  # EncoderConfig.to_dict()
    planner: dict[str, Any] = field(default_factory=dict)  # PlannerConfig / PerceptionFreeConfig as a dict
    image_width: int = 512
    image_height: int = 256

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image_width, self.image_height

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CheckpointError(f"unknown model spec fields {unknown}")
        data = dict(data)
        if "planner" in data and "pose_scale" not in data["planner"]:
            # Saved before the heads had an output scale: their raw output was metres.
            data["planner"] = {**data["planner"], "pose_scale": list(LEGACY_POSE_SCALE)}
        return cls(**data)

    def planner_config(self) -> PlannerConfig | PerceptionFreeConfig:
        return planner_config_from_dict(self.variant, self.planner)


def planner_config_from_dict(variant: str, values: dict[str, Any]) -> PlannerConfig | PerceptionFreeConfig:
    """Build the (frozen) planner config of ``variant`` from plain values (YAML/JSON: lists become tuples)."""
    values = dict(values)
    if variant == "proposal":
        if isinstance(values.get("loss"), dict):
            values["loss"] = PlannerLossWeights(**values["loss"])
        if "anchor_heights" in values:
            values["anchor_heights"] = tuple(float(z) for z in values["anchor_heights"])
        cls: type = PlannerConfig
    elif variant == "perception_free":
        cls = PerceptionFreeConfig
    else:
        raise ValueError(f"unknown planner variant {variant!r}")
    if "pose_scale" in values:
        values["pose_scale"] = tuple(float(s) for s in values["pose_scale"])
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; expected a subset of {sorted(names)}")
    return cls(**values)


def build_model(spec: ModelSpec, encoder: VisionTransformer | None = None,
                activation_checkpointing: bool = False) -> nn.Module:
    """A freshly initialized planner of ``spec`` (with ``encoder`` as its encoder when given)."""
    from drive_jepa_core.models.perception_free import PerceptionFreePlanner
    from drive_jepa_core.models.proposal_planner import ProposalPlanner

    if encoder is None:
        encoder = VisionTransformer(EncoderConfig.from_dict(spec.encoder), activation_checkpointing)
    config = spec.planner_config()
    if spec.variant == "proposal":
        return ProposalPlanner(encoder, config)  # type: ignore[arg-type]
    return PerceptionFreePlanner(encoder, config, image_hw=(spec.image_height, spec.image_width))  # type: ignore[arg-type]


def create_model(variant: str, encoder_size: str, planner: dict[str, Any], image_size: tuple[int, int],
                 encoder_overrides: dict[str, Any] | None = None, encoder_checkpoint: str | Path | None = None,
                 activation_checkpointing: bool = False) -> tuple[nn.Module, ModelSpec]:
    """Build the model to train: encoder random (``encoder_size`` + overrides) or loaded from a pretrain/V-JEPA 2
    checkpoint (then the checkpoint fixes the architecture), planner from ``planner`` overrides."""
    if encoder_checkpoint:
        encoder = load_vjepa2_encoder(resolve_encoder_checkpoint(encoder_checkpoint))
        encoder.use_activation_checkpointing = activation_checkpointing
        encoder.train()
    else:
        encoder = VisionTransformer(encoder_config(encoder_size, **(encoder_overrides or {})),
                                    activation_checkpointing)
    planner_values = asdict(planner_config_from_dict(variant, planner or {}))
    spec = ModelSpec(variant=variant, encoder=encoder.config.to_dict(), planner=planner_values,
                     image_width=int(image_size[0]), image_height=int(image_size[1]))
    return build_model(spec, encoder), spec


def resolve_encoder_checkpoint(path: str | Path) -> Path:
    """A weights file, or a pretraining run directory: then its target (EMA) encoder, else its encoder."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        for pattern in ("target_encoder*.safetensors", "*target_encoder*.safetensors", "encoder*.safetensors",
                        "*encoder*.safetensors"):
            found = sorted(path.glob(pattern))
            if found:
                return found[0]
        raise CheckpointError(f"{path} holds no '*encoder*.safetensors' weights")
    raise CheckpointError(f"encoder checkpoint {path} does not exist")


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def save_planner(model: nn.Module, spec: ModelSpec, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write the planner weights + spec (header metadata and ``.json`` sidecar). ``extra``: e.g. training step."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": PLANNER_FORMAT, "format_version": PLANNER_FORMAT_VERSION}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in unwrap(model).state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={**header, "spec": json.dumps(spec.to_json(), sort_keys=True),
                                           "extra": json.dumps(extra or {}, sort_keys=True)})
    tmp.replace(path)
    path.with_suffix(".json").write_text(
        json.dumps({**header, "spec": spec.to_json(), "extra": extra or {}}, indent=2, sort_keys=True) + "\n")
    return path


def read_planner_spec(path: str | Path) -> tuple[ModelSpec, dict[str, Any]]:
    """(spec, extra) from a planner file's header, without loading the weights."""
    path = resolve_planner_path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if metadata.get("format") != PLANNER_FORMAT:
        raise CheckpointError(f"{path}: not a Drive-JEPA planner file (format {metadata.get('format')!r})")
    if metadata.get("format_version") != PLANNER_FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported planner format_version {metadata.get('format_version')!r}")
    try:
        return ModelSpec.from_json(json.loads(metadata["spec"])), json.loads(metadata.get("extra", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: header has no valid model spec ({exc})") from exc


def resolve_planner_path(path: str | Path, prefer_best: bool = False) -> Path:
    """A planner file, or a run directory: its ``best.safetensors`` if asked for and present, else
    ``model.safetensors``."""
    path = Path(path)
    if path.is_dir():
        if prefer_best and (path / BEST_FILE).exists():
            return path / BEST_FILE
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"planner weights {path} do not exist")
    return path


def load_planner(path: str | Path, prefer_best: bool = False,
                 device: str | torch.device = "cpu") -> tuple[nn.Module, ModelSpec]:
    """Rebuild and strictly load a saved planner (file or run directory); returned in eval mode."""
    path = resolve_planner_path(path, prefer_best)
    spec, _ = read_planner_spec(path)
    model = build_model(spec)
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    load_state_strict(model, state, source=str(path))
    return model.to(device).eval(), spec


# ---------------------------------------------------------------------------------------------------------------------
# Resumable training state
# ---------------------------------------------------------------------------------------------------------------------
def save_training_state(run_dir: str | Path, model: nn.Module, spec: ModelSpec, optimizer: torch.optim.Optimizer,
                        state: dict[str, Any]) -> Path:
    """Write weights, optimizer state and the JSON ``state`` (epoch, step, …) under ``RUN_DIR/checkpoint``."""
    folder = Path(run_dir) / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_planner(model, spec, folder / MODEL_FILE, extra={"step": state.get("step")})
    tmp = folder / "optimizer.pt.tmp"
    torch.save(optimizer.state_dict(), tmp)
    tmp.replace(folder / "optimizer.pt")
    (folder / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    return folder


def load_training_state(run_dir: str | Path, model: nn.Module,
                        optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Restore weights (and optimizer state) saved by :func:`save_training_state`; returns the JSON state."""
    folder = Path(run_dir) / STATE_DIR
    if not (folder / "state.json").exists():
        raise FileNotFoundError(f"no resumable checkpoint in {folder}")
    path = folder / MODEL_FILE
    with safe_open(str(path), framework="pt", device="cpu") as fh:
        state_dict = {k: fh.get_tensor(k) for k in fh.keys()}
    load_state_strict(unwrap(model), state_dict, source=str(path))
    if optimizer is not None:
        opt_state = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(opt_state)
    return json.loads((folder / "state.json").read_text())


__all__ = [
    "BEST_FILE", "MODEL_FILE", "ModelSpec", "PLANNER_FORMAT", "build_model", "create_model", "load_planner",
    "load_training_state", "planner_config_from_dict", "read_planner_spec", "resolve_encoder_checkpoint",
    "resolve_planner_path", "save_planner", "save_training_state", "unwrap",
]
