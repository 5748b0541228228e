"""`drive-jepa eval`: baselines and a (randomly initialized) model on a split with a consecutive-frame pair."""

import json

import pytest
from _train_scenes import make_scene

from drive_jepa_core.scene import save_scene
from drive_jepa_core.train.checkpoint import create_model, save_planner
from drive_jepa_core.train.evaluate import evaluate, find_predecessors


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    # Scenes 0 and 1 are consecutive frames (t0 0.5 s apart) of log "logA"; scene 2 is alone in its log.
    save_scene(make_scene(0, speed=8.0, log_name="logA", t0_offset=0.0), folder / "a0.npz")
    save_scene(make_scene(1, speed=8.0, log_name="logA", t0_offset=0.5), folder / "a1.npz")
    save_scene(make_scene(2, speed=6.0, log_name="logB"), folder / "b0.npz")
    return folder


def test_predecessors_by_log_time_and_by_pose():
    a0, a1, b0 = (make_scene(0, log_name="logA"), make_scene(1, log_name="logA", t0_offset=0.5),
                  make_scene(2, log_name="logB"))
    assert find_predecessors([a0, a1, b0]) == [None, (0, 0.5), None]
    for s in (a0, a1, b0):
        s.extra = {}
    # Without log times the pairing follows the logged pose: a0's ego 0.5 s ahead is a1's t0 pose.
    assert find_predecessors([a1, a0, b0]) == [(1, 0.5), None, None]


def test_constant_velocity_baseline(split, tmp_path):
    metrics = evaluate(split, tmp_path / "cv", agent="constant-velocity", progress=False, num_plots=2)
    s = metrics["summary"]
    assert s["num_scenes"] == 3 and s["ec_scenes"] == 1 and s["diversity"] is None
    assert 0.0 < s["pdms"] <= 1.0 and 0.0 < s["epdms"] <= 1.0
    rows = {r["token"]: r for r in metrics["scenes"]}
    # Constant velocity on a straight road twice: identical dynamics, so the two-frame comfort passes.
    assert rows["scene001"]["predecessor"] == "scene000" and rows["scene001"]["ec"] == 1.0
    assert rows["scene000"]["ec"] is None and rows["scene002"]["ec"] is None  # no predecessor: NaN -> null
    assert rows["scene000"]["nc"] == 1.0 and rows["scene000"]["dac"] == 1.0
    on_disk = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert on_disk["summary"]["num_scenes"] == 3
    html = (tmp_path / "cv" / "report.html").read_text()
    assert "<img" in html and "scene001" in html and len(list((tmp_path / "cv" / "plots").glob("*.png"))) == 2


def test_model_agent(split, tmp_path):
    model, spec = create_model("proposal", "tiny", {"num_proposals": 4, "d_model": 32, "d_ffn": 64, "num_heads": 4,
                                                    "head_hidden": 32}, (128, 64), {"depth": 1})
    save_planner(model, spec, tmp_path / "run" / "model.safetensors")
    metrics = evaluate(split, tmp_path / "ev", model=tmp_path / "run", batch_size=2, progress=False, num_plots=1)
    s = metrics["summary"]
    assert s["agent"] == "model" and s["variant"] == "proposal" and s["num_scenes"] == 3
    assert s["diversity"] is not None and 0.0 <= s["diversity"] < 1.0
    for r in metrics["scenes"]:
        assert r["num_proposals"] == 4 and 0.0 <= r["predicted_score"] <= 1.0
        assert r["pdms"] is not None and 0.0 <= r["pdms"] <= 1.0
    with pytest.raises(ValueError, match="needs a model"):
        evaluate(split, tmp_path / "x", agent="model")
