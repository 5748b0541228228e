"""The README's main job (`drive-jepa demo`) at reduced size: every stage runs and reports real numbers."""

import json
from pathlib import Path

import pytest
from _runtime_models import save_tiny_planner

from drive_jepa_core.cli import main
from drive_jepa_core.demo import run_demo


@pytest.mark.slow
def test_demo_reduced_size(tmp_path, capsys):
    model = save_tiny_planner(tmp_path / "tiny.safetensors", seed=3)
    summary = run_demo(tmp_path / "demo", num_scenes=2, bag_seconds=2.5, model=model, backend="torch",
                       progress=False)
    assert summary["scenes"]["count"] == 2
    scores = summary["scenes"]["scores"]
    assert set(scores) == {"expert", "constant-velocity", "planner"}
    for row in scores.values():
        assert 0.0 <= row["pdms"] <= 1.0 and 0.0 <= row["epdms"] <= 1.0 and Path(row["report"]).is_file()
    assert 0.0 <= scores["planner"]["diversity"] <= 1.0 and scores["expert"]["diversity"] is None
    assert set(summary["replay"]) == {"planner", "constant-velocity"}
    for headline in summary["replay"].values():
        assert headline["frames_planned"] > 0
        assert Path(headline["report"]).is_file()
    on_disk = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert on_disk["replay"]["planner"]["frames_planned"] == summary["replay"]["planner"]["frames_planned"]
    assert (tmp_path / "demo" / "scene_bev.png").stat().st_size > 10_000


def test_demo_is_a_documented_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "synthetic rosbag" in out and "--no-progress" in out
