"""Video clips for V-JEPA pretraining, read from scene files (the one data path every producer writes).

Each scene carries its front-camera frames ``Scene.camera_frames (F, H, W, 3)`` uint8 with ``camera_timestamps``
(the built-in world writes 12 frames at 2 Hz, -1.5 … +4.0 s). A clip is ``num_frames`` frames spaced ``1 / fps``
apart; every window that fits in a scene is one dataset item. Frames go through the same crop/resize/normalize path
as the planner (:mod:`drive_jepa_core.preprocess`). Defaults follow the Drive-JEPA pretraining config (drive_jepa.md
§9): 8 frames at 2 Hz, 512×256, no resize/aspect augmentation; horizontal flip is optional (the vendored upstream
trainer flips with p = 0.5; whether the authors kept it is unverified).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from drive_jepa_core.constants import DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH
from drive_jepa_core.preprocess import ImageGeometry, normalize_frames, resize_frame
from drive_jepa_core.scene import list_scenes, load_scene

CLIP_NUM_FRAMES = 8  # drive_jepa.md §9: dataset_fpcs [8, 8, 8]
CLIP_FPS = 2.0  # drive_jepa.md §9: fps 2
_STAMP_TOLERANCE = 0.051  # s; frames must sit within this of the nominal clip times (Scene.frame_at's tolerance)


@dataclass(frozen=True)
class ClipConfig:
    """What one training clip looks like."""

    num_frames: int = CLIP_NUM_FRAMES
    fps: float = CLIP_FPS
    width: int = DEFAULT_IMAGE_WIDTH
    height: int = DEFAULT_IMAGE_HEIGHT
    hflip_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.fps <= 0 or self.width < 1 or self.height < 1:
            raise ValueError(f"invalid clip config {self}")
        if not 0.0 <= self.hflip_prob <= 1.0:
            raise ValueError(f"hflip_prob must be in [0, 1], got {self.hflip_prob}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClipRef:
    """One clip: scene file and the camera-frame indices it uses."""

    path: Path
    frame_indices: tuple[int, ...]


class SceneClipDataset(Dataset):
    """All ``num_frames``-long, ``1/fps``-spaced frame windows of all scenes under ``root``.

    Items are float32 videos ``(3, T, H, W)``, ImageNet-normalized; a batch collates to ``(B, 3, T, H, W)``.
    Scenes without enough frames are skipped (counted in :attr:`skipped`); no clip at all raises ``ValueError``.
    """

    def __init__(self, root: str | Path, clip: ClipConfig | None = None) -> None:
        self.root = Path(root)
        self.clip = clip or ClipConfig()
        self.clips: list[ClipRef] = []
        self.skipped: list[Path] = []
        paths = list_scenes(self.root)
        for path in paths:
            scene = load_scene(path, load_frames=False)
            refs = clip_windows(scene.camera_timestamps, self.clip.num_frames, self.clip.fps)
            if not refs:
                self.skipped.append(path)
            self.clips.extend(ClipRef(path, idx) for idx in refs)
        if not self.clips:
            raise ValueError(f"no {self.clip.num_frames}-frame clips at {self.clip.fps} Hz in {len(paths)} scene "
                             f"file(s) under {self.root}")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        ref = self.clips[index]
        scene = load_scene(ref.path)
        frames = scene.camera_frames
        if frames is None or len(frames) <= max(ref.frame_indices):
            raise ValueError(f"{ref.path}: camera frames changed since the dataset was indexed")
        geometry = ImageGeometry.center_crop(frames.shape[2], frames.shape[1], self.clip.width, self.clip.height)
        clip = np.stack([resize_frame(frames[i], geometry) for i in ref.frame_indices])  # (T, H, W, 3) uint8
        if self.clip.hflip_prob > 0 and float(torch.rand(())) < self.clip.hflip_prob:
            clip = clip[:, :, ::-1]
        return torch.from_numpy(normalize_frames(clip))


def clip_windows(timestamps: np.ndarray, num_frames: int, fps: float) -> list[tuple[int, ...]]:
    """Frame-index windows ``(i_0, …, i_{T-1})`` whose stamps are ``1/fps`` apart (within 51 ms).

    Args:
        timestamps: ``(F,)`` increasing camera stamps in seconds.
    """
    stamps = np.asarray(timestamps, dtype=np.float64)
    if stamps.size < num_frames:
        return []
    period = 1.0 / fps
    windows = []
    for start in range(stamps.size):
        wanted = stamps[start] + period * np.arange(num_frames)
        idx = np.searchsorted(stamps, wanted)
        idx_lo = np.clip(idx - 1, 0, stamps.size - 1)
        idx_hi = np.clip(idx, 0, stamps.size - 1)
        nearest = np.where(np.abs(stamps[idx_lo] - wanted) <= np.abs(stamps[idx_hi] - wanted), idx_lo, idx_hi)
        if np.all(np.abs(stamps[nearest] - wanted) <= _STAMP_TOLERANCE) and np.all(np.diff(nearest) > 0):
            windows.append(tuple(int(i) for i in nearest))
    return windows
