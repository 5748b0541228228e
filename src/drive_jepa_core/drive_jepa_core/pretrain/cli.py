"""``drive-jepa pretrain``: V-JEPA pretraining of the video encoder on scene files."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "pretrain_tiny.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pretrain`` subcommand."""
    parser = subparsers.add_parser(
        "pretrain",
        help="V-JEPA pretraining of the video encoder on driving clips",
        description=(
            "Self-supervised V-JEPA pretraining (masked latent prediction with an EMA target encoder) on the camera "
            "frames of scene files. Continue from an official V-JEPA 2 checkpoint with --init (as Drive-JEPA does), "
            "or start from scratch. Re-running with the same --out resumes from its last checkpoint. The run "
            "directory's target_encoder.safetensors is what planner training should load."),
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="pretraining YAML (default: the CPU-friendly configs/pretrain_tiny.yaml; "
                             "configs/pretrain_vitl.yaml is the paper-size setting)")
    parser.add_argument("--data", type=Path, required=True, help="directory of scene files (.npz)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run directory (created; resumed if it has a checkpoint)")
    parser.add_argument("--init", type=Path, default=None,
                        help="initial weights: official V-JEPA 2 .pt (e.g. vitl.pt), HF VJEPA2Model safetensors, "
                             "an encoder .safetensors of ours, or a previous pretraining run directory")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps (overrides optim.steps)")
    parser.add_argument("--stop-at", type=int, default=None,
                        help="save and stop after this step (the schedules still span all steps); re-run to continue")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from drive_jepa_core.pretrain.train import load_pretrain_config, pretrain

    def log(msg: str) -> None:
        print(f"drive-jepa pretrain: {msg}", file=sys.stderr)

    config = load_pretrain_config(args.config)
    summary = pretrain(config, args.data, args.out, init=args.init, steps=args.steps, stop_at=args.stop_at,
                       progress=not args.no_progress,
                       log=log)
    print(json.dumps(summary, indent=2))
    return 0
