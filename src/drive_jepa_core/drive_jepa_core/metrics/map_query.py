"""Exact, vectorized geometric queries for the batch PDM scorer: point-in-polygon sets, polyline distance thresholds,
and oriented-box intersections against per-frame objects.

Every query returns exactly what the straightforward shapely formulation returns (the reference scorer uses that
one): the fast path only decides cases that are provably far from a decision boundary, and everything within a
safety margin of one goes to shapely.

* :class:`PolygonIndex` — which polygons strictly contain a point (``shapely.contains_xy`` semantics, a point on a
  boundary is outside). A uniform grid is classified once per polygon into cells fully inside, fully outside, and
  boundary cells; only points in boundary cells are tested exactly, against the few polygons whose boundary passes
  near their cell (and only those whose membership matters). Sets of polygons are bitmask rows, so layer predicates
  ("in any drivable polygon", "in more than one lane") are bit operations.
* :class:`PolylineThresholdIndex` — whether the distance of points to a polyline exceeds a threshold (LK): cells
  surely near / surely far / band; band points measured against their cell's candidate segments, shapely ``distance``
  within 1e-9 m of the threshold.
* :class:`BoxGrid` — broad phase between many query discs and per-frame oriented boxes (uniform grid, CSR lists).
* :func:`rect_gap` — separating-axis gap between oriented rectangles or segments; ``gap > 0`` means disjoint.
  Callers re-decide gaps within :data:`SAT_EPSILON` of 0 with shapely ``intersects``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import shapely
from scipy import ndimage

# Cells are classified with this much slack (metres) so that floating-point cell assignment and distance rounding can
# never flip a decision: a point in an "inside" cell is at least this far inside its polygon.
GRID_MARGIN: float = 1e-6
# SAT gaps within this distance (metres) of 0 are re-decided exactly with shapely.
SAT_EPSILON: float = 1e-7
POLYGON_GRID_RESOLUTION: float = 0.25  # m, cell size of PolygonIndex
POLYLINE_GRID_RESOLUTION: float = 0.1  # m, cell size of PolylineThresholdIndex
BOX_GRID_CELL: float = 1.5  # m, cell size of the BoxGrid broad phase
_MAX_GRID_CELLS: int = 4_000_000  # memory guard: coarser cells beyond this many


# ----------------------------------------------------------------------------------------------------------------------
# Small shared helpers (used identically by the batch and the reference scorer)
# ----------------------------------------------------------------------------------------------------------------------
def relative_angle(pose: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Angle between a pose's heading and the direction to a point, in [0, π] (navsim_metrics.md §1).

    NaN when the point coincides with the pose (every comparison with it is then False, as in NAVSIM).

    Args:
        pose: ``(..., 3)`` (x, y, heading) — the ego rear-axle pose.
        xy: ``(..., 2)`` — the object's polygon centroid.
    Returns:
        ``(...)`` radians.
    """
    pose = np.asarray(pose, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    dx = xy[..., 0] - pose[..., 0]
    dy = xy[..., 1] - pose[..., 1]
    norm = np.sqrt(dx * dx + dy * dy)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_angle = (np.cos(pose[..., 2]) * dx + np.sin(pose[..., 2]) * dy) / norm
        return np.arccos(cos_angle)


def polygons_from_corners(corners: np.ndarray) -> np.ndarray:
    """Shapely polygons from ``(..., n, 2)`` ring vertices (not closed); returns an object array ``(...)``."""
    corners = np.asarray(corners, dtype=np.float64)
    return shapely.polygons(corners)


def _bit_words(count: int) -> int:
    return max(1, (count + 63) // 64)


def bitmask(indices: Sequence[int] | np.ndarray, num_bits: int) -> np.ndarray:
    """``(W,)`` uint64 mask with the given bit indices set (W = ceil(num_bits / 64))."""
    mask = np.zeros(_bit_words(num_bits), dtype=np.uint64)
    for i in np.asarray(indices, dtype=np.int64).reshape(-1):
        if not 0 <= i < num_bits:
            raise IndexError(f"bit {i} outside [0, {num_bits})")
        mask[i // 64] |= np.uint64(1) << np.uint64(i % 64)
    return mask


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits over the last axis of a uint64 array."""
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def smallest_uint(max_value: int) -> type[np.unsignedinteger]:
    """The smallest unsigned integer dtype holding ``0 … max_value``."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def smallest_index(max_value: int) -> type[np.signedinteger]:
    """int32 when ``0 … max_value`` fits (indices and offsets), else int64."""
    return np.int32 if max_value <= np.iinfo(np.int32).max else np.int64


class RankBitmap:
    """A sorted set of integers in ``[0, size)`` as packed bits plus per-word prefix counts (a succinct rank index).

    :meth:`contains` (membership) and :meth:`rank` (the number of members below a value, i.e. a member's position in
    the sorted member list) are O(1), at ~1.5 bits per possible value instead of a dense per-value array.

    Args:
        members: ``(M,)`` distinct integers in ``[0, size)``; size: the universe size.
    """

    def __init__(self, members: np.ndarray, size: int) -> None:
        members = np.asarray(members, dtype=np.int64).reshape(-1)
        if members.size and (members.min() < 0 or members.max() >= size):
            raise IndexError(f"members outside [0, {size})")
        num_words = _bit_words(size)
        flags = np.zeros(num_words * 64, dtype=bool)
        flags[members] = True
        self.size = int(size)
        self.words = np.packbits(flags, bitorder="little").view("<u8").astype(np.uint64, copy=False)
        counts = np.bitwise_count(self.words).astype(np.int64)
        if int(counts.sum()) != members.size:
            raise ValueError("members must be distinct")
        self.prefix = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(smallest_index(members.size))

    def contains(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` bool: which int values ``(N,)`` in ``[0, size)`` are members."""
        return ((self.words[values >> 6] >> (values & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)

    def rank(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` int64: number of members below each value (a member's position in the sorted member list)."""
        word_index = values >> 6
        below = self.words[word_index] & ((np.uint64(1) << (values & 63).astype(np.uint64)) - np.uint64(1))
        return self.prefix[word_index].astype(np.int64) + np.bitwise_count(below)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a ``(N, W)`` uint64 array (sorted, the all-zero row first) and the inverse index (N,).

    Multi-word rows are hashed to one uint64 and the hash groups are verified row by row, falling back to the
    (slow) structured ``np.unique(axis=0)`` on a collision, so the result is always exact.
    """
    if rows.shape[1] == 1:
        uniq, inverse = np.unique(rows[:, 0], return_inverse=True)
        return uniq[:, None], inverse.reshape(-1)
    key = np.zeros(rows.shape[0], dtype=np.uint64)
    for w in range(rows.shape[1]):
        key = (key ^ rows[:, w]) * np.uint64(0x9E3779B97F4A7C15)
        key ^= key >> np.uint64(31)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    uniq = rows[first]
    if not np.array_equal(uniq[inverse], rows):  # pragma: no cover - a 64-bit hash collision
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    # Sort the unique rows (so the all-zero row comes first) and remap.
    order = np.lexsort(uniq.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], rank[inverse]


class _Grid:
    """A uniform axis-aligned grid: cell (iy, ix) covers [x0 + ix r, x0 + (ix + 1) r) × [y0 + iy r, …)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, resolution: float) -> None:
        span = np.maximum(hi - lo, resolution)
        res = float(resolution)
        while np.prod(np.ceil(span / res) + 2) > _MAX_GRID_CELLS:
            res *= 1.5
        self.res = res
        # Two cells of padding on each side: the outermost ring of cells is at least 1.5 cells from [lo, hi].
        self.x0, self.y0 = float(lo[0]) - 2.0 * res, float(lo[1]) - 2.0 * res
        self.nx = int(np.ceil(span[0] / res)) + 5
        self.ny = int(np.ceil(span[1] / res)) + 5

    def index_range(self, lo: np.ndarray, hi: np.ndarray, pad: int) -> tuple[int, int, int, int]:
        """Cell index ranges ``[ix0, ix1) × [iy0, iy1)`` covering the box [lo, hi] plus ``pad`` cells."""
        ix0 = max(0, int(np.floor((lo[0] - self.x0) / self.res)) - pad)
        iy0 = max(0, int(np.floor((lo[1] - self.y0) / self.res)) - pad)
        ix1 = min(self.nx, int(np.floor((hi[0] - self.x0) / self.res)) + pad + 1)
        iy1 = min(self.ny, int(np.floor((hi[1] - self.y0) / self.res)) + pad + 1)
        return ix0, ix1, iy0, iy1

    def centres(self, ix0: int, ix1: int, iy0: int, iy1: int) -> tuple[np.ndarray, np.ndarray]:
        xs = self.x0 + (np.arange(ix0, ix1) + 0.5) * self.res
        ys = self.y0 + (np.arange(iy0, iy1) + 0.5) * self.res
        return np.meshgrid(xs, ys)  # (ny', nx') each


# ----------------------------------------------------------------------------------------------------------------------
# Point-in-polygon sets
# ----------------------------------------------------------------------------------------------------------------------
class PointSets:
    """Result of :meth:`PolygonIndex.query`: the set of polygons strictly containing each point.

    Points in cells away from every boundary carry an id into a table of interned sets; points tested exactly carry
    their own bitmask row.

    Attributes:
        shape: leading shape of the queried points.
        set_id: ``(N,)`` row of ``table`` (the set surely containing the point) for every point.
        table: ``(S, W)`` uint64 bitmask rows over the index's polygons (row 0 is the empty set).
        exact_index: ``(M,)`` points whose set was determined exactly; exact_rows: ``(M, W)`` their sets.
    """

    def __init__(self, shape: tuple[int, ...], set_id: np.ndarray, table: np.ndarray,
                 exact_index: np.ndarray | None = None, exact_rows: np.ndarray | None = None) -> None:
        self.shape = shape
        self.set_id = set_id
        self.table = table
        self.exact_index = np.zeros(0, np.int64) if exact_index is None else exact_index
        self.exact_rows = np.zeros((0, table.shape[1]), np.uint64) if exact_rows is None else exact_rows

    def any_of(self, group: np.ndarray) -> np.ndarray:
        """``(...)`` bool: the point is strictly inside at least one polygon of ``group`` (a bitmask ``(W,)``)."""
        out = np.any(self.table & group, axis=-1)[self.set_id]
        out[self.exact_index] = np.any(self.exact_rows & group, axis=-1)
        return out.reshape(self.shape)

    def bits(self, group: np.ndarray, select: np.ndarray | None = None) -> np.ndarray:
        """``(..., W)`` bitmask of the polygons of ``group`` containing each point.

        ``select`` (bool, broadcastable to the point shape) restricts the output to those points, flattened.
        """
        out = (self.table & group)[self.set_id]
        out[self.exact_index] = self.exact_rows & group
        out = out.reshape(*self.shape, -1)
        if select is not None:
            return out[np.broadcast_to(select, self.shape)]
        return out


class PolygonIndex:
    """Strict point-in-polygon membership for a fixed list of polygons, exact and vectorized.

    Per polygon, grid cells are *boundary* cells when their centre lies within half a cell diagonal (plus
    :data:`GRID_MARGIN`) of the polygon's boundary, i.e. whenever the boundary may touch the cell; every other cell
    is entirely inside or entirely outside and takes its centre's containment. Points in boundary cells are tested
    with ``shapely.contains_xy`` against those polygons only.

    The grid covers the polygons' bounding box, optionally clipped to ``bounds``; its outer two rings of cells hold
    no "inside" sets, only candidates (every polygon reaching beyond the grid's core), and points outside the grid
    are clamped into them, so they are tested exactly too.

    Args:
        polygons: exteriors ``(n_i, 2)`` (not closed), as in ``Scene.map_polygons``.
        resolution: grid cell size in metres.
        bounds: optional ``(lo (2,), hi (2,))`` region to which the grid is restricted.
    """

    def __init__(self, polygons: Sequence[np.ndarray], resolution: float = POLYGON_GRID_RESOLUTION,
                 bounds: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.rings = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
        self.num = len(self.rings)
        self.words = _bit_words(self.num)
        self.geoms = np.array([shapely.Polygon(r) for r in self.rings], dtype=object)
        for geom in self.geoms:
            shapely.prepare(geom)
        if self.num == 0:
            self._grid = None
            self._table = np.zeros((1, self.words), dtype=np.uint64)
            return
        all_pts = np.concatenate(self.rings, axis=0)
        lo, hi = all_pts.min(axis=0), all_pts.max(axis=0)
        if bounds is not None:
            lo = np.clip(lo, np.asarray(bounds[0], dtype=np.float64), np.asarray(bounds[1], dtype=np.float64))
            hi = np.clip(hi, np.asarray(bounds[0], dtype=np.float64), np.asarray(bounds[1], dtype=np.float64))
        grid = _Grid(lo, hi, resolution)
        self._grid = grid
        num_cells = grid.nx * grid.ny
        full = np.zeros((grid.ny, grid.nx, self.words), dtype=np.uint64)
        cand = np.zeros((grid.ny, grid.nx, self.words), dtype=np.uint64)
        core_lo = np.array([grid.x0, grid.y0]) + 2.0 * grid.res
        core_hi = np.array([grid.x0 + (grid.nx - 2) * grid.res, grid.y0 + (grid.ny - 2) * grid.res])
        beyond = np.zeros(self.words, dtype=np.uint64)  # polygons reaching outside the core
        for j, ring in enumerate(self.rings):
            word, bit = j // 64, np.uint64(1) << np.uint64(j % 64)
            if np.any(ring.min(axis=0) < core_lo) or np.any(ring.max(axis=0) >= core_hi):
                beyond[word] |= bit
            ix0, ix1, iy0, iy1 = grid.index_range(ring.min(axis=0), ring.max(axis=0), pad=2)
            if ix0 >= ix1 or iy0 >= iy1:
                continue
            boundary = np.zeros((iy1 - iy0, ix1 - ix0), dtype=bool)
            by, bx = _boundary_cells(grid, ring)
            sel = (by >= iy0) & (by < iy1) & (bx >= ix0) & (bx < ix1)
            boundary[by[sel] - iy0, bx[sel] - ix0] = True
            inside = self._inside_cells(j, grid, boundary, ix0, iy0)
            full[iy0:iy1, ix0:ix1, word] |= np.where(inside & ~boundary, bit, np.uint64(0))
            cand[iy0:iy1, ix0:ix1, word] |= np.where(boundary, bit, np.uint64(0))
        ring_cells = np.ones((grid.ny, grid.nx), dtype=bool)
        ring_cells[2:-2, 2:-2] = False
        cand[ring_cells] |= full[ring_cells] | beyond
        full[ring_cells] = 0
        full = full.reshape(num_cells, self.words)
        cand = cand.reshape(num_cells, self.words)
        # Interned full sets; row 0 must be the empty set (points outside the grid map to it).
        table, full_sid = _unique_rows(np.concatenate([np.zeros((1, self.words), np.uint64), full]))
        if np.any(table[0] != 0):  # pragma: no cover - np.unique sorts the all-zero row first
            raise RuntimeError("empty polygon set is not the first interned row")
        self._table = table
        cand_rows, cand_sid = _unique_rows(np.concatenate([np.zeros((1, self.words), np.uint64), cand]))
        del full, cand
        # One id per cell for its (full set, candidate set) pair, in the smallest dtype (the cells dominate the
        # index's memory); the pair tables map it back and are tiny. Candidate set 0 is the empty set.
        pair_key = full_sid[1:].astype(np.int64) * len(cand_rows) + cand_sid[1:]
        if len(table) * len(cand_rows) <= 4 * pair_key.size:  # dense relabelling, O(cells) (no sort)
            used = np.zeros(len(table) * len(cand_rows), dtype=bool)
            used[pair_key] = True
            pairs = np.flatnonzero(used)
            label = np.cumsum(used) - 1
            cell_pair = label[pair_key]
        else:
            pairs, cell_pair = np.unique(pair_key, return_inverse=True)
        self._cell_pair = cell_pair.reshape(-1).astype(smallest_uint(pairs.size - 1))
        self._pair_full = pairs // len(cand_rows)
        self._pair_cand = pairs % len(cand_rows)
        # Candidate lists (CSR) per interned candidate set.
        members = [np.flatnonzero(self._unpack(row)) for row in cand_rows]
        self._cand_len = np.array([len(m) for m in members], dtype=np.int64)
        self._cand_ptr = np.concatenate([[0], np.cumsum(self._cand_len)]).astype(np.int64)
        self._cand_flat = np.concatenate(members).astype(np.int64) if self._cand_ptr[-1] else np.zeros(0, np.int64)

    def _inside_cells(self, j: int, grid: _Grid, boundary: np.ndarray, ix0: int, iy0: int) -> np.ndarray:
        """Which non-boundary cells of a window lie inside polygon ``j``.

        Two 4-adjacent non-boundary cells are on the same side of the boundary (were it between their centres, it
        would pass within half a diagonal of one of them), so each 4-connected component of non-boundary cells is
        classified by one representative centre.
        """
        labels, count = ndimage.label(~boundary)
        if count == 0:
            return np.zeros(boundary.shape, dtype=bool)
        flat = labels.reshape(-1)
        first = np.full(count + 1, -1, dtype=np.int64)
        idx = np.flatnonzero(flat)
        first[flat[idx]] = idx  # any cell of each component represents it
        rep = first[1:]
        ry, rx = np.divmod(rep, boundary.shape[1])
        cx = grid.x0 + (ix0 + rx + 0.5) * grid.res
        cy = grid.y0 + (iy0 + ry + 0.5) * grid.res
        component_inside = np.concatenate([[False], shapely.contains_xy(self.geoms[j], cx, cy)])
        return component_inside[labels]

    def _unpack(self, row: np.ndarray) -> np.ndarray:
        bits = ((row[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)).astype(bool)
        return bits.reshape(-1)[: self.num]

    def mask(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Bitmask ``(W,)`` of polygon positions ``indices`` in this index."""
        return bitmask(indices, self.num)

    def query(self, xy: np.ndarray, relevant: np.ndarray | None = None,
              any_groups: Sequence[np.ndarray] = ()) -> PointSets:
        """Sets of polygons strictly containing each point of ``(..., 2)``.

        Args:
            xy: ``(..., 2)`` points.
            relevant: optional bitmask broadcastable to ``(..., W)``: only these polygons' memberships are needed
                for a point (others may be missing from its set unless they surely contain it).
            any_groups: bitmasks broadcastable to ``(..., W)`` for which only "inside at least one" matters: once
                a point surely lies in one polygon of such a group, the group's other members are not tested.
        Returns:
            :class:`PointSets` whose relevant memberships are exact.
        """
        xy = np.asarray(xy, dtype=np.float64)
        lead = xy.shape[:-1]
        flat = xy.reshape(-1, 2)
        if self._grid is None:
            return PointSets(lead, np.zeros(flat.shape[0], dtype=np.int64), self._table)
        # Points outside the grid are clamped into its outer ring, whose cells only hold candidates.
        grid = self._grid
        inv = 1.0 / grid.res
        fx = (flat[:, 0] - grid.x0) * inv
        fy = (flat[:, 1] - grid.y0) * inv
        np.clip(fx, 0.0, grid.nx - 1, out=fx)
        np.clip(fy, 0.0, grid.ny - 1, out=fy)
        cell = fy.astype(np.int32) * np.int32(grid.nx) + fx.astype(np.int32)  # truncation = floor (>= 0)
        pair = self._cell_pair[cell]
        set_id = self._pair_full[pair]
        cand_id = self._pair_cand[pair]
        todo = np.flatnonzero(cand_id)
        table = self._table
        rows = np.zeros((0, self.words), np.uint64)
        if todo.size:
            rows = table[set_id[todo]]  # (nb, W) polygons that surely contain the point
            cid = cand_id[todo]
            counts = self._cand_len[cid]
            pair_pt = np.repeat(np.arange(todo.size), counts)
            pair_poly = self._cand_flat[np.repeat(self._cand_ptr[cid] - (np.cumsum(counts) - counts), counts)
                                        + np.arange(pair_pt.size)]
            if relevant is not None or any_groups:
                if relevant is None:
                    rel = np.full((todo.size, self.words), np.iinfo(np.uint64).max, dtype=np.uint64)
                else:
                    rel = np.broadcast_to(np.asarray(relevant, dtype=np.uint64),
                                          (*lead, self.words)).reshape(-1, self.words)[todo]
                for group in any_groups:
                    group = np.broadcast_to(np.asarray(group, dtype=np.uint64),
                                            (*lead, self.words)).reshape(-1, self.words)[todo]
                    satisfied = np.any(rows & group, axis=-1)
                    rel = np.where(satisfied[:, None], rel & ~group, rel)
                word = pair_poly // 64
                bit = (pair_poly % 64).astype(np.uint64)
                keep = ((rel[pair_pt, word] >> bit) & np.uint64(1)).astype(bool)
                pair_pt, pair_poly = pair_pt[keep], pair_poly[keep]
            key = pair_poly.astype(np.int16) if self.num < 2**15 else pair_poly
            order = np.argsort(key, kind="stable")  # radix sort for int16 keys
            pair_pt, pair_poly = pair_pt[order], pair_poly[order]
            bounds = np.concatenate([[0], np.flatnonzero(np.diff(pair_poly)) + 1, [pair_poly.size]])
            px, py = flat[todo, 0], flat[todo, 1]
            for lo, hi in itertools.pairwise(bounds):
                if lo == hi:
                    continue
                j = int(pair_poly[lo])
                pts = pair_pt[lo:hi]
                hit = pts[shapely.contains_xy(self.geoms[j], px[pts], py[pts])]
                rows[hit, j // 64] |= np.uint64(1) << np.uint64(j % 64)
        return PointSets(lead, set_id, table, todo, rows)


_WINDOW_PIECE: float = 2.0  # m, segments are split into pieces this long to rasterize the cells near them


def _segment_windows(grid: _Grid, starts: np.ndarray, ends: np.ndarray, reach: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Grid cells whose centre lies within ``reach`` of segments ``starts -> ends`` ``(S, 2)``.

    Returns ``(segment, iy, ix, distance)`` per (cell, piece) hit, cells inside the grid only (a cell may appear
    once per nearby piece).
    """
    counts = np.maximum(1, np.ceil(np.hypot(*(ends - starts).T) / _WINDOW_PIECE).astype(np.int64))
    seg = np.repeat(np.arange(len(starts)), counts)
    k = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    frac0, frac1 = k / counts[seg], (k + 1) / counts[seg]
    a = starts[seg] + frac0[:, None] * (ends[seg] - starts[seg])
    b = starts[seg] + frac1[:, None] * (ends[seg] - starts[seg])
    lo = np.minimum(a, b) - reach
    n_w = int(np.ceil((_WINDOW_PIECE + 2.0 * reach) / grid.res)) + 2
    ox = np.floor((lo[:, 0] - grid.x0) / grid.res).astype(np.int64)
    oy = np.floor((lo[:, 1] - grid.y0) / grid.res).astype(np.int64)
    off = np.arange(n_w)
    ix = ox[:, None, None] + off[None, None, :]  # (P, 1, n_w)
    iy = oy[:, None, None] + off[None, :, None]  # (P, n_w, 1)
    cx = grid.x0 + (ix + 0.5) * grid.res
    cy = grid.y0 + (iy + 0.5) * grid.res
    ab = b - a
    denom = np.maximum(np.einsum("pd,pd->p", ab, ab), 1e-300)[:, None, None]
    t = np.clip(((cx - a[:, 0, None, None]) * ab[:, 0, None, None] + (cy - a[:, 1, None, None]) * ab[:, 1, None, None])
                / denom, 0.0, 1.0)
    dx = cx - (a[:, 0, None, None] + t * ab[:, 0, None, None])
    dy = cy - (a[:, 1, None, None] + t * ab[:, 1, None, None])
    dist = np.sqrt(dx * dx + dy * dy)
    near = dist <= reach
    shape = near.shape
    iy_b, ix_b = np.broadcast_to(iy, shape)[near], np.broadcast_to(ix, shape)[near]
    seg_b = np.broadcast_to(seg[:, None, None], shape)[near]
    ok = (ix_b >= 0) & (ix_b < grid.nx) & (iy_b >= 0) & (iy_b < grid.ny)
    return seg_b[ok], iy_b[ok], ix_b[ok], dist[near][ok]


def _boundary_cells(grid: _Grid, ring: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``(iy, ix)`` whose centre is within half a cell diagonal (+ margin) of the closed ring's boundary."""
    closed = np.concatenate([ring, ring[:1]])
    _, iy, ix, _ = _segment_windows(grid, closed[:-1], closed[1:], grid.res * np.sqrt(0.5) + GRID_MARGIN)
    return iy, ix


# ----------------------------------------------------------------------------------------------------------------------
# Distance-to-polyline threshold
# ----------------------------------------------------------------------------------------------------------------------
class PolylineThresholdIndex:
    """Exact ``shapely.distance(line, point) > threshold`` for many points.

    Grid cells are surely near (every point of the cell within the threshold), surely far, or *band* cells. Points in
    band cells get their distance from the few segments that can be nearest to their cell (numpy); the rare ones
    within 1e-9 m of the threshold are re-decided with shapely.

    Args:
        polyline: ``(P, 2)`` vertices (P >= 2).
        threshold: metres.
        resolution: grid cell size in metres.
    """

    _NEAR, _FAR, _BAND = 0, 1, 2
    _TIE: float = 1e-9  # m, numpy distances this close to the threshold are re-decided by shapely

    def __init__(self, polyline: np.ndarray, threshold: float, resolution: float = POLYLINE_GRID_RESOLUTION) -> None:
        pts = np.asarray(polyline, dtype=np.float64).reshape(-1, 2)
        if pts.shape[0] < 2:
            raise ValueError(f"polyline needs at least 2 vertices, got {pts.shape[0]}")
        self.threshold = float(threshold)
        self.line = shapely.LineString(pts)
        half_diag = resolution * np.sqrt(0.5)
        # A point of a band cell is within threshold + 2 half-diagonals of the line, so its nearest segment lies
        # within threshold + 3 half-diagonals of the cell centre.
        seg_reach = self.threshold + 3.0 * half_diag + 2.0 * GRID_MARGIN
        grid = _Grid(pts.min(axis=0) - seg_reach, pts.max(axis=0) + seg_reach, resolution)
        self._grid = grid
        half_diag = grid.res * np.sqrt(0.5)
        seg_reach = self.threshold + 3.0 * half_diag + 2.0 * GRID_MARGIN
        self._a, self._b = pts[:-1].copy(), pts[1:].copy()
        seg, iy, ix, d = _segment_windows(grid, self._a, self._b, seg_reach)
        cell = iy * grid.nx + ix
        dist = np.full(grid.nx * grid.ny, np.inf)
        np.minimum.at(dist, cell, d)
        slack = half_diag + GRID_MARGIN
        state = np.full(dist.shape, self._BAND, dtype=np.int8)
        state[dist + slack < self.threshold] = self._NEAR
        state[dist - slack > self.threshold] = self._FAR
        # Only the near and band cells (a thin strip along the line) are stored: a rank bitmap over all cells
        # finds a cell's position among them; every other cell is far.
        nonfar = np.flatnonzero(state != self._FAR)
        self._cells = RankBitmap(nonfar, state.size)
        is_band = state[nonfar] == self._BAND
        band_cells = nonfar[is_band]
        # Per stored cell: its band slot (band cells numbered in cell order), or -1 for a near cell.
        self._slot = np.where(is_band, np.cumsum(is_band) - 1, -1).astype(smallest_index(band_cells.size))
        # Candidate segments of the band cells (CSR over the band slots).
        keep = state[cell] == self._BAND
        slot_of = np.searchsorted(band_cells, cell[keep])
        num_seg = self._a.shape[0]
        key = np.unique(slot_of * num_seg + seg[keep])
        slot = key // num_seg
        self._cand_seg = (key % num_seg).astype(smallest_index(num_seg))
        self._cand_ptr = np.concatenate([[0], np.cumsum(np.bincount(slot, minlength=band_cells.size))]).astype(
            smallest_index(key.size))

    def exceeds(self, xy: np.ndarray) -> np.ndarray:
        """``(...)`` bool: distance from each point of ``(..., 2)`` to the polyline is > threshold."""
        xy = np.asarray(xy, dtype=np.float64)
        lead = xy.shape[:-1]
        flat = xy.reshape(-1, 2)
        grid = self._grid
        inv = 1.0 / grid.res
        fx = np.clip((flat[:, 0] - grid.x0) * inv, 0.0, grid.nx - 1)
        fy = np.clip((flat[:, 1] - grid.y0) * inv, 0.0, grid.ny - 1)
        cell = fy.astype(np.int64) * grid.nx + fx.astype(np.int64)  # the grid's outer ring is far from the line
        stored = self._cells.contains(cell)
        out = ~stored  # cells not stored are far
        idx = np.flatnonzero(stored)
        slot = self._slot[self._cells.rank(cell[idx])]
        band = idx[slot >= 0]
        if band.size:
            slot = slot[slot >= 0].astype(np.int64)
            start = self._cand_ptr[slot]
            counts = self._cand_ptr[slot + 1] - start
            pair_pt = np.repeat(np.arange(band.size), counts)
            seg = self._cand_seg[np.repeat(start - (np.cumsum(counts) - counts), counts) + np.arange(pair_pt.size)]
            p = flat[band][pair_pt]
            a, ab = self._a[seg], self._b[seg] - self._a[seg]
            denom = np.maximum(np.einsum("pd,pd->p", ab, ab), 1e-300)
            t = np.clip(np.einsum("pd,pd->p", p - a, ab) / denom, 0.0, 1.0)
            diff = p - (a + t[:, None] * ab)
            d2 = np.einsum("pd,pd->p", diff, diff)
            dmin = np.sqrt(np.minimum.reduceat(d2, np.cumsum(counts) - counts))  # every band cell has candidates
            out[band] = dmin > self.threshold
            tie = np.flatnonzero(np.abs(dmin - self.threshold) <= self._TIE)
            if tie.size:
                out[band[tie]] = shapely.distance(self.line, shapely.points(flat[band[tie]])) > self.threshold
        return out.reshape(lead)


# ----------------------------------------------------------------------------------------------------------------------
# Oriented boxes per frame: broad phase + separating-axis test
# ----------------------------------------------------------------------------------------------------------------------
def rect_gap(ax: np.ndarray, ay: np.ndarray, ac: np.ndarray, as_: np.ndarray, al: np.ndarray | float,
             aw: np.ndarray | float, bx: np.ndarray, by: np.ndarray, bc: np.ndarray, bs: np.ndarray,
             bl: np.ndarray | float, bw: np.ndarray | float) -> np.ndarray:
    """Separating-axis gap between oriented rectangles; > 0 ⇔ disjoint, ≤ 0 ⇔ they intersect (touching included).

    Rectangle A has centre (ax, ay), unit heading (ac, as_), half length al and half width aw; likewise B. A half
    extent of 0 makes a segment (e.g. a front bumper or a polygon edge): the four box axes still decide exactly.
    Returns the largest gap over the four axes, in metres; all arguments broadcast.
    """
    dx, dy = bx - ax, by - ay
    cos_d = np.abs(ac * bc + as_ * bs)  # |cos| of the relative heading
    sin_d = np.abs(as_ * bc - ac * bs)  # |sin|
    g1 = np.abs(dx * ac + dy * as_) - (al + bl * cos_d + bw * sin_d)
    g2 = np.abs(dy * ac - dx * as_) - (aw + bl * sin_d + bw * cos_d)
    g3 = np.abs(dx * bc + dy * bs) - (bl + al * cos_d + aw * sin_d)
    g4 = np.abs(dy * bc - dx * bs) - (bw + al * sin_d + aw * cos_d)
    return np.maximum(np.maximum(g1, g2), np.maximum(g3, g4))


class BoxGrid:
    """Oriented boxes (or segments) per frame with a uniform-grid broad phase against query discs.

    Each present box (frame f, index a) is an *entry*. An entry is listed in every grid cell that comes within its
    reach (query radius + box radius) of its centre, so a query looks up the single cell it falls in, and no pair
    whose bounding discs overlap is missed. Cells are small (:data:`BOX_GRID_CELL`) so that few listed entries are
    out of reach.

    Args:
        centres: ``(F, A, 2)``; headings: ``(F, A)``; half_lengths, half_widths: ``(F, A)`` or ``(A,)``;
        valid: ``(F, A)`` bool; query_radius: bounding radius of the query boxes.
    Attributes (per entry, ``(E,)``): ``frame``, ``obj``, ``x``, ``y``, ``cos``, ``sin``, ``hl``, ``hw``.
    """

    _MAX_CELLS = 4_000_000

    def __init__(self, centres: np.ndarray, headings: np.ndarray, half_lengths: np.ndarray,
                 half_widths: np.ndarray, valid: np.ndarray, query_radius: float,
                 cell: float | None = None) -> None:
        valid = np.asarray(valid, dtype=bool)
        num_frames, num_obj = valid.shape
        shape = (num_frames, num_obj)
        hl = np.broadcast_to(np.asarray(half_lengths, dtype=np.float64), shape)
        hw = np.broadcast_to(np.asarray(half_widths, dtype=np.float64), shape)
        f_idx, a_idx = np.nonzero(valid)
        self.query_radius = float(query_radius)
        self.num_frames = num_frames
        pts = np.asarray(centres, dtype=np.float64)[f_idx, a_idx].reshape(-1, 2)
        radius = np.hypot(hl[f_idx, a_idx], hw[f_idx, a_idx])
        heading = np.asarray(headings, dtype=np.float64)[f_idx, a_idx]
        self._set_entries(f_idx, a_idx, pts, heading, radius, hl[f_idx, a_idx], hw[f_idx, a_idx])
        if f_idx.size == 0:
            self.cell, self.x0, self.y0, self.nx, self.ny = 1.0, 0.0, 0.0, 1, 1
            self._cells = RankBitmap(np.zeros(0, np.int64), 1)
            self._cell_entries = np.zeros(0, dtype=np.int32)
            self._ptr = np.zeros(1, dtype=np.int32)
            return
        reach = self.reach  # (E,) incl. margin
        lo = (pts - reach[:, None]).min(axis=0)
        hi = (pts + reach[:, None]).max(axis=0)
        span = hi - lo
        cell = BOX_GRID_CELL if cell is None else float(cell)
        while num_frames * np.prod(np.ceil(span / cell) + 5) > self._MAX_CELLS:
            cell *= 1.5
        self.cell = cell
        # Two empty cells of padding: queries outside the grid are clamped into its (empty) outer ring.
        self.x0, self.y0 = float(lo[0]) - 2.0 * cell, float(lo[1]) - 2.0 * cell
        self.nx = int(np.ceil(span[0] / cell)) + 5
        self.ny = int(np.ceil(span[1] / cell)) + 5
        # Cell ranges of every entry's reach square, expanded to (entry, cell) pairs, kept where the cell square
        # comes within reach of the centre.
        ix0 = np.floor((pts[:, 0] - reach - self.x0) / cell).astype(np.int64)
        iy0 = np.floor((pts[:, 1] - reach - self.y0) / cell).astype(np.int64)
        nxr = np.floor((pts[:, 0] + reach - self.x0) / cell).astype(np.int64) - ix0 + 1
        nyr = np.floor((pts[:, 1] + reach - self.y0) / cell).astype(np.int64) - iy0 + 1
        per = nxr * nyr
        ent = np.repeat(np.arange(f_idx.size), per)
        k = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        cx = ix0[ent] + k % nxr[ent]
        cy = iy0[ent] + k // nxr[ent]
        gx = np.maximum(np.abs(self.x0 + (cx + 0.5) * cell - pts[ent, 0]) - 0.5 * cell, 0.0)
        gy = np.maximum(np.abs(self.y0 + (cy + 0.5) * cell - pts[ent, 1]) - 0.5 * cell, 0.0)
        keep = gx * gx + gy * gy <= (reach[ent] + 1e-6) ** 2
        ent, code = ent[keep], (f_idx[ent[keep]] * self.ny + cy[keep]) * self.nx + cx[keep]
        order = np.argsort(code, kind="stable")
        self._cell_entries = ent[order].astype(smallest_index(f_idx.size))
        # CSR over the non-empty (frame, cell) codes only, found through a rank bitmap: a dense offset array over
        # frames × cells would dominate the cache's memory.
        codes, counts = np.unique(code, return_counts=True)
        self._cells = RankBitmap(codes, num_frames * self.ny * self.nx)
        self._ptr = np.concatenate([[0], np.cumsum(counts)]).astype(smallest_index(ent.size))

    def _set_entries(self, frame: np.ndarray, obj: np.ndarray, pts: np.ndarray, heading: np.ndarray,
                     radius: np.ndarray, hl: np.ndarray, hw: np.ndarray) -> None:
        self.frame, self.obj = frame, obj
        self.x, self.y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
        self.cos, self.sin = np.cos(heading), np.sin(heading)
        self.hl, self.hw = np.ascontiguousarray(hl), np.ascontiguousarray(hw)
        self.reach = self.query_radius + radius + 1e-6

    def candidates(self, frame: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Query rows and entries whose bounding discs overlap, in query order.

        Args:
            frame: ``(N,)`` frame of each query; x, y: ``(N,)`` query centres.
        Returns:
            ``(q, e)``: query row and entry index of each candidate pair (sorted by q).
        """
        if self.x.size == 0 or frame.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        inv = 1.0 / self.cell
        fx = np.clip((x - self.x0) * inv, 0.0, self.nx - 1)
        fy = np.clip((y - self.y0) * inv, 0.0, self.ny - 1)
        code = (frame * self.ny + fy.astype(np.int64)) * self.nx + fx.astype(np.int64)  # truncation = floor (>= 0)
        hit = np.flatnonzero(self._cells.contains(code))
        if hit.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rank = self._cells.rank(code[hit])
        start = self._ptr[rank].astype(np.int64)
        counts = self._ptr[rank + 1] - start
        q = np.repeat(hit, counts)
        e = self._cell_entries[np.repeat(start - (np.cumsum(counts) - counts), counts) + np.arange(q.size)]
        e = e.astype(np.int64)
        dx, dy = self.x[e] - x[q], self.y[e] - y[q]
        reach = self.reach[e]
        near = dx * dx + dy * dy <= reach * reach
        return q[near], e[near]
