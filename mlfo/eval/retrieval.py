"""Nearest-neighbour video retrieval: test videos query train videos by cosine similarity.

R@k is the fraction of queries for which at least one of the k most similar train videos
has the query's class (the protocol of CoCLR / RSPNet / MLFO). Neighbours are ranked by
similarity, ties broken by train order, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_KS = (1, 5, 10, 20, 50)
SIMILARITY_BUDGET = 1 << 24  # float64 similarities per query chunk (128 MB)


@dataclass
class RetrievalConfig:
    ks: tuple[int, ...] = field(default=DEFAULT_KS, metadata={"help": "comma-separated k of R@k"})
    center: bool = field(default=False, metadata={
        "help": "subtract each set's mean before L2-normalising (CoCLR does, RSPNet does not)"})

    def protocol(self) -> dict:
        return {"ks": list(self.ks), "center": self.center, "similarity": "cosine",
                "hit": "any of the top k train videos has the query's class; ties broken by train order",
                "queries": "test videos", "gallery": "train videos"}


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def prepare_pair(
    train: np.ndarray, test: np.ndarray, center: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised train and test features; with ``center`` each set first loses its own
    mean (CoCLR's retrieval does this, RSPNet's does not)."""
    train = np.asarray(train, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if center:
        train = train - train.mean(axis=0, keepdims=True)
        test = test - test.mean(axis=0, keepdims=True)
    return l2_normalize(train), l2_normalize(test)


def nearest_neighbours(
    train: np.ndarray, test: np.ndarray, k: int, center: bool = False, chunk: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) of the k most similar train rows per test row, and their cosine
    similarities (Q, k). Ties keep train order (stable sort).

    Queries go in chunks of ``chunk`` rows (default: about 128 MB of similarities), so 100k
    videos never make an N x N matrix."""
    train_n, test_n = prepare_pair(train, test, center)
    k = min(int(k), len(train_n))
    chunk = chunk or max(1, min(4096, SIMILARITY_BUDGET // max(1, len(train_n))))
    indices = np.empty((len(test_n), k), dtype=np.int64)
    sims = np.empty((len(test_n), k), dtype=np.float64)
    for start in range(0, len(test_n), chunk):
        # (q, N_train); rounded so that float noise does not split exactly tied vectors
        sim = np.round(test_n[start : start + chunk] @ train_n.T, 10)
        order = _top_k_stable(sim, k)
        indices[start : start + chunk] = order
        sims[start : start + chunk] = np.take_along_axis(sim, order, axis=1)
    return indices, sims


def _top_k_stable(sim: np.ndarray, k: int) -> np.ndarray:
    """(q, k) column indices of each row's k largest values, ties in column order: what a
    stable argsort of -sim gives, without sorting whole rows (argpartition, then a sort of
    the k candidates; rows where a tie straddles the k-th value take the full sort)."""
    if k == 0:
        return np.empty((len(sim), 0), dtype=np.int64)
    if k >= sim.shape[1]:
        return np.argsort(-sim, axis=1, kind="stable")
    part = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # the k largest, unordered
    kth = np.take_along_axis(sim, part, axis=1).min(axis=1)  # (q,) the k-th largest value
    cand = np.take_along_axis(sim, part, axis=1)
    order = np.lexsort((part, -cand), axis=1)  # by value, then by column
    out = np.take_along_axis(part, order, axis=1)
    ambiguous = (sim >= kth[:, None]).sum(axis=1) > k  # a tie at the k-th value
    for row in np.flatnonzero(ambiguous):
        out[row] = np.argsort(-sim[row], kind="stable")[:k]
    return out


def first_hit_ranks(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    max_k: int = 50,
    center: bool = False,
) -> np.ndarray:
    """Per query, the 1-based rank of the first train video of its class among the
    ``max_k`` nearest (0 when none is). R@k = mean(0 < rank <= k)."""
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    indices, _ = nearest_neighbours(train, test, max_k, center)
    hits = train_labels[indices] == test_labels[:, None]  # (Q, k)
    ranks = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    return ranks


def recall_at_k(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    center: bool = False,
) -> dict[str, float]:
    """``{"R@1": %, "R@5": %, ...}`` in percent. A k above the number of train videos
    counts every train video."""
    if len(test) == 0 or len(train) == 0:
        raise ValueError("retrieval needs at least one train and one test video")
    ranks = first_hit_ranks(train, train_labels, test, test_labels, max(ks), center)
    return recall_from_ranks(ranks, ks)


def recall_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    ranks = np.asarray(ranks)
    return {f"R@{k}": float(100.0 * np.mean((ranks > 0) & (ranks <= k))) for k in ks}
