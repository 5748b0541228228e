"""Encoder/predictor weights on disk: official V-JEPA 2 checkpoints in, our own safetensors + JSON in and out.

Formats read by :func:`load_vjepa2_encoder` (vjepa2.md A5):

* **Official training checkpoint** (``vitl.pt``, ``vitg.pt``, Drive-JEPA's ``vitl_merge_3dataset_e50.pt``): one
  ``torch.save`` dict with ``encoder``, ``target_encoder``, ``predictor``, ... whose state dicts carry the DDP/wrapper
  prefixes ``module.backbone.``. Read with ``torch.load(weights_only=True)``: no pickled code is ever executed.
* **Hugging Face** ``VJEPA2Model`` safetensors (a file, or a folder of shards): ``encoder.layer.{i}.attention.
  {query,key,value,proj}``, ``encoder.embeddings.patch_embeddings.proj``, ``encoder.layernorm`` — fused back into
  the upstream ``qkv`` layout.
* **Ours** (:func:`save_encoder`): safetensors with the architecture as JSON in the header metadata, plus a
  human-readable ``.json`` sidecar.

Loading is strict: missing, unexpected and mis-shaped keys are collected and raised as one :class:`CheckpointError`.
The only key dropped on purpose is ``pos_embed`` (a RoPE encoder has none; vjepa2.md A5 says checkpoints may carry it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from drive_jepa_core.models.predictor import PREDICTOR_HEADS, Predictor, PredictorConfig
from drive_jepa_core.models.vit import EncoderConfig, VisionTransformer

# embed dim -> heads of the released models (vjepa2.md A1: ViT-L 16, ViT-H 16, ViT-g "xformers" 22); else dim / 64.
HEADS_BY_EMBED_DIM: dict[int, int] = {1024: 16, 1280: 16, 1408: 22}
DEFAULT_HEAD_DIM = 64
PREDICTOR_HEAD_DIM = 384 // PREDICTOR_HEADS  # 32, the released predictor (vjepa2.md A2)

# Wrapper prefixes of upstream state dicts: DDP adds "module.", MultiSeqWrapper adds "backbone." (vjepa2.md A5).
_WRAPPER_PREFIXES = ("module.", "backbone.")
# Keys a RoPE model legitimately lacks (vjepa2.md A5): the frozen sin-cos table of non-RoPE models.
_IGNORED_ENCODER_KEYS = frozenset({"pos_embed"})
_IGNORED_PREDICTOR_KEYS = frozenset({"predictor_pos_embed"})

OURS_FORMAT = "drive_jepa"  # safetensors metadata "format"
OURS_FORMAT_VERSION = "1"
_MAX_LISTED = 40  # keys named per category in an error message


class CheckpointError(ValueError):
    """A weights file cannot be read, or its tensors do not match the model (message lists every offending key)."""


# ---------------------------------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------------------------------
def infer_num_heads(embed_dim: int) -> int:
    """Attention heads for an encoder width: 1024→16, 1280→16, 1408→22 (released models), else ``dim // 64``."""
    if embed_dim in HEADS_BY_EMBED_DIM:
        return HEADS_BY_EMBED_DIM[embed_dim]
    if embed_dim % DEFAULT_HEAD_DIM:
        raise CheckpointError(f"cannot infer the number of heads for embed dim {embed_dim} (not a multiple of "
                              f"{DEFAULT_HEAD_DIM}); pass num_heads explicitly")
    return embed_dim // DEFAULT_HEAD_DIM


def load_vjepa2_encoder(path: str | Path, key: str = "target_encoder",
                        num_heads: int | None = None) -> VisionTransformer:
    """Build and strictly load an encoder from an official V-JEPA 2 checkpoint, an HF ``VJEPA2Model`` safetensors
    file/folder, or a file written by :func:`save_encoder`.

    Args:
        path: ``.pt``/``.pth`` training checkpoint, ``.safetensors`` file, a folder of HF safetensors shards, or a
            ``drive-jepa pretrain`` run directory (then its ``<key>.safetensors``).
        key: which state dict of a training checkpoint to use (``target_encoder`` = EMA weights, or ``encoder``).
        num_heads: override the head count inferred from the embed dim (:func:`infer_num_heads`).

    Returns:
        The encoder in eval mode, on CPU, float32.
    """
    return _load_vjepa2_module(path, key, "encoder", num_heads)  # type: ignore[return-value]


