"""Closed-loop outputs: per-agent summaries (JSON + markdown + HTML table), a camera GIF of an episode with the plans
drawn in, a bird's-eye plot of the whole drive, and the scene of its worst-scored step.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drive_jepa_core.closedloop.episode import CAMERA_GAP_STEPS, EpisodeResult
from drive_jepa_core.closedloop.metrics import EPDMS_COLUMNS, episode_scene
from drive_jepa_core.constants import COMMAND_NAMES, SIM_DT
from drive_jepa_core.geometry import box_corners, ego_corners
from drive_jepa_core.jsonutil import json_clean
from drive_jepa_core.scene.format import MapLayer

GIF_STRIDE = CAMERA_GAP_STEPS  # GIF frames every 0.5 s, played at 2 fps (real time)
BEV_MARGIN = 35.0  # m of map shown around the driven path
MIN_EXPERT_PROGRESS = 1.0  # m; seeds where the expert barely moved are left out of the relative progress
# Summary columns: (key, header, format)
TABLE_COLUMNS = (
    ("episodes", "episodes", "{:d}"),
    ("route_completion", "route completion", "{:.3f}"),
    ("progress_vs_expert", "progress / expert", "{:.3f}"),
    ("epdms", "EPDMS (per step)", "{:.3f}"),
    ("at_fault_collision_rate", "at-fault collision rate", "{:.2f}"),
    ("off_road_rate", "off-road rate", "{:.2f}"),
    ("ended_early_rate", "ended early", "{:.2f}"),
    ("red_light_violations", "red-light violations", "{:d}"),
    ("comfortable_rate", "comfortable rate", "{:.2f}"),
    ("mean_speed", "mean speed [m/s]", "{:.2f}"),
    ("seconds_per_episode", "wall s / episode", "{:.1f}"),
)


# --------------------------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------------------------
def episode_record(result: EpisodeResult) -> dict[str, Any]:
    """The JSON record of an episode: its metrics and its per-step EPDMS rows."""
    return json_clean({**result.metrics, "step_scores": result.step_scores})


def _mean(values: list[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def aggregate(records: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-agent summary of episode records (``agent -> [episode_record, …]``).

    EPDMS and its sub-scores are averaged over all scored steps of the agent (NAVSIM averages per scene); rates are
    fractions of episodes; ``progress_vs_expert`` is the mean over seeds of progress / the expert's progress on the
    same seed (when the expert ran and moved at least :data:`MIN_EXPERT_PROGRESS`).
    """
    expert = {r["seed"]: r["route_progress_m"] for r in records.get("expert", [])}
    out: dict[str, dict[str, Any]] = {}
    for agent, recs in records.items():
        n = len(recs)
        steps = [row for r in recs for row in r.get("step_scores", [])]
        rel = [r["route_progress_m"] / expert[r["seed"]] for r in recs
               if expert.get(r["seed"], 0.0) >= MIN_EXPERT_PROGRESS]
        distance_km = sum(r["distance_m"] for r in recs) / 1000.0
        out[agent] = {
            "episodes": n,
            "route_completion": _mean([r["route_completion"] for r in recs]),
            "route_progress_m": _mean([r["route_progress_m"] for r in recs]),
            "progress_vs_expert": _mean(rel) if agent != "expert" else (1.0 if rel else None),
            "epdms": _mean([row["epdms"] for row in steps]),
            "epdms_episode_mean": _mean([r["epdms"]["epdms"] for r in recs]),
            "subscores": {k: _mean([row[k] for row in steps]) for k in EPDMS_COLUMNS if k != "epdms"},
            "scored_steps": len(steps),
            "at_fault_collision_rate": float(np.mean([r["at_fault_collisions"] > 0 for r in recs])) if n else None,
            "at_fault_collisions": int(sum(r["at_fault_collisions"] for r in recs)),
            "other_collisions": int(sum(r["other_collisions"] for r in recs)),
            "off_road_rate": float(np.mean([r["off_road"] for r in recs])) if n else None,
            "red_light_violations": int(sum(r["red_light_violations"] for r in recs)),
            "infractions_per_km": ((sum(r["at_fault_collisions"] + r["red_light_violations"] for r in recs)
                                    + sum(bool(r["off_road"]) for r in recs)) / distance_km
                                   if distance_km > 0 else None),
            "comfortable_rate": _mean([float(r["comfort"]["comfortable"]) for r in recs if r["comfort"]]),
            "comfort_window_pass_rate": _mean([r["comfort"]["window_pass_rate"] for r in recs if r["comfort"]]),
            "mean_speed": _mean([r["mean_speed"] for r in recs]),
            "distance_km": distance_km,
            "terminations": dict(Counter(r["termination"] for r in recs if r["termination"])),
            "ended_early_rate": float(np.mean([r["termination"] is not None for r in recs])) if n else None,
            "plan_ms_mean": _mean([r["timings"].get("plan_ms_mean") for r in recs]),
            "seconds_per_episode": _mean([r["timings"].get("total_s") for r in recs]),
            "seeds": [r["seed"] for r in recs],
        }
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def markdown_table(summary: dict[str, dict[str, Any]]) -> str:
    """One row per agent, the columns of :data:`TABLE_COLUMNS`."""
    head = "| agent | " + " | ".join(h for _, h, _ in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---|" * len(TABLE_COLUMNS)
    rows = [f"| {agent} | " + " | ".join(_cell(s.get(k), f) for k, _, f in TABLE_COLUMNS) + " |"
            for agent, s in summary.items()]
    return "\n".join([head, rule, *rows])


def write_summary(out: Path, summary: dict[str, dict[str, Any]], info: dict[str, Any],
                  figures: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, Path]:
    """Write ``summary.json``, ``summary.md`` and ``summary.html`` into ``out``; ``figures`` maps an agent to
    (relative image path, caption) pairs shown in the HTML."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "summary.json", "markdown": out / "summary.md", "html": out / "summary.html"}
    paths["json"].write_text(json.dumps(json_clean({"info": info, "agents": summary}), indent=2) + "\n")
    table = markdown_table(summary)
    settings = ", ".join(f"{k}={v}" for k, v in info.items() if k != "seeds")
    paths["markdown"].write_text(
        "# Closed-loop evaluation\n\n" + f"{settings}\n\n" + table + "\n\n"
        "Route completion: route progress / free-flow distance (speed limits, no traffic or lights). EPDMS: NAVSIM v2 "
        "score of the plan selected at each scored step on a scene cut from the closed-loop log, averaged over all "
        "scored steps. Rates are fractions of episodes.\n")
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in TABLE_COLUMNS)
    body = "".join("<tr><th>" + html.escape(agent) + "</th>"
                   + "".join(f"<td>{html.escape(_cell(s.get(k), f))}</td>" for k, _, f in TABLE_COLUMNS) + "</tr>"
                   for agent, s in summary.items())
    subs = "".join("<tr><th>" + html.escape(agent) + "</th>"
                   + "".join(f"<td>{html.escape(_cell(s['subscores'].get(k), '{:.3f}'))}</td>"
                             for k in EPDMS_COLUMNS if k != "epdms") + "</tr>" for agent, s in summary.items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>drive-jepa closed loop</title><style>"
        "body{font-family:sans-serif;margin:20px} table{border-collapse:collapse;margin:8px 0 16px}"
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right} img{margin:4px;vertical-align:top}"
        "</style></head><body><h1>Closed-loop evaluation</h1>",
        f"<p>{html.escape(settings)}</p>",
        f"<table><tr><th>agent</th>{head}</tr>{body}</table>",
        "<h2>EPDMS sub-scores (mean over scored steps)</h2>",
        "<table><tr><th>agent</th>" + "".join(f"<th>{k}</th>" for k in EPDMS_COLUMNS if k != "epdms")
        + f"</tr>{subs}</table>",
    ]
    for agent, items in (figures or {}).items():
        parts.append(f"<h2>{html.escape(agent)}</h2>")
        for rel, caption in items:
            parts.append(f"<figure style='display:inline-block'><img src='{html.escape(rel)}' height='420'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    paths["html"].write_text("\n".join(parts), encoding="utf-8")
    return paths


# --------------------------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------------------------
def episode_gif(result: EpisodeResult, path: Path, stride: int = GIF_STRIDE) -> Path:
    """Camera GIF of the judged part: the selected plan in red (the agent's candidates by score), the path the ego
    then drove in green, and a status line; one frame every ``stride`` steps."""
    from drive_jepa_core.replay.report import DRAW_MIN_WIDTH, draw_camera_overlay
    from drive_jepa_core.world.scenes import make_renderer, render_frames
    from drive_jepa_core.world.video import GIF_FPS, save_gif

    log, H, end = result.log, result.takeover_step, result.end_step
    steps = list(range(H, end + 1, stride))
    images = render_frames(log, steps, make_renderer(log, result.camera))
    scores = {row["step"]: row["epdms"] for row in result.step_scores}
    frames = []
    for k in steps:
        truth = _realized_or_none(result, k)
        plan = result.plans.get(k)
        if plan is not None:
            img = draw_camera_overlay(images[k], result.camera, plan.proposals.astype(np.float64), plan.final_scores,
                                      plan.selected_index, truth)
        elif result.agent == "expert" and truth is not None:
            img = draw_camera_overlay(images[k], result.camera, truth[None], np.ones(1), 0, None)
        else:  # no plan at this step (rejected): the plain frame at the overlay's scale
            scale = max(1, int(np.ceil(DRAW_MIN_WIDTH / images[k].shape[1])))
            img = cv2.resize(np.ascontiguousarray(images[k][:, :, ::-1]), None, fx=scale, fy=scale,
                             interpolation=cv2.INTER_NEAREST)
        ego = log.ego_states[k]
        text = (f"{result.agent}  seed {result.seed}  t={(k - H) * SIM_DT:4.1f}s  v={math.hypot(ego[3], ego[4]):4.1f}"
                f"m/s  {COMMAND_NAMES[result.commands.get(k, 1)]}")
        if k in scores and scores[k] is not None and math.isfinite(scores[k]):
            text += f"  EPDMS {scores[k]:.2f}"
        _put_text(img, text)
        frames.append(np.ascontiguousarray(img[:, :, ::-1]))
    if not frames:
        raise ValueError(f"episode {result.seed} has no judged steps to show")
    height = max(f.shape[0] for f in frames)
    frames = [f if f.shape[0] == height else cv2.resize(f, (f.shape[1] * height // f.shape[0], height))
              for f in frames]
    return save_gif(np.stack(frames), path, fps=GIF_FPS)


def _realized_or_none(result: EpisodeResult, step: int) -> np.ndarray | None:
    from drive_jepa_core.closedloop.metrics import realized_future

    try:
        return realized_future(result.log, step)
    except ValueError:
        return None


def _put_text(img: np.ndarray, text: str) -> None:
    """White status line on a dark bar across the top of ``img`` (in place)."""
    scale = max(img.shape[1] / 1100.0, 0.4)
    (_, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    bar = h + base + 8
    img[:bar] = (img[:bar] * 0.35).astype(img.dtype)
    cv2.putText(img, text, (6, h + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def episode_bev(result: EpisodeResult, path: Path, reference: np.ndarray | None = None) -> Path:
    """Bird's-eye PNG (world frame, north up) of the whole drive: map, route, the driven path coloured by speed,
    the agents at the end, infractions; ``reference`` ``(T, 2)`` (e.g. the expert's path on the same seed) dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Polygon

    from drive_jepa_core.world.bev import AGENT_COLORS, EGO_COLOR, LAYER_COLORS, ROUTE_COLOR

    log, H, end = result.log, result.takeover_step, result.end_step
    driven = log.ego_states[H:end + 1]
    pts = driven[:, :2] if reference is None else np.concatenate([driven[:, :2], np.asarray(reference)[:, :2]])
    lo, hi = pts.min(axis=0) - BEV_MARGIN, pts.max(axis=0) + BEV_MARGIN
    span = hi - lo
    fig = Figure(figsize=(7.0, max(3.0, min(12.0, 7.0 * span[1] / max(span[0], 1e-6)))))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.06, 0.06, 0.8, 0.86))
    ax.set_facecolor("#9dbf8a")
    fields = log.road_map.scene_map_fields(log.route)
    for layer in (MapLayer.CARPARK_AREA, MapLayer.ROADBLOCK, MapLayer.INTERSECTION):
        for poly, lay in zip(fields["map_polygons"], fields["map_polygon_layers"], strict=True):
            if lay == layer and np.any(np.all((poly >= lo) & (poly <= hi), axis=1)):
                ax.add_patch(Polygon(poly, closed=True, facecolor=LAYER_COLORS[layer], edgecolor="none", zorder=1))
    ax.plot(*result.route.points.T, color=ROUTE_COLOR, lw=6, alpha=0.6, zorder=2, solid_capstyle="round")
    if reference is not None:
        ax.plot(*np.asarray(reference)[:, :2].T, color="black", lw=1.2, ls="--", zorder=4, label="expert")
    segs = np.stack([driven[:-1, :2], driven[1:, :2]], axis=1)
    speed = np.hypot(driven[:, 3], driven[:, 4])
    lc = LineCollection(segs, array=speed[:-1], cmap="viridis", linewidths=2.5, zorder=5)
    ax.add_collection(lc)
    fig.colorbar(lc, cax=fig.add_axes((0.88, 0.2, 0.025, 0.6)), label="ego speed [m/s]")
    valid = log.agent_valid[end]
    for a in np.flatnonzero(valid):
        x, y, h = log.agent_states[end, a, :3]
        corners = box_corners(np.array([x, y]), h, *log.agent_sizes[a, :2])
        if np.any(np.all((corners >= lo) & (corners <= hi), axis=1)):
            from drive_jepa_core.scene.format import AgentType

            color = AGENT_COLORS.get(AgentType(int(log.agent_types[a])), "#555555")
            ax.add_patch(Polygon(corners, closed=True, facecolor=color, edgecolor="black", lw=0.4, zorder=6))
    ax.add_patch(Polygon(ego_corners(log.ego_states[end, :3]), closed=True, facecolor=EGO_COLOR, edgecolor="black",
                         lw=0.8, zorder=7))
    ax.plot(*driven[0, :2], "o", color="white", mec="black", ms=6, zorder=8, label="take-over")
    mon = result.monitor
    for c in mon.collisions:
        ax.plot(c.x, c.y, "X", color="#d62728" if c.at_fault else "#ff9f1c", ms=11, mec="black", zorder=9,
                label=f"collision ({'at fault' if c.at_fault else c.kind})")
    for k in mon.red_light_steps:
        ax.plot(*log.ego_states[k, :2], "^", color="#d62728", ms=10, mec="black", zorder=9, label="red light")
    off = [k for k, flag in zip(mon.steps, mon.non_drivable, strict=True) if flag]
    if off:
        ax.plot(*log.ego_states[off, :2].T, ".", color="#ff7f0e", ms=4, zorder=8, label="off road")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="best", fontsize=7)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    m = result.metrics
    epdms = m.get("epdms", {}).get("epdms")
    ax.set_title(f"{result.agent} · seed {result.seed} · route completion {m.get('route_completion', 0):.2f} · "
                 f"EPDMS {'–' if epdms is None else f'{epdms:.2f}'}"
                 + (f" · ended: {m['termination']}" if m.get("termination") else ""), fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out


def worst_step_bev(result: EpisodeResult, path: Path) -> Path | None:
    """The scene of the lowest-EPDMS scored step with the plan selected there (None when nothing was scored)."""
    from drive_jepa_core.world.bev import plot_scene_bev

    rows = [r for r in result.step_scores if r["epdms"] is not None and math.isfinite(r["epdms"])]
    if not rows:
        return None
    row = min(rows, key=lambda r: r["epdms"])
    step = int(row["step"])
    traj = result.trajectory_at(step)
    scene = episode_scene(result.log, step, result.commands.get(step, 1))
    failed = [f"{k}={row[k]:.2f}" for k in EPDMS_COLUMNS if k not in ("epdms", "progress")
              and row[k] is not None and math.isfinite(row[k]) and row[k] < 1.0]
    subs = " ".join(failed) or "all sub-scores 1"
    title = (f"{result.agent} seed {result.seed} t={(step - result.takeover_step) * SIM_DT:.1f}s "
             f"EPDMS {row['epdms']:.2f} ({subs})")
    return plot_scene_bev(scene, path, trajectories=None if traj is None else traj[None], title=title)
