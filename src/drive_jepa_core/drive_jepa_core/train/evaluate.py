"""``drive-jepa eval``: open-loop evaluation of a trained planner (or a baseline agent) on a split of scenes.

Per scene: the agent plans (the model's top-scored proposal; baselines: constant velocity, or the logged human
future), the plan is simulated (LQR + bicycle) and scored with the NAVSIM-faithful scorer:

* **PDMS** (NAVSIM v1.1) = NC · DAC · (5 EP + 5 TTC + 2 C) / 12.
* **EPDMS** (NAVSIM v2) = NC · DAC · DDC · TLC · (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16, with the human
  false-positive filter (a sub-score the logged human also fails is not held against the agent; navsim_metrics.md
  §6.2) whenever the scene has a 4 s logged future.
* **EC** (two-frame extended comfort) compares the simulated plans of consecutive frames of one log. A scene's
  predecessor is the scene of the same log whose t0 is 0 < Δt ≤ 0.55 s earlier (``extra["log_time"]`` of generated
  scenes, else matched by the logged ego pose 0.5 s ahead). Without a predecessor in the split EC is NaN and its
  weight is dropped from that scene's EPDMS, exactly as NAVSIM does for a log's first frame; the summary reports the
  EC mean over the scenes that have one and how many do.
* **D** (DiffusionDrive mode diversity) of the agent's proposals, with the corridor definition of
  :mod:`drive_jepa_core.metrics.diversity`; NaN for single-trajectory agents.

Writes ``metrics.json`` (summary + one row per scene) and ``report.html`` (summary table, per-scene table and
bird's-eye plots of the proposals coloured by predicted score).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drive_jepa_core.jsonutil import json_clean
from drive_jepa_core.metrics.aggregate import SUBSCORE_NAMES, split_means
from drive_jepa_core.metrics.diversity import CORRIDOR_HALF_WIDTH, diversity
from drive_jepa_core.metrics.scorer import constant_velocity_trajectory, score_trajectories
from drive_jepa_core.scene import Scene, list_scenes, load_scene
from drive_jepa_core.train.targets import MetricCacheStore

AGENTS = ("model", "constant-velocity", "human")
EC_MAX_GAP = 0.55  # s, NAVSIM pairs a frame with a predecessor at most this much earlier (navsim_metrics.md §5.9)
POSE_MATCH_TOLERANCE = 1e-3  # m / rad, for pairing frames by pose when scenes carry no log time
PAIR_GAP = 0.5  # s, the frame gap pose-matching looks for (2 Hz keyframes)


@dataclass
class AgentPlan:
    """One scene's plan: ``proposals`` (N, M, 3), ``scores`` (N,) predicted in [0, 1] or None, ``selected`` (M, 3)."""

    proposals: np.ndarray
    scores: np.ndarray | None
    selected: np.ndarray


