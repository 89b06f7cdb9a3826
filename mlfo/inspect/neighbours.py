"""Who is near whom: nearest-neighbour galleries and near-duplicate groups, both by cosine
similarity in query chunks (``mlfo.eval.retrieval.nearest_neighbours``), never N x N."""

from __future__ import annotations

import numpy as np

from mlfo.eval.retrieval import nearest_neighbours


def gallery(features: np.ndarray, query_rows: np.ndarray, query_features: np.ndarray, k: int) -> list[dict]:
    """For each query, its ``k`` most similar collection rows, itself excluded.

    features: (N, C) the collection; query_rows: (Q,) each query's row in it, or -1 for a
    video outside it; query_features: (Q, C). -> [{"row", "neighbours": [(row, cosine)]}]
    """
    if len(query_rows) == 0:
        return []
    idx, sims = nearest_neighbours(features, query_features, min(k + 1, len(features)))
    out = []
    for q, row in enumerate(query_rows):
        pairs = [(int(i), float(s)) for i, s in zip(idx[q], sims[q]) if i != row]
        out.append({"row": int(row), "neighbours": pairs[:k]})
    return out


def duplicate_groups(features: np.ndarray, threshold: float, max_neighbours: int = 20) -> list[dict]:
    """Groups of near-duplicates: a video and its neighbours (among its ``max_neighbours``
    nearest) with cosine similarity >= ``threshold``, each video in one group at most.
    Greedy, most similar pairs first, and never chained: every member is that close to
    the group's first video (connected components would chain a dense collection into
    one group). -> [{"rows": [first, ...], "min_similarity": s}], largest first."""
    n = len(features)
    if n < 2:
        return []
    idx, sims = nearest_neighbours(features, features, min(max_neighbours + 1, n))
    not_self = idx != np.arange(n)[:, None]
    best = np.where(not_self, sims, -np.inf).max(axis=1)  # (n,) each video's closest other video
    group_of = np.full(n, -1)
    groups: list[dict] = []
    for leader in np.argsort(-best, kind="stable"):
        if group_of[leader] >= 0 or best[leader] < threshold:
            continue
        near = [(int(j), float(s)) for j, s, ok in zip(idx[leader], sims[leader], not_self[leader])
                if ok and s >= threshold and group_of[j] < 0]
        if not near:
            continue
        group_of[[leader] + [j for j, _ in near]] = len(groups)
        groups.append({"rows": [int(leader)] + [j for j, _ in near], "min_similarity": min(s for _, s in near)})
    return sorted(groups, key=lambda g: (-len(g["rows"]), -g["min_similarity"]))
