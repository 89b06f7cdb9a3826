"""Label-free health of an embedding: is it collapsed, and does it keep two views together?

- RankMe (Garrido et al., ICML 2023): exp of the entropy of the normalised singular values
  of the (N, D) embedding matrix; 1 for a collapse onto one direction, min(N, D) for a
  perfectly spread one. Reported to track downstream accuracy across SSL runs.
- Alignment and uniformity (Wang & Isola, ICML 2020) of L2-normalised embeddings:
  alignment = E ||f(x) - f(y)||^2 over two views of one video (lower: views agree);
  uniformity = log E exp(-2 ||f(x) - f(y)||^2) over pairs of videos (lower: more spread).

One implementation, used by ``mlfo inspect`` and by pretraining (RankMe of the prototype
queue, ``train.health_every``), so a run's curve and the page give the same number.
"""

from __future__ import annotations

import numpy as np
import torch

RANKME_EPS = 1e-7  # the paper's epsilon inside the entropy
UNIFORMITY_MAX_POINTS = 2048  # pairs of at most this many videos (a seeded subsample beyond)


def _matrix(x) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.double()


def singular_values(x) -> np.ndarray:
    """Descending singular values of the (N, D) embeddings as given (not centred)."""
    return torch.linalg.svdvals(_matrix(x)).cpu().numpy()


def rankme_from_singular_values(s: np.ndarray, eps: float = RANKME_EPS) -> float:
    s = np.asarray(s, dtype=np.float64)
    if s.size == 0 or not s.sum() > 0:
        return 0.0  # all-zero embeddings: nothing spans anything
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def rankme(x, eps: float = RANKME_EPS) -> float:
    """RankMe effective rank of (N, D) embeddings: between 1 and min(N, D)."""
    return rankme_from_singular_values(singular_values(x), eps)


def _unit(x) -> torch.Tensor:
    x = _matrix(x)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def alignment(a, b) -> float:
    """Mean squared distance between L2-normalised paired rows a[i], b[i] (in [0, 4])."""
    a, b = _unit(a), _unit(b)
    return float((a - b).pow(2).sum(dim=1).mean())


def uniformity(x, t: float = 2.0, max_points: int = UNIFORMITY_MAX_POINTS, seed: int = 0) -> float:
    """log mean exp(-t ||u_i - u_j||^2) over pairs i < j of L2-normalised rows (a seeded
    subsample of ``max_points`` rows beyond that, so it stays cheap at 100k videos)."""
    x = _unit(x)
    if len(x) > max_points:
        keep = np.random.default_rng(seed).choice(len(x), max_points, replace=False)
        x = x[torch.as_tensor(np.sort(keep))]
    if len(x) < 2:
        return float("nan")
    d2 = torch.pdist(x).pow(2)  # (N (N - 1) / 2,)
    return float(torch.logsumexp(-t * d2, dim=0) - np.log(len(d2)))


def embedding_health(features, view_a=None, view_b=None, seed: int = 0) -> dict:
    """RankMe, singular values, uniformity of per-video features; alignment when the two
    views' features (same rows) are given."""
    s = singular_values(features)
    out = {"rankme": rankme_from_singular_values(s), "n": int(len(features)),
           "dim": int(np.asarray(features).shape[1]), "singular_values": s.tolist(),
           "uniformity": uniformity(features, seed=seed)}
    if view_a is not None and view_b is not None:
        out["alignment"] = alignment(view_a, view_b)
    return out


@torch.no_grad()
def queue_rankme(queue, step: int, every: int) -> dict[str, float]:
    """``{"health/rankme": r}`` every ``every`` optimizer steps (``step``: steps done
    before this one) from the embeddings already in the prototype queue: no extra forward
    pass. Empty when off, between logs, or while the queue holds under 2 rows."""
    if every <= 0 or (step + 1) % every != 0:
        return {}
    rows = queue.valid()[0]  # (count, D): clip A's embeddings, one row per past video
    if rows.shape[0] < 2:
        return {}
    s = torch.linalg.svdvals(rows.double()).cpu().numpy()
    return {"health/rankme": rankme_from_singular_values(s)}
