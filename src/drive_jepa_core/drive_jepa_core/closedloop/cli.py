"""``drive-jepa closedloop``: drive generated worlds with the planner (and the expert / constant-velocity references)
and compare them.

Registering the command imports nothing heavy; the run imports the world, the scorer and (for ``model``) torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from drive_jepa_core.constants import DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH, HISTORY_SECONDS, SIM_DT, TRAJ_DT

AGENT_CHOICES = ("expert", "constant-velocity", "model")
SPLIT_CHOICES = ("train", "val", "test")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "closedloop", help="closed-loop evaluation in the built-in world (route completion, collisions, EPDMS)",
        description="Let agents drive generated worlds of a split for --seconds each: the planner's selected "
                    "trajectory is followed with NAVSIM's LQR tracker + kinematic bicycle at 10 Hz while the IDM "
                    "traffic reacts. Reports route completion, at-fault collisions (NAVSIM NC rules), off-road, "
                    "red-light violations, comfort and the per-step EPDMS of the selected plans, for the model and "
                    "the expert / constant-velocity references: OUT/summary.{json,md,html}, "
                    "OUT/AGENT/episodes.json, a camera GIF and bird's-eye plots of the first episodes.")
    p.add_argument("--model", type=Path, default=None,
                   help="trained run directory or planner .safetensors (.onnx/.engine with those backends)")
    p.add_argument("--agent", action="append", choices=AGENT_CHOICES, default=None,
                   help="agent to run (repeatable); default: expert and constant-velocity, plus model with --model")
    p.add_argument("--split", choices=SPLIT_CHOICES, default="test", help="world split whose seeds are driven")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (world seeds) per agent")
    p.add_argument("--seed", type=int, default=0, help="offset of the first world seed inside the split")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds each agent drives")
    p.add_argument("--history", type=float, default=HISTORY_SECONDS,
                   help="seconds the expert drives before the take-over (camera and scoring history)")
    p.add_argument("--replan-every", type=int, default=1,
                   help="simulation steps (0.1 s) between plans: 1 = 10 Hz, 5 = 2 Hz for slow CPU models")
    p.add_argument("--score-every", type=float, default=TRAJ_DT,
                   help="seconds between EPDMS-scored plans (multiple of the re-planning interval; < 0.55 for EC)")
    p.add_argument("--no-score", action="store_true", help="skip the per-step EPDMS (much faster)")
    p.add_argument("--no-terminate", action="store_true",
                   help="drive the full time even after an at-fault collision / leaving the road or route")
    p.add_argument("--image-width", type=int, default=DEFAULT_IMAGE_WIDTH, help="camera width")
    p.add_argument("--image-height", type=int, default=DEFAULT_IMAGE_HEIGHT, help="camera height")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch")
    p.add_argument("--device", default=None, help="cpu | cuda[:N] (default: CUDA when available)")
    p.add_argument("--gif-episodes", type=int, default=1, help="episodes per agent with a GIF and bird's-eye plots")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    p.set_defaults(func=_cmd_closedloop)


def _cmd_closedloop(args: argparse.Namespace) -> int:
    from drive_jepa_core.closedloop.episode import TERMINATIONS, ClosedLoopConfig

    agents = args.agent or (["expert", "constant-velocity"] + (["model"] if args.model is not None else []))
    try:
        if "model" in agents and args.model is None:
            raise ValueError("--agent model needs --model RUN_DIR")
        if args.model is not None and not Path(args.model).exists():
            raise FileNotFoundError(f"model {args.model} does not exist")
        if args.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
        config = ClosedLoopConfig(seconds=args.seconds, history=args.history, replan_every=args.replan_every,
                                  score_every=None if args.no_score else args.score_every,
                                  terminate_on=() if args.no_terminate else TERMINATIONS,
                                  image_width=args.image_width, image_height=args.image_height)
        config.validate()
        from drive_jepa_core.world.generate import log_seeds

        seeds = log_seeds(args.split, args.episodes, args.seed)
    except (ValueError, FileNotFoundError) as exc:
        print(f"drive-jepa: error: {exc}", file=sys.stderr)
        return 2
    summary = evaluate(args.out, list(dict.fromkeys(agents)), seeds, config, model=args.model, backend=args.backend,
                       device=args.device, gif_episodes=args.gif_episodes, progress=args.progress,
                       info={"split": args.split})
    from drive_jepa_core.closedloop.report import markdown_table

    print(markdown_table(summary))
    print(f"wrote {args.out / 'summary.html'}")
    return 0


def evaluate(out: Path, agents: list[str], seeds: list[int], config: Any, model: Path | None = None,
             backend: str = "torch", device: str | None = None, gif_episodes: int = 1, progress: bool = False,
             info: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Run every agent on every seed, write the outputs into ``out`` and return the per-agent summary.

    The expert runs first (when asked for) so the others' bird's-eye plots show its path on the same seed.
    """
    import json

    from drive_jepa_core.closedloop.episode import make_agent, run_episode
    from drive_jepa_core.closedloop.report import (
        aggregate,
        episode_bev,
        episode_gif,
        episode_record,
        worst_step_bev,
        write_summary,
    )
    from drive_jepa_core.jsonutil import json_clean
    from drive_jepa_core.world.render import default_front_camera

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    camera = default_front_camera(config.image_width, config.image_height)
    order = sorted(agents, key=lambda a: a != "expert")
    records: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, list[tuple[str, str]]] = {}
    expert_paths: dict[int, Any] = {}
    started = time.perf_counter()
    for agent in order:
        planner = make_agent(agent, model=None if model is None else str(model), backend=backend, device=device,
                             camera=camera)
        folder = out / agent
        folder.mkdir(parents=True, exist_ok=True)
        records[agent] = []
        iterator: Any = seeds
        if progress:
            from tqdm import tqdm

            iterator = tqdm(seeds, desc=agent, unit="episode")
        for i, seed in enumerate(iterator):
            result = run_episode(seed, agent, planner=planner, config=config, camera=camera, progress=progress)
            records[agent].append(episode_record(result))
            if agent == "expert":
                expert_paths[seed] = result.log.ego_states[result.takeover_step:result.end_step + 1, :2].copy()
            if i < gif_episodes:
                items = figures.setdefault(agent, [])
                gif = episode_gif(result, folder / f"seed_{seed}_camera.gif")
                items.append((f"{agent}/{gif.name}", f"seed {seed}: camera, selected plan red, driven path green"))
                bev = episode_bev(result, folder / f"seed_{seed}_bev.png",
                                  reference=expert_paths.get(seed) if agent != "expert" else None)
                items.append((f"{agent}/{bev.name}", f"seed {seed}: bird's-eye view of the drive"))
                worst = worst_step_bev(result, folder / f"seed_{seed}_worst_step.png")
                if worst is not None:
                    items.append((f"{agent}/{worst.name}", f"seed {seed}: lowest-EPDMS step and its plan"))
        (folder / "episodes.json").write_text(json.dumps(json_clean(records[agent]), indent=1) + "\n")
    summary = aggregate(records)
    cfg = {"seconds": config.seconds, "history": config.history, "replan_hz": 1.0 / (config.replan_every * SIM_DT),
           "score_every": config.score_every, "terminate_on": list(config.terminate_on),
           "image": f"{config.image_width}x{config.image_height}", "episodes": len(seeds),
           "model": None if model is None else str(model), "backend": backend if "model" in agents else None,
           "wall_seconds": round(time.perf_counter() - started, 1), "seeds": seeds, **(info or {})}
    write_summary(out, summary, cfg, figures)
    return summary
