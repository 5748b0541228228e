"""Planner training samples from a directory of scenes (one sample per scene, i.e. per planning instant t0).

Each sample is built with the same preprocessing the runtime uses (:mod:`drive_jepa_core.preprocess`): the camera
frames at t-0.5 s and t are centre-cropped, resized and ImageNet-normalized into a 2-frame video, the projection is
adjusted to the model input, and the ego status is the (11,) vector of drive_jepa.md §2.2. Targets are the logged
("human") future and up to ``max_teachers`` MTD pseudo-teachers (drive_jepa.md §6.3) drawn afresh every time the
sample is read, padded to a fixed count with a validity mask.

The data of this project are small, so decoded and resized frames can be kept in memory (``cache=True``): the PNG
decode of a scene then happens once per process instead of once per epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from drive_jepa_core.constants import (
    CAMERA_FRAME_GAP,
    DEFAULT_IMAGE_HEIGHT,
    DEFAULT_IMAGE_WIDTH,
    NUM_TRAJ_POSES,
)
from drive_jepa_core.preprocess import ImageGeometry, ego_status_vector, normalize_frames, resize_frame
from drive_jepa_core.scene import Scene, SceneFormatError, list_scenes, load_scene

# Pseudo-teachers drawn per sample per step: "up to 4" (drive_jepa.md §6.3, §13).
MAX_TEACHERS_PER_SAMPLE = 4
TEACHERS_SUFFIX = ".teachers.npy"


def teachers_path(scene_path: str | Path, teachers_dir: str | Path | None = None) -> Path:
    """Where the pseudo-teachers of a scene live: ``<scene>.teachers.npy`` next to the scene file, or under
    ``teachers_dir`` with the same file name when a separate cache directory is used."""
    scene_path = Path(scene_path)
    name = scene_path.name[: -len(".npz")] if scene_path.name.endswith(".npz") else scene_path.name
    folder = Path(teachers_dir) if teachers_dir is not None else scene_path.parent
    return folder / (name + TEACHERS_SUFFIX)


def load_teachers(path: str | Path, num_poses: int = NUM_TRAJ_POSES) -> np.ndarray:
    """Pseudo-teacher trajectories ``(n, num_poses, 3)`` float32 (n may be 0); a missing file means none."""
    path = Path(path)
    if not path.exists():
        return np.zeros((0, num_poses, 3), np.float32)
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 3 or arr.shape[1:] != (num_poses, 3):
        raise ValueError(f"{path}: pseudo-teachers must have shape (n, {num_poses}, 3), got {arr.shape}")
    return arr.astype(np.float32, copy=False)


@dataclass
class _Prepared:
    """What is cached per scene: everything except the normalization and the teacher draw."""

    frames: np.ndarray  # (2, H, W, 3) uint8, resized, temporal order [t-0.5 s, t]
    ego_status: np.ndarray  # (11,) float32
    ego2image: np.ndarray  # (3, 4) float32, into the model input image
    trajectory: np.ndarray  # (M, 3) float32 human future
    command: int
    ego_state: np.ndarray  # (7,) float32 t0 ego state (x, y, heading, vx, vy, ax, ay), world frame
    teachers: np.ndarray  # (n, M, 3) float32


def prepare_scene_inputs(scene: Scene, geometry: ImageGeometry | None = None,
                         image_size: tuple[int, int] = (DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_HEIGHT)
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model inputs of one scene: video ``(3, 2, H, W)`` float32, ego status ``(11,)``, ego2image ``(3, 4)``.

    ``image_size`` is (width, height) of the model input; ``geometry`` overrides it when given.
    """
    frames, ego_status, ego2image = _scene_inputs_uint8(scene, geometry, image_size)
    return normalize_frames(frames), ego_status, ego2image


