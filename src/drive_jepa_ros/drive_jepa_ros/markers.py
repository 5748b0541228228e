"""RViz markers of one planning cycle: every proposal coloured by its final score, the selected one highlighted.

The colour and geometry helpers are pure numpy; :func:`proposal_markers` builds the ``visualization_msgs`` message
(imported lazily, no rclpy needed), so everything here is unit-testable without a ROS graph.

The array starts with a DELETEALL marker, so proposals of the previous cycle never linger when Np changes or a cycle
is skipped; ``lifetime`` additionally clears them when the node stops publishing (failsafe).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

NAMESPACE_PROPOSALS = "proposals"
NAMESPACE_SELECTED = "selected"
NAMESPACE_WAYPOINTS = "selected_waypoints"
NAMESPACE_LABEL = "selected_score"

# RGBA of the selected trajectory: cyan, outside the red-yellow-green score ramp so it stands out.
SELECTED_COLOR = (0.0, 0.85, 1.0, 1.0)
PROPOSAL_ALPHA = 0.6
SELECTED_Z_OFFSET = 0.05  # m above the proposals so the highlight is drawn on top
LABEL_HEIGHT = 0.8  # m, text size of the score label


def score_color(score: float) -> tuple[float, float, float, float]:
    """RGBA of a final score in [0, 1]: red (0) -> yellow (0.5) -> green (1); values outside are clamped."""
    s = min(max(float(score), 0.0), 1.0) if math.isfinite(score) else 0.0
    red = 1.0 if s <= 0.5 else 2.0 * (1.0 - s)
    green = 2.0 * s if s <= 0.5 else 1.0
    return red, green, 0.0, PROPOSAL_ALPHA


def score_colors(scores: np.ndarray) -> np.ndarray:
    """``(Np,)`` scores -> ``(Np, 4)`` RGBA, see :func:`score_color`."""
    return np.array([score_color(s) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]).reshape(-1, 4)


def _duration(seconds: float) -> Any:
    from builtin_interfaces.msg import Duration

    seconds = max(float(seconds), 0.0)
    sec = math.floor(seconds)
    return Duration(sec=int(sec), nanosec=min(round((seconds - sec) * 1e9), 999_999_999))


def _point(x: float, y: float, z: float) -> Any:
    from geometry_msgs.msg import Point

    return Point(x=float(x), y=float(y), z=float(z))


def _color(rgba: tuple[float, ...] | np.ndarray) -> Any:
    from std_msgs.msg import ColorRGBA

    r, g, b, a = (float(v) for v in rgba)
    return ColorRGBA(r=r, g=g, b=b, a=a)


def proposal_markers(proposals: np.ndarray, origin: np.ndarray, final_scores: np.ndarray, selected_index: int,
                     header: Any, line_width: float = 0.15, lifetime: float = 0.5, z: float = 0.0) -> Any:
    """``visualization_msgs/MarkerArray`` of one cycle.

    Args:
        proposals: ``(Np, M, 2+)`` waypoints ``(x, y, ...)`` already in ``header.frame_id``.
        origin: ``(2+,)`` ego position ``(x, y, ...)`` in the same frame; every line starts there.
        final_scores: ``(Np,)`` final scores in [0, 1] (colour).
        selected_index: index of the selected proposal, or -1 for none.
        header: ``std_msgs/Header`` of every marker.
        line_width: proposal line width, m; the selected path is twice as wide.
        lifetime: seconds until RViz drops a marker that was not replaced; 0 = never.
        z: height of the lines.
    Returns:
        MarkerArray: DELETEALL, Np LINE_STRIPs (ns ``proposals``, id = index), then for the selected proposal a
        LINE_STRIP (ns ``selected``), a SPHERE_LIST of its waypoints and a text label with its score.

    Raises:
        ValueError: inconsistent shapes, non-finite coordinates, or a selected index out of range.
    """
    from visualization_msgs.msg import Marker, MarkerArray

    proposals = np.asarray(proposals, dtype=np.float64)
    origin = np.asarray(origin, dtype=np.float64).reshape(-1)
    scores = np.asarray(final_scores, dtype=np.float64).reshape(-1)
    if proposals.ndim != 3 or proposals.shape[2] < 2 or proposals.shape[0] != scores.shape[0]:
        raise ValueError(f"proposals must be (Np, M, 2+) with Np = len(final_scores), got {proposals.shape} and "
                         f"{scores.shape}")
    if origin.shape[0] < 2 or not (np.all(np.isfinite(proposals[..., :2])) and np.all(np.isfinite(origin[:2]))):
        raise ValueError("proposal and origin coordinates must be finite (x, y)")
    if not -1 <= int(selected_index) < proposals.shape[0]:
        raise ValueError(f"selected_index {selected_index} out of range for {proposals.shape[0]} proposals")
    life = _duration(lifetime)
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    colors = score_colors(scores)

    def strip(points_xy: np.ndarray, height: float) -> list[Any]:
        return [_point(origin[0], origin[1], height)] + [_point(x, y, height) for x, y in points_xy[:, :2]]

    for i in range(proposals.shape[0]):
        m = Marker(header=header, ns=NAMESPACE_PROPOSALS, id=i, type=Marker.LINE_STRIP, action=Marker.ADD,
                   lifetime=life)
        m.pose.orientation.w = 1.0
        m.scale.x = float(line_width)
        m.color = _color(colors[i])
        m.points = strip(proposals[i], z)
        out.markers.append(m)

    if selected_index >= 0:
        chosen = proposals[int(selected_index)]
        top = z + SELECTED_Z_OFFSET
        line = Marker(header=header, ns=NAMESPACE_SELECTED, id=0, type=Marker.LINE_STRIP, action=Marker.ADD,
                      lifetime=life)
        line.pose.orientation.w = 1.0
        line.scale.x = 2.0 * float(line_width)
        line.color = _color(SELECTED_COLOR)
        line.points = strip(chosen, top)
        out.markers.append(line)

        dots = Marker(header=header, ns=NAMESPACE_WAYPOINTS, id=0, type=Marker.SPHERE_LIST, action=Marker.ADD,
                      lifetime=life)
        dots.pose.orientation.w = 1.0
        dots.scale.x = dots.scale.y = dots.scale.z = 3.0 * float(line_width)
        dots.color = _color(SELECTED_COLOR)
        dots.points = [_point(x, y, top) for x, y in chosen[:, :2]]
        out.markers.append(dots)

        label = Marker(header=header, ns=NAMESPACE_LABEL, id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                       lifetime=life)
        label.pose.position = _point(chosen[-1, 0], chosen[-1, 1], top + LABEL_HEIGHT)
        label.pose.orientation.w = 1.0
        label.scale.z = LABEL_HEIGHT
        label.color = _color(SELECTED_COLOR)
        label.text = f"#{int(selected_index)} {scores[int(selected_index)]:.2f}"
        out.markers.append(label)
    return out


__all__ = [
    "NAMESPACE_LABEL", "NAMESPACE_PROPOSALS", "NAMESPACE_SELECTED", "NAMESPACE_WAYPOINTS", "SELECTED_COLOR",
    "proposal_markers", "score_color", "score_colors",
]
