"""PDMS v1.1 / EPDMS v2 aggregation, EC NaN handling, the human filter, split means and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scene_builders import junction, straight_road

from drive_jepa_core.cli import main
from drive_jepa_core.metrics.aggregate import epdms_v2, epdms_with_human_filter, human_filtered, pdms_v11, split_means
from drive_jepa_core.metrics.metric_cache import MetricCache
from drive_jepa_core.metrics.scorer import score_trajectories
from drive_jepa_core.scene.format import AgentType, TrafficLightStatus, save_scene


def test_pdms_v11_formula():
    # NC · DAC · (5 EP + 5 TTC + 2 C) / 12
    out = pdms_v11(np.array([1.0, 0.5, 1.0]), np.array([1.0, 1.0, 0.0]), np.array([0.6, 1.0, 1.0]),
                   np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0]))
    np.testing.assert_allclose(out, [(3.0 + 5.0) / 12.0, 0.5 * (5.0 + 2.0) / 12.0, 0.0])


def test_epdms_v2_formula_and_ec_nan():
    one = np.ones(2)
    ec = np.array([0.0, np.nan])
    out = epdms_v2(one, one, np.array([0.5, 1.0]), one, np.array([0.5, 0.5]), one, np.array([1.0, 0.0]), one, ec)
    # with EC: 0.5 · (2.5 + 5 + 2 + 2 + 0) / 16; without: (2.5 + 5 + 0 + 2) / 14
    np.testing.assert_allclose(out, [0.5 * 11.5 / 16.0, 9.5 / 14.0])


def test_human_filter_sets_columns_where_the_human_fails_exactly():
    agent = {n: np.array([0.0, 0.5]) for n in ("nc", "dac", "ddc", "tlc", "ep", "ttc", "lk", "hc")}
    human = {"nc": 0.5, "dac": 0.0, "ddc": 0.5, "tlc": 1.0, "ep": 1.0, "ttc": 0.0, "lk": 1.0, "hc": 1.0}
    out = human_filtered(agent, human)
    np.testing.assert_array_equal(out["dac"], [1.0, 1.0])
    np.testing.assert_array_equal(out["ttc"], [1.0, 1.0])
    np.testing.assert_array_equal(out["nc"], [0.0, 0.5])  # 0.5 does not trigger the filter
    np.testing.assert_array_equal(out["ddc"], [0.0, 0.5])


def test_human_filter_on_a_scene_where_the_human_runs_a_red_light():
    """The logged human drives through a red light (TLC 0): the filter sets every agent's TLC to 1 (§6.2)."""
    scene = junction(light=TrafficLightStatus.RED).build()
    cache = MetricCache.from_scene(scene)
    traj = scene.future_trajectory()[None]
    raw = score_trajectories(cache, traj, "v2")
    assert raw.tlc[0] == 0.0 and raw.epdms[0] == 0.0
    human = cache.human_scores("v2")
    assert human.tlc[0] == 0.0 and human.hc[0] == 1.0 and human.ep[0] == 1.0
    filtered = score_trajectories(cache, traj, "v2", human_filter=True)
    assert filtered.tlc[0] == 1.0 and filtered.human_filtered
    assert filtered.epdms[0] == pytest.approx(epdms_with_human_filter(raw, human).epdms[0])
    assert filtered.epdms[0] > 0.9
    with pytest.raises(ValueError, match="v2"):
        epdms_with_human_filter(score_trajectories(cache, traj, "v1"), human)


def test_split_means_skip_nan_and_missing():
    rows = [{"pdms": 1.0, "nc": 1.0}, {"pdms": 0.0, "nc": float("nan")}, {"pdms": None, "nc": 0.5}]
    out = split_means(rows, ("pdms", "nc", "ec"))
    assert out["pdms"] == 0.5
    assert out["nc"] == 0.75
    assert math.isnan(out["ec"])
    assert out["num_scenes"] == 3


def test_score_cli_writes_per_scene_json(tmp_path, capsys):
    clean = straight_road("clean").build()
    blocked = straight_road("blocked")
    blocked.add_constant_agent(60, AgentType.VEHICLE, 22.0, 0.0)
    save_scene(clean, tmp_path / "scenes" / "clean.npz")
    save_scene(blocked.build(), tmp_path / "scenes" / "blocked.npz")
    out = tmp_path / "results.json"
    assert main(["score", "--scenes", str(tmp_path / "scenes"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "PDMS=" in printed and "EPDMS=" in printed
    report = json.loads(out.read_text())
    assert report["agent"] == "expert" and report["num_scenes"] == 2
    by_token = {row["token"]: row for row in report["scenes"]}
    assert by_token["clean"]["v1"]["pdms"] > 0.99
    assert by_token["blocked"]["v1"]["nc"] == 0.0
    assert by_token["blocked"]["v2"]["nc"] == 1.0  # the human itself collides: the v2 filter lifts NC
    assert report["means"]["v1"]["nc"] == 0.5
    assert main(["score", "--scenes", str(tmp_path / "scenes"), "--agent", "constant-velocity",
                 "--version", "v1"]) == 0
    assert main(["score", "--scenes", str(tmp_path / "missing")]) == 2
