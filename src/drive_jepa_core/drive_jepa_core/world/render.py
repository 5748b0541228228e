"""Front-camera renderer of the built-in world: numpy + OpenCV, >= 100 frames/s at 512x256 on one CPU core.

Everything that depends only on the map is built once in :class:`CameraRenderer` (3-D ground polygons in one vertex
array: sidewalks, road surfaces, paint, curbs). A frame is then painted back to front:

1. a copy of the precomputed background (sky gradient, hazy terrain; fixed per camera and style);
2. a distant skyline polygon that turns with the ego heading;
3. the map's ground polygons: all vertices projected with one matrix product, whole polygons culled against the view
   frustum by vertex outcodes, and only polygons that cross the near plane clipped (Sutherland-Hodgman) before the
   perspective divide, so geometry behind the camera never wraps around;
4. contact shadows of the agents (ground polygons, drawn before any box, so they never cover an object);
5. 3-D boxes (agents from per-class box templates, traffic-light poles, arms and heads) sorted far to near, back faces
   culled, each face Lambert-shaded and hazed with distance; lit traffic-light lamps on the heads;
6. fixed-pattern sensor noise.

Frames: world (x, y, z up, metres), ego rear axle (x forward, y left, z up), camera optical (OpenCV: x right, y down,
z forward). Images are RGB uint8.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from drive_jepa_core.constants import DEFAULT_IMAGE_HEIGHT, DEFAULT_IMAGE_WIDTH
from drive_jepa_core.scene.format import AgentType, CameraCalibration, MapLayer, Scene, TrafficLightStatus
from drive_jepa_core.world.render_style import RenderStyle, sample_style

# --------------------------------------------------------------------------------------------------------------------
# Camera mount
# --------------------------------------------------------------------------------------------------------------------
# nuPlan/NAVSIM CAM_F0 sees about 64 deg horizontally; we go slightly wider (the brief's 70-90 deg range) so that the
# neighbouring lanes and the traffic lights across a junction stay in view at 512x256.
FRONT_CAMERA_HFOV_DEG = 70.0
# Top of the windshield of a nuPlan "Pacifica" (constants.EGO_VEHICLE: front bumper 4.05 m ahead of the rear axle,
# roof 1.78 m high): far enough back that the hood is below the image, high enough to see over nearby cars.
FRONT_CAMERA_POSITION_M = (1.5, 0.0, 1.6)
# Slight downward pitch puts the horizon ~40 % from the top: more road, still enough sky and overhead signals.
FRONT_CAMERA_PITCH_DEG = 3.0

# --------------------------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------------------------
NEAR_PLANE_M = 0.1  # camera-frame depth below which geometry is clipped
FAR_CULL_M = 120.0  # polygons/boxes entirely deeper than this are skipped (beyond it objects are a few pixels)
SUBPIXEL_BITS = 4  # cv2 fixed-point shift: 1/16 px vertex precision
_SCALE = float(1 << SUBPIXEL_BITS)
_FIXED_LIMIT = float(1 << 30)  # keep fixed-point coordinates inside int32

# Road markings (US MUTCD 2009): normal line 4-6 in wide (3A.06); broken lines 10 ft segments with 30 ft gaps
# (3A.06); double yellow centre line = two normal lines with a visible gap (3B.01); stop line 12-24 in (3B.16).
LINE_WIDTH_M = 0.15
DASH_LENGTH_M = 3.0
DASH_GAP_M = 9.0
DOUBLE_LINE_GAP_M = 0.12
STOP_LINE_WIDTH_M = 0.45
EDGE_LINE_INSET_M = 0.3  # edge line drawn just inside the lane boundary
# Continental crosswalk (MUTCD 3B.18): bars 12-24 in wide, gaps up to 60 in, crosswalk at least 6 ft wide.
CROSSWALK_BAR_M = 0.45
CROSSWALK_GAP_M = 0.55
CROSSWALK_WIDTH_M = 3.0
CURB_HEIGHT_M = 0.15  # 6 in barrier curb
SIDEWALK_WIDTH_M = 4.0  # the world's pedestrians walk 3.2 m beyond the road edge (road_network.py)
BOUNDARY_MATCH_TOLERANCE_M = 0.3  # two lane boundaries closer than this are one shared line
BOUNDARY_SAMPLES = (0.1, 0.3, 0.5, 0.7, 0.9)  # arc-length fractions tested when matching boundaries

# Traffic signals: far-side mast arm (the usual US layout), so the heads stay in view while stopped at the line.
# MUTCD 4D.15: signal heads over the roadway 15-25.6 ft (4.6-7.8 m) above the pavement; a 3-section 12 in head is
# about 1.05 m tall.
TL_HEAD_BOTTOM_M = 4.75
TL_HEAD_SIZE_M = (0.3, 0.42, 1.05)  # depth, width, height
TL_LAMP_RADIUS_M = 0.15  # 12 in lens
TL_LAMP_HEIGHT_FRACTIONS = (0.82, 0.5, 0.18)  # red, yellow, green from the bottom of the head
# Visors hide a lens seen more than ~60 deg off its axis, so lights meant for cross traffic are not read as ours.
TL_LAMP_MIN_COS = 0.5
TL_HEAD_SPACING_M = 0.6  # heads of several connectors that start in the same lane
TL_ARM_THICKNESS_M = 0.2
TL_POLE_SIZE_M = 0.3
TL_POLE_OFFSET_M = 1.5  # pole beyond the outer edge of the rightmost lane
TL_SETBACK_RANGE_M = (8.0, 40.0)  # clamp of the distance from the stop line to the far-side arm
_LAMP_ON = {int(TrafficLightStatus.RED): (255, 45, 35), int(TrafficLightStatus.YELLOW): (255, 195, 40),
            int(TrafficLightStatus.GREEN): (50, 255, 140)}
_LAMP_OFF = (38, 38, 36)
_SIGNAL_METAL = (105, 105, 100)
_SIGNAL_HEAD = (38, 40, 36)

# Off-road and object colours that do not vary with the style.
_DARK = (30, 30, 32)
_SAFETY_ORANGE = (240, 110, 25)
_SAFETY_WHITE = (235, 235, 230)
_GENERIC_GREY = (125, 123, 118)
SHADOW_MARGIN_M = 0.15  # contact shadow slightly larger than the footprint

# Box faces: corner indices (bottom FL, RL, RR, FR = 0..3, top = 4..7) and order of the per-face arrays below.
_FACES = np.array([[0, 3, 7, 4], [1, 2, 6, 5], [0, 1, 5, 4], [3, 2, 6, 7], [4, 5, 6, 7], [0, 1, 2, 3]])

# --------------------------------------------------------------------------------------------------------------------
# Agent box templates: each class is a few sub-boxes (x, y centre offsets, length, width as fractions of the agent box;
# z0, z1 as fractions of its height) with a colour kind per face (front, back, left, right, top, bottom). Sub-boxes
# are drawn in template order (wheels under the body, body under the cabin); a face of kind _OFF is never drawn
# (tail lamps exist only on their back face, so they never show through the body from the front).
# --------------------------------------------------------------------------------------------------------------------
_OFF, _BODY, _GLASS, _DARK_KIND, _PANTS, _SKIN, _LIGHT, _TAIL = range(-1, 7)
_N_KINDS = 7
_CAR, _TRUCK, _PED, _BIKE, _CONE, _BARRIER, _SIGN, _GENERIC = range(8)
TRUCK_MIN_LENGTH_M = 6.5  # vehicles longer than this get the bus/truck template
_ALL = (_BODY,) * 6
_GLASS_SIDES = (_GLASS, _GLASS, _GLASS, _GLASS, _BODY, _BODY)
_WHEELS = (_DARK_KIND,) * 6
_TAIL_FACE = (_OFF, _TAIL, _OFF, _OFF, _OFF, _OFF)
_TEMPLATES: dict[int, tuple[tuple[float, float, float, float, float, float, tuple[int, ...]], ...]] = {
    _CAR: ((0.3, 0.0, 0.16, 0.98, 0.0, 0.38, _WHEELS), (-0.3, 0.0, 0.16, 0.98, 0.0, 0.38, _WHEELS),
           (0.0, 0.0, 1.0, 1.0, 0.2, 0.56, _ALL), (-0.06, 0.0, 0.5, 0.86, 0.56, 1.0, _GLASS_SIDES),
           (-0.505, 0.36, 0.01, 0.2, 0.4, 0.52, _TAIL_FACE), (-0.505, -0.36, 0.01, 0.2, 0.4, 0.52, _TAIL_FACE)),
    _TRUCK: ((0.33, 0.0, 0.1, 0.98, 0.0, 0.3, _WHEELS), (-0.33, 0.0, 0.1, 0.98, 0.0, 0.3, _WHEELS),
             (0.0, 0.0, 1.0, 1.0, 0.12, 0.45, _ALL), (0.0, 0.0, 0.99, 0.97, 0.45, 0.8, _GLASS_SIDES),
             (0.0, 0.0, 1.0, 1.0, 0.8, 1.0, _ALL), (-0.503, 0.0, 0.006, 0.9, 0.22, 0.3, _TAIL_FACE)),
    _PED: ((0.0, 0.0, 0.55, 0.6, 0.0, 0.5, (_PANTS,) * 6), (0.0, 0.0, 0.75, 1.0, 0.5, 0.84, _ALL),
           (0.0, 0.0, 0.45, 0.42, 0.86, 1.0, (_SKIN,) * 6)),
    _BIKE: ((0.0, 0.0, 1.0, 0.25, 0.05, 0.55, _WHEELS), (-0.08, 0.0, 0.3, 1.0, 0.55, 0.88, _ALL),
            (-0.08, 0.0, 0.2, 0.5, 0.88, 1.0, (_SKIN,) * 6)),
    _CONE: ((0.0, 0.0, 1.0, 1.0, 0.0, 0.1, _ALL), (0.0, 0.0, 0.55, 0.55, 0.1, 0.55, _ALL),
            (0.0, 0.0, 0.35, 0.35, 0.55, 1.0, (_LIGHT,) * 6)),
    _BARRIER: ((0.0, 0.0, 1.0, 1.0, 0.0, 0.5, _ALL), (0.0, 0.0, 1.0, 1.0, 0.5, 1.0, (_LIGHT,) * 6)),
    _SIGN: ((0.0, 0.0, 0.15, 0.15, 0.0, 0.6, _WHEELS), (0.0, 0.0, 1.0, 1.0, 0.6, 1.0, _ALL)),
    _GENERIC: ((0.0, 0.0, 1.0, 1.0, 0.0, 1.0, _ALL),),
}
_MAX_SUB = max(len(t) for t in _TEMPLATES.values())
_TEMPLATE_GEOM = np.zeros((len(_TEMPLATES), _MAX_SUB, 6))
_TEMPLATE_KINDS = np.zeros((len(_TEMPLATES), _MAX_SUB, 6), dtype=np.int64)
_TEMPLATE_VALID = np.zeros((len(_TEMPLATES), _MAX_SUB), dtype=bool)
for _cls, _rows in _TEMPLATES.items():
    for _j, _row in enumerate(_rows):
        _TEMPLATE_GEOM[_cls, _j] = _row[:6]
        _TEMPLATE_KINDS[_cls, _j] = _row[6]
        _TEMPLATE_VALID[_cls, _j] = True
# AgentType -> render class (VEHICLE becomes _TRUCK by length at render time).
_CLASS_OF_TYPE = np.array([_CAR, _PED, _BIKE, _CONE, _BARRIER, _SIGN, _GENERIC])
assert len(_CLASS_OF_TYPE) == len(AgentType)
_TAIL_LAMP = (200, 25, 25)


def default_front_camera(width: int = DEFAULT_IMAGE_WIDTH, height: int = DEFAULT_IMAGE_HEIGHT) -> CameraCalibration:
    """Pinhole front camera of the built-in world (square pixels, principal point at the image centre).

    Optical frame is OpenCV's (x right, y down, z forward); ``sensor2ego`` maps it to the rear-axle frame.
    """
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"camera size must be positive, got {width}x{height}")
    focal = (width / 2.0) / np.tan(np.deg2rad(FRONT_CAMERA_HFOV_DEG) / 2.0)
    intrinsics = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    pitch = np.deg2rad(FRONT_CAMERA_PITCH_DEG)
    z_axis = np.array([np.cos(pitch), 0.0, -np.sin(pitch)])  # optical axis: forward, tilted down
    x_axis = np.array([0.0, -1.0, 0.0])  # image right = ego right
    y_axis = np.cross(z_axis, x_axis)  # image down (right-handed x, y, z)
    sensor2ego = np.eye(4)
    sensor2ego[:3, 0], sensor2ego[:3, 1], sensor2ego[:3, 2] = x_axis, y_axis, z_axis
    sensor2ego[:3, 3] = FRONT_CAMERA_POSITION_M
    return CameraCalibration(name="CAM_F0", width=int(width), height=int(height), intrinsics=intrinsics,
                             sensor2ego=sensor2ego)


# --------------------------------------------------------------------------------------------------------------------
# Polyline helpers (map precomputation)
# --------------------------------------------------------------------------------------------------------------------
def _clean_polyline(points: np.ndarray) -> np.ndarray:
    """``(K, 2)`` float64 without consecutive duplicates (zero-length segments have no direction)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(points) < 2:
        return points
    keep = np.ones(len(points), dtype=bool)
    keep[1:] = np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6
    return points[keep]