def load_vjepa2_predictor(path: str | Path, key: str = "predictor", num_heads: int | None = None) -> Predictor:
    """Build and strictly load a V-JEPA predictor from an official checkpoint (key ``predictor``), an HF
    ``VJEPA2Model`` safetensors file, or a file written by :func:`save_predictor`."""
    return _load_vjepa2_module(path, key, "predictor", num_heads)  # type: ignore[return-value]


def checkpoint_has_key(path: str | Path, key: str) -> bool:
    """Whether a training checkpoint (``.pt``) holds ``key`` (e.g. ``predictor``); False for safetensors files."""
    path = Path(path)
    if path.is_dir() or _sniff_safetensors(path):
        return False
    return key in _torch_load(path)


def save_encoder(model: VisionTransformer, path: str | Path) -> Path:
    """Write ``model`` as safetensors with its :class:`EncoderConfig` in the header and a ``.json`` sidecar."""
    return _save_ours(model, path, "encoder", model.config.to_dict())


def save_predictor(model: Predictor, path: str | Path) -> Path:
    """Write ``model`` as safetensors with its :class:`PredictorConfig` in the header and a ``.json`` sidecar."""
    return _save_ours(model, path, "predictor", model.config.to_dict())


def load_encoder(path: str | Path) -> VisionTransformer:
    """Load a file written by :func:`save_encoder` (any format :func:`load_vjepa2_encoder` reads also works)."""
    return load_vjepa2_encoder(path)


def load_predictor(path: str | Path) -> Predictor:
    """Load a file written by :func:`save_predictor`."""
    return load_vjepa2_predictor(path)


def infer_encoder_config(state: dict[str, torch.Tensor], num_heads: int | None = None) -> EncoderConfig:
    """Architecture from upstream-named encoder tensors: widths, depth, patch/tubelet size, MLP width, heads."""
    weight = state.get("patch_embed.proj.weight")
    if weight is None or weight.ndim != 5:
        raise CheckpointError("not a V-JEPA 2 video encoder: no 5-D 'patch_embed.proj.weight' among keys "
                              f"{_preview(state)}")
    embed_dim, in_chans, tubelet, patch_h, patch_w = (int(s) for s in weight.shape)
    if patch_h != patch_w:
        raise CheckpointError(f"non-square patches {patch_h}x{patch_w} are not supported")
    depth = _count_blocks(state, "blocks.")
    if depth == 0 or "blocks.0.mlp.fc1.weight" not in state:
        raise CheckpointError(f"encoder checkpoint has no 'blocks.{{i}}.*' tensors; keys {_preview(state)}")
    heads = int(num_heads) if num_heads is not None else infer_num_heads(embed_dim)
    return EncoderConfig(
        embed_dim=embed_dim, depth=depth, num_heads=heads,
        mlp_hidden_dim=int(state["blocks.0.mlp.fc1.weight"].shape[0]), patch_size=patch_h, tubelet_size=tubelet,
        in_chans=in_chans, qkv_bias="blocks.0.attn.qkv.bias" in state)


def infer_predictor_config(state: dict[str, torch.Tensor], num_heads: int | None = None) -> PredictorConfig:
    """Architecture from upstream-named predictor tensors (heads: ``width // 32`` as released unless given)."""
    weight = state.get("predictor_embed.weight")
    if weight is None or weight.ndim != 2:
        raise CheckpointError(f"not a V-JEPA predictor: no 'predictor_embed.weight' among keys {_preview(state)}")
    pred_dim, enc_dim = (int(s) for s in weight.shape)
    depth = _count_blocks(state, "predictor_blocks.")
    if depth == 0 or "predictor_blocks.0.mlp.fc1.weight" not in state:
        raise CheckpointError(f"predictor checkpoint has no 'predictor_blocks.{{i}}.*' tensors; keys {_preview(state)}")
    num_mask = sum(1 for k in state if re.fullmatch(r"mask_tokens\.\d+", k))
    return PredictorConfig(
        encoder_dim=enc_dim, predictor_dim=pred_dim, depth=depth,
        num_heads=int(num_heads) if num_heads is not None else max(1, pred_dim // PREDICTOR_HEAD_DIM),
        mlp_hidden_dim=int(state["predictor_blocks.0.mlp.fc1.weight"].shape[0]), num_mask_tokens=max(1, num_mask),
        qkv_bias="predictor_blocks.0.attn.qkv.bias" in state)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], ignore: frozenset[str] | set[str] = frozenset(),
                      source: str = "checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)`` that first collects *all* problems into one error.

    Raises:
        CheckpointError: naming the missing keys, unexpected keys and ``key: got shape vs expected shape``.
    """
    expected = model.state_dict()
    given = {k: v for k, v in state.items() if k not in ignore}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in set(given) & set(expected) if tuple(given[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or mismatched:
        parts = [f"{source} does not match {type(model).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("mis-shaped keys", mismatched)):
            if items:
                listed = ", ".join(items[:_MAX_LISTED])
                more = f", ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
                parts.append(f"  {len(items)} {title}: {listed}{more}")
        raise CheckpointError("\n".join(parts))
    model.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in given.items()},
                          strict=True)


# ---------------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------------
def _read_weights(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(top-level dict or flat tensors, safetensors metadata) of a .pt file, safetensors file or shard folder."""
    if path.is_dir():
        shards = sorted(path.glob("*.safetensors"))
        if not shards:
            raise CheckpointError(f"folder {path} holds no .safetensors files")
        tensors: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for shard in shards:
            t, m = _read_safetensors(shard)
            tensors.update(t)
            metadata.update(m)
        return tensors, metadata
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if _sniff_safetensors(path):
        return _read_safetensors(path)
    return _torch_load(path), {}


