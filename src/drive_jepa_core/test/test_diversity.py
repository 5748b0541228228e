"""DiffusionDrive mode diversity D with the documented corridor choice (navsim_metrics.md §7)."""

from __future__ import annotations

import numpy as np
import pytest

from drive_jepa_core.metrics.diversity import CORRIDOR_HALF_WIDTH, diversity, diversity_batch, trajectory_corridors


def _line(end_x: float, end_y: float, num: int = 8) -> np.ndarray:
    """``(num, 2)`` evenly spaced waypoints from the origin (excluded) to (end_x, end_y)."""
    frac = np.arange(1, num + 1) / num
    return np.stack([end_x * frac, end_y * frac], axis=-1)


def test_corridor_area_is_length_times_width() -> None:
    assert CORRIDOR_HALF_WIDTH == 1.0
    corridor = trajectory_corridors(_line(20.0, 0.0)[None])[0]
    assert corridor.area == pytest.approx(20.0 * 2.0)  # flat caps: nothing beyond the origin or the last waypoint
    assert corridor.bounds == pytest.approx((0.0, -1.0, 20.0, 1.0))


def test_identical_modes_have_zero_diversity() -> None:
    modes = np.repeat(_line(20.0, 3.0)[None], 20, axis=0)
    assert diversity(modes) == pytest.approx(0.0, abs=1e-12)


def test_hand_computed_values() -> None:
    # Opposite directions: disjoint 40 m² corridors, union 80 m² -> D = 1 - 40/80
    assert diversity(np.stack([_line(20.0, 0.0), _line(-20.0, 0.0)])) == pytest.approx(0.5)
    # A 10 m mode inside a 20 m mode: areas 20 and 40, union 40 -> D = 1 - 30/40
    assert diversity(np.stack([_line(20.0, 0.0), _line(10.0, 0.0)])) == pytest.approx(0.25)


def test_spread_modes_are_more_diverse() -> None:
    angles_tight = np.radians(np.linspace(-2, 2, 20))
    angles_wide = np.radians(np.linspace(-40, 40, 20))
    tight = np.stack([_line(30 * np.cos(a), 30 * np.sin(a)) for a in angles_tight])
    wide = np.stack([_line(30 * np.cos(a), 30 * np.sin(a)) for a in angles_wide])
    d_tight, d_wide = diversity(tight), diversity(wide)
    assert 0.0 < d_tight < d_wide < 1.0


def test_heading_column_is_ignored_and_batch() -> None:
    xy = np.stack([_line(20.0, 0.0), _line(15.0, 8.0)])
    xyh = np.concatenate([xy, np.full((2, 8, 1), 0.7)], axis=-1)
    assert diversity(xyh) == pytest.approx(diversity(xy))
    np.testing.assert_allclose(diversity_batch([xy, xyh, xy[:1]]), [diversity(xy), diversity(xy), 0.0])


def test_degenerate_and_bad_input() -> None:
    assert diversity(np.zeros((3, 8, 2))) == 0.0  # zero-length corridors: empty union
    with pytest.raises(ValueError):
        diversity(np.zeros((8, 2)))
    with pytest.raises(ValueError):
        diversity(np.zeros((2, 8, 4)))
    with pytest.raises(ValueError):
        diversity(np.full((2, 8, 2), np.nan))
