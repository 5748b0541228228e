"""Short camera GIFs of a scene's frames or of a whole log (imageio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drive_jepa_core.scene.format import CameraCalibration, Scene
from drive_jepa_core.world.log import WorldLog

GIF_FPS = 2.0  # the scenes' camera rate (2 Hz keyframes)


def save_gif(frames: np.ndarray, path: str | Path, fps: float = GIF_FPS) -> Path:
    """Write ``frames (F, H, W, 3)`` uint8 as a looping GIF."""
    import imageio.v3 as iio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must have shape (F, H, W, 3) with F > 0, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(out, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return out


def scene_gif(scene: Scene, path: str | Path, fps: float = GIF_FPS) -> Path:
    """GIF of a scene's camera frames."""
    if scene.camera_frames is None or len(scene.camera_frames) == 0:
        raise ValueError(f"scene {scene.token} has no camera frames (generated with frames=False?)")
    return save_gif(scene.camera_frames, path, fps)


def log_gif(log: WorldLog, path: str | Path, camera: CameraCalibration | None = None, period: float = 0.5,
            fps: float = GIF_FPS) -> Path:
    """Render a whole log every ``period`` seconds and write it as a GIF."""
    from drive_jepa_core.world.render import default_front_camera
    from drive_jepa_core.world.scenes import make_renderer, render_frames

    camera = camera or default_front_camera()
    stride = max(int(round(period / 0.1)), 1)
    steps = list(range(0, log.num_steps, stride))
    frames = render_frames(log, steps, make_renderer(log, camera))
    return save_gif(np.stack([frames[k] for k in steps]), path, fps)
