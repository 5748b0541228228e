"""The human report of a replay: ``report.html`` with PNGs under ``report/``.

* camera frames with every candidate (coloured by final score), the selected trajectory (red) and the logged future
  (green) projected onto the ground plane (z = 0 in the rear-axle frame) through the camera calibration;
* bird's-eye plots of the proposals in the ego frame (forward up);
* metrics over time (open-loop error, latency, diversity, selected score).
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drive_jepa_core.geometry import ego_corners
from drive_jepa_core.scene.format import CameraCalibration

MIN_DEPTH_M = 0.5  # points closer to the camera plane than this are not drawn (they project far off-image)
DRAW_MIN_WIDTH = 640  # small frames are upscaled (nearest) to at least this width so the lines stay readable
SEGMENT_SAMPLES = 8  # points per trajectory segment, so a polyline clipped at MIN_DEPTH_M still reaches the image
SELECTED_BGR, TRUTH_BGR = (40, 40, 230), (60, 200, 60)


def project_ground_points(points_xy: np.ndarray, ego2image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project ego-frame ground points ``(N, 2)`` (z = 0) with a ``(3, 4)`` ego→pixel matrix.

    Returns:
        pixels ``(N, 2)`` and ``(N,)`` bool: in front of the camera by at least :data:`MIN_DEPTH_M`.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    hom = np.concatenate([pts, np.zeros((len(pts), 1)), np.ones((len(pts), 1))], axis=1) @ np.asarray(ego2image).T
    depth = hom[:, 2]
    valid = depth > MIN_DEPTH_M
    pixels = hom[:, :2] / np.where(valid, depth, 1.0)[:, None]
    return pixels, valid


def _densify(traj_xy: np.ndarray) -> np.ndarray:
    """The polyline from the ego origin through ``traj_xy`` with :data:`SEGMENT_SAMPLES` points per segment."""
    pts = np.concatenate([np.zeros((1, 2)), np.asarray(traj_xy, np.float64)[:, :2]])
    s = np.linspace(0.0, 1.0, SEGMENT_SAMPLES, endpoint=False)
    dense = [a + (b - a) * s[:, None] for a, b in itertools.pairwise(pts)]
    return np.concatenate([*dense, pts[-1:]])


def _draw_polyline(img: np.ndarray, traj_xy: np.ndarray, ego2image: np.ndarray, colour: tuple[int, int, int],
                   thickness: int) -> None:
    pixels, valid = project_ground_points(_densify(traj_xy), ego2image)
    pixels = np.clip(pixels, -1e4, 1e4)
    for a, b, va, vb in zip(pixels[:-1], pixels[1:], valid[:-1], valid[1:], strict=True):
        if va and vb:
            cv2.line(img, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))), colour,
                     thickness, cv2.LINE_AA)


def draw_camera_overlay(frame_rgb: np.ndarray, camera: CameraCalibration, proposals: np.ndarray,
                        final_scores: np.ndarray, selected: int, truth: np.ndarray | None) -> np.ndarray:
    """BGR image: ``frame_rgb`` with the candidates ``(Np, M, 3)``, the selected one and the truth ``(M, 3)`` drawn."""
    scale = max(1, int(np.ceil(DRAW_MIN_WIDTH / frame_rgb.shape[1])))
    img = np.ascontiguousarray(frame_rgb[:, :, ::-1])
    if scale > 1:
        img = cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    ego2image = np.diag([scale, scale, 1.0]) @ camera.ego2image()
    scores = np.asarray(final_scores, np.float64)
    lo, hi = float(scores.min()), float(scores.max())
    norm = np.zeros_like(scores) if hi <= lo else (scores - lo) / (hi - lo)
    colours = cv2.applyColorMap(np.round(norm * 255).astype(np.uint8).reshape(-1, 1), cv2.COLORMAP_VIRIDIS)[:, 0]
    for i in np.argsort(scores):  # best drawn last (on top)
        if i != selected:
            _draw_polyline(img, proposals[i], ego2image, tuple(int(c) for c in colours[i]), max(1, scale // 2))
    if truth is not None:
        _draw_polyline(img, truth, ego2image, TRUTH_BGR, 2 * scale)
    _draw_polyline(img, proposals[selected], ego2image, SELECTED_BGR, 2 * scale)
    return img


def plot_bev(path: Path, proposals: np.ndarray, final_scores: np.ndarray, selected: int, truth: np.ndarray | None,
             title: str) -> Path:
    """Bird's-eye PNG in the ego frame (forward up, left to the left)."""
    from matplotlib import cm
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    fig = Figure(figsize=(4.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    scores = np.asarray(final_scores, np.float64)
    lo, hi = float(scores.min()), float(scores.max())
    norm = np.zeros_like(scores) if hi <= lo else (scores - lo) / (hi - lo)
    for i in np.argsort(scores):
        traj = np.concatenate([np.zeros((1, 2)), proposals[i][:, :2]])
        ax.plot(-traj[:, 1], traj[:, 0], color=cm.viridis(norm[i]), lw=1.0, alpha=0.8)
    if truth is not None:
        traj = np.concatenate([np.zeros((1, 2)), truth[:, :2]])
        ax.plot(-traj[:, 1], traj[:, 0], color="#2ca02c", lw=2.0, ls="--", label="logged future")
    traj = np.concatenate([np.zeros((1, 2)), proposals[selected][:, :2]])
    ax.plot(-traj[:, 1], traj[:, 0], color="#d62728", lw=2.2, label="selected")
    box = ego_corners(np.zeros(3))
    ax.add_patch(Polygon(np.stack([-box[:, 1], box[:, 0]], axis=-1), closed=True, color="#444444"))
    reach = max(10.0, float(np.abs(proposals[..., :2]).max()) + 3.0)
    if truth is not None:
        reach = max(reach, float(np.abs(truth[:, :2]).max()) + 3.0)
    ax.set_xlim(-reach / 2, reach / 2)
    ax.set_ylim(-6.0, reach)
    ax.set_aspect("equal")
    ax.set_xlabel("left ← y [m] → right")
    ax.set_ylabel("forward x [m]")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def plot_timeline(path: Path, state: Any) -> Path:
    """Metrics over time: open-loop error, latency, diversity and the selected final score."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plans = state.plans
    t0 = float(plans[0].stamp) if plans else 0.0
    t = np.array([float(p.stamp) - t0 for p in plans])
    fig = Figure(figsize=(8.0, 7.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 1, sharex=True)
    ade = np.array([e["ade_4s"] if e is not None and "ade_4s" in e else np.nan for e in state.per_frame_errors])
    fde = np.array([e["fde_4s"] if e is not None and "fde_4s" in e else np.nan for e in state.per_frame_errors])
    axes[0].plot(t, ade, ".-", label="ADE@4s")
    axes[0].plot(t, fde, ".-", label="FDE@4s")
    axes[0].set_ylabel("error [m]")
    axes[0].legend(fontsize=8)
    axes[1].plot(t, [p.timings.total_ms for p in plans], ".-", color="#9467bd")
    axes[1].set_ylabel("latency [ms]")
    axes[2].plot(t, state.diversity, ".-", label="diversity D")
    axes[2].plot(t, [float(p.final_scores[p.selected_index]) for p in plans], ".-", label="selected final score")
    resets = [ti for ti, p in zip(t, plans, strict=True) if not p.valid]
    for ax in axes:
        for ti in resets:
            ax.axvline(ti, color="#bbbbbb", lw=0.6, zorder=0)
    axes[2].set_ylabel("[0, 1]")
    axes[2].set_xlabel("time since first plan [s] (grey: no momentum)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def _table(rows: list[tuple[str, Any]]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{fmt(v)}</td></tr>" for k, v in rows) + "</table>"


def write_report(out: Path, metrics: dict[str, Any], state: Any) -> Path:
    """Write ``out/report.html`` and its PNGs in ``out/report/``; returns the HTML path."""
    folder = out / "report"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    figures: list[tuple[str, str, str]] = []  # (camera png, bev png, caption)
    for plan_index, (frame, camera) in sorted(state.report_frames.items()):
        plan, truth = state.plans[plan_index], state.truth[plan_index]
        proposals = np.asarray(plan.proposals, np.float64)
        cam = folder / f"camera_{plan_index:05d}.png"
        cv2.imwrite(str(cam), draw_camera_overlay(frame, camera, proposals, plan.final_scores, plan.selected_index,
                                                  truth))
        err = state.per_frame_errors[plan_index] if state.per_frame_errors else None
        rel = float(plan.stamp) - float(state.plans[0].stamp)
        ade = f"ADE@4s {err['ade_4s']:.2f} m" if err and "ade_4s" in err else "no 4 s future"
        short = f"t = {rel:.1f} s · {ade}"
        caption = (f"plan {plan_index} · {short} · selected {plan.selected_index} "
                   f"(S' = {float(plan.final_scores[plan.selected_index]):.3f}) · stamp {plan.stamp:.3f}")
        bev = plot_bev(folder / f"bev_{plan_index:05d}.png", proposals, plan.final_scores, plan.selected_index,
                       truth, short)
        figures.append((cam.name, bev.name, caption))
    timeline = plot_timeline(folder / "timeline.png", state) if state.plans else None

    f, ol, tc = metrics["frames"], metrics["open_loop"], metrics["temporal_consistency"]
    lat = metrics["latency_ms"]["total"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>drive-jepa replay</title><style>"
        "body{font-family:sans-serif;margin:20px} table{border-collapse:collapse;margin:8px 0 16px}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left} img{margin:4px;vertical-align:top}"
        "</style></head><body>",
        f"<h1>Replay of {html.escape(str(metrics['bag']['path']))}</h1>",
        "<h2>Planner and inputs</h2>",
        _table([(k, v) for k, v in metrics["planner"].items()]
               + [("topics", ", ".join(f"{k}={v}" for k, v in metrics["bag"]["topics"].items())),
                  ("camera calibration", metrics.get("camera_calibration"))]),
        "<h2>Frames</h2>",
        _table([("images", f["images"]), ("planned", f["planned"]), ("skipped", f["skipped_total"])]
               + [(f"skipped: {k}", v) for k, v in f["skipped"].items() if v]
               + [("no 4 s odometry future", f["no_future"]), ("evaluated open loop", f["evaluated"]),
                  ("momentum applied", f["momentum_applied"])]),
        "<h2>Open loop (vs the bag's odometry)</h2>", _table(list(ol.items())),
        "<h2>Temporal consistency</h2>", _table(list(tc.items())),
        "<h2>Diversity and latency</h2>",
        _table([("diversity D (mean)", metrics["diversity"]["mean"])]
               + [(f"latency total {k} [ms]", v) for k, v in lat.items()]),
    ]
    if timeline is not None:
        parts.append(f"<h2>Over time</h2><img src='report/{timeline.name}' width='800'>")
    if figures:
        parts.append("<h2>Frames</h2><p>Camera: candidates coloured by final score (viridis), selected in red, logged "
                     "future in green. Bird's-eye: ego frame, forward up.</p>")
        for cam, bev, caption in figures:
            parts.append(f"<div><p>{html.escape(caption)}</p><img src='report/{cam}' width='640'>"
                         f"<img src='report/{bev}' height='360'></div>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
