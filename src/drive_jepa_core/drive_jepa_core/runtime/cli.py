"""``drive-jepa export onnx`` and ``drive-jepa export engine``."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="deployable models: ONNX graph, TensorRT engine",
                              description="Export a trained planner for the vehicle runtime.")
    sub = p.add_subparsers(dest="export_command", metavar="FORMAT")

    o = sub.add_parser(
        "onnx", help="one static-shape ONNX graph (encoder + planner + scorer), verified against torch",
        description="Trace encoder + planner + scorer into ONE static-shape ONNX graph (inputs video, ego_status, "
                    "ego2image; outputs proposals, scores; batch 1), record input size / Np / M / checkpoint sha256 "
                    "as metadata, and verify it in ONNX Runtime against torch on random inputs (relative error "
                    "<= 1e-4, fp32; a model that itself amplifies fp32 rounding beyond that is accepted only if "
                    "ONNX Runtime is as close to a float64 reference as torch fp32 is, unless --strict). A failed "
                    "verification leaves no file behind and exits 1.")
    o.add_argument("--model", required=True, help="training run directory or planner .safetensors")
    o.add_argument("--out", default=None, help="output .onnx (default: next to the weights, model.onnx)")
    o.add_argument("--best", action="store_true", help="export RUN_DIR/best.safetensors when present")
    o.add_argument("--tolerance", type=float, default=None, help="max relative error of the verification")
    o.add_argument("--strict", action="store_true",
                   help="decide on the fp32 comparison alone (no float64 conditioning check for models that amplify "
                        "fp32 rounding)")
    o.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime verification (not recommended)")
    o.set_defaults(func=_cmd_onnx)

    e = sub.add_parser(
        "engine", help="TensorRT engine from an exported ONNX, cached next to it with a JSON sidecar",
        description="Build a TensorRT engine with the TensorRT Python API. The engine is written next to the ONNX "
                    "(model.fp32.engine / model.fp16.engine) with a sidecar recording the ONNX sha256, TensorRT "
                    "version, GPU name and precision; an engine whose sidecar matches is reused, anything else is "
                    "rebuilt (Autoware / Isaac ROS behaviour). Needs the tensorrt package and an NVIDIA GPU.")
    e.add_argument("--onnx", required=True, help="ONNX file from `drive-jepa export onnx`")
    e.add_argument("--out", default=None, help="engine path (default: next to the ONNX)")
    e.add_argument("--fp16", action="store_true", help="allow fp16 kernels (TensorRT 10 weak typing)")
    e.add_argument("--workspace-mb", type=int, default=None, help="builder workspace in MiB (default 2048)")
    e.add_argument("--force", action="store_true", help="rebuild even when the cached engine is valid")
    e.set_defaults(func=_cmd_engine)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _cmd_onnx(args: argparse.Namespace) -> int:
    from drive_jepa_core.runtime.export_onnx import EXPORT_TOLERANCE, ExportVerificationError, export_onnx
    from drive_jepa_core.runtime.model_check import ModelCheckError

    try:
        report = export_onnx(args.model, args.out, verify=not args.no_verify,
                             tolerance=args.tolerance if args.tolerance is not None else EXPORT_TOLERANCE,
                             prefer_best=args.best, strict=args.strict)
    except (ModelCheckError, ExportVerificationError) as exc:
        print(f"drive-jepa export onnx: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"onnx": str(report.path), "bytes": report.bytes, "relative_errors": report.errors,
                      "fp32_conditioning": report.conditioning, "model": report.info.to_json()}))
    return 0


def _cmd_engine(args: argparse.Namespace) -> int:
    from drive_jepa_core.runtime.backends import BackendUnavailableError
    from drive_jepa_core.runtime.export_engine import DEFAULT_WORKSPACE_MB, ensure_engine, sidecar_path
    from drive_jepa_core.runtime.model_check import ModelCheckError, read_sidecar

    try:
        engine = ensure_engine(args.onnx, fp16=args.fp16, workspace_mb=args.workspace_mb or DEFAULT_WORKSPACE_MB,
                               engine_path=args.out, force_rebuild=args.force)
    except (ModelCheckError, BackendUnavailableError) as exc:
        print(f"drive-jepa export engine: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"engine": str(engine), "sidecar": read_sidecar(sidecar_path(engine))}))
    return 0
