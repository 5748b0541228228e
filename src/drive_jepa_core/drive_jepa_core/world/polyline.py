"""Polyline geometry for the synthetic world: resampling, offsets, smooth transition curves and driving paths.

All polylines are ``(K, 2)`` float64 arrays in world metres, ordered in driving direction.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

import numpy as np

PATH_CURVATURE_SMOOTH = 3  # vertices averaged in a path's curvature (more lags the logged lateral acceleration)


def arclength(points: np.ndarray) -> np.ndarray:
    """Cumulative arclength ``(K,)`` of a polyline ``(K, 2)``, starting at 0."""
    seg = np.hypot(*np.diff(points, axis=0).T)
    return np.concatenate([[0.0], np.cumsum(seg)])


def dedupe(points: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Drop consecutive duplicate vertices (joints of concatenated polylines)."""
    points = np.asarray(points, dtype=np.float64)
    if len(points) < 2:
        return points
    keep = np.concatenate([[True], np.hypot(*np.diff(points, axis=0).T) > eps])
    return points[keep]


def resample(points: np.ndarray, spacing: float) -> np.ndarray:
    """Resample at (nearly) uniform ``spacing`` keeping both end points; ``(K', 2)``."""
    points = dedupe(points)
    s = arclength(points)
    n = max(int(np.ceil(s[-1] / spacing)), 1)
    t = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(t, s, points[:, 0]), np.interp(t, s, points[:, 1])], axis=-1)


def vertex_headings(points: np.ndarray) -> np.ndarray:
    """Unwrapped tangent heading ``(K,)`` at each vertex (central differences)."""
    d = np.gradient(points, axis=0)
    return np.unwrap(np.arctan2(d[:, 1], d[:, 0]))


def left_normals(points: np.ndarray) -> np.ndarray:
    """Unit left normals ``(K, 2)`` at each vertex."""
    h = vertex_headings(points)
    return np.stack([-np.sin(h), np.cos(h)], axis=-1)


def offset(points: np.ndarray, distance: float | np.ndarray) -> np.ndarray:
    """Offset a polyline to its left by ``distance`` (negative = right); ``distance`` scalar or ``(K,)``."""
    return points + np.asarray(distance, dtype=np.float64)[..., None] * left_normals(points)


def curvature(points: np.ndarray, smooth: int = 5) -> np.ndarray:
    """Signed curvature ``(K,)`` (1/m, left turns positive), moving-average smoothed over ``smooth`` vertices."""
    if len(points) < 3:
        return np.zeros(len(points))
    s = arclength(points)
    kappa = np.gradient(vertex_headings(points), s)
    if smooth > 1 and len(kappa) > smooth:
        pad = smooth // 2
        kappa = np.convolve(np.pad(kappa, pad, mode="edge"), np.ones(smooth) / smooth, mode="valid")
    return kappa


def simplify(points: np.ndarray, tolerance: float, max_segment: float) -> np.ndarray:
    """Douglas-Peucker simplification (shapely) then re-densify so no segment exceeds ``max_segment``.

    Used for what is written to scene files: 1 m working geometry would make every scene ~1 MB of map.
    """
    import shapely

    pts = np.asarray(shapely.LineString(points).simplify(tolerance, preserve_topology=False).coords)
    out = [pts[:1]]
    for a, b in itertools.pairwise(pts):
        n = max(int(np.ceil(np.hypot(*(b - a)) / max_segment)), 1)
        t = np.linspace(0.0, 1.0, n + 1)[1:, None]
        out.append(a + t * (b - a))
    return np.concatenate(out)


def transition_curve(p0: np.ndarray, h0: float, p1: np.ndarray, h1: float, spacing: float,
                     corner_fraction: float = 0.6) -> np.ndarray:
    """Smooth curve from pose ``(p0, h0)`` to ``(p1, h1)`` with zero curvature at both ends.

    A quintic Bezier whose first three and last three control points are collinear with the end tangents, so
    curvature is 0 where it joins straight lanes (no yaw-acceleration spike at the junction edge). For turns the
    inner control points sit ``corner_fraction`` of the way to the tangents' intersection (0.6 gives the largest
    minimum radius, ~0.85x the corner distance, for right angles); for (near-)parallel
    tangents they are spread evenly along the chord. Returns ``(K, 2)`` resampled at ``spacing``.
    """
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    t0 = np.array([np.cos(h0), np.sin(h0)])
    t1 = np.array([np.cos(h1), np.sin(h1)])
    chord = float(np.hypot(*(p1 - p0)))
    cross = t0[0] * t1[1] - t0[1] * t1[0]
    a = b = chord / 5.0
    if abs(cross) > 0.2:  # turn: distances along each tangent to the tangents' intersection
        rhs = p1 - p0
        la = (rhs[0] * t1[1] - rhs[1] * t1[0]) / cross
        lb = (t0[0] * rhs[1] - t0[1] * rhs[0]) / cross
        if la > 0 and lb > 0:
            a, b = corner_fraction * la / 2.0, corner_fraction * lb / 2.0
    ctrl = np.stack([p0, p0 + a * t0, p0 + 2 * a * t0, p1 - 2 * b * t1, p1 - b * t1, p1])
    u = np.linspace(0.0, 1.0, 400)[:, None]
    coef = [1, 5, 10, 10, 5, 1]
    curve = sum(coef[i] * u**i * (1 - u) ** (5 - i) * ctrl[i] for i in range(6))
    return resample(curve, spacing)


