"""Training loop end to end (tiny model, 64x128 images): a few steps, checkpoint round trip, resume, both variants,
and the `drive-jepa train` CLI."""

import argparse
import json

import numpy as np
import pytest
import torch
from _train_scenes import write_scenes

from drive_jepa_core.models.planner_config import DEFAULT_POSE_SCALE, LEGACY_POSE_SCALE
from drive_jepa_core.train.checkpoint import ModelSpec, load_planner, load_training_state, read_planner_spec
from drive_jepa_core.train.cli import register
from drive_jepa_core.train.config import TrainConfig, load_train_config
from drive_jepa_core.train.dataset import teachers_path
from drive_jepa_core.train.loop import Trainer, train


def cli_main(argv: list[str]) -> int:
    """`drive-jepa` with only this module's commands (the lead wires train.cli into drive_jepa_core.cli)."""
    parser = argparse.ArgumentParser(prog="drive-jepa")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


TINY = ["data.image_width=128", "data.image_height=64", "train.batch_size=2", "model.encoder_overrides={depth: 1}",
        "model.planner={num_proposals: 4, d_model: 32, d_ffn: 64, num_heads: 4, head_hidden: 32}",
        "train.log_every=1"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    paths = write_scenes(folder, 4)
    k = np.arange(1, 9)
    for p in paths:  # two pseudo-teachers per scene: straight at 4 and 6 m/s
        teachers = np.zeros((2, 8, 3), np.float32)
        teachers[:, :, 0] = np.array([2.0, 3.0])[:, None] * k
        np.save(teachers_path(p), teachers)
    return folder


def _config(*extra: str) -> TrainConfig:
    return load_train_config("tiny", [*TINY, *extra])


def test_train_steps_checkpoint_and_resume(scenes, tmp_path):
    run = tmp_path / "run"
    summary = train(_config("train.max_steps=3"), scenes, run, progress=False)
    assert summary["steps"] == 3 and summary["samples"] == 6
    last = summary["last"]
    assert np.isfinite(last["total"]) and last["pseudo_teacher"] > 0.0  # MTD term active with teacher files
    assert 0.0 <= last["target_score"] <= 1.0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "epoch_end" not in r] == [1, 2, 3]
    # Saved planner: spec in the header, loads strictly, runs.
    spec, extra = read_planner_spec(run)
    assert spec.variant == "proposal" and spec.image_size == (128, 64) and extra["step"] == 3
    assert tuple(spec.planner["pose_scale"]) == DEFAULT_POSE_SCALE
    model, _ = load_planner(run)
    out = model(torch.zeros(1, 3, 2, 64, 128), torch.zeros(1, 11), torch.eye(3, 4)[None])
    assert out["proposals"].shape == (1, 4, 8, 3) and torch.isfinite(out["scores"]).all()
    # A spec written before the heads had an output scale decoded metres directly: it loads with scale 1.
    legacy = {k: v for k, v in spec.to_json()["planner"].items() if k != "pose_scale"}
    assert ModelSpec.from_json({**spec.to_json(), "planner": legacy}).planner_config().pose_scale == LEGACY_POSE_SCALE
    # Checkpoint round trip: weights and optimizer state come back exactly.
    trainer = Trainer(_config("train.max_steps=5"), scenes, run, resume=True, progress=False)
    assert trainer.step == 3 and trainer.epoch == 1  # 2 steps per epoch: epoch 0 done, epoch 1 half way
    saved = load_planner(run / "checkpoint" / "model.safetensors")[0].state_dict()
    for k, v in trainer.model.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    adam = trainer.optimizer.state_dict()["state"]
    assert adam and all(int(s["step"]) == 3 for s in adam.values())
    summary = trainer.run()
    trainer.close()
    assert summary["steps"] == 5
    state = load_training_state(run, trainer.model, None)
    assert state["step"] == 5 and state["epoch"] == 2 and state["batch_in_epoch"] == 1


def test_resume_without_checkpoint_is_an_error(scenes, tmp_path):
    with pytest.raises(FileNotFoundError, match="no resumable checkpoint"):
        Trainer(_config(), scenes, tmp_path / "empty", resume=True, progress=False)


