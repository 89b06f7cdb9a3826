"""Prototypical contrast: swapped prediction of Sinkhorn codes (method.md §3d, SwAV).

Clip A must predict the cluster code of clip B and vice versa. Codes come from
Sinkhorn-Knopp over the current global batch and, once the queue is in use, also over
a queue of past global batches: with small batches the equipartition constraint over
one batch alone is too strong (K prototypes, a few dozen samples).

Queue choice (SwAV style): the queue stores the global-head EMBEDDINGS of past global
batches (clips A and B separately), and their scores are recomputed against the current
prototypes at every step, so old entries never carry stale prototype positions. Every
process stores the same (gathered) queue, so a checkpoint resumes with any process count.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlfo.losses._numerics import at_least_float32
from mlfo.losses.sinkhorn import sinkhorn
from mlfo.distributed import all_gather_no_grad, gather_global, local_only

__all__ = ["swapped_prediction", "prototype_codes", "EmbeddingQueue"]


def swapped_prediction(
    scores_a: torch.Tensor,
    scores_b: torch.Tensor,
    codes_a: torch.Tensor,
    codes_b: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """-1/2 (q_B . log p_A + q_A . log p_B), averaged over the local videos.

    scores_*: (b, K) embedding x unit-norm prototypes; codes_*: (b, K) targets (no grad);
    p = softmax(scores / temperature).
    """
    log_p_a = F.log_softmax(at_least_float32(scores_a) / temperature, dim=1)
    log_p_b = F.log_softmax(at_least_float32(scores_b) / temperature, dim=1)
    return -0.5 * ((codes_b * log_p_a).sum(dim=1) + (codes_a * log_p_b).sum(dim=1)).mean()


@torch.no_grad()
def prototype_codes(
    scores: torch.Tensor,
    queue_scores: torch.Tensor | None = None,
    eps: float = 0.05,
    iters: int = 3,
    gather=all_gather_no_grad,
) -> torch.Tensor:
    """(b, K) local scores -> (b, K) Sinkhorn codes over the global batch (and the queue).

    Without a queue Sinkhorn runs distributed (global sums via ``gather``). With a queue
    (Q, K) of scores, every process solves the same problem over [queue; global batch]
    and keeps its own rows.
    """
    if queue_scores is None or queue_scores.shape[0] == 0:
        return sinkhorn(scores, eps, iters, gather)
    batch, offset = gather_global(scores.detach(), gather)  # (B, K)
    codes = sinkhorn(torch.cat([queue_scores.to(batch.dtype), batch]), eps, iters, local_only)
    start = queue_scores.shape[0] + offset
    return codes[start : start + scores.shape[0]]


class EmbeddingQueue(nn.Module):
    """First-in-first-out store of the last ``length`` embeddings of each view.

    Buffers (saved in the state dict, so resuming keeps the queue):
      embeddings: (views, length, dim), newest first; count: number of valid rows.
    ``filled`` mirrors ``count`` on the host, so a step never reads it from the device.
    """

    def __init__(self, length: int, dim: int, views: int = 2):
        super().__init__()
        self._length = length
        self.register_buffer("embeddings", torch.zeros(views, length, dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.filled = 0  # == count, on the host

    @property
    def length(self) -> int:
        return self._length

    def valid(self) -> torch.Tensor:
        """(views, count, dim) the filled part of the queue."""
        return self.embeddings[:, : self.filled]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[2]

    @torch.no_grad()
    def push(self, new: torch.Tensor) -> None:
        """Insert (views, n, dim) embeddings at the front; the oldest drop off the end.

        The first push fixes ``dim`` (a queue built with dim=0 sizes itself lazily); a
        push of another width empties the queue first.
        """
        if new.shape[2] != self.dim or new.shape[0] != self.embeddings.shape[0]:
            self.embeddings = at_least_float32(new.new_zeros(new.shape[0], self.length, new.shape[2]))
            self.count.zero_()
            self.filled = 0
        n = min(new.shape[1], self.length)
        if n == 0:
            return
        if n < self.length:
            self.embeddings[:, n:] = self.embeddings[:, :-n].clone()
        self.embeddings[:, :n] = new[:, :n].to(self.embeddings.dtype)
        self.filled = min(self.filled + n, self.length)
        self.count.fill_(self.filled)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A lazily sized queue takes the width (and length) of the saved one.
        saved = state_dict.get(prefix + "embeddings")
        if saved is not None and saved.shape != self.embeddings.shape:
            self.embeddings = torch.zeros_like(saved, device=self.embeddings.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if self.embeddings.shape[1] != self._length:  # queue_length changed: keep the newest
            kept = self.embeddings[:, : self._length]
            self.embeddings = kept.new_zeros(kept.shape[0], self._length, kept.shape[2])
            self.embeddings[:, : kept.shape[1]] = kept
            self.count.clamp_(max=self._length)
        self.filled = int(self.count)  # the one read of the count, when a state is loaded

    def reset(self) -> None:
        self.embeddings.zero_()
        self.count.zero_()
        self.filled = 0