def _scene_inputs_uint8(scene: Scene, geometry: ImageGeometry | None,
                        image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if scene.camera is None:
        raise SceneFormatError(f"scene {scene.token} has no camera calibration; the planner needs one")
    if geometry is None:
        geometry = ImageGeometry.center_crop(scene.camera.width, scene.camera.height, *image_size)
    frame_prev = scene.frame_at(-CAMERA_FRAME_GAP)
    frame_now = scene.frame_at(0.0)
    frames = np.stack([resize_frame(frame_prev, geometry), resize_frame(frame_now, geometry)])
    state = scene.ego_states[scene.t0_index]
    ego_status = ego_status_vector(state[3:5], state[5:7], scene.command)
    ego2image = geometry.adjust_projection(scene.camera.ego2image()).astype(np.float32)
    return frames, ego_status, ego2image


class PlannerDataset(Dataset):
    """One training sample per scene file.

    Args:
        scenes: a scene directory (searched recursively) or an explicit list of scene files.
        image_size: model input (width, height); tests and the tiny config use small images such as (128, 64).
        teachers_dir: where ``<scene>.teachers.npy`` files are; ``None`` = next to each scene.
        max_teachers: pseudo-teachers drawn per read (padded to this count with ``teacher_mask`` False).
        teacher_draws: independent draws per read, D (the reference redraws for every refinement iteration).
        use_teachers: ``False`` skips the teacher files entirely (baselines without MTD).
        cache: keep the prepared uint8 frames and targets in memory after the first read.

    A sample is a dict:
        ``video`` (3, 2, H, W) float32, ``ego_status`` (11,) float32, ``ego2image`` (3, 4) float32,
        ``trajectory`` (M, 3) float32, ``command`` () int64, ``ego_state`` (7,) float32,
        ``teachers`` (D, K, M, 3) float32, ``teacher_mask`` (D, K) bool, ``num_teachers`` () int64 (size of the whole
        pseudo-teacher set), ``index`` () int64, ``scene_path`` str.
    """

    def __init__(self, scenes: str | Path | Sequence[str | Path],
                 image_size: tuple[int, int] = (DEFAULT_IMAGE_WIDTH, DEFAULT_IMAGE_HEIGHT),
                 teachers_dir: str | Path | None = None, max_teachers: int = MAX_TEACHERS_PER_SAMPLE,
                 use_teachers: bool = True, teacher_draws: int = 1, cache: bool = True,
                 num_poses: int = NUM_TRAJ_POSES) -> None:
        if isinstance(scenes, (str, Path)):
            self.paths = list_scenes(scenes)
        else:
            self.paths = [Path(p) for p in scenes]
        if not self.paths:
            raise ValueError(f"no scene files (*.npz) found in {scenes}")
        width, height = int(image_size[0]), int(image_size[1])
        if width <= 0 or height <= 0 or width % 16 or height % 16:
            raise ValueError(f"image_size must be positive multiples of the 16-pixel patch, got {image_size}")
        if max_teachers < 0:
            raise ValueError(f"max_teachers must be >= 0, got {max_teachers}")
        if teacher_draws < 1:
            raise ValueError(f"teacher_draws must be >= 1, got {teacher_draws}")
        self.image_size = (width, height)
        self.teachers_dir = Path(teachers_dir) if teachers_dir is not None else None
        self.max_teachers = int(max_teachers)
        self.use_teachers = bool(use_teachers)
        self.teacher_draws = int(teacher_draws)
        self.num_poses = int(num_poses)
        self.cache_enabled = bool(cache)
        self._cache: dict[int, _Prepared] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _prepare(self, index: int) -> _Prepared:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        path = self.paths[index]
        scene = load_scene(path)
        try:
            frames, ego_status, ego2image = _scene_inputs_uint8(scene, None, self.image_size)
            trajectory = scene.future_trajectory(self.num_poses).astype(np.float32)
        except (IndexError, SceneFormatError) as exc:
            raise SceneFormatError(f"{path}: cannot build a training sample: {exc}") from exc
        if self.use_teachers:
            teachers = load_teachers(teachers_path(path, self.teachers_dir), self.num_poses)
        else:
            teachers = np.zeros((0, self.num_poses, 3), np.float32)
        prepared = _Prepared(frames=frames, ego_status=ego_status, ego2image=ego2image, trajectory=trajectory,
                             command=int(scene.command),
                             ego_state=scene.ego_states[scene.t0_index].astype(np.float32), teachers=teachers)
        if self.cache_enabled:
            self._cache[index] = prepared
        return prepared

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.paths):
            raise IndexError(f"sample {index} out of range for {len(self.paths)} scenes")
        p = self._prepare(index)
        D, K = self.teacher_draws, self.max_teachers
        teachers = np.zeros((D, K, self.num_poses, 3), np.float32)
        mask = np.zeros((D, K), bool)
        n = min(K, len(p.teachers))
        for d in range(D if n else 0):
            # Without replacement; torch's RNG is seeded per process and per DataLoader worker, so draws differ
            # across workers and ranks.
            pick = torch.randperm(len(p.teachers))[:n].numpy()
            teachers[d, :n] = p.teachers[pick]
            mask[d, :n] = True
        return {
            "video": torch.from_numpy(normalize_frames(p.frames)),
            "ego_status": torch.from_numpy(p.ego_status),
            "ego2image": torch.from_numpy(p.ego2image),
            "trajectory": torch.from_numpy(p.trajectory),
            "command": torch.tensor(p.command, dtype=torch.int64),
            "ego_state": torch.from_numpy(p.ego_state),
            "teachers": torch.from_numpy(teachers),
            "teacher_mask": torch.from_numpy(mask),
            "num_teachers": torch.tensor(len(p.teachers), dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
            "scene_path": str(self.paths[index]),
        }


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensor fields along a new batch dimension; string fields become lists."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key, value in samples[0].items():
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(value, torch.Tensor) else list(values)
    return batch


__all__ = [
    "MAX_TEACHERS_PER_SAMPLE", "PlannerDataset", "TEACHERS_SUFFIX", "collate_samples", "load_teachers",
    "prepare_scene_inputs", "teachers_path",
]
