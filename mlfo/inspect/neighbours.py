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
    """Groups of videos linked by cosine similarity >= ``threshold`` (connected components
    over each video's ``max_neighbours`` nearest), largest first.
    -> [{"rows": [...], "min_similarity": s}] with s the weakest link used."""
    n = len(features)
    if n < 2:
        return []
    idx, sims = nearest_neighbours(features, features, min(max_neighbours + 1, n))
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    weakest: dict[int, float] = {}
    for a, b in zip(*np.nonzero((sims >= threshold) & (idx != np.arange(n)[:, None]))):
        ra, rb, s = root(a), root(idx[a, b]), float(sims[a, b])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            keep = min(weakest.pop(ra, 1.0), weakest.pop(rb, 1.0), s)
            weakest[min(ra, rb)] = keep
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    groups = [{"rows": rows, "min_similarity": weakest.get(r, 1.0)} for r, rows in members.items() if len(rows) > 1]
    return sorted(groups, key=lambda g: (-len(g["rows"]), g["rows"][0]))
