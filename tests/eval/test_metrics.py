"""Retrieval, kNN and the linear probe against brute-force references on synthetic features."""

import math

import numpy as np
import pytest

from mlfo.eval.knn import knn_predict, knn_scores, topk_accuracy
from mlfo.eval.linear import LinearProbeConfig, linear_probe, stratified_holdout
from mlfo.eval.retrieval import first_hit_ranks, recall_at_k


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _ranked(train, query):
    """Train indices by descending cosine similarity, ties in train order (the documented rule)."""
    sims = [round(_cos(query, t), 10) for t in train]
    order = []
    for _ in range(len(train)):
        best = None
        for i, s in enumerate(sims):
            if i in order:
                continue
            if best is None or s > sims[best]:
                best = i
        order.append(best)
    return order, sims


def _brute_recall(train, train_labels, test, test_labels, k, center):
    if center:
        train = train - train.mean(0)
        test = test - test.mean(0)
    hits = 0
    for q, y in zip(test, test_labels):
        order, _ = _ranked(train, q)
        hits += any(train_labels[i] == y for i in order[:k])
    return 100.0 * hits / len(test)


def _synthetic(seed=0, n_train=40, n_test=15, dim=6, n_classes=5):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim))
    train_labels = rng.integers(0, n_classes, n_train)
    train_labels[0] = n_classes  # a class with a single train video
    centers = np.vstack([centers, rng.normal(size=(1, dim))])
    test_labels = rng.integers(0, n_classes + 1, n_test)
    train = centers[train_labels] + rng.normal(scale=1.5, size=(n_train, dim)) + 0.7
    test = centers[test_labels] + rng.normal(scale=1.5, size=(n_test, dim)) + 0.7
    # Ties: duplicated train vectors with different classes, and a scaled copy (same cosine).
    train[5] = train[4]
    train_labels[5] = (train_labels[4] + 1) % n_classes
    train[7] = 3.0 * train[6]
    test[0] = train[4]  # query exactly on the tied pair
    return train, train_labels, test, test_labels


@pytest.mark.parametrize("center", [False, True])
def test_recall_matches_brute_force(center):
    train, train_labels, test, test_labels = _synthetic()
    got = recall_at_k(train, train_labels, test, test_labels, ks=(1, 2, 5, 10, 50), center=center)
    for k in (1, 2, 5, 10, 50):
        assert got[f"R@{k}"] == pytest.approx(_brute_recall(train, train_labels, test, test_labels, k, center))
    assert got["R@50"] == 100.0  # k above the train size covers every train video


def test_tie_broken_by_train_order():
    train = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])  # rows 0 and 1 tie for an x-query
    query = np.array([[1.0, 0.0], [1.0, 0.0]])
    ranks = first_hit_ranks(train, np.array([0, 1, 2]), query, np.array([1, 0]), max_k=3)
    assert ranks.tolist() == [2, 1]  # row 0 (class 0) comes first, then row 1 (class 1)
    r = recall_at_k(train, np.array([0, 1, 2]), query, np.array([2, 1]), ks=(1, 2, 3))
    assert r == {"R@1": 0.0, "R@2": 50.0, "R@3": 100.0}


def _brute_knn(train, train_labels, test, n_classes, k, T):
    preds = []
    for q in test:
        order, sims = _ranked(train, q)
        score = [0.0] * n_classes
        for i in order[:k]:
            score[train_labels[i]] += math.exp(sims[i] / T)
        preds.append(max(range(n_classes), key=lambda c: (score[c], -c)))
    return np.array(preds)


@pytest.mark.parametrize("k,T", [(1, 0.07), (5, 0.1), (20, 1.0), (100, 0.5)])
def test_weighted_knn_matches_brute_force(k, T):
    train, train_labels, test, test_labels = _synthetic(seed=1)
    n_classes = int(train_labels.max()) + 1
    got = knn_predict(train, train_labels, test, n_classes, k=k, temperature=T)
    np.testing.assert_array_equal(got, _brute_knn(train, train_labels, test, n_classes, k, T))


def test_knn_vote_tie_prefers_lower_class():
    train = np.array([[1.0, 0.1], [1.0, -0.1]])  # equal similarity to the query, classes 2 and 1
    scores = knn_scores(train, np.array([2, 1]), np.array([[1.0, 0.0]]), num_classes=3, k=2, temperature=0.1)
    assert scores[0, 1] == pytest.approx(scores[0, 2])
    assert knn_predict(train, np.array([2, 1]), np.array([[1.0, 0.0]]), 3, k=2).tolist() == [1]


def test_topk_accuracy():
    scores = np.array([[0.1, 0.5, 0.4], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    acc = topk_accuracy(scores, np.array([2, 0, 1]), ks=(1, 2))
    assert acc["top1"] == pytest.approx(100 / 3)
    assert acc["top2"] == pytest.approx(100.0)


def test_stratified_holdout_keeps_single_video_classes_in_fit():
    labels = np.array([0] * 10 + [1] * 10 + [2])
    fit, hold = stratified_holdout(labels, 0.2, seed=0)
    assert sorted(np.concatenate([fit, hold]).tolist()) == list(range(21))
    assert 20 in fit and (labels[hold] == 0).sum() == 2 and (labels[hold] == 1).sum() == 2


def test_linear_probe_separates_separable_features():
    rng = np.random.default_rng(0)
    n_classes, dim = 4, 16
    centers = rng.normal(size=(n_classes, dim)) * 4
    ytr, yte = rng.integers(0, n_classes, 200), rng.integers(0, n_classes, 80)
    xtr = centers[ytr] + rng.normal(size=(200, dim))
    xte = centers[yte] + rng.normal(size=(80, dim))
    cfg = LinearProbeConfig(lrs=(0.1, 0.01), weight_decays=(0.0,), epochs=15, batch_size=64)
    res = linear_probe(xtr, ytr, xte, yte, n_classes, cfg)
    assert res.metrics["top1"] >= 98.0
    assert res.chosen["lr"] in (0.1, 0.01) and 1 <= res.chosen["epoch"] <= 15
    assert res.chosen["n_holdout"] == len(ytr) - res.chosen["n_fit"] > 0
    assert len(res.search) == 2


def test_linear_probe_at_chance_on_random_labels():
    """Selection on the hold-out must not leak the test split: noise stays near chance."""
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(120, 8)), rng.normal(size=(400, 8))
    ytr, yte = rng.integers(0, 4, 120), rng.integers(0, 4, 400)
    cfg = LinearProbeConfig(lrs=(0.1,), weight_decays=(0.0, 1e-3), epochs=10, batch_size=32)
    assert linear_probe(xtr, ytr, xte, yte, 4, cfg).metrics["top1"] < 40.0
