"""``drive-jepa train``, ``drive-jepa eval`` and ``drive-jepa vocab {build,score}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    # ------------------------------------------------------------------------------------------------ train
    p = subparsers.add_parser(
        "train", help="train a planner (single process, or DDP under torchrun / with --nproc)",
        description="Train the Drive-JEPA planner on a scene directory. Runs as one process, or under torchrun "
                    "(`torchrun --nproc_per_node=N -m drive_jepa_core.cli train ...`; NCCL on GPU, gloo on CPU); "
                    "--nproc N launches torchrun for you.")
    p.add_argument("--config", required=True, help="training YAML, or a packaged name: tiny | vitl")
    p.add_argument("--data", required=True, help="training scene directory")
    p.add_argument("--out", required=True, help="run directory (weights, checkpoint, log.jsonl, config.yaml)")
    p.add_argument("--val", default=None, help="validation scene directory (keeps best.safetensors)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--nproc", type=int, default=1, help="processes to launch with torchrun on this machine")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (YAML syntax), e.g. --set train.max_steps=100; repeatable")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    # ------------------------------------------------------------------------------------------------- eval
    p = subparsers.add_parser(
        "eval", help="open-loop evaluation: PDMS (v1.1), EPDMS (v2), diversity; metrics.json + report.html",
        description="Run a trained planner (or a baseline agent) on every scene of a split, select the top-scored "
                    "proposal, simulate and score it. EC (two-frame extended comfort) is computed between consecutive "
                    "frames of a log 0.5 s apart when both are in the split; otherwise it is NaN and its weight is "
                    "dropped from EPDMS, as NAVSIM does for a frame without a predecessor.")
    p.add_argument("--model", default=None, help="run directory or planner .safetensors")
    p.add_argument("--agent", default="model", choices=("model", "constant-velocity", "human"),
                   help="model (needs --model), or a baseline: constant-velocity, human (logged future)")
    p.add_argument("--scenes", required=True, help="scene directory of the split to evaluate")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--best", action="store_true", help="use RUN_DIR/best.safetensors when present")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N scenes")
    p.add_argument("--plots", type=int, default=12, help="bird's-eye plots in the report (0: none)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_eval)

    # ------------------------------------------------------------------------------------------------ vocab
    p = subparsers.add_parser("vocab", help="MTD data: trajectory vocabulary (k-means) and per-scene pseudo-teachers")
    vocab_sub = p.add_subparsers(dest="vocab_command", metavar="ACTION")
    b = vocab_sub.add_parser("build", help="k-means vocabulary of the training scenes' human futures")
    b.add_argument("--scenes", required=True, help="training scene directory")
    b.add_argument("--out", required=True, help="output .npy (K, 8, 3)")
    b.add_argument("--k", type=int, default=None, help="number of centres (default 8192, drive_jepa.md §6.1)")
    b.add_argument("--seed", type=int, default=None)
    b.set_defaults(func=_cmd_vocab_build)
    s = vocab_sub.add_parser("score", help="score the vocabulary in every scene; keep EPDMS >= 0.95 (max 256)")
    s.add_argument("--scenes", required=True, help="training scene directory")
    s.add_argument("--vocab", required=True, help="vocabulary .npy from `vocab build` (or an upstream (K, 40, 3) file)")
    s.add_argument("--out-dir", default=None, help="teacher cache directory (default: next to each scene)")
    # Not "--version": the top-level parser owns that flag.
    s.add_argument("--score-version", choices=("v1", "v2"), default="v2",
                   help="score: v2 EPDMS without EC (default, the training score) or v1 PDMS")
    s.add_argument("--threshold", type=float, default=None, help="default 0.95 (drive_jepa.md §6.3)")
    s.add_argument("--cap", type=int, default=None, help="default 256 (drive_jepa.md §6.3)")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--overwrite", action="store_true", help="recompute scenes that already have teachers")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_cmd_vocab_score)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


# ---------------------------------------------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    if args.nproc > 1:
        from torch.distributed.run import main as torchrun_main

        # Workers run this module directly (same options, no --nproc), independent of the top-level registry.
        argv = ["--standalone", f"--nproc_per_node={args.nproc}", "-m", "drive_jepa_core.train.cli", "train",
                "--config", args.config, "--data", args.data, "--out", args.out]
        if args.val:
            argv += ["--val", args.val]
        if args.resume:
            argv.append("--resume")
        if args.device:
            argv += ["--device", args.device]
        for item in args.set:
            argv += ["--set", item]
        if args.no_progress:
            argv.append("--no-progress")
        torchrun_main(argv)
        return 0

    from drive_jepa_core.train.config import load_train_config
    from drive_jepa_core.train.loop import train

    config = load_train_config(args.config, args.set)
    summary = train(config, args.data, args.out, val=args.val, resume=args.resume, device=args.device,
                    progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from drive_jepa_core.train.evaluate import evaluate

    if args.agent == "model" and not args.model:
        print("drive-jepa eval: --model RUN_DIR is required unless --agent is a baseline", file=sys.stderr)
        return 2
    metrics = evaluate(args.scenes, args.out, model=args.model, agent=args.agent, prefer_best=args.best,
                       batch_size=args.batch_size, device=args.device, limit=args.limit, num_plots=args.plots,
                       progress=not args.no_progress)
    print(json.dumps(metrics["summary"]))
    return 0


def _cmd_vocab_build(args: argparse.Namespace) -> int:
    import numpy as np

    from drive_jepa_core.scene import list_scenes
    from drive_jepa_core.train.vocab import KMEANS_SEED, VOCAB_SIZE, build_vocabulary, collect_human_futures

    futures = collect_human_futures(list_scenes(args.scenes), progress=True)
    k = args.k if args.k is not None else VOCAB_SIZE
    vocab = build_vocabulary(futures, k=k, seed=args.seed if args.seed is not None else KMEANS_SEED)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vocab)
    print(json.dumps({"vocab": str(out), "k": len(vocab), "trajectories": len(futures)}))
    return 0


def _cmd_vocab_score(args: argparse.Namespace) -> int:
    from drive_jepa_core.train.vocab import (
        MAX_PSEUDO_TEACHERS_PER_SCENE,
        PSEUDO_TEACHER_THRESHOLD,
        compute_pseudo_teachers,
        load_vocabulary,
    )

    summary = compute_pseudo_teachers(
        args.scenes, load_vocabulary(args.vocab), teachers_dir=args.out_dir, version=args.score_version,
        threshold=args.threshold if args.threshold is not None else PSEUDO_TEACHER_THRESHOLD,
        cap=args.cap if args.cap is not None else MAX_PSEUDO_TEACHERS_PER_SCENE, workers=args.workers,
        overwrite=args.overwrite, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m drive_jepa_core.train.cli {train,eval,vocab} …`` (what ``--nproc`` runs under torchrun)."""
    parser = argparse.ArgumentParser(prog="drive-jepa")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


__all__ = ["main", "register"]

if __name__ == "__main__":
    sys.exit(main())
