"""``drive-jepa world …``: generate scene sets of the built-in world and look at scenes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "world", help="built-in synthetic driving world: generate scenes, show a scene",
        description="The built-in synthetic driving world (procedural maps, IDM traffic, expert driver, camera).")
    sub = parser.add_subparsers(dest="world_command", metavar="WORLD_COMMAND")

    gen = sub.add_parser("generate", help="write a split of scenes (.npz) to a directory",
                         description="Simulate logs and cut scenes; train/val/test use disjoint seed ranges.")
    gen.add_argument("--split", required=True, choices=("train", "val", "test"))
    gen.add_argument("--scenes", type=int, required=True, help="number of scenes to write")
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    gen.add_argument("--seed", type=int, default=0, help="offset of the first log inside the split's seed range")
    gen.add_argument("--workers", type=int, default=1, help="worker processes")
    gen.add_argument("--no-frames", action="store_true", help="skip camera rendering (map/agents/ego only)")
    gen.set_defaults(func=_generate)

    show = sub.add_parser("show", help="bird's-eye PNG (and camera GIF) of one scene")
    show.add_argument("scene", type=Path, help="scene .npz file")
    show.add_argument("--out", type=Path, required=True, help="output PNG")
    show.add_argument("--gif", type=Path, default=None, help="also write the camera frames as a GIF")
    show.set_defaults(func=_show)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])


def _generate(args: argparse.Namespace) -> int:
    from drive_jepa_core.world.generate import generate_split

    paths = generate_split(args.split, args.scenes, args.out, seed=args.seed, workers=args.workers,
                           progress=True, frames=not args.no_frames)
    print(f"wrote {len(paths)} {args.split} scenes to {args.out}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from drive_jepa_core.scene.format import SceneFormatError, load_scene
    from drive_jepa_core.world.bev import plot_scene_bev

    try:
        scene = load_scene(args.scene, load_frames=args.gif is not None)
    except (SceneFormatError, FileNotFoundError) as exc:
        print(f"drive-jepa world show: {exc}", file=sys.stderr)
        return 2
    out = plot_scene_bev(scene, args.out)
    print(f"wrote {out}")
    if args.gif is not None:
        from drive_jepa_core.world.video import scene_gif

        try:
            print(f"wrote {scene_gif(scene, args.gif)}")
        except ValueError as exc:
            print(f"drive-jepa world show: {exc}", file=sys.stderr)
            return 2
    return 0
