"""Planner training configuration: a YAML file with four sections (``model``, ``data``, ``optim``, ``train``).

Defaults are the paper's (drive_jepa.md §10, §13): Adam(W) without weight decay, LR 1e-4 with the encoder at 0.1×,
constant LR, 20 epochs, batch 32 per process (2 processes → effective 64), GridMask p=0.7, pseudo-teacher loss on.
``configs/train_vitl.yaml`` is the paper-size run; ``configs/train_tiny.yaml`` a CPU-sized one. Unknown keys are
errors (a typo must not silently train something else).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from drive_jepa_core.constants import DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH
from drive_jepa_core.train.augment import GRID_MASK_PROB, GRID_MASK_RATIO
from drive_jepa_core.train.dataset import MAX_TEACHERS_PER_SAMPLE

MODEL_VARIANTS = ("proposal", "perception_free")


@dataclass
class ModelSection:
    variant: str = "proposal"  # "proposal" (Drive-JEPA perception-based) | "perception_free" (Sec. 3.2 baseline)
    encoder_size: str = "large"  # models.vit.ENCODER_SIZES key; ViT-L/16 in the paper (drive_jepa.md §3)
    encoder_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {depth: 2} for CPU tests
    # Pretrained encoder weights (a `drive-jepa pretrain` run or an upstream V-JEPA 2 checkpoint); null = random init.
    encoder_checkpoint: str | None = None
    activation_checkpointing: bool = False
    planner: dict[str, Any] = field(default_factory=dict)  # PlannerConfig / PerceptionFreeConfig field overrides
    mtd: bool = True  # multimodal trajectory distillation (pseudo-teacher loss); proposal variant only

    def __post_init__(self) -> None:
        if self.variant not in MODEL_VARIANTS:
            raise ValueError(f"model.variant must be one of {MODEL_VARIANTS}, got {self.variant!r}")


@dataclass
class DataSection:
    image_width: int = DEFAULT_IMAGE_WIDTH
    image_height: int = DEFAULT_IMAGE_HEIGHT
    teachers_dir: str | None = None  # null: `<scene>.teachers.npy` next to each scene
    max_teachers: int = MAX_TEACHERS_PER_SAMPLE
    num_workers: int = 0  # DataLoader workers per process
    cache: bool = True  # keep prepared samples in memory


@dataclass
class OptimSection:
    lr: float = 1e-4  # drive_jepa.md §10
    encoder_lr_scale: float = 0.1  # encoder at 0.1 × lr (§3, §10)
    weight_decay: float = 0.0  # upstream Adam has none; AdamW with 0 is exactly Adam
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 0.0  # 0 = off, as upstream
    warmup_steps: int = 0  # upstream: constant LR, no warmup


@dataclass
class TrainSection:
    epochs: int = 20
    max_steps: int | None = None  # stop early after this many optimizer steps (tests, benchmarks)
    batch_size: int = 32  # per process
    seed: int = 0
    amp: bool = True  # bf16 autocast, on CUDA only (CPU runs full fp32)
    grid_mask_prob: float = GRID_MASK_PROB
    grid_mask_ratio: float = GRID_MASK_RATIO
    score_version: str = "v2"  # training score target: v2 EPDMS without EC (drive_jepa.md §5) | v1 PDMS
    score_workers: int = 0  # processes scoring proposals per training process (upstream: a 16-process pool)
    score_cache_scenes: int = 1024  # scoring caches kept per scoring process (~3 MB each for generated scenes)
    cpu_threads: int = 0  # torch threads per process on CPU; 0 = cores / processes (OMP_NUM_THREADS wins if set)
    log_every: int = 10  # steps between JSONL records
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = once per epoch
    validate: bool = True  # with --val: mean simulated score of the selected proposal each epoch, keep the best

    def __post_init__(self) -> None:
        if self.score_version not in ("v1", "v2"):
            raise ValueError(f"train.score_version must be 'v1' or 'v2', got {self.score_version!r}")
        if self.batch_size <= 0 or self.epochs <= 0:
            raise ValueError("train.batch_size and train.epochs must be positive")
        if self.cpu_threads < 0:
            raise ValueError(f"train.cpu_threads must be >= 0, got {self.cpu_threads}")
        if self.score_workers < 0 or self.score_cache_scenes <= 0:
            raise ValueError("train.score_workers must be >= 0 and train.score_cache_scenes positive")


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)

    @property
    def image_size(self) -> tuple[int, int]:
        """Model input (width, height)."""
        return self.data.image_width, self.data.image_height

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["optim"]["betas"] = list(self.optim.betas)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        data = dict(data or {})
        sections = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"unknown config sections {unknown}; expected {sorted(sections)}")
        kwargs = {}
        for f in fields(cls):
            section_cls = {"model": ModelSection, "data": DataSection, "optim": OptimSection,
                           "train": TrainSection}[f.name]
            kwargs[f.name] = _section(section_cls, f.name, data.get(f.name) or {})
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _section(section_cls: type, name: str, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"config section '{name}' must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in config section '{name}'; expected a subset of {sorted(names)}")
    values = dict(values)
    if "betas" in values:
        values["betas"] = tuple(float(b) for b in values["betas"])
    return section_cls(**values)


def resolve_config_path(name: str | Path) -> Path:
    """A training YAML path; a bare name such as ``tiny`` or ``vitl`` means the packaged
    ``configs/train_<name>.yaml``."""
    path = Path(name)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        path = Path(__file__).resolve().parent.parent / "configs" / f"train_{path.name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"training config {name} does not exist")
    return path


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``SECTION.KEY=VALUE`` overrides (values parsed as YAML) to a raw config mapping, in place."""
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(f"config override must be SECTION.KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"config override {key}: {part} is not a mapping")
        node[parts[-1]] = yaml.safe_load(value)
    return data


def read_config_mapping(name: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a training YAML. A top-level ``base: NAME`` (packaged name, or a path relative to the file)
    starts from that config: each key given in a section replaces the base's value for that key, whole (so
    ``model.planner`` is replaced, not merged)."""
    path = resolve_config_path(name)
    if path.resolve() in _seen:
        raise ValueError(f"{path}: circular 'base' chain {[str(p) for p in _seen]}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a training config must be a mapping")
    base = raw.pop("base", None)
    if base is None:
        return raw
    relative = path.parent / str(base)
    merged = read_config_mapping(relative if relative.exists() else base, (*_seen, path.resolve()))
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def load_train_config(name: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML (path or packaged name, see :func:`read_config_mapping`) and apply
    ``SECTION.KEY=VALUE`` overrides."""
    path = resolve_config_path(name)
    try:
        return TrainConfig.from_dict(apply_overrides(read_config_mapping(path), overrides))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


__all__ = ["DataSection", "MODEL_VARIANTS", "ModelSection", "OptimSection", "TrainConfig", "TrainSection",
           "apply_overrides", "load_train_config", "read_config_mapping", "resolve_config_path"]
