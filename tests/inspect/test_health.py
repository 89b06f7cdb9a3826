"""RankMe, alignment and uniformity against values known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from mlfo.inspect.health import alignment, embedding_health, rankme, uniformity


def test_rankme_is_the_dimension_for_an_isotropic_basis_and_one_for_a_collapse():
    assert rankme(np.eye(8)) == pytest.approx(8.0, rel=1e-5)
    assert rankme(3 * np.eye(5)) == pytest.approx(5.0, rel=1e-5)  # scale-free
    collapsed = np.outer(np.arange(1, 11), np.ones(6))  # 10 videos, one direction
    assert rankme(collapsed) == pytest.approx(1.0, abs=1e-4)
    assert rankme(np.zeros((4, 3))) == 0.0


def test_rankme_of_two_unequal_directions_is_exp_entropy():
    x = np.diag([3.0, 1.0])
    p = np.array([0.75, 0.25])
    assert rankme(x) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-5)


def test_alignment_and_uniformity():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert alignment(a, a * 5) == 0.0  # normalised: scale does not matter
    assert alignment(a, -a) == pytest.approx(4.0)  # opposite unit vectors: |2u|^2
    # two orthogonal unit vectors: one pair at squared distance 2 -> log exp(-4) = -4
    assert uniformity(a) == pytest.approx(-4.0)
    rng = np.random.default_rng(0)
    spread, clumped = rng.normal(size=(500, 16)), rng.normal(size=(500, 16)) * 0.01 + 1
    assert uniformity(spread) < uniformity(clumped)  # lower is more uniform
    assert np.isfinite(uniformity(rng.normal(size=(3000, 4)), max_points=256))


def test_embedding_health_reports_every_number():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6))
    h = embedding_health(x, x, x + 0.1)
    assert set(h) == {"rankme", "n", "dim", "singular_values", "uniformity", "alignment"}
    assert (h["n"], h["dim"], len(h["singular_values"])) == (40, 6, 6)
    assert 1 < h["rankme"] <= 6 and h["alignment"] > 0
