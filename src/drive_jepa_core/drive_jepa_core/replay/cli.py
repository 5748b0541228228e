"""``drive-jepa replay``, ``drive-jepa bag import`` and ``drive-jepa bag synth``.

Registering the commands imports only the light pairing module; each command imports its machinery when it runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from drive_jepa_core.constants import COMMAND_STRAIGHT
from drive_jepa_core.replay.pairing import PairingConfig

STORAGE_CHOICES = ("mcap", "sqlite3")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="replay a rosbag2 through the planner: open-loop metrics, report, output bag",
        description="Read a rosbag2 (sqlite3 or mcap) in log-time order, pair each camera frame with the frame 0.5 s "
                    "earlier and the odometry exactly as the ROS node does, run the planner (or the constant-velocity "
                    "baseline without --model) and write metrics.json (ADE/FDE at 1/2/4 s vs the bag's odometry, "
                    "two-frame extended comfort, diversity, latency, skipped frames by reason), frames.json/.npz "
                    "(per-frame outputs), report.html and an mcap bag with the node's output topics.")
    _replay_arguments(p)
    p.set_defaults(func=_guarded(_cmd_replay))

    p = subparsers.add_parser("bag", help="rosbag2 tools: import a recording as scenes, write a synthetic bag")
    bag_sub = p.add_subparsers(dest="bag_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    imp = bag_sub.add_parser(
        "import", help="camera + odometry recording -> scene files (no map/agents: imitation terms only)",
        description="Cut one scene per camera stamp every --stride seconds: ego history/future from the odometry at "
                    "10 Hz (-1.5 s .. +5.0 s), 12 camera frames at 2 Hz (-1.5 s .. +4.0 s), the last driving "
                    "command, calibration from camera_info. Such scenes have no map or agents, so only the imitation "
                    "losses train on them.")
    _import_arguments(imp)
    imp.set_defaults(func=_guarded(_cmd_import))
    syn = bag_sub.add_parser(
        "synth", help="record an episode of the built-in world as a rosbag2",
        description="Drive the built-in world with its expert and record camera (10 Hz), camera_info, odometry "
                    "(odom -> base_link) and driving command topics.")
    syn.add_argument("out", type=Path, help="bag directory to create (must not exist)")
    syn.add_argument("--seed", type=int, default=0, help="world seed")
    syn.add_argument("--seconds", type=float, default=20.0, help="recorded duration")
    syn.add_argument("--storage", choices=STORAGE_CHOICES, default="mcap")
    syn.add_argument("--image-format", choices=("raw", "jpeg"), default="raw")
    syn.add_argument("--width", type=int, default=None, help="image width (default 512)")
    syn.add_argument("--height", type=int, default=None, help="image height (default 256)")
    syn.add_argument("--odometry-rate", type=float, default=None, help="Hz, a multiple of 10 (default 50)")
    syn.set_defaults(func=_guarded(_cmd_synth))


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a command; bad input (missing bag, ambiguous topics, bad options) prints one clear line, exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from drive_jepa_core.replay.bag_io import BagError

        try:
            return int(func(args) or 0)
        except (BagError, FileNotFoundError, ValueError) as exc:
            print(f"drive-jepa: error: {exc}", file=sys.stderr)
            return 2

    return run


# ----------------------------------------------------------------------------------------------------------- replay
def _topic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--camera-topic", default=None, help="camera topic (Image or CompressedImage); default: "
                        "found by type")
    parser.add_argument("--odom-topic", default=None, help="nav_msgs/Odometry topic; default: found by type")
    parser.add_argument("--command-topic", default=None, help="drive_jepa_msgs/DrivingCommand topic; default: found "
                        "by type (straight when absent)")
    parser.add_argument("--camera-info-topic", default=None, help="sensor_msgs/CameraInfo topic; default: found by "
                        "type (the built-in world camera when absent)")


def _replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--model", type=Path, default=None, help="trained planner (run directory, .safetensors, "
                        ".onnx, .engine); default: the --baseline")
    parser.add_argument("--baseline", choices=("constant-velocity",), default=None,
                        help="baseline planner when no --model (default constant-velocity)")
    parser.add_argument("--backend", default="torch", help="torch | onnxruntime | tensorrt (with --model)")
    parser.add_argument("--device", default=None, help="cpu, cuda[:N]; default: the backend's choice")
    _topic_arguments(parser)
    parser.add_argument("--default-command", type=int, default=COMMAND_STRAIGHT, choices=(0, 1, 2),
                        help="command until one is received: 0 left, 1 straight, 2 right")
    parser.add_argument("--output-frame", choices=("odom", "ego"), default="odom",
                        help="frame of the output bag's paths (odom: viewable without TF; ego: base_link)")
    parser.add_argument("--storage", choices=STORAGE_CHOICES, default="mcap", help="storage of the output bag")
    parser.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html and its PNGs")
    parser.add_argument("--report-frames", type=int, default=6, help="camera/BEV figures in the report")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many camera messages")
    defaults = PairingConfig()
    parser.add_argument("--frame-gap-tolerance", type=float, default=defaults.frame_gap_tolerance,
                        help="s; the earlier frame must lie this close to t-0.5 s")
    parser.add_argument("--odometry-max-age", type=float, default=defaults.odometry_max_age,
                        help="s; the odometry sample nearest the image must be this close")
    parser.add_argument("--acceleration-window", type=float, default=defaults.acceleration_window,
                        help="s; finite-difference window of the ego acceleration (0: zero acceleration)")


def _cmd_replay(args: argparse.Namespace) -> int:
    from drive_jepa_core.replay.replay import replay_bag

    pairing = PairingConfig(frame_gap_tolerance=args.frame_gap_tolerance, odometry_max_age=args.odometry_max_age,
                            acceleration_window=args.acceleration_window)
    metrics = replay_bag(args.bag, args.out, model=args.model, baseline=args.baseline, backend=args.backend,
                         device=args.device, camera_topic=args.camera_topic, odometry_topic=args.odom_topic,
                         command_topic=args.command_topic, camera_info_topic=args.camera_info_topic, pairing=pairing,
                         default_command=args.default_command, output_frame=args.output_frame, storage=args.storage,
                         write_bag=not args.no_bag, report=not args.no_report, report_frames=args.report_frames,
                         max_frames=args.max_frames, progress=sys.stderr.isatty())
    f, ol = metrics["frames"], metrics["open_loop"]
    skipped = ", ".join(f"{k} {v}" for k, v in f["skipped"].items() if v) or "none"
    print(f"replayed {f['images']} images: {f['planned']} planned, {f['skipped_total']} skipped ({skipped}), "
          f"{f['no_future']} without a 4 s odometry future")
    if ol.get("ade_4s") is not None:
        print(f"open loop: ADE@4s {ol['ade_4s']:.3f} m, FDE@4s {ol['fde_4s']:.3f} m, heading error "
              f"{ol['heading_error_rad']:.4f} rad")
    if metrics["latency_ms"]["total"]["p50"] is not None:
        print(f"latency p50 {metrics['latency_ms']['total']['p50']:.1f} ms, p99 "
              f"{metrics['latency_ms']['total']['p99']:.1f} ms")
    print(f"outputs in {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------------------- import
def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory or .mcap/.db3 file")
    parser.add_argument("--out", type=Path, required=True, help="scene directory to write (*.npz)")
    parser.add_argument("--stride", type=float, default=1.0, help="seconds between scene anchors")
    parser.add_argument("--split", default="train", help="the scenes' split name")
    parser.add_argument("--width", type=int, default=None, help="downscale frames to this width (keeps aspect)")
    parser.add_argument("--default-command", type=int, choices=(0, 1, 2), default=COMMAND_STRAIGHT,
                        help="command when none was received: 0 left, 1 straight, 2 right")
    parser.add_argument("--log-name", default=None, help="log name of the scenes (default: the bag's name)")
    _topic_arguments(parser)


def _cmd_import(args: argparse.Namespace) -> int:
    from drive_jepa_core.replay.bag_import import ImportConfig, import_bag

    config = ImportConfig(stride=args.stride, split=args.split, width=args.width,
                          default_command=args.default_command)
    summary = import_bag(args.bag, args.out, config, camera_topic=args.camera_topic, odometry_topic=args.odom_topic,
                         command_topic=args.command_topic, camera_info_topic=args.camera_info_topic,
                         log_name=args.log_name, progress=sys.stderr.isatty())
    skipped = ", ".join(f"{k} {v}" for k, v in summary["skipped"].items() if v) or "none"
    print(f"wrote {summary['scenes']} scenes to {args.out} (skipped anchors: {skipped}); without a map or agents "
          f"they train the imitation terms only")
    return 0


# ------------------------------------------------------------------------------------------------------------ synth
def _cmd_synth(args: argparse.Namespace) -> int:
    from drive_jepa_core.replay.bag_io import DEFAULT_ODOMETRY_RATE, write_synthetic_bag

    size = {k: v for k, v in (("width", args.width), ("height", args.height)) if v is not None}
    bag = write_synthetic_bag(args.out, seed=args.seed, seconds=args.seconds, storage=args.storage,
                              image_format=args.image_format,
                              odometry_rate=args.odometry_rate or DEFAULT_ODOMETRY_RATE, **size)
    print(f"wrote {bag.path} ({bag.storage}): {len(bag.image_stamps_ns)} images, "
          f"{len(bag.odometry_stamps_ns)} odometry messages; topics {bag.topics}")
    return 0