# ---------------------------------------------------------------------------------------------------------------------
# Agents
# ---------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def model_plans(model: torch.nn.Module, image_size: tuple[int, int], paths: Sequence[Path], batch_size: int = 8,
                device: str | torch.device = "cpu", progress: bool = False) -> list[AgentPlan]:
    """Run a planner on scenes (shared preprocessing via :class:`PlannerDataset`); top-scored proposal selected."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from drive_jepa_core.train.dataset import PlannerDataset, collate_samples

    ds = PlannerDataset(list(paths), image_size, use_teachers=False, cache=False)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_samples)
    model.eval()
    plans: list[AgentPlan] = []
    for batch in tqdm(loader, desc="plan", unit="batch", disable=not progress):
        out = model(batch["video"].to(device), batch["ego_status"].to(device), batch["ego2image"].to(device))
        proposals = out["proposals"].float().cpu().numpy()
        selected = out["trajectory"].float().cpu().numpy()
        scores = torch.sigmoid(out["scores"].float()).cpu().numpy() if "scores" in out else None
        for b in range(proposals.shape[0]):
            plans.append(AgentPlan(proposals[b], None if scores is None else scores[b], selected[b]))
    return plans


def baseline_plan(scene: Scene, agent: str) -> AgentPlan:
    """Constant velocity (NAVSIM's baseline agent) or the logged human future."""
    if agent == "constant-velocity":
        traj = constant_velocity_trajectory(scene.ego_states[scene.t0_index])
    elif agent == "human":
        traj = scene.future_trajectory()
    else:
        raise ValueError(f"unknown baseline agent {agent!r}; choose one of {AGENTS[1:]}")
    return AgentPlan(traj[None], None, traj)


def score_selected(scene_paths: Sequence[str | Path], selected: np.ndarray, version: str = "v2",
                   store: MetricCacheStore | None = None) -> list[float]:
    """Headline score (v2 EPDMS without EC / v1 PDMS) of one selected plan ``(M, 3)`` per scene."""
    store = store or MetricCacheStore()
    out = []
    for path, traj in zip(scene_paths, np.asarray(selected), strict=True):
        if not np.all(np.isfinite(traj)):
            out.append(0.0)
            continue
        out.append(float(score_trajectories(store.get(path), traj[None], version=version).score[0]))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Frame pairing for EC
# ---------------------------------------------------------------------------------------------------------------------
def find_predecessors(scenes: Sequence[Scene]) -> list[tuple[int, float] | None]:
    """For each scene, ``(index of its predecessor, Δt)`` in the same log, or None (see module docstring)."""
    out: list[tuple[int, float] | None] = [None] * len(scenes)
    by_log: dict[str, list[int]] = {}
    for i, s in enumerate(scenes):
        by_log.setdefault(s.log_name, []).append(i)
    for members in by_log.values():
        times = [scenes[i].extra.get("log_time") for i in members]
        if all(isinstance(t, (int, float)) for t in times):
            for i, ti in zip(members, times, strict=True):
                best = None
                for j, tj in zip(members, times, strict=True):
                    gap = float(ti) - float(tj)
                    if 1e-6 < gap <= EC_MAX_GAP + 1e-9 and (best is None or gap < best[1]):
                        best = (j, round(gap, 6))
                out[i] = best
            continue
        for i in members:  # no log times: the predecessor's logged pose 0.5 s ahead is this scene's t0 pose
            for j in members:
                if i == j:
                    continue
                prev = scenes[j]
                try:
                    ahead = prev.ego_states[prev.step_index(PAIR_GAP), :3]
                except IndexError:
                    continue
                d = ahead - scenes[i].ego_pose
                if np.hypot(d[0], d[1]) < POSE_MATCH_TOLERANCE and abs(math.remainder(d[2], 2 * math.pi)) < \
                        POSE_MATCH_TOLERANCE:
                    out[i] = (j, PAIR_GAP)
                    break
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------------
def evaluate(scenes: str | Path | Sequence[str | Path], out: str | Path, model: str | Path | None = None,
             agent: str = "model", prefer_best: bool = False, batch_size: int = 8, device: str | None = None,
             limit: int | None = None, num_plots: int = 12, progress: bool = True) -> dict[str, Any]:
    """Evaluate an agent on a split; writes ``metrics.json`` and ``report.html`` into ``out`` and returns the
    metrics dict (``summary`` + ``scenes``)."""
    from tqdm import tqdm

    if agent not in AGENTS:
        raise ValueError(f"agent must be one of {AGENTS}, got {agent!r}")
    paths = list_scenes(scenes) if isinstance(scenes, (str, Path)) else [Path(p) for p in scenes]
    if limit is not None:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f"no scenes to evaluate in {scenes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene_objs = [load_scene(p, load_frames=False) for p in paths]

    info: dict[str, Any] = {"agent": agent}
    if agent == "model":
        from drive_jepa_core.train.checkpoint import load_planner, resolve_planner_path

        if model is None:
            raise ValueError("agent 'model' needs a model (run directory or .safetensors)")
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        net, spec = load_planner(model, prefer_best=prefer_best, device=dev)
        info.update(model=str(resolve_planner_path(model, prefer_best)), variant=spec.variant,
                    image_size=list(spec.image_size))
        plans = model_plans(net, spec.image_size, paths, batch_size, dev, progress)
    else:
        plans = [baseline_plan(s, agent) for s in scene_objs]

    # Score in log/time order so each scene's predecessor (for EC) is scored first.
    preds = find_predecessors(scene_objs)
    order = sorted(range(len(paths)), key=lambda i: (scene_objs[i].log_name,
                                                     float(scene_objs[i].extra.get("log_time", 0.0)), i))
    if not all(isinstance(s.extra.get("log_time"), (int, float)) for s in scene_objs):
        order = _topological(preds)
    store = MetricCacheStore(capacity=4)  # scenes are scored once each; predecessors keep only their states
    v2_states: dict[int, np.ndarray] = {}
    rows: list[dict[str, Any] | None] = [None] * len(paths)
    for i in tqdm(order, desc="score", unit="scene", disable=not progress):
        scene, plan = scene_objs[i], plans[i]
        cache = store.get(paths[i])
        sel = plan.selected[None].astype(np.float64)
        finite = bool(np.all(np.isfinite(sel)))
        if not finite:
            sel = np.zeros_like(sel)  # a diverged plan is scored as standing still, and flagged
        v1 = score_trajectories(cache, sel, version="v1")
        prev = preds[i]
        prev_states = v2_states.get(prev[0]) if prev is not None else None
        human = cache.human_future is not None
        v2 = score_trajectories(cache, sel, version="v2", previous_states=prev_states,
                                dt=prev[1] if prev_states is not None else None, human_filter=human)
        v2_states[i] = v2.states[0]
        row: dict[str, Any] = {"token": scene.token, "log_name": scene.log_name, "path": str(paths[i]),
                               "command": scene.command_name, "finite_plan": finite, "human_filter": human,
                               "predecessor": scene_objs[prev[0]].token if prev_states is not None else None}
        row["pdms"] = float(v1.pdms[0])
        for name in ("nc", "dac", "ep", "ttc", "c"):
            row[f"v1_{name}"] = float(getattr(v1, name)[0])
        row["epdms"] = float(v2.epdms[0])
        for name in SUBSCORE_NAMES:
            if name != "c":
                row[name] = float(getattr(v2, name)[0])
        row["diversity"] = diversity(plan.proposals) if plan.proposals.shape[0] > 1 else math.nan
        row["num_proposals"] = int(plan.proposals.shape[0])
        row["predicted_score"] = float(np.max(plan.scores)) if plan.scores is not None else math.nan
        rows[i] = row
    done = [r for r in rows if r is not None]
    v1_means = split_means([{"pdms": r["pdms"], **{k: r[f"v1_{k}"] for k in ("nc", "dac", "ep", "ttc", "c")}}
                            for r in done], names=("pdms", "nc", "dac", "ep", "ttc", "c"))
    v2_means = split_means(done, names=("epdms", "nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc", "ec"))
    d = np.array([r["diversity"] for r in done], dtype=np.float64)
    summary = {
        **info,
        "num_scenes": len(done),
        "pdms": v1_means["pdms"],
        "epdms": v2_means["epdms"],
        "v1": {k: v for k, v in v1_means.items() if k != "num_scenes"},
        "v2": {k: v for k, v in v2_means.items() if k != "num_scenes"},
        "ec_scenes": int(sum(np.isfinite(r["ec"]) for r in done)),
        "diversity": float(np.nanmean(d)) if np.any(np.isfinite(d)) else None,
        "diversity_definition": f"1 - mean area / union area of {CORRIDOR_HALF_WIDTH:g} m half-width corridors from "
                                f"the ego origin through the proposals (metrics/diversity.py)",
        "non_finite_plans": int(sum(not r["finite_plan"] for r in done)),
    }
    metrics = json_clean({"summary": summary, "scenes": done})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plotted = _plots(out, scene_objs, plans, rows, num_plots)
    _report(out / "report.html", metrics, plotted)
    return metrics


def _topological(preds: list[tuple[int, float] | None]) -> list[int]:
    """Indices ordered so that every predecessor comes before its successor."""
    order, seen = [], set()
    for i in range(len(preds)):
        chain = []
        j: int | None = i
        while j is not None and j not in seen and j not in chain:
            chain.append(j)
            p = preds[j]
            j = p[0] if p is not None else None
        for k in reversed(chain):
            seen.add(k)
            order.append(k)
    return order


def _plots(out: Path, scenes: Sequence[Scene], plans: Sequence[AgentPlan], rows: Sequence[dict | None],
           num_plots: int) -> list[tuple[int, str]]:
    """BEV plots of the worst and best scenes by EPDMS; returns (scene index, relative PNG path)."""
    if num_plots <= 0:
        return []
    from drive_jepa_core.world.bev import plot_scene_bev

    ranked = sorted((i for i, r in enumerate(rows) if r is not None), key=lambda i: rows[i]["epdms"])
    half = num_plots // 2
    chosen = list(dict.fromkeys(ranked[:num_plots - half] + ranked[::-1][:half]))
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    done = []
    for i in chosen:
        plan = plans[i]
        rel = f"plots/{scenes[i].token}.png"
        title = f"{scenes[i].token}  EPDMS {rows[i]['epdms']:.3f}  PDMS {rows[i]['pdms']:.3f}"
        trajs = plan.proposals if np.all(np.isfinite(plan.proposals)) else plan.selected[None]
        scores = plan.scores if plan.scores is not None and trajs.shape[0] == len(plan.scores) else None
        plot_scene_bev(scenes[i], out / rel, trajectories=trajs, scores=scores, title=title)
        done.append((i, rel))
    return done


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if v is None:
        return "NaN"
    return html.escape(str(v))


def _report(path: Path, metrics: dict[str, Any], plots: list[tuple[int, str]]) -> None:
    s = metrics["summary"]
    head = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in s.items()
                   if not isinstance(v, dict))
    sub = "".join(f"<tr><th>{html.escape(ver)}</th>" + "".join(f"<td>{k}: {_fmt(v)}</td>" for k, v in s[ver].items())
                  + "</tr>" for ver in ("v1", "v2"))
    cols = ["token", "command", "pdms", "epdms", "nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc", "ec",
            "diversity", "predicted_score"]
    table = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in metrics["scenes"])
    figs = "".join(f'<figure><img src="{html.escape(rel)}" width="420"></figure>' for _, rel in plots)
    path.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>drive-jepa eval</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px}} figure{{display:inline-block;margin:4px}}</style></head><body>
<h1>Drive-JEPA evaluation</h1>
<p>PDMS = NAVSIM v1.1; EPDMS = NAVSIM v2 with the human filter. EC is NaN (weight dropped) for scenes whose
previous frame (same log, &le; 0.55 s earlier) is not in the split.
Diversity D: {html.escape(str(s['diversity_definition']))}.</p>
<table>{head}</table><h2>Sub-score means</h2><table>{sub}</table>
<h2>Bird's-eye views (worst and best EPDMS; proposals coloured by predicted score)</h2>{figs}
<h2>Per scene</h2><table>{table}</table></body></html>
""")


__all__ = ["AGENTS", "AgentPlan", "baseline_plan", "evaluate", "find_predecessors", "model_plans", "score_selected"]
