"""drive_jepa_ros.markers without a ROS graph (message classes are plain Python)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from drive_jepa_ros.markers import (
    NAMESPACE_LABEL,
    NAMESPACE_PROPOSALS,
    NAMESPACE_SELECTED,
    NAMESPACE_WAYPOINTS,
    SELECTED_COLOR,
    proposal_markers,
    score_color,
    score_colors,
)


@pytest.mark.parametrize(("score", "rgb"), [
    (0.0, (1.0, 0.0, 0.0)),  # red
    (0.25, (1.0, 0.5, 0.0)),  # orange
    (0.5, (1.0, 1.0, 0.0)),  # yellow
    (0.75, (0.5, 1.0, 0.0)),
    (1.0, (0.0, 1.0, 0.0)),  # green
    (-3.0, (1.0, 0.0, 0.0)),  # clamped
    (7.0, (0.0, 1.0, 0.0)),
    (math.nan, (1.0, 0.0, 0.0)),  # never a NaN colour
])
def test_score_color_ramp(score: float, rgb: tuple[float, float, float]) -> None:
    assert score_color(score)[:3] == pytest.approx(rgb)


def test_score_colors_shape() -> None:
    colors = score_colors(np.array([0.0, 1.0]))
    assert colors.shape == (2, 4)
    np.testing.assert_allclose(colors[:, :3], [[1, 0, 0], [0, 1, 0]])


def proposals() -> np.ndarray:
    """3 proposals x 2 waypoints, (x, y, heading)."""
    return np.array([[[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]],
                     [[1.0, 1.0, 0.5], [2.0, 2.0, 0.5]],
                     [[1.0, -1.0, -0.5], [2.0, -2.0, -0.5]]])


def test_marker_array_layout() -> None:
    header = Header(frame_id="odom")
    out = proposal_markers(proposals(), np.array([10.0, 5.0, 0.0]), np.array([0.2, 0.9, 0.5]), 1, header,
                           line_width=0.2, lifetime=0.25)
    markers = out.markers
    assert markers[0].action == Marker.DELETEALL
    lines = markers[1:4]
    assert [(m.ns, m.id, m.type) for m in lines] == [(NAMESPACE_PROPOSALS, i, Marker.LINE_STRIP) for i in range(3)]
    # every line starts at the ego position and follows its proposal
    assert [(p.x, p.y) for p in lines[2].points] == [(10.0, 5.0), (1.0, -1.0), (2.0, -2.0)]
    assert lines[0].scale.x == pytest.approx(0.2)
    assert (lines[0].color.r, lines[0].color.g) == pytest.approx((1.0, 0.4))  # score 0.2
    assert lines[0].lifetime.sec == 0 and lines[0].lifetime.nanosec == 250_000_000
    assert all(m.header.frame_id == "odom" for m in markers)
    selected, dots, label = markers[4:]
    assert (selected.ns, selected.type) == (NAMESPACE_SELECTED, Marker.LINE_STRIP)
    assert selected.scale.x == pytest.approx(0.4)
    assert (selected.color.r, selected.color.g, selected.color.b) == pytest.approx(SELECTED_COLOR[:3])
    assert [(p.x, p.y) for p in selected.points] == [(10.0, 5.0), (1.0, 1.0), (2.0, 2.0)]
    assert min(p.z for p in selected.points) > max(p.z for p in lines[1].points)  # drawn on top
    assert (dots.ns, dots.type, len(dots.points)) == (NAMESPACE_WAYPOINTS, Marker.SPHERE_LIST, 2)
    assert (label.ns, label.type) == (NAMESPACE_LABEL, Marker.TEXT_VIEW_FACING)
    assert label.text == "#1 0.90"


def test_no_selection_draws_only_proposals() -> None:
    out = proposal_markers(proposals(), np.zeros(2), np.full(3, 0.5), -1, Header(frame_id="base_link"))
    assert len(out.markers) == 1 + 3
    assert all(m.ns == NAMESPACE_PROPOSALS for m in out.markers[1:])


def test_bad_input_is_refused() -> None:
    header = Header()
    with pytest.raises(ValueError, match="Np"):
        proposal_markers(proposals(), np.zeros(2), np.zeros(2), 0, header)
    bad = proposals()
    bad[0, 0, 0] = math.inf
    with pytest.raises(ValueError, match="finite"):
        proposal_markers(bad, np.zeros(2), np.zeros(3), 0, header)
    with pytest.raises(ValueError, match="out of range"):
        proposal_markers(proposals(), np.zeros(2), np.zeros(3), 3, header)