def closest_segment_point(a: np.ndarray, b: np.ndarray, xy: np.ndarray) -> tuple[int, float, float, float]:
    """Closest point to ``xy`` ``(2,)`` on the segments ``a[k] -> b[k]`` (``(K, 2)`` each).

    Returns:
        ``(k, t, segment_length, distance)``: the segment, the fraction along it in [0, 1], its length and the
        distance from ``xy`` to the closest point.
    """
    ab = b - a
    len2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-12)
    t = np.clip(np.einsum("ij,ij->i", xy - a, ab) / len2, 0.0, 1.0)
    foot = a + t[:, None] * ab
    d2 = np.einsum("ij,ij->i", xy - foot, xy - foot)
    k = int(np.argmin(d2))
    return k, float(t[k]), float(np.sqrt(len2[k])), float(np.sqrt(d2[k]))


def project_point(points: np.ndarray, s: np.ndarray, xy: np.ndarray) -> tuple[float, float]:
    """Arclength and signed lateral offset (left positive) of ``xy`` projected on a polyline."""
    a, b = points[:-1], points[1:]
    i, t, seg_len, _ = closest_segment_point(a, b, xy)
    ab = b[i] - a[i]
    lateral = (ab[0] * (xy[1] - a[i, 1]) - ab[1] * (xy[0] - a[i, 0])) / seg_len
    return float(s[i] + t * seg_len), float(lateral)


def smootherstep(x: np.ndarray) -> np.ndarray:
    """Quintic 0->1 ramp with zero first and second derivative at both ends (lane-change lateral profile)."""
    x = np.clip(x, 0.0, 1.0)
    return x**3 * (x * (6.0 * x - 15.0) + 10.0)


@dataclass
class LaneSpan:
    """A lane occupying ``[s_start, s_end)`` of a :class:`Path`."""

    lane_id: int
    s_start: float
    s_end: float


@dataclass
class Path:
    """A driving path: dense polyline with arclength, heading and curvature, plus the lanes it runs through.

    Shapes: ``xy (K, 2)``, ``s (K,)``, ``heading (K,)`` unwrapped, ``kappa (K,)``.
    """

    xy: np.ndarray
    s: np.ndarray
    heading: np.ndarray
    kappa: np.ndarray
    spans: list[LaneSpan] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Python lists for fast scalar lookups (pose() runs for every vehicle every step)
        self._s = self.s.tolist()
        self._rows = np.stack([self.xy[:, 0], self.xy[:, 1], self.heading, self.kappa], axis=1).tolist()

    @classmethod
    def from_points(cls, points: np.ndarray, spans: list[LaneSpan] | None = None) -> Path:
        points = dedupe(points)
        if len(points) < 2:
            raise ValueError("a path needs at least two distinct points")
        return cls(points, arclength(points), vertex_headings(points), curvature(points, smooth=PATH_CURVATURE_SMOOTH),
                   spans or [])

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def pose(self, u: float) -> tuple[float, float, float, float]:
        """``(x, y, heading, curvature)`` at arclength ``u`` (clamped to the path)."""
        s = self._s
        if u <= s[0]:
            return tuple(self._rows[0])
        if u >= s[-1]:
            return tuple(self._rows[-1])
        i = bisect.bisect_right(s, u) - 1
        t = (u - s[i]) / (s[i + 1] - s[i])
        a, b = self._rows[i], self._rows[i + 1]
        return (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]), a[2] + t * (b[2] - a[2]),
                a[3] + t * (b[3] - a[3]))

    def window(self, u: float, length: float, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Points ahead of ``u``: arclength ``(n,)`` relative to ``u``, ``xy (n, 2)``, heading ``(n,)``."""
        ss = u + np.arange(0.0, length + 1e-9, step)
        ss = ss[ss <= self.s[-1]] if ss[0] <= self.s[-1] else ss[:1]
        xy = np.stack([np.interp(ss, self.s, self.xy[:, 0]), np.interp(ss, self.s, self.xy[:, 1])], axis=-1)
        return ss - u, xy, np.interp(ss, self.s, self.heading)

    def span_at(self, u: float) -> LaneSpan | None:
        """The lane span containing ``u`` (the last one past the end, None before the start)."""
        for span in self.spans:
            if span.s_start <= u < span.s_end:
                return span
        return self.spans[-1] if self.spans and u >= self.spans[-1].s_end else None

    def lane_at(self, u: float) -> int:
        span = self.span_at(u)
        return -1 if span is None else span.lane_id
