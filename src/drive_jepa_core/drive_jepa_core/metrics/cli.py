"""``drive-jepa score``: NAVSIM PDMS v1.1 / EPDMS v2 of a reference agent over a directory of scenes.

Agents: ``expert`` (the logged human future) and ``constant-velocity`` (NAVSIM's baseline). EC pairs each scene with
the previous scored scene of the same log when it starts at most 0.55 s earlier (NAVSIM one-stage pairing; needs
``extra["log_time"]`` in the scenes), otherwise EC is NaN and EPDMS drops its weight.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from drive_jepa_core.jsonutil import json_clean
from drive_jepa_core.metrics.aggregate import SUBSCORE_NAMES, split_means
from drive_jepa_core.metrics.comfort import EC_MAX_INTERVAL

AGENTS = ("expert", "constant-velocity")
LOG_TIME_KEY = "log_time"  # Scene.extra key with the scene's absolute start time in its log (seconds)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score", help="PDMS v1.1 / EPDMS v2 of a reference agent over a scene directory",
        description="Score the logged human trajectory or the constant-velocity baseline on every scene of a "
                    "directory with the NAVSIM-faithful scorer; prints split means and writes per-scene JSON.")
    parser.add_argument("--scenes", type=Path, required=True, help="directory (searched recursively) or .npz file")
    parser.add_argument("--agent", choices=AGENTS, default="expert", help="trajectory to score (default: expert)")
    parser.add_argument("--version", dest="metric_version", choices=("v1", "v2", "both"), default="both",
                        help="metric version: v1 = PDMS v1.1, v2 = EPDMS (default: both)")
    parser.add_argument("--no-human-filter", action="store_true",
                        help="v2: do not apply NAVSIM's human false-positive filter")
    parser.add_argument("--limit", type=int, default=None, help="score at most this many scenes")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (per-scene rows and means)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from drive_jepa_core.scene.format import list_scenes

    try:
        paths = list_scenes(args.scenes)
    except FileNotFoundError as exc:
        print(f"drive-jepa score: {exc}", file=sys.stderr)
        return 2
    if args.limit is not None:
        paths = paths[: args.limit]
    if not paths:
        print(f"drive-jepa score: no scene files (*.npz) under {args.scenes}", file=sys.stderr)
        return 2
    versions = ("v1", "v2") if args.metric_version == "both" else (args.metric_version,)
    report = score_scenes(paths, args.agent, versions, human_filter=not args.no_human_filter, progress=True)
    for version in versions:
        means = report["means"][version]
        keys = ("nc", "dac", "ddc", "ep", "ttc", "c", "pdms") if version == "v1" else \
            ("nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc", "ec", "epdms")
        print(f"{version} ({args.agent}, {means['num_scenes']} scenes): "
              + "  ".join(f"{k.upper()}={means[k]:.4f}" for k in keys))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(json_clean(report), indent=1))  # NaN (undefined sub-score) -> null
        print(f"wrote {args.out}")
    return 0


def score_scenes(paths: Sequence[Path], agent: str = "expert", versions: Sequence[str] = ("v1", "v2"),
                 human_filter: bool = True, progress: bool = False) -> dict[str, Any]:
    """Score one agent on scene files; returns ``{"agent", "versions", "means": {version: …}, "scenes": [...]}``.

    Scenes are visited in (log, start time) order so that each v2 scene can be paired with its predecessor for EC.
    """
    from drive_jepa_core.metrics.metric_cache import MetricCache
    from drive_jepa_core.metrics.scorer import constant_velocity_trajectory, score_trajectories
    from drive_jepa_core.scene.format import load_scene

    if agent not in AGENTS:
        raise ValueError(f"agent must be one of {AGENTS}, got {agent!r}")
    scenes_meta = []
    for path in paths:
        scenes_meta.append((Path(path), load_scene(path, load_frames=False)))
    scenes_meta.sort(key=lambda item: (item[1].log_name, _log_time(item[1]), item[1].token))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(scenes_meta), desc=f"score {agent}", unit="scene")
    rows: list[dict[str, Any]] = []
    previous: dict[str, tuple[float, np.ndarray]] = {}  # log -> (start time, simulated states of the last plan)
    for path, scene in scenes_meta:
        row: dict[str, Any] = {"token": scene.token, "log_name": scene.log_name, "file": path.name}
        try:
            cache = MetricCache.from_scene(scene)
            if agent == "expert":
                trajectory = scene.future_trajectory()
            else:
                trajectory = constant_velocity_trajectory(cache.ego_state7)
            for version in versions:
                kwargs: dict[str, Any] = {}
                if version == "v2":
                    now = _log_time(scene)
                    prev = previous.get(scene.log_name)
                    if prev is not None and math.isfinite(now) and 0.0 < now - prev[0] <= EC_MAX_INTERVAL:
                        kwargs = {"previous_states": prev[1], "dt": now - prev[0]}
                    kwargs["human_filter"] = human_filter and cache.human_future is not None
                result = score_trajectories(cache, trajectory[None], version, **kwargs)
                row[version] = json_clean(result.row(0))
                if version == "v2":
                    previous[scene.log_name] = (_log_time(scene), result.states[0])
        except (ValueError, IndexError) as exc:  # a failed scene counts as NaN, as NAVSIM's failed agents
            row["error"] = str(exc)
        rows.append(row)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    means = {v: split_means([r[v] for r in rows if v in r], (*SUBSCORE_NAMES, "pdms", "epdms")) for v in versions}
    return {"agent": agent, "versions": list(versions), "num_scenes": len(rows), "means": means, "scenes": rows}


def _log_time(scene: Any) -> float:
    value = scene.extra.get(LOG_TIME_KEY) if isinstance(scene.extra, dict) else None
    return float(value) if isinstance(value, (int, float)) else math.nan


