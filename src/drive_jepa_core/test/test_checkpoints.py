"""Checkpoint loading and saving (vjepa2.md A5): official training-checkpoint layout, Hugging Face VJEPA2Model
safetensors, our own safetensors + JSON, strict errors, head inference, and that nothing is unpickled."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from drive_jepa_core.checkpoints import (
    CheckpointError,
    infer_num_heads,
    load_encoder,
    load_predictor,
    load_vjepa2_encoder,
    load_vjepa2_predictor,
    save_encoder,
    save_predictor,
)
from drive_jepa_core.models.predictor import Predictor, PredictorConfig
from drive_jepa_core.models.vit import EncoderConfig, VisionTransformer

torch.set_num_threads(1)

DIM, DEPTH, HIDDEN = 64, 2, 96  # dim 64 -> 1 head of 64 (dim / 64), MLP ratio 1.5 inferred from fc1


def make_encoder(seed: int) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(EncoderConfig(embed_dim=DIM, depth=DEPTH, num_heads=1, mlp_hidden_dim=HIDDEN)).eval()


def make_predictor(seed: int = 5) -> Predictor:
    torch.manual_seed(seed)
    pred = Predictor(PredictorConfig(encoder_dim=DIM, predictor_dim=64, depth=1, num_heads=2, mlp_hidden_dim=128,
                                     num_mask_tokens=3)).eval()
    with torch.no_grad():
        for token in pred.mask_tokens:
            token.normal_()
    return pred


VIDEO = torch.randn(2, 3, 2, 32, 64)


def same_output(a: VisionTransformer, b: VisionTransformer) -> bool:
    with torch.no_grad():
        return torch.equal(a(VIDEO), b(VIDEO))


def official_layout(state: dict[str, torch.Tensor]) -> OrderedDict:
    """State dict as the upstream trainer saves it: DDP(MultiSeqWrapper(model)) -> 'module.backbone.' prefixes."""
    return OrderedDict((f"module.backbone.{k}", v.clone()) for k, v in state.items())


def hf_layout(encoder: VisionTransformer, predictor: Predictor | None = None) -> dict[str, torch.Tensor]:
    """HF VJEPA2Model naming (vjepa2.md A5 renames; qkv split into query/key/value)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in encoder.state_dict().items():
        if key.startswith("patch_embed."):
            out["encoder.embeddings.patch_embeddings." + key[len("patch_embed."):]] = value
        elif key.startswith("norm."):
            out["encoder.layernorm." + key[len("norm."):]] = value
        else:
            key = "encoder.layer." + key[len("blocks."):]
            if ".attn.qkv." in key:
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                    out[key.replace("attn.qkv", f"attention.{name}")] = part
            else:
                out[key.replace(".attn.", ".attention.")] = value
    if predictor is not None:
        p = predictor.state_dict()
        out["predictor.embeddings.predictor_embeddings.weight"] = p["predictor_embed.weight"]
        out["predictor.embeddings.predictor_embeddings.bias"] = p["predictor_embed.bias"]
        out["predictor.embeddings.mask_tokens"] = torch.stack([p[f"mask_tokens.{i}"] for i in range(3)])
        for key, value in p.items():
            if key.startswith("predictor_blocks."):
                key = "predictor.layer." + key[len("predictor_blocks."):]
                if ".attn.qkv." in key:
                    for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                        out[key.replace("attn.qkv", f"attention.{name}")] = part
                else:
                    out[key.replace(".attn.", ".attention.")] = value
        for src, dst in (("predictor_norm.", "predictor.layernorm."), ("predictor_proj.", "predictor.proj.")):
            for suffix in ("weight", "bias"):
                out[dst + suffix] = p[src + suffix]
    out["pooler.query_tokens"] = torch.zeros(1, 1, DIM)  # a classification-head tensor the encoder must skip
    return {k: v.contiguous() for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------------------
def test_heads_inference_table() -> None:
    # vjepa2.md A1: ViT-L 1024 -> 16, ViT-H 1280 -> 16 (head dim 80), ViT-g 1408 -> 22; otherwise dim / 64
    assert infer_num_heads(1024) == 16
    assert infer_num_heads(1280) == 16
    assert infer_num_heads(1408) == 22
    assert infer_num_heads(192) == 3 and infer_num_heads(384) == 6 and infer_num_heads(768) == 12
    assert infer_num_heads(64) == 1
    with pytest.raises(CheckpointError, match="num_heads"):
        infer_num_heads(100)


def test_official_checkpoint_both_keys(tmp_path) -> None:
    online, target, predictor = make_encoder(1), make_encoder(2), make_predictor()
    path = tmp_path / "vitl.pt"
    torch.save({"encoder": official_layout(online.state_dict()),
                "target_encoder": official_layout(target.state_dict()),
                "predictor": official_layout(predictor.state_dict()),
                "epoch": 10, "loss": 0.5, "batch_size": 24, "world_size": 8, "lr": 5.25e-4}, path)
    loaded = load_vjepa2_encoder(path)  # default key: target_encoder (the EMA weights)
    assert loaded.config == target.config
    assert loaded.config.num_heads == 1 and loaded.config.mlp_hidden_dim == HIDDEN
    assert loaded.config.patch_size == 16 and loaded.config.tubelet_size == 2 and loaded.config.depth == DEPTH
    assert same_output(loaded, target)
    assert same_output(load_vjepa2_encoder(path, key="encoder"), online)
    pred = load_vjepa2_predictor(path)
    assert pred.config.num_mask_tokens == 3 and pred.config.num_heads == 2  # width 64 / 32 (released head dim)
    ctx, ids, tgt = torch.randn(1, 3, DIM), torch.tensor([[0, 2, 5]]), torch.tensor([[1, 7]])
    with torch.no_grad():
        assert torch.equal(pred(ctx, ids, tgt, (1, 2, 4)), predictor(ctx, ids, tgt, (1, 2, 4)))
    with pytest.raises(CheckpointError, match=r"no key 'ema'.*'encoder'.*'target_encoder'"):
        load_vjepa2_encoder(path, key="ema")


def test_official_prefix_variants_and_pos_embed_are_accepted(tmp_path) -> None:
    target = make_encoder(3)
    state = {f"module.{k}": v for k, v in target.state_dict().items()}  # only "module."
    state["module.backbone.pos_embed"] = torch.zeros(1, 4, DIM)  # unused by a RoPE model (vjepa2.md A5)
    path = tmp_path / "ckpt.pth"
    torch.save({"target_encoder": state}, path)
    assert same_output(load_vjepa2_encoder(path), target)


def test_num_heads_override(tmp_path) -> None:
    torch.manual_seed(0)
    model = VisionTransformer(EncoderConfig(embed_dim=DIM, depth=1, num_heads=2, mlp_hidden_dim=HIDDEN)).eval()
    path = tmp_path / "two_heads.pt"
    torch.save({"target_encoder": official_layout(model.state_dict())}, path)
    assert load_vjepa2_encoder(path).config.num_heads == 1  # the table cannot know; tensors look identical
    loaded = load_vjepa2_encoder(path, num_heads=2)
    assert loaded.config.num_heads == 2 and same_output(loaded, model)


def test_hf_safetensors(tmp_path) -> None:
    encoder, predictor = make_encoder(4), make_predictor(6)
    path = tmp_path / "model.safetensors"
    save_file(hf_layout(encoder, predictor), str(path), metadata={"format": "pt"})
    loaded = load_vjepa2_encoder(path)
    assert loaded.config == encoder.config and same_output(loaded, encoder)
    pred = load_vjepa2_predictor(path, num_heads=2)
    assert pred.config == predictor.config
    ctx, ids, tgt = torch.randn(1, 3, DIM), torch.tensor([[0, 2, 5]]), torch.tensor([[1, 7]])
    with torch.no_grad():
        assert torch.equal(pred(ctx, ids, tgt, (1, 2, 4)), predictor(ctx, ids, tgt, (1, 2, 4)))
    # A VJEPA2ForVideoClassification file nests the model under "vjepa2."; a folder of shards also loads.
    shards = tmp_path / "shards"
    shards.mkdir()
    tensors = {f"vjepa2.{k}": v for k, v in hf_layout(encoder).items()}
    names = sorted(tensors)
    save_file({k: tensors[k] for k in names[: len(names) // 2]}, str(shards / "model-00001-of-00002.safetensors"))
    save_file({k: tensors[k] for k in names[len(names) // 2:]}, str(shards / "model-00002-of-00002.safetensors"))
    assert same_output(load_vjepa2_encoder(shards), encoder)


def test_hf_missing_value_projection_is_reported(tmp_path) -> None:
    tensors = hf_layout(make_encoder(4))
    del tensors["encoder.layer.1.attention.value.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"lacks value weight of blocks\.1"):
        load_vjepa2_encoder(path)


def test_own_format_round_trip(tmp_path) -> None:
    encoder, predictor = make_encoder(7), make_predictor(8)
    enc_path = save_encoder(encoder, tmp_path / "enc")  # suffix added
    assert enc_path.name == "enc.safetensors"
    sidecar = json.loads((tmp_path / "enc.json").read_text())
    assert sidecar["kind"] == "encoder" and sidecar["config"]["embed_dim"] == DIM
    assert sidecar["config"]["mlp_hidden_dim"] == HIDDEN
    loaded = load_encoder(enc_path)
    assert loaded.config == encoder.config and same_output(loaded, encoder)
    pred_path = save_predictor(predictor, tmp_path / "pred.safetensors")
    loaded_pred = load_predictor(pred_path)
    assert loaded_pred.config == predictor.config
    assert all(torch.equal(a, b) for a, b in zip(loaded_pred.state_dict().values(), predictor.state_dict().values(),
                                                  strict=True))
    with pytest.raises(CheckpointError, match="holds a 'predictor', not a 'encoder'"):
        load_encoder(pred_path)


def test_strict_load_lists_every_problem(tmp_path) -> None:
    state = official_layout(make_encoder(1).state_dict())
    del state["module.backbone.blocks.1.mlp.fc2.bias"]
    del state["module.backbone.norm.weight"]
    state["module.backbone.blocks.0.attn.extra_scale"] = torch.ones(1)
    state["module.backbone.blocks.0.norm2.weight"] = torch.ones(DIM + 1)
    path = tmp_path / "bad.pt"
    torch.save({"target_encoder": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_vjepa2_encoder(path)
    message = str(info.value)
    assert "2 missing keys: blocks.1.mlp.fc2.bias, norm.weight" in message
    assert "1 unexpected keys: blocks.0.attn.extra_scale" in message
    assert "1 mis-shaped keys: blocks.0.norm2.weight: checkpoint (65,) vs model (64,)" in message


def test_not_an_encoder(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"target_encoder": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(CheckpointError, match=r"patch_embed\.proj\.weight"):
        load_vjepa2_encoder(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_vjepa2_encoder(tmp_path / "missing.pt")


class _Payload:
    """Any class: torch.load(weights_only=True) must refuse to instantiate it."""

    def __reduce__(self):  # pragma: no cover - never called by a safe loader
        return (print, ("pickled code executed",))


def test_pickled_code_is_never_executed(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"target_encoder": official_layout(make_encoder(1).state_dict()), "extra": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_vjepa2_encoder(path)
    assert "pickled code executed" not in capsys.readouterr().out
