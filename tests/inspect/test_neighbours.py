"""Galleries, near-duplicate groups, the chunked top-k and the subsampled map."""

from __future__ import annotations

import numpy as np
import pytest

from mlfo.eval.retrieval import nearest_neighbours, prepare_pair
from mlfo.inspect.mapping import map_2d, subsample
from mlfo.inspect.neighbours import duplicate_groups, gallery


def test_top_k_equals_a_stable_full_sort_with_ties_and_any_chunk():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n, q = int(rng.integers(1, 50)), int(rng.integers(1, 15))
        train = rng.integers(-2, 3, size=(n, 3)).astype(float)  # many exact ties
        test = rng.integers(-2, 3, size=(q, 3)).astype(float)
        k = int(rng.integers(1, n + 3))
        idx, sims = nearest_neighbours(train, test, k, chunk=int(rng.integers(1, 6)))
        a, b = prepare_pair(train, test)
        full = np.round(b @ a.T, 10)
        expected = np.argsort(-full, axis=1, kind="stable")[:, : min(k, n)]
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(sims, np.take_along_axis(full, expected, axis=1))


def test_gallery_leaves_the_query_out_of_its_own_neighbours():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.01]])
    out = gallery(x, np.array([0, -1]), np.array([x[0], [0.0, 1.0]]), k=2)
    assert [r for r, _ in out[0]["neighbours"]] == [3, 1]  # not 0, itself
    assert out[1]["neighbours"][0] == (2, pytest.approx(1.0))  # outside query: all rows count


def test_duplicate_groups_are_stars_around_a_video_not_chains():
    angles = np.radians([0, 1, 2, 3, 4, 5, 90, 90.5, 180])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    threshold = float(np.cos(np.radians(2.5)))  # within 2.5 degrees
    groups = duplicate_groups(x, threshold)
    rows = [sorted(g["rows"]) for g in groups]
    assert [6, 7] in rows and not any(8 in r for r in rows)  # the lone video is in no group
    chain = [r for r in rows if r[0] < 6]
    assert all(max(r) - min(r) <= 4 for r in chain)  # no group spans 0..5 degrees (a chain would)
    assert sorted(i for r in chain for i in r) == sorted(set(i for r in chain for i in r))  # disjoint
    for g in groups:
        first = x[g["rows"][0]]
        assert all(first @ x[j] >= threshold - 1e-12 for j in g["rows"][1:])
        assert g["min_similarity"] >= threshold - 1e-12


def test_the_map_subsamples_reproducibly_and_scales_into_the_unit_square():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    m = map_2d(x, max_points=25, seed=3)
    assert len(m.indices) == 25 and np.all(np.diff(m.indices) > 0)
    np.testing.assert_array_equal(m.indices, subsample(60, 25, 3))
    assert m.xy.shape == (25, 2) and m.xy.min() >= 0 and m.xy.max() <= 1
    assert len(map_2d(x[:3]).indices) == 3  # too few for t-SNE: still a map