def _run_dir_member(path: Path, key: str) -> Path:
    """A ``drive-jepa pretrain`` run directory stands for its ``<key>.safetensors`` (e.g. the EMA target encoder)."""
    if path.is_dir() and (path / f"{key}.safetensors").is_file():
        return path / f"{key}.safetensors"
    return path


def _sniff_safetensors(path: Path) -> bool:
    """safetensors = 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc


def _torch_load(path: Path) -> dict[str, Any]:
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True) ({exc})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def _is_state_dict(obj: dict[str, Any]) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _select_key(path: Path, checkpoint: dict[str, Any], key: str) -> dict[str, torch.Tensor]:
    if key not in checkpoint:
        raise CheckpointError(f"{path}: no key {key!r} in checkpoint; it has {sorted(map(str, checkpoint))}")
    state = checkpoint[key]
    if not isinstance(state, dict) or not _is_state_dict(state):
        raise CheckpointError(f"{path}: checkpoint[{key!r}] is not a state dict of tensors")
    return state


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop leading ``module.`` / ``backbone.`` (in any order, any number) from every key."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        if key in out:
            raise CheckpointError(f"two tensors map to key {key!r} after stripping wrapper prefixes")
        out[key] = value
    return out


def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if ids and ids != set(range(max(ids) + 1)):
        raise CheckpointError(f"block indices under {prefix!r} are not contiguous: {sorted(ids)}")
    return len(ids)


def _preview(state: dict[str, Any], n: int = 8) -> str:
    keys = sorted(map(str, state))
    return str(keys[:n])[:-1] + (f", ... ({len(keys)} keys)]" if len(keys) > n else "]")


# ---------------------------------------------------------------------------------------------------------------------
# Hugging Face VJEPA2Model naming (vjepa2.md A5 "HF key renames") -> upstream naming
# ---------------------------------------------------------------------------------------------------------------------
_HF_MODEL_PREFIX = "vjepa2."  # VJEPA2ForVideoClassification wraps the model under this attribute
_HF_OTHER_HEADS = ("pooler.", "classifier.")


def _looks_hf(tensors: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("encoder.layer.", "predictor.layer.", _HF_MODEL_PREFIX)) for k in tensors)


def _hf_split(tensors: dict[str, torch.Tensor], root: str) -> dict[str, torch.Tensor]:
    """Tensors under ``root`` (``encoder.``/``predictor.``) with the root and any ``vjepa2.`` prefix removed; tensors
    of the *other* HF sub-model and of classification heads are skipped, anything else is kept (and then reported
    as unexpected by the strict load)."""
    roots = ("encoder.", "predictor.")
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.startswith(_HF_MODEL_PREFIX):
            key = key[len(_HF_MODEL_PREFIX):]
        if key.startswith(_HF_OTHER_HEADS) or (key.startswith(roots) and not key.startswith(root)):
            continue
        out[key[len(root):] if key.startswith(root) else key] = value
    return out


def _hf_blocks(state: dict[str, torch.Tensor], src_prefix: str, dst_prefix: str) -> dict[str, torch.Tensor]:
    """Map HF transformer layers ``{src_prefix}{i}.…`` to upstream blocks ``{dst_prefix}{i}.…`` and fuse q/k/v."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    pattern = re.compile(re.escape(src_prefix) + r"(\d+)\.(.*)")
    for key, value in state.items():
        m = pattern.fullmatch(key)
        if not m:
            out[key] = value
            continue
        block, rest = f"{dst_prefix}{m.group(1)}.", m.group(2)
        rest = re.sub(r"^attention\.(attention\.)?", "attn.", rest)  # older ports nest attention.attention
        part = re.fullmatch(r"attn\.(query|key|value)\.(weight|bias)", rest)
        if part:
            qkv.setdefault((block, part.group(2)), {})[part.group(1)] = value
        else:
            out[block + rest] = value
    for (block, kind), parts in qkv.items():
        absent = [p for p in ("query", "key", "value") if p not in parts]
        if absent:
            raise CheckpointError(f"HF checkpoint lacks {', '.join(absent)} {kind} of {block.rstrip('.')}")
        out[f"{block}attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


def _hf_encoder_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _hf_blocks(_hf_split(tensors, "encoder."), "layer.", "blocks.")
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("embeddings.patch_embeddings."):
            key = "patch_embed." + key[len("embeddings.patch_embeddings."):]
        elif key == "embeddings.position_embeddings":
            key = "pos_embed"
        elif key.startswith("layernorm."):
            key = "norm." + key[len("layernorm."):]
        renamed[key] = value
    return renamed


def _hf_predictor_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = _hf_blocks(_hf_split(tensors, "predictor."), "layer.", "predictor_blocks.")
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "embeddings.mask_tokens":  # (num_mask_tokens, 1, 1, P) stacked
            for i in range(value.shape[0]):
                renamed[f"mask_tokens.{i}"] = value[i]
            continue
        for src, dst in (("embeddings.predictor_embeddings.", "predictor_embed."), ("layernorm.", "predictor_norm."),
                         ("proj.", "predictor_proj.")):
            if key.startswith(src):
                key = dst + key[len(src):]
                break
        if key == "embeddings.position_embeddings":
            key = "predictor_pos_embed"
        renamed[key] = value
    return renamed


# ---------------------------------------------------------------------------------------------------------------------
# Our own format
# ---------------------------------------------------------------------------------------------------------------------
def _save_ours(model: nn.Module, path: str | Path, kind: str, config: dict[str, Any]) -> Path:
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": OURS_FORMAT, "format_version": OURS_FORMAT_VERSION, "kind": kind}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={**header, "config": json.dumps(config, sort_keys=True)})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps({**header, "config": config}, indent=2, sort_keys=True) + "\n")
    return path


def _load_vjepa2_module(path: str | Path, key: str, kind: str, num_heads: int | None) -> nn.Module:
    """The body of :func:`load_vjepa2_encoder` / :func:`load_vjepa2_predictor`; ``kind`` is encoder | predictor."""
    path = _run_dir_member(Path(path), key)
    tensors, metadata = _read_weights(path)
    if metadata.get("format") == OURS_FORMAT:
        return _load_ours(path, tensors, metadata, kind)
    hf_state, infer_config, module_cls, ignored = (
        (_hf_encoder_state, infer_encoder_config, VisionTransformer, _IGNORED_ENCODER_KEYS) if kind == "encoder"
        else (_hf_predictor_state, infer_predictor_config, Predictor, _IGNORED_PREDICTOR_KEYS))
    if _is_state_dict(tensors):
        state = hf_state(tensors) if _looks_hf(tensors) else _strip_prefixes(tensors)
    else:
        state = _strip_prefixes(_select_key(path, tensors, key))
    model = module_cls(infer_config(state, num_heads))
    load_state_strict(model, state, ignore=ignored, source=str(path))
    return model.eval()


def _load_ours(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], kind: str) -> nn.Module:
    if metadata.get("format_version") != OURS_FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported format_version {metadata.get('format_version')!r}")
    if metadata.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {metadata.get('kind')!r}, not a {kind!r}")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: header metadata has no valid 'config' ({exc})") from exc
    model: nn.Module
    if kind == "encoder":
        model = VisionTransformer(EncoderConfig.from_dict(config))
    else:
        model = Predictor(PredictorConfig.from_dict(config))
    load_state_strict(model, tensors, source=str(path))
    return model.eval()