def _arc_length(points: np.ndarray) -> np.ndarray:
    """Cumulative length ``(K,)`` along a polyline."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])


def _point_at(points: np.ndarray, cum: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Points ``(..., 2)`` at arc lengths ``s``."""
    return np.stack([np.interp(s, cum, points[:, 0]), np.interp(s, cum, points[:, 1])], axis=-1)


def _left_normals(points: np.ndarray) -> np.ndarray:
    """Unit left normals ``(K, 2)`` at the vertices (mean of the adjacent segment normals)."""
    seg = np.diff(points, axis=0)
    seg /= np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-9)
    seg_n = np.stack([-seg[:, 1], seg[:, 0]], axis=1)
    normals = np.concatenate([seg_n[:1], seg_n[:-1] + seg_n[1:], seg_n[-1:]])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-9)


def _strip(points: np.ndarray, offset_lo: float, offset_hi: float) -> np.ndarray:
    """Polygon ``(2K, 2)`` covering the band between two left-normal offsets of a polyline."""
    normals = _left_normals(points)
    return np.concatenate([points + normals * offset_hi, (points + normals * offset_lo)[::-1]])


def _tangent_near(points: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Unit direction of the polyline segment closest to ``query``."""
    mids = 0.5 * (points[:-1] + points[1:])
    i = int(np.argmin(np.linalg.norm(mids - query, axis=1)))
    d = points[i + 1] - points[i]
    return d / max(float(np.linalg.norm(d)), 1e-9)


def _lift(points: np.ndarray, z: float) -> np.ndarray:
    return np.concatenate([points, np.full((len(points), 1), z)], axis=1)


# --------------------------------------------------------------------------------------------------------------------
# Map geometry
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _GroundMesh:
    """All static ground polygons of a map, in draw order. ``vertices`` (N, 3) world; polygon i is
    ``vertices[starts[i]:stops[i]]``."""

    vertices: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    colours: list[tuple[int, int, int]]
    antialias: list[bool]


_LAYER_SIDEWALK, _LAYER_ROAD, _LAYER_PAINT, _LAYER_CURB = range(4)


class _MeshBuilder:
    """Collects ground polygons; a batch of equal-size polygons ``(n, K, 3)`` is stored as one entry."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, int, np.ndarray, tuple[int, int, int], bool]] = []

    def add(self, layer: int, vertices: np.ndarray, colour: np.ndarray, antialias: bool) -> None:
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.ndim == 2:
            vertices = vertices[None]
        if vertices.shape[0] and vertices.shape[1] >= 3:
            rgb = tuple(int(c) for c in np.clip(np.rint(colour), 0, 255))
            self._entries.append((layer, len(self._entries), vertices, rgb, antialias))

    def build(self) -> _GroundMesh:
        entries = sorted(self._entries, key=lambda p: (p[0], p[1]))  # stable: layer, then insertion order
        sizes = np.concatenate([np.full(e[2].shape[0], e[2].shape[1], dtype=np.int64) for e in entries]) \
            if entries else np.zeros(0, np.int64)
        stops = np.cumsum(sizes)
        return _GroundMesh(
            vertices=np.concatenate([e[2].reshape(-1, 3) for e in entries]) if entries else np.zeros((0, 3)),
            starts=stops - sizes, stops=stops,
            colours=[e[3] for e in entries for _ in range(e[2].shape[0])],
            antialias=[e[4] for e in entries for _ in range(e[2].shape[0])])


def _build_ground(scene: Scene, style: RenderStyle, rng: np.random.Generator,
                  crosswalks: Sequence[tuple[np.ndarray, np.ndarray]]) -> _GroundMesh:
    builder = _MeshBuilder()
    light = style.ground_light
    layers = np.asarray(scene.map_polygon_layers, dtype=np.int64)
    surface_colour = {int(MapLayer.ROADBLOCK): style.road, int(MapLayer.INTERSECTION): style.intersection,
                      int(MapLayer.CARPARK_AREA): style.carpark}
    if not np.isin(layers, [MapLayer.ROADBLOCK, MapLayer.INTERSECTION]).any():
        # Maps that only carry lanes (no roadblock polygons): pave the lanes themselves.
        surface_colour[int(MapLayer.LANE)] = style.road
        surface_colour[int(MapLayer.LANE_CONNECTOR)] = style.intersection
    for polygon, layer in zip(scene.map_polygons, layers, strict=True):
        base = surface_colour.get(int(layer))
        if base is None:
            continue
        polygon = _clean_polyline(polygon)
        tint = 1.0 + rng.normal(0.0, style.road_jitter / 100.0)  # patched asphalt
        # LINE_8 for surfaces: anti-aliased edges would leave faint seams where two road polygons touch.
        builder.add(_LAYER_ROAD, _lift(polygon, 0.0), base * tint * light, antialias=False)
    _add_lane_markings(scene, style, builder)
    paved = [_clean_polyline(p) for p, layer in zip(scene.map_polygons, layers, strict=True)
             if int(layer) in surface_colour]
    _add_crosswalks(crosswalks, paved, style.paint_white * light, builder)
    return builder.build()


def _inside_any(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """``(N,)`` bool: point inside at least one polygon (even-odd ray casting, vectorized over points)."""
    inside_any = np.zeros(len(points), dtype=bool)
    for poly in polygons:
        if len(poly) < 3:
            continue
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        cand = np.flatnonzero(np.all((points >= lo) & (points <= hi), axis=1) & ~inside_any)
        if len(cand) == 0:
            continue
        px, py = points[cand, 0:1], points[cand, 1:2]
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        straddle = (y0 > py) != (y1 > py)
        x_cross = x0 + (py - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
        inside_any[cand] = np.sum(straddle & (px < x_cross), axis=1) % 2 == 1
    return inside_any


def _add_crosswalks(crosswalks: Sequence[tuple[np.ndarray, np.ndarray]], paved: list[np.ndarray],
                    colour: np.ndarray, builder: _MeshBuilder) -> None:
    """Zebra bars along each crossing line (start, end), bars parallel to the traffic, only on paved ground."""
    bars = []
    for start, end in crosswalks:
        start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
        span = float(np.linalg.norm(end - start))
        if span < CROSSWALK_BAR_M:
            continue
        along = (end - start) / span
        across = np.array([-along[1], along[0]]) * (CROSSWALK_WIDTH_M / 2)
        half = along * (CROSSWALK_BAR_M / 2)
        centres = start + along * (np.arange(0.5, span / (CROSSWALK_BAR_M + CROSSWALK_GAP_M))[:, None]
                                   * (CROSSWALK_BAR_M + CROSSWALK_GAP_M))
        bars.append(np.stack([centres - half - across, centres + half - across, centres + half + across,
                              centres - half + across], axis=1))
    if not bars:
        return
    quads = np.concatenate(bars)  # (n, 4, 2)
    if paved:
        quads = quads[_inside_any(quads.mean(axis=1), paved)]
    builder.add(_LAYER_PAINT, np.concatenate([quads, np.zeros((*quads.shape[:2], 1))], axis=2), colour,
                antialias=True)


def _boundary_matches(samples: np.ndarray, bounds: list[np.ndarray], lane_of: np.ndarray) -> np.ndarray:
    """``(K, K)`` bool: some sample point of boundary k lies within tolerance of boundary c (of another lane).

    Candidate pairs come from bounding boxes; the point-to-segment distances of all pairs are computed in one pass.
    ``samples`` is ``(K, S, 2)``."""
    tol = BOUNDARY_MATCH_TOLERANCE_M
    lo = np.array([b.min(axis=0) for b in bounds]) - tol
    hi = np.array([b.max(axis=0) for b in bounds]) + tol
    s_lo, s_hi = samples.min(axis=1), samples.max(axis=1)
    overlap = np.all((s_hi[:, None, :] >= lo[None]) & (s_lo[:, None, :] <= hi[None]), axis=-1)
    overlap &= lane_of[:, None] != lane_of[None, :]
    k_idx, c_idx = np.nonzero(overlap)
    matches = np.zeros_like(overlap)
    if len(k_idx) == 0:
        return matches
    seg_a = np.concatenate([b[:-1] for b in bounds])
    seg_b = np.concatenate([b[1:] for b in bounds])
    seg_count = np.array([len(b) - 1 for b in bounds])
    seg_start = np.concatenate([[0], np.cumsum(seg_count)[:-1]])
    counts = seg_count[c_idx]
    pair_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pair_of = np.repeat(np.arange(len(k_idx)), counts)
    seg = np.repeat(seg_start[c_idx] - pair_start, counts) + np.arange(int(counts.sum()))
    a, ab = seg_a[seg], seg_b[seg] - seg_a[seg]  # (T, 2)
    q = samples[k_idx[pair_of]] - a[:, None, :]  # (T, S, 2)
    t = np.clip(np.einsum("tsi,ti->ts", q, ab) / np.maximum(np.einsum("ti,ti->t", ab, ab), 1e-12)[:, None], 0, 1)
    d2 = np.min(np.sum((q - t[..., None] * ab[:, None, :]) ** 2, axis=-1), axis=1)  # (T,)
    matches[k_idx, c_idx] = np.minimum.reduceat(d2, pair_start) < tol * tol
    return matches


def _dash_polygons(poly: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Broken-line dashes along a polyline as ``(n, 6, 2)`` polygons (3 points per side follow gentle curves)."""
    s0 = np.arange(0.5 * DASH_GAP_M, cum[-1] - 0.5, DASH_LENGTH_M + DASH_GAP_M)
    if len(s0) == 0:
        return np.zeros((0, 6, 2))
    s = np.minimum(s0[:, None] + np.array([0.0, 0.5, 1.0]) * DASH_LENGTH_M, cum[-1])  # (n, 3)
    centre = _point_at(poly, cum, s)
    tangent = _point_at(poly, cum, np.minimum(s + 0.05, cum[-1])) - _point_at(poly, cum, np.maximum(s - 0.05, 0.0))
    tangent /= np.maximum(np.linalg.norm(tangent, axis=-1, keepdims=True), 1e-9)
    normal = np.stack([-tangent[..., 1], tangent[..., 0]], axis=-1) * (LINE_WIDTH_M / 2)
    return np.concatenate([centre + normal, (centre - normal)[:, ::-1]], axis=1)


def _add_lane_markings(scene: Scene, style: RenderStyle, builder: _MeshBuilder) -> None:
    """Paint, curbs and sidewalks derived from how the lane boundaries of non-connector lanes meet:
    shared with a same-direction lane -> dashed white; shared with an opposite-direction lane -> double yellow;
    not shared -> road edge (solid edge line, curb, sidewalk). Stop lines where a lane enters a junction."""
    light = style.ground_light
    white, yellow = style.paint_white * light, style.paint_yellow * light
    rows = [i for i in range(len(scene.lane_ids))
            if not bool(scene.lane_is_connector[i]) and len(_clean_polyline(scene.lane_centerlines[i])) >= 2]
    centre = {i: _clean_polyline(scene.lane_centerlines[i]) for i in rows}
    bounds: list[tuple[int, str, np.ndarray]] = []
    for i in rows:
        for side, source in (("left", scene.lane_left_boundaries), ("right", scene.lane_right_boundaries)):
            poly = _clean_polyline(source[i])
            if len(poly) >= 2:
                bounds.append((i, side, poly))
    if not bounds:
        return
    cums = [_arc_length(b[2]) for b in bounds]
    samples = np.stack([_point_at(b[2], c, c[-1] * np.asarray(BOUNDARY_SAMPLES)) for b, c in zip(bounds, cums,
                                                                                                    strict=True)])
    mids = samples[:, len(BOUNDARY_SAMPLES) // 2]
    directions = np.array([_tangent_near(centre[b[0]], m) for b, m in zip(bounds, mids, strict=True)])
    lane_of = np.array([b[0] for b in bounds])
    matches = _boundary_matches(samples, [b[2] for b in bounds], lane_of)
    same_direction = matches & (directions @ directions.T > 0.0)
    half = (DOUBLE_LINE_GAP_M + LINE_WIDTH_M) / 2
    for k, (row, side, poly) in enumerate(bounds):
        if same_direction[k].any():
            if side == "left":  # the shared line is drawn once, from the right-hand lane's left boundary
                dashes = _dash_polygons(poly, cums[k])
                builder.add(_LAYER_PAINT, np.concatenate([dashes, np.zeros((*dashes.shape[:2], 1))], axis=2), white,
                            antialias=True)
        elif matches[k].any():
            if row < lane_of[matches[k]].min():  # one double yellow line per pair of opposite lanes
                for off in (-half, half):
                    builder.add(_LAYER_PAINT, _lift(_strip(poly, off - LINE_WIDTH_M / 2, off + LINE_WIDTH_M / 2), 0.0),
                                yellow, antialias=True)
        else:
            normal_mid = _left_normals(poly)[int(np.argmin(np.linalg.norm(poly - mids[k], axis=1)))]
            centre_near = centre[row][int(np.argmin(np.linalg.norm(centre[row] - mids[k], axis=1)))]
            outward = 1.0 if float(normal_mid @ (mids[k] - centre_near)) > 0 else -1.0
            inset = -outward * EDGE_LINE_INSET_M
            edge_colour = yellow if side == "left" else white  # left edge of a one-way roadway is yellow (3B.06)
            builder.add(_LAYER_PAINT, _lift(_strip(poly, inset - LINE_WIDTH_M / 2, inset + LINE_WIDTH_M / 2), 0.0),
                        edge_colour, antialias=True)
            walk = _strip(poly, min(0.0, outward * SIDEWALK_WIDTH_M), max(0.0, outward * SIDEWALK_WIDTH_M))
            builder.add(_LAYER_SIDEWALK, _lift(walk, CURB_HEIGHT_M), style.sidewalk * light, antialias=False)
            curb_face = np.concatenate([_lift(poly, 0.0), _lift(poly, CURB_HEIGHT_M)[::-1]])
            builder.add(_LAYER_CURB, curb_face, style.curb * (style.ambient + 0.3 * style.sun_strength),
                        antialias=True)
    _add_stop_lines(scene, white, builder, rows, centre)


def _add_stop_lines(scene: Scene, colour: np.ndarray, builder: _MeshBuilder, rows: list[int],
                    centre: dict[int, np.ndarray]) -> None:
    index = scene.lane_index()
    connectors = {int(lid) for lid, c in zip(scene.lane_ids, scene.lane_is_connector, strict=True) if c}
    enters_junction = {int(a) for a, b in np.asarray(scene.lane_successors).reshape(-1, 2) if int(b) in connectors}
    for i in rows:
        if int(scene.lane_ids[i]) not in enters_junction or index.get(int(scene.lane_ids[i])) != i:
            continue
        left, right = _clean_polyline(scene.lane_left_boundaries[i]), _clean_polyline(scene.lane_right_boundaries[i])
        if len(left) == 0 or len(right) == 0:
            continue
        direction = _tangent_near(centre[i], centre[i][-1])
        back = direction * STOP_LINE_WIDTH_M
        quad = np.array([left[-1], right[-1], right[-1] - back, left[-1] - back])
        builder.add(_LAYER_PAINT, _lift(quad, 0.0), colour, antialias=True)


# --------------------------------------------------------------------------------------------------------------------
# Traffic-light rigs
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class _Boxes:
    """Oriented boxes standing on (or floating above) the ground. Shapes (B,) unless noted."""

    cx: np.ndarray
    cy: np.ndarray
    heading: np.ndarray
    half_l: np.ndarray
    half_w: np.ndarray
    z0: np.ndarray
    z1: np.ndarray
    face_rgb: np.ndarray  # (B, 6, 3) unshaded colour per face
    face_enabled: np.ndarray  # (B, 6) bool: faces that exist (back-face culling still applies)
    depth_x: np.ndarray  # (B,) world x, y of the point whose distance orders the box (its object's centre)
    depth_y: np.ndarray
    suborder: np.ndarray  # (B,) draw order inside one object (bottom to top)
    light: np.ndarray  # (B,) index of the traffic light whose lamps sit on this box's front face, or -1

    @staticmethod
    def concat(parts: list[_Boxes]) -> _Boxes:
        return _Boxes(*(np.concatenate([getattr(p, f) for p in parts]) for f in _Boxes.__dataclass_fields__))


@dataclass
class _LightRig:
    boxes: _Boxes
    lamp_centres: np.ndarray  # (L, 3, 3) world red/yellow/green lens centres
    lamp_normals: np.ndarray  # (L, 2) world direction each head faces


def _build_light_rig(scene: Scene, light_lane_ids: np.ndarray) -> _LightRig:
    """Far-side mast arms: one head per light, hanging over the lane's extension beyond the junction, grouped per
    approach (the roadblock the lights' lanes come from) with one pole right of the rightmost lane."""
    index = scene.lane_index()
    predecessor_block: dict[int, int] = {}
    for a, b in np.asarray(scene.lane_successors).reshape(-1, 2):
        if int(a) in index:
            predecessor_block.setdefault(int(b), int(scene.lane_roadblock_ids[index[int(a)]]))
    info = []
    for k, lid in enumerate(np.asarray(light_lane_ids, dtype=np.int64)):
        row = index.get(int(lid))
        if row is None:
            raise ValueError(f"traffic light on lane {int(lid)}, which is not in the map")
        cl = _clean_polyline(scene.lane_centerlines[row])
        if len(cl) < 2:
            raise ValueError(f"lane {int(lid)} with a traffic light has a degenerate centerline")
        left, right = np.asarray(scene.lane_left_boundaries[row]), np.asarray(scene.lane_right_boundaries[row])
        width = float(np.linalg.norm(left[0] - right[0])) if len(left) and len(right) else 3.5
        start_dir = (cl[1] - cl[0]) / np.linalg.norm(cl[1] - cl[0])
        end_dir = (cl[-1] - cl[-2]) / np.linalg.norm(cl[-1] - cl[-2])
        turn = float(np.arctan2(start_dir[0] * end_dir[1] - start_dir[1] * end_dir[0], start_dir @ end_dir))
        group = ("block", predecessor_block[int(lid)]) if int(lid) in predecessor_block else ("lane", k)
        info.append(dict(k=k, start=cl[0], end=cl[-1], dir=start_dir, width=width, turn=turn, group=group))
    groups: dict[tuple, list[dict]] = {}
    for item in info:
        groups.setdefault(item["group"], []).append(item)

    rows: list[tuple] = []  # (cx, cy, heading, half_l, half_w, z0, z1, rgb, light)
    lamp_centres = np.zeros((len(info), 3, 3))
    lamp_normals = np.zeros((len(info), 2))
    head_d, head_w, head_h = TL_HEAD_SIZE_M
    arm_z1 = TL_HEAD_BOTTOM_M + head_h + TL_ARM_THICKNESS_M
    for members in groups.values():
        fwd = np.sum([m["dir"] for m in members], axis=0)
        fwd /= max(float(np.linalg.norm(fwd)), 1e-9)
        right = np.array([fwd[1], -fwd[0]])
        ref = members[0]["start"]
        lat = np.array([(m["start"] - ref) @ right for m in members])
        lon = np.array([(m["start"] - ref) @ fwd for m in members])
        reach = max(float((m["end"] - ref) @ fwd) for m in members)
        far = float(np.clip(reach, lon.max() + TL_SETBACK_RANGE_M[0], lon.max() + TL_SETBACK_RANGE_M[1]))
        # Heads of connectors sharing a start lane sit side by side, the sharpest left turn leftmost.
        order = np.lexsort((-np.array([m["turn"] for m in members]), np.round(lat / 0.5)))
        head_lat = lat.copy()
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and abs(lat[order[j + 1]] - lat[order[i]]) < 0.5:
                j += 1
            n = j - i + 1
            for r, idx in enumerate(order[i:j + 1]):
                head_lat[idx] = lat[order[i]] + (r - (n - 1) / 2.0) * TL_HEAD_SPACING_M
            i = j + 1
        face_back = float(np.arctan2(-fwd[1], -fwd[0]))  # heads face the approaching traffic
        for m, hl in zip(members, head_lat, strict=True):
            c = ref + fwd * far + right * hl
            rows.append((c[0], c[1], face_back, head_d / 2, head_w / 2, TL_HEAD_BOTTOM_M,
                         TL_HEAD_BOTTOM_M + head_h, _SIGNAL_HEAD, m["k"]))
            lens = c - fwd * (head_d / 2 + 0.02)
            lamp_normals[m["k"]] = -fwd
            for s, frac in enumerate(TL_LAMP_HEIGHT_FRACTIONS):
                lamp_centres[m["k"], s] = (lens[0], lens[1], TL_HEAD_BOTTOM_M + frac * head_h)
        pole_lat = float(lat.max() + max(m["width"] for m in members) / 2 + TL_POLE_OFFSET_M)
        arm_lo = float(head_lat.min() - head_w)
        pole = ref + fwd * far + right * pole_lat
        arm = ref + fwd * far + right * (arm_lo + pole_lat) / 2
        rows.append((pole[0], pole[1], face_back, TL_POLE_SIZE_M / 2, TL_POLE_SIZE_M / 2, 0.0, arm_z1 + 0.3,
                     _SIGNAL_METAL, -1))
        rows.append((arm[0], arm[1], float(np.arctan2(right[1], right[0])), (pole_lat - arm_lo) / 2,
                     TL_ARM_THICKNESS_M / 2, arm_z1 - TL_ARM_THICKNESS_M, arm_z1, _SIGNAL_METAL, -1))
    if not rows:
        return _LightRig(boxes=_empty_boxes(), lamp_centres=lamp_centres, lamp_normals=lamp_normals)
    cols = list(zip(*rows, strict=True))
    cx, cy = np.array(cols[0], dtype=np.float64), np.array(cols[1], dtype=np.float64)
    rgb = np.repeat(np.array(cols[7], dtype=np.float64)[:, None, :], 6, axis=1)
    boxes = _Boxes(cx=cx, cy=cy, heading=np.array(cols[2]), half_l=np.array(cols[3]), half_w=np.array(cols[4]),
                   z0=np.array(cols[5]), z1=np.array(cols[6]), face_rgb=rgb, face_enabled=np.ones((len(rows), 6), bool),
                   depth_x=cx.copy(), depth_y=cy.copy(),
                   suborder=np.zeros(len(rows), dtype=np.int64), light=np.array(cols[8], dtype=np.int64))
    return _LightRig(boxes=boxes, lamp_centres=lamp_centres, lamp_normals=lamp_normals)


def _empty_boxes() -> _Boxes:
    z = np.zeros(0)
    return _Boxes(cx=z, cy=z, heading=z, half_l=z, half_w=z, z0=z, z1=z, face_rgb=np.zeros((0, 6, 3)),
                  face_enabled=np.zeros((0, 6), bool), depth_x=z, depth_y=z, suborder=np.zeros(0, np.int64),
                  light=np.zeros(0, np.int64))


# --------------------------------------------------------------------------------------------------------------------
# Per-frame helpers
# --------------------------------------------------------------------------------------------------------------------
def _outcodes(hom: np.ndarray, width: int, height: int) -> np.ndarray:
    """Frustum outcode bits ``(N,)`` uint8 of homogeneous image points ``(N, 3)`` = (u*z, v*z, z).

    Each bit is a half-space test (near, far, left, right, top, bottom), valid for points behind the camera too, so
    "all vertices share a bit" proves a convex hull is invisible."""
    a, b, z = hom[:, 0], hom[:, 1], hom[:, 2]
    codes = (z < NEAR_PLANE_M).view(np.uint8).copy()
    codes |= (z > FAR_CULL_M).view(np.uint8) << 1
    codes |= (a < 0.0).view(np.uint8) << 2
    codes |= (a > width * z).view(np.uint8) << 3
    codes |= (b < 0.0).view(np.uint8) << 4
    codes |= (b > height * z).view(np.uint8) << 5
    return codes


def _to_fixed(hom: np.ndarray) -> np.ndarray:
    """Perspective divide and cv2 fixed point ``(N, 2)`` int32 (depth clamped at the near plane)."""
    uv = hom[:, :2] / np.maximum(hom[:, 2:3], NEAR_PLANE_M)
    return np.clip(np.rint(uv * _SCALE), -_FIXED_LIMIT, _FIXED_LIMIT).astype(np.int32)


def _clip_near(hom: np.ndarray) -> np.ndarray | None:
    """Sutherland-Hodgman clip of one polygon ``(K, 3)`` (homogeneous image coordinates, 3rd = camera depth) to
    depth >= NEAR_PLANE_M; ``None`` when nothing is left. Clipping before the divide is what keeps vertices behind
    the camera from wrapping around to the other side of the image."""
    z = hom[:, 2]
    inside = z >= NEAR_PLANE_M
    nxt = np.concatenate([hom[1:], hom[:1]])
    crossing = inside != np.concatenate([inside[1:], inside[:1]])
    dz = nxt[:, 2] - z
    t = (NEAR_PLANE_M - z) / np.where(crossing, dz, 1.0)
    cut = hom + t[:, None] * (nxt - hom)
    out = np.stack([hom, cut], axis=1).reshape(-1, 3)[np.stack([inside, crossing], axis=1).reshape(-1)]
    return out if len(out) >= 3 else None


def _draw_polygons(img: np.ndarray, hom: np.ndarray, starts: np.ndarray, stops: np.ndarray,
                   colours: list[tuple[int, int, int]], antialias: list[bool]) -> None:
    """Cull, clip and fill polygons ``hom[starts[i]:stops[i]]`` in order."""
    if len(starts) == 0:
        return
    height, width = img.shape[:2]
    codes = _outcodes(hom, width, height)
    visible = np.bitwise_and.reduceat(codes, starts) == 0
    crosses_near = (np.bitwise_or.reduceat(codes, starts) & 1) != 0
    fixed = _to_fixed(hom)
    starts_l, stops_l, crosses_l = starts.tolist(), stops.tolist(), crosses_near.tolist()
    for i in np.flatnonzero(visible).tolist():
        s, e = starts_l[i], stops_l[i]
        if crosses_l[i]:
            clipped = _clip_near(hom[s:e])
            if clipped is None:
                continue
            pts = _to_fixed(clipped)
        else:
            pts = fixed[s:e]
        cv2.fillPoly(img, [pts], colours[i], cv2.LINE_AA if antialias[i] else cv2.LINE_8, SUBPIXEL_BITS)


def _box_corners(boxes: _Boxes) -> np.ndarray:
    """``(B, 8, 3)`` world corners: bottom FL, RL, RR, FR then the same on top."""
    c, s = np.cos(boxes.heading), np.sin(boxes.heading)
    sign_l = np.array([1.0, -1.0, -1.0, 1.0])
    sign_w = np.array([1.0, 1.0, -1.0, -1.0])
    dl = boxes.half_l[:, None] * sign_l
    dw = boxes.half_w[:, None] * sign_w
    x = boxes.cx[:, None] + c[:, None] * dl - s[:, None] * dw
    y = boxes.cy[:, None] + s[:, None] * dl + c[:, None] * dw
    corners = np.empty((len(boxes.cx), 8, 3))
    corners[:, :4, 0] = corners[:, 4:, 0] = x
    corners[:, :4, 1] = corners[:, 4:, 1] = y
    corners[:, :4, 2] = boxes.z0[:, None]
    corners[:, 4:, 2] = boxes.z1[:, None]
    return corners


@functools.lru_cache(maxsize=32)
def _fixed_pattern_noise(height: int, width: int, sigma_tenths: int) -> tuple[np.ndarray, np.ndarray]:
    """Sensor fixed-pattern noise as (add, subtract) uint8 images; cached per size and amplitude."""
    noise = np.random.default_rng(0xA015E).standard_normal((height, width, 3), dtype=np.float32) * (sigma_tenths / 10)
    pos, neg = np.clip(np.rint(noise), 0, 255).astype(np.uint8), np.clip(np.rint(-noise), 0, 255).astype(np.uint8)
    pos.setflags(write=False)
    neg.setflags(write=False)
    return pos, neg


_BG_LEVELS = 1024  # quantization of the background's haze / sky gradients (well below one grey level per step)
_BG_DISTANCE_SCALE_M = 50.0  # ground distance d is stored as d / (d + 50 m): fine near the camera, coarse far away


@dataclass(frozen=True)
class _BackgroundGeometry:
    index: np.ndarray  # (H, W) rows of the [ground levels | sky levels] lookup table
    edge_pixels: np.ndarray  # (E,) flat indices of pixels the horizon crosses
    edge_ground: np.ndarray  # (E,) their ground and sky table rows and sky coverage
    edge_sky: np.ndarray
    edge_alpha: np.ndarray


@functools.lru_cache(maxsize=8)
def _background_geometry(intrinsics: bytes, sensor2ego: bytes, width: int, height: int) -> _BackgroundGeometry:
    K = np.frombuffer(intrinsics, dtype=np.float64).reshape(3, 3)
    S = np.frombuffer(sensor2ego, dtype=np.float64).reshape(4, 4)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ (S[:3, :3] @ np.linalg.inv(K)).T  # (H, W, 3) ego frame
    flat = np.hypot(rays[..., 0], rays[..., 1])
    elevation = np.arctan2(rays[..., 2], flat)
    distance = max(float(S[2, 3]), 0.1) * flat / np.maximum(-rays[..., 2], 1e-9)
    top = _BG_LEVELS - 1
    ground = np.rint(top * distance / (distance + _BG_DISTANCE_SCALE_M)).astype(np.intp)
    sky = _BG_LEVELS + np.rint(top * np.clip(elevation / (np.pi / 2), 0.0, 1.0)).astype(np.intp)
    alpha = np.clip(0.5 + elevation * K[1, 1], 0.0, 1.0)  # sky coverage: ~1 px wide horizon blend
    ground = np.where(alpha < 1.0, np.minimum(ground, top), ground)
    index = np.where(alpha >= 0.5, sky, ground)
    edge = np.flatnonzero((alpha > 0.0) & (alpha < 1.0))
    return _BackgroundGeometry(index=index, edge_pixels=edge, edge_ground=np.full(len(edge), top),
                               edge_sky=sky.reshape(-1)[edge], edge_alpha=alpha.reshape(-1)[edge])


# --------------------------------------------------------------------------------------------------------------------
# Renderer
# --------------------------------------------------------------------------------------------------------------------
class CameraRenderer:
    """Renders front-camera RGB frames of one map (see the module docstring for the pipeline).

    Args:
        scene_map: a Scene; only its map fields (polygons, lanes, successors) are read.
        calibration: the camera to render (intrinsics for ``width`` x ``height``, sensor2ego).
        seed: picks the appearance (sky, sun, asphalt tint, paint, terrain, agent colours, sensor noise).
        crosswalks: optional pedestrian crossings as (start, end) points ``(2,)`` of the crossing line (the Scene
            format does not store them; the world's map generator knows them), painted as zebra bars.
    """

    def __init__(self, scene_map: Scene, calibration: CameraCalibration, seed: int = 0,
                 crosswalks: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        intrinsics = np.asarray(calibration.intrinsics, dtype=np.float64)
        sensor2ego = np.asarray(calibration.sensor2ego, dtype=np.float64)
        if intrinsics.shape != (3, 3) or sensor2ego.shape != (4, 4):
            raise ValueError(f"calibration needs intrinsics (3, 3) and sensor2ego (4, 4), got {intrinsics.shape} and "
                             f"{sensor2ego.shape}")
        if calibration.width <= 0 or calibration.height <= 0:
            raise ValueError(f"calibration image size must be positive, got {calibration.width}x{calibration.height}")
        self.scene_map = scene_map
        self.calibration = calibration
        self.width, self.height = int(calibration.width), int(calibration.height)
        self.seed = int(seed)
        self.style = sample_style(self.seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xCA3]))
        self._ego2image = intrinsics @ np.linalg.inv(sensor2ego)[:3, :]  # (3, 4)
        self._camera_in_ego = sensor2ego[:3, 3].copy()
        self._focal = float(intrinsics[0, 0])
        self._ground = _build_ground(scene_map, self.style, rng, crosswalks or [])
        self._background = self._build_background(intrinsics, sensor2ego)
        self._noise_pos, self._noise_neg = _fixed_pattern_noise(self.height, self.width,
                                                                5 * int(round(self.style.noise_sigma * 2)))
        self._skyline_setup(intrinsics, sensor2ego)
        self._rig_cache: dict[bytes, _LightRig] = {}

    # ---------------------------------------------------------------------------------------------------------------
    def world_to_image(self, ego_pose: np.ndarray) -> np.ndarray:
        """``(3, 4)`` projection from world coordinates to homogeneous pixels for the ego at ``ego_pose`` (3,)."""
        x, y, yaw = (float(v) for v in ego_pose)
        c, s = np.cos(yaw), np.sin(yaw)
        world2ego = np.array([[c, s, 0.0, -(c * x + s * y)], [-s, c, 0.0, s * x - c * y], [0.0, 0.0, 1.0, 0.0],
                              [0.0, 0.0, 0.0, 1.0]])
        return self._ego2image @ world2ego

    def render(self, ego_pose: np.ndarray, agent_types: np.ndarray, agent_boxes: np.ndarray,
               light_lane_ids: np.ndarray, light_status: np.ndarray,
               agent_ids: np.ndarray | None = None) -> np.ndarray:
        """One RGB frame ``(H, W, 3)`` uint8.

        Args:
            ego_pose: ``(3,)`` world rear-axle pose (x, y, heading).
            agent_types: ``(A,)`` AgentType values.
            agent_boxes: ``(A, 6)`` world boxes [x, y, heading, length, width, height], centres on the ground.
            light_lane_ids: ``(L,)`` ids of the (connector) lanes that carry a traffic light.
            light_status: ``(L,)`` TrafficLightStatus of each.
            agent_ids: optional ``(A,)`` stable ids that pick each agent's colour; by default the colour is hashed
                from the box size, which is constant per agent too.
        """
        ego_pose, agent_types, agent_boxes, light_lane_ids, light_status = self._check_inputs(
            ego_pose, agent_types, agent_boxes, light_lane_ids, light_status, agent_ids)
        proj = self.world_to_image(ego_pose)
        img = self._background.copy()
        self._draw_skyline(img, float(ego_pose[2]))
        ground = self._ground
        if len(ground.starts):
            hom = ground.vertices @ proj[:, :3].T + proj[:, 3]
            _draw_polygons(img, hom, ground.starts, ground.stops, ground.colours, ground.antialias)
        if len(agent_boxes):
            self._draw_shadows(img, proj, agent_boxes)
        parts = [self._agent_boxes(agent_types, agent_boxes, agent_ids)]
        rig = None
        if len(light_lane_ids):
            rig = self._light_rig(light_lane_ids)
            parts.append(rig.boxes)
        boxes = _Boxes.concat(parts) if len(parts) > 1 else parts[0]
        if len(boxes.cx):
            self._draw_boxes(img, proj, ego_pose, boxes, rig, light_status)
        cv2.add(img, self._noise_pos, dst=img)
        cv2.subtract(img, self._noise_neg, dst=img)
        return img

    # ---------------------------------------------------------------------------------------------------------------
    def _check_inputs(self, ego_pose, agent_types, agent_boxes, light_lane_ids, light_status, agent_ids):
        ego_pose = np.asarray(ego_pose, dtype=np.float64)
        if ego_pose.shape != (3,) or not np.all(np.isfinite(ego_pose)):
            raise ValueError(f"ego_pose must be a finite (3,) array, got shape {ego_pose.shape}")
        agent_types = np.asarray(agent_types, dtype=np.int64).reshape(-1)
        agent_boxes = np.asarray(agent_boxes, dtype=np.float64)
        if agent_boxes.size == 0 and len(agent_types) == 0:
            agent_boxes = agent_boxes.reshape(0, 6)
        if agent_boxes.shape != (len(agent_types), 6):
            raise ValueError(f"agent_boxes must have shape ({len(agent_types)}, 6) to match agent_types, "
                             f"got {agent_boxes.shape}")
        if not np.all(np.isfinite(agent_boxes)):
            raise ValueError("agent_boxes contains NaN/inf")
        if len(agent_types) and (agent_types.min() < 0 or agent_types.max() >= len(AgentType)):
            raise ValueError(f"agent_types must be AgentType values 0..{len(AgentType) - 1}")
        if agent_ids is not None and np.asarray(agent_ids).shape != (len(agent_types),):
            raise ValueError(f"agent_ids must have shape ({len(agent_types)},), got {np.asarray(agent_ids).shape}")
        light_lane_ids = np.asarray(light_lane_ids, dtype=np.int64).reshape(-1)
        light_status = np.asarray(light_status, dtype=np.int64).reshape(-1)
        if light_status.shape != light_lane_ids.shape:
            raise ValueError(f"light_status {light_status.shape} must match light_lane_ids {light_lane_ids.shape}")
        return ego_pose, agent_types, agent_boxes, light_lane_ids, light_status

    def _build_background(self, intrinsics: np.ndarray, sensor2ego: np.ndarray) -> np.ndarray:
        """Sky gradient above the horizon, terrain fading into haze below it; anti-aliased horizon. The per-pixel
        geometry is cached per camera, so a new map or seed only recolours two small lookup tables."""
        style = self.style
        geo = _background_geometry(intrinsics.tobytes(), sensor2ego.tobytes(), self.width, self.height)
        level = np.linspace(0.0, 1.0, _BG_LEVELS)[:, None]
        distance = _BG_DISTANCE_SCALE_M * level / np.maximum(1.0 - level, 1e-9)
        haze = 1.0 - np.exp(-distance / style.fog_distance)
        ground = style.terrain * style.ground_light * (1.0 - haze) + style.sky_horizon * haze
        sky = style.sky_horizon + (style.sky_zenith - style.sky_horizon) * level ** 0.6
        lut = np.clip(np.rint(np.concatenate([ground, sky])), 0, 255).astype(np.uint8)
        image = np.take(lut, geo.index, axis=0)
        alpha = geo.edge_alpha[:, None]
        edge = lut[geo.edge_ground].astype(np.float64) * (1.0 - alpha) + lut[geo.edge_sky] * alpha
        image.reshape(-1, 3)[geo.edge_pixels] = np.rint(edge).astype(np.uint8)
        return image

    def _skyline_setup(self, intrinsics: np.ndarray, sensor2ego: np.ndarray) -> None:
        """Columns where the distant skyline is sampled: their ego-frame azimuth on the horizon."""
        ego2cam = np.linalg.inv(sensor2ego)[:3, :3]
        horizon = np.linalg.inv(intrinsics).T @ (ego2cam @ np.array([0.0, 0.0, 1.0]))  # vanishing line of z = 0
        self._skyline_ok = abs(float(horizon[1])) > 1e-9
        if not self._skyline_ok:
            return
        us = np.linspace(-2.0, self.width + 2.0, 97)
        vs = -(horizon[0] * us + horizon[2]) / horizon[1]
        rays = np.stack([us, vs, np.ones_like(us)], axis=1) @ np.linalg.inv(intrinsics).T @ sensor2ego[:3, :3].T
        self._skyline_az = np.arctan2(rays[:, 1], rays[:, 0])
        ahead = rays[:, 0] > 0  # columns whose horizon point is in front (always, for a forward camera)
        self._skyline_az = self._skyline_az[ahead]
        self._skyline_rot = intrinsics @ ego2cam
        base = np.stack([us[ahead][[-1, 0]], vs[ahead][[-1, 0]] + 2.0], axis=1)  # just below the horizon
        self._skyline_base = np.rint(base * _SCALE).astype(np.int32)
        light = self.style.ambient + 0.5 * self.style.sun_strength
        self._skyline_colour = tuple(int(c) for c in np.clip(self.style.skyline * light, 0, 255))

    def _draw_skyline(self, img: np.ndarray, yaw: float) -> None:
        if not self._skyline_ok or len(self._skyline_az) < 2:
            return
        profile = self.style.skyline_profile
        az_world = np.mod(self._skyline_az + yaw, 2.0 * np.pi)
        grid = np.arange(len(profile) + 1) * (2.0 * np.pi / len(profile))
        elevation = np.interp(az_world, grid, np.append(profile, profile[0]))
        dirs = np.stack([np.cos(self._skyline_az) * np.cos(elevation), np.sin(self._skyline_az) * np.cos(elevation),
                         np.sin(elevation)], axis=1)
        hom = dirs @ self._skyline_rot.T
        pts = np.concatenate([_to_fixed(hom), self._skyline_base])
        cv2.fillPoly(img, [pts], self._skyline_colour, cv2.LINE_AA, SUBPIXEL_BITS)

    def _draw_shadows(self, img: np.ndarray, proj: np.ndarray, agent_boxes: np.ndarray) -> None:
        x, y, h = agent_boxes[:, 0], agent_boxes[:, 1], agent_boxes[:, 2]
        hl = agent_boxes[:, 3] / 2 + SHADOW_MARGIN_M
        hw = agent_boxes[:, 4] / 2 + SHADOW_MARGIN_M
        c, s = np.cos(h), np.sin(h)
        sl, sw = np.array([1.0, -1.0, -1.0, 1.0]), np.array([1.0, 1.0, -1.0, -1.0])
        px = x[:, None] + c[:, None] * hl[:, None] * sl - s[:, None] * hw[:, None] * sw
        py = y[:, None] + s[:, None] * hl[:, None] * sl + c[:, None] * hw[:, None] * sw
        hom = np.stack([px, py], axis=-1).reshape(-1, 2) @ proj[:, :2].T + proj[:, 3]
        n = len(agent_boxes)
        starts = np.arange(n, dtype=np.int64) * 4
        colour = tuple(int(v) for v in self.style.shadow)
        _draw_polygons(img, hom, starts, starts + 4, [colour] * n, [True] * n)

    def _agent_boxes(self, agent_types: np.ndarray, agent_boxes: np.ndarray, agent_ids: np.ndarray | None) -> _Boxes:
        """Expand agents into their class's sub-boxes with per-face colours."""
        n = len(agent_types)
        if n == 0:
            return _empty_boxes()
        style = self.style
        x, y, heading, length, width, height = agent_boxes.T
        cls = _CLASS_OF_TYPE[agent_types]
        cls = np.where((cls == _CAR) & (length > TRUCK_MIN_LENGTH_M), _TRUCK, cls)
        if agent_ids is None:  # size is constant per agent, so it is a stable colour key
            key = (np.rint(length * 100).astype(np.uint64) * np.uint64(73856093)
                   ^ np.rint(width * 100).astype(np.uint64) * np.uint64(19349663)
                   ^ np.rint(height * 100).astype(np.uint64) * np.uint64(83492791))
        else:
            key = np.asarray(agent_ids).astype(np.int64).astype(np.uint64)
        with np.errstate(over="ignore"):
            mixed = (key + np.uint64(style.palette_offset)) * np.uint64(0x9E3779B97F4A7C15)
        mixed = (mixed >> np.uint64(29)).astype(np.int64)
        kinds = np.empty((n, _N_KINDS, 3))
        vehicle = np.isin(cls, (_CAR, _TRUCK))
        body = np.where(vehicle[:, None], style.vehicle_palette[mixed % len(style.vehicle_palette)],
                        style.shirt_palette[mixed % len(style.shirt_palette)])
        body = np.where(np.isin(cls, (_CONE, _BARRIER, _SIGN))[:, None], np.array(_SAFETY_ORANGE, float), body)
        body = np.where((cls == _GENERIC)[:, None], np.array(_GENERIC_GREY, float), body)
        kinds[:, _BODY] = body
        kinds[:, _GLASS] = style.glass
        kinds[:, _DARK_KIND] = _DARK
        kinds[:, _PANTS] = style.pants_palette[(mixed // 7) % len(style.pants_palette)]
        kinds[:, _SKIN] = style.skin_palette[(mixed // 31) % len(style.skin_palette)]
        kinds[:, _LIGHT] = _SAFETY_WHITE
        kinds[:, _TAIL] = _TAIL_LAMP

        agent_idx, sub_idx = np.nonzero(_TEMPLATE_VALID[cls])  # (B,) each
        geom = _TEMPLATE_GEOM[cls[agent_idx], sub_idx]  # (B, 6)
        face_kind = _TEMPLATE_KINDS[cls[agent_idx], sub_idx]  # (B, 6)
        c, s = np.cos(heading[agent_idx]), np.sin(heading[agent_idx])
        dx, dy = geom[:, 0] * length[agent_idx], geom[:, 1] * width[agent_idx]
        rgb = kinds[agent_idx[:, None], np.maximum(face_kind, 0)]  # (B, 6, 3)
        return _Boxes(cx=x[agent_idx] + c * dx - s * dy, cy=y[agent_idx] + s * dx + c * dy,
                      heading=heading[agent_idx], half_l=geom[:, 2] * length[agent_idx] / 2,
                      half_w=geom[:, 3] * width[agent_idx] / 2, z0=geom[:, 4] * height[agent_idx],
                      z1=geom[:, 5] * height[agent_idx], face_rgb=rgb, face_enabled=face_kind != _OFF,
                      depth_x=x[agent_idx], depth_y=y[agent_idx], suborder=sub_idx.astype(np.int64),
                      light=np.full(len(agent_idx), -1, dtype=np.int64))

    def _light_rig(self, light_lane_ids: np.ndarray) -> _LightRig:
        key = light_lane_ids.tobytes()
        rig = self._rig_cache.get(key)
        if rig is None:
            rig = _build_light_rig(self.scene_map, light_lane_ids)
            self._rig_cache[key] = rig
        return rig

    def _draw_boxes(self, img: np.ndarray, proj: np.ndarray, ego_pose: np.ndarray, boxes: _Boxes,
                    rig: _LightRig | None, light_status: np.ndarray) -> None:
        style = self.style
        height, width = img.shape[:2]
        cam = np.empty(3)
        c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
        cam[0] = ego_pose[0] + c * self._camera_in_ego[0] - s * self._camera_in_ego[1]
        cam[1] = ego_pose[1] + s * self._camera_in_ego[0] + c * self._camera_in_ego[1]
        cam[2] = self._camera_in_ego[2]

        corners = _box_corners(boxes)
        n = len(boxes.cx)
        hom = corners.reshape(-1, 3) @ proj[:, :3].T + proj[:, 3]
        codes = _outcodes(hom, width, height).reshape(n, 8)
        keep = np.flatnonzero(np.bitwise_and.reduce(codes, axis=1) == 0)  # frustum culling
        if len(keep) == 0:
            return
        crosses_near = (np.bitwise_or.reduce(codes[keep], axis=1) & 1) != 0
        hom = hom.reshape(n, 8, 3)[keep]
        face_pts = np.ascontiguousarray(_to_fixed(hom.reshape(-1, 3)).reshape(-1, 8, 2)[:, _FACES])  # (V, 6, 4, 2)
        heading, cx, cy = boxes.heading[keep], boxes.cx[keep], boxes.cy[keep]
        half_l, half_w, z0, z1 = boxes.half_l[keep], boxes.half_w[keep], boxes.z0[keep], boxes.z1[keep]

        # Back-face culling and Lambert shading in each box's own frame.
        bc, bs = np.cos(heading), np.sin(heading)
        rel_x, rel_y = cam[0] - cx, cam[1] - cy
        loc_x, loc_y = bc * rel_x + bs * rel_y, -bs * rel_x + bc * rel_y
        faces_on = np.stack([loc_x > half_l, loc_x < -half_l, loc_y > half_w, loc_y < -half_w, cam[2] > z1,
                             cam[2] < z0], axis=1)
        faces_on &= boxes.face_enabled[keep]
        sun = style.sun_direction
        sun_x, sun_y = bc * sun[0] + bs * sun[1], -bs * sun[0] + bc * sun[1]
        sun_z = np.full(len(keep), sun[2])
        lambert = np.maximum(np.stack([sun_x, -sun_x, sun_y, -sun_y, sun_z, -sun_z], axis=1), 0.0)
        shade = style.ambient + style.sun_strength * lambert  # (V, 6)
        depth = np.hypot(boxes.depth_x[keep] - cam[0], boxes.depth_y[keep] - cam[1])
        haze = (1.0 - np.exp(-depth / style.fog_distance))[:, None, None]
        rgb = boxes.face_rgb[keep] * shade[..., None] * (1.0 - haze) + style.sky_horizon * haze
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.int64).tolist()

        order = np.lexsort((boxes.suborder[keep], -depth)).tolist()  # far to near, bottom to top in an object
        faces_on_l = faces_on.tolist()
        crosses_l = crosses_near.tolist()
        light_l = boxes.light[keep].tolist()
        for b in order:
            on = faces_on_l[b]
            for f in range(6):
                if not on[f]:
                    continue
                if crosses_l[b]:
                    clipped = _clip_near(hom[b, _FACES[f]])
                    if clipped is not None:
                        cv2.fillPoly(img, [_to_fixed(clipped)], rgb[b][f], cv2.LINE_AA, SUBPIXEL_BITS)
                else:
                    cv2.fillConvexPoly(img, face_pts[b, f], rgb[b][f], cv2.LINE_AA, SUBPIXEL_BITS)
            if light_l[b] >= 0 and on[0] and rig is not None:
                k = light_l[b]
                self._draw_lamps(img, proj, cam, rig.lamp_centres[k], rig.lamp_normals[k], int(light_status[k]))

    def _draw_lamps(self, img: np.ndarray, proj: np.ndarray, cam: np.ndarray, centres: np.ndarray,
                    normal: np.ndarray, status: int) -> None:
        """The three lenses of one head as ellipses foreshortened by the viewing angle; hidden by the visors when
        seen from far off-axis."""
        view = cam[:2] - centres[1, :2]
        cos_view = float(normal @ view) / max(float(np.linalg.norm(view)), 1e-9)
        if cos_view < TL_LAMP_MIN_COS:
            return
        hom = centres @ proj[:, :3].T + proj[:, 3]
        if np.any(hom[:, 2] < NEAR_PLANE_M):
            return
        uv = _to_fixed(hom).tolist()
        radius = (self._focal * TL_LAMP_RADIUS_M / hom[:, 2]).tolist()
        lit = {int(TrafficLightStatus.RED): 0, int(TrafficLightStatus.YELLOW): 1,
               int(TrafficLightStatus.GREEN): 2}.get(status, -1)
        for i in range(3):
            on = i == lit
            r = max(radius[i] * (1.3 if on else 1.0), 0.6 if on else 0.3)  # a lit lens blooms a little
            axes = (int(round(r * cos_view * _SCALE)), int(round(r * _SCALE)))
            cv2.ellipse(img, (uv[i][0], uv[i][1]), axes, 0.0, 0.0, 360.0, _LAMP_ON[status] if on else _LAMP_OFF, -1,
                        cv2.LINE_AA, SUBPIXEL_BITS)


__all__ = [
    "FRONT_CAMERA_HFOV_DEG", "FRONT_CAMERA_PITCH_DEG", "FRONT_CAMERA_POSITION_M", "CameraRenderer",
    "default_front_camera",
]