def test_perception_free_variant(scenes, tmp_path):
    summary = train(_config("model.variant=perception_free", "model.planner={d_model: 32, d_ffn: 64, num_heads: 4, "
                                                             "num_encoder_layers: 1, num_decoder_layers: 1, "
                                                             "head_hidden: 32}", "train.max_steps=3",
                         "data.num_workers=1"),
                    scenes, tmp_path / "pf", progress=False)
    assert summary["steps"] == 3 and np.isfinite(summary["last"]["total"])  # across 2 epochs, DataLoader worker
    model, spec = load_planner(tmp_path / "pf")
    assert spec.variant == "perception_free"
    assert model(torch.zeros(2, 3, 2, 64, 128), torch.zeros(2, 11))["trajectory"].shape == (2, 8, 3)


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown keys"):
        load_train_config("tiny", ["train.batchsize=3"])
    with pytest.raises(ValueError, match=r"model\.variant"):
        load_train_config("tiny", ["model.variant=resnet"])
    with pytest.raises(FileNotFoundError):
        load_train_config(tmp_path / "nope.yaml")
    assert load_train_config("vitl").model.encoder_size == "large"


def test_config_base_inheritance(tmp_path):
    """`base:` starts from another config; a section's keys replace the base's values whole."""
    tiny = load_train_config("tiny")
    free = load_train_config("perception_free_tiny")
    assert free.model.variant == "perception_free" and free.model.mtd is False
    assert free.model.planner == {"d_model": 64, "d_ffn": 128, "num_heads": 4, "head_hidden": 128}  # replaced whole
    assert free.optim == tiny.optim and free.data == tiny.data and free.train == tiny.train
    assert free.model.encoder_overrides == tiny.model.encoder_overrides  # keys not given come from the base
    (tmp_path / "child.yaml").write_text("base: tiny\ntrain:\n  epochs: 3\n")
    child = load_train_config(tmp_path / "child.yaml", ["train.seed=5"])
    assert (child.train.epochs, child.train.seed, child.train.batch_size) == (3, 5, tiny.train.batch_size)
    (tmp_path / "loop_a.yaml").write_text("base: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("base: loop_a.yaml\n")
    with pytest.raises(ValueError, match="circular"):
        load_train_config(tmp_path / "loop_a.yaml")


def test_cli_train_with_validation(scenes, tmp_path, capsys):
    run = tmp_path / "cli"
    args = ["train", "--config", "tiny", "--data", str(scenes), "--out", str(run), "--val", str(scenes),
            "--no-progress", "--set", "train.epochs=1"]
    for item in TINY:
        args += ["--set", item]
    assert cli_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 2 and summary["best_score"] is not None and 0.0 <= summary["best_score"] <= 1.0
    assert (run / "best.safetensors").exists() and (run / "model.safetensors").exists()
    assert (run / "config.yaml").exists() and (run / "checkpoint" / "optimizer.pt").exists()


def test_encoder_initialized_from_a_pretraining_run(tmp_path):
    from drive_jepa_core.checkpoints import save_encoder
    from drive_jepa_core.models.vit import build_encoder
    from drive_jepa_core.train.checkpoint import create_model

    target = build_encoder("tiny", depth=1, embed_dim=64, num_heads=1)
    save_encoder(target, tmp_path / "pretrain" / "target_encoder.safetensors")
    online = build_encoder("tiny", depth=1, embed_dim=64, num_heads=1)
    save_encoder(online, tmp_path / "pretrain" / "encoder.safetensors")
    model, spec = create_model("proposal", "large", {"num_proposals": 2, "d_model": 32, "d_ffn": 64, "num_heads": 4,
                                                     "head_hidden": 32}, (128, 64),
                               encoder_checkpoint=tmp_path / "pretrain")
    # The checkpoint fixes the architecture (not "large") and the EMA target encoder is the one loaded.
    assert spec.encoder["embed_dim"] == 64 and spec.encoder["depth"] == 1
    for k, v in target.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[k], v, rtol=0, atol=0)
    assert model.encoder.training
