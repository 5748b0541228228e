"""IDM car following (Treiber et al. 2000), checked against values derivable by hand."""

from __future__ import annotations

import numpy as np
import pytest

from drive_jepa_core.world.idm import AGENT_IDM, idm_acceleration, sample_agent_parameters


def _idm(v, v0, gap, dv, T=1.5, s0=2.0, a=1.0, b=2.0, delta=4.0, dmax=6.0):
    return float(idm_acceleration(np.array([v]), np.array([v0]), np.array([gap]), np.array([dv]), T, s0, a, b, delta,
                                  dmax)[0])


def test_free_road():
    assert _idm(0.0, 10.0, np.inf, 0.0) == pytest.approx(1.0)  # a_max from standstill
    assert _idm(10.0, 10.0, np.inf, 0.0) == pytest.approx(0.0)  # cruising at the desired speed
    assert _idm(5.0, 10.0, np.inf, 0.0) == pytest.approx(1.0 - 0.5**4)


def test_interaction_term():
    # standing at exactly the minimum gap behind a standing leader: s* = s0 -> a = a_max (1 - 1) = 0
    assert _idm(0.0, 10.0, 2.0, 0.0) == pytest.approx(0.0)
    # twice the minimum gap: a = a_max (1 - 1/4)
    assert _idm(0.0, 10.0, 4.0, 0.0) == pytest.approx(0.75)
    # v = 10, same speed as the leader, gap 34 m: s* = 2 + 15 = 17 -> a = 1 - (10/20)^4 - (17/34)^2 at v0 = 20
    assert _idm(10.0, 20.0, 34.0, 0.0) == pytest.approx(1.0 - 0.0625 - 0.25)


def test_braking_is_clipped_and_never_positive_when_too_close():
    a = _idm(15.0, 15.0, 1.0, 15.0)
    assert a == pytest.approx(-6.0)
    assert _idm(3.0, 15.0, 2.5, 3.0) < 0.0


def test_vectorized_shapes_and_driver_spread():
    v = np.array([0.0, 5.0, 10.0])
    out = idm_acceleration(v, 10.0, np.array([np.inf, 20.0, 5.0]), np.zeros(3), 1.5, 2.0, 1.0, 2.0)
    assert out.shape == (3,)
    p = sample_agent_parameters(np.random.default_rng(0))
    assert 0.75 * AGENT_IDM.time_headway <= p.time_headway <= 1.25 * AGENT_IDM.time_headway
    assert p.min_gap == AGENT_IDM.min_gap
