"""Tiny REAL planners (H6's ViT + H7's planner, fixed seed, random weights) saved in the trained-model format
(``train.checkpoint.save_planner``), and camera frames, for the runtime tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from drive_jepa_core.scene.format import CameraCalibration
from drive_jepa_core.train.checkpoint import create_model, save_planner
from drive_jepa_core.world.render import default_front_camera

IMAGE_SIZE = (128, 64)  # model input (W, H): a 4 x 8 token grid
SOURCE_SIZE = (320, 180)  # camera frames: 16:9, so the centre crop and the resize both act
TINY_PLANNER: dict[str, Any] = {"d_model": 32, "d_ffn": 64, "num_heads": 4, "head_hidden": 32, "num_proposals": 8}


def save_tiny_planner(path: Path, seed: int = 0, variant: str = "proposal", **planner: Any) -> Path:
    """Build a one-block ViT-tiny planner with ``seed`` and save it as ``path/model.safetensors``; returns ``path``."""
    torch.manual_seed(seed)
    values = dict(TINY_PLANNER, **planner) if variant == "proposal" else {
        "d_model": 32, "num_heads": 4, "d_ffn": 64, "head_hidden": 32, "num_encoder_layers": 1,
        "num_decoder_layers": 1, **planner}
    model, spec = create_model(variant, "tiny", values, IMAGE_SIZE, encoder_overrides={"depth": 1})
    save_planner(model, spec, Path(path) / "model.safetensors")
    return Path(path)


def camera() -> CameraCalibration:
    """The built-in world's front camera at the source size."""
    return default_front_camera(*SOURCE_SIZE)


def frames(seed: int, count: int = 2) -> list[np.ndarray]:
    """``count`` smooth random uint8 RGB frames ``(180, 320, 3)`` (camera-like: low-frequency content)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (9, 16, 3)).astype(np.float32)
        out.append(cv2.resize(coarse, SOURCE_SIZE, interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8))
    return out


def ego_state(x: float = 0.0, speed: float = 8.0) -> np.ndarray:
    """``(7,)`` world ego state driving along +x at ``speed``."""
    return np.array([x, 0.0, 0.0, speed, 0.0, 0.0, 0.0])
