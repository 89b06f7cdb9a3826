"""The one 2-D map of video features in mlfo: t-SNE of L2-normalised features, on a seeded
subsample so it stays seconds at 100k videos (``mlfo inspect``, ``mlfo eval retrieval``'s
figure). Why t-SNE and how fast: ``benchmarks/map_quality.py`` and benchmarks/README.md."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 2000  # t-SNE cost grows ~N log N; 2000 points take seconds on one core


@dataclass
class Map2D:
    indices: np.ndarray  # (n,) rows of the features that are on the map, ascending
    xy: np.ndarray  # (n, 2) their coordinates, scaled into [0, 1]


def subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Ascending indices of a seeded random subset of ``range(n)`` (all when n <= max_points)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def map_2d(features: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0) -> Map2D:
    """t-SNE coordinates of at most ``max_points`` videos (a seeded subsample beyond)."""
    from sklearn.manifold import TSNE

    from mlfo.eval.retrieval import l2_normalize

    indices = subsample(len(features), max_points, seed)
    x = l2_normalize(np.asarray(features)[indices])
    if len(x) < 5:  # too few points for t-SNE's neighbourhoods: the first two coordinates
        xy = np.zeros((len(x), 2))
        xy[:, : min(2, x.shape[1])] = x[:, :2]
    else:
        perplexity = float(max(2.0, min(30.0, (len(x) - 1) / 3)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    span = np.ptp(xy, axis=0)
    xy = (xy - xy.min(axis=0)) / np.where(span > 0, span, 1.0)
    return Map2D(indices, xy)
