"""Sinkhorn-Knopp soft cluster assignment (SwAV), in the log domain.

Turns prototype scores into codes q that (nearly) spread the samples equally over the K
prototypes, which prevents the trivial solution of every sample in one cluster. SwAV
exponentiates scores / eps directly; with eps = 0.05 that overflows float16 and loses
precision in bf16, so here every step is a float32 log-sum-exp with the global max
subtracted, whatever the input dtype or autocast state.
"""

from __future__ import annotations

import math

import torch

from mlfo.losses._numerics import at_least_float32
from mlfo.distributed import all_gather_no_grad

__all__ = ["sinkhorn"]


def _global_logsumexp_over_rows(log_q: torch.Tensor, gather) -> tuple[torch.Tensor, int]:
    """(n, K) -> (K,) log of the column sums of exp(log_q) over all processes' rows, and
    the number of processes the gather spans (rows of one per process)."""
    col_max = gather(log_q.max(dim=0, keepdim=True).values)  # (P, K)
    processes = col_max.shape[0]
    col_max = col_max.max(dim=0).values  # (K,)
    col_max = torch.where(torch.isfinite(col_max), col_max, torch.zeros_like(col_max))
    partial = torch.exp(log_q - col_max).sum(dim=0, keepdim=True)  # (1, K) this process
    return col_max + torch.log(gather(partial).sum(dim=0)), processes  # (K,)


@torch.no_grad()
def sinkhorn(
    scores: torch.Tensor, eps: float = 0.05, iters: int = 3, gather=all_gather_no_grad
) -> torch.Tensor:
    """Soft codes for (n, K) scores; returns (n, K) float32 codes whose rows sum to 1.

    The transport problem is over the rows of every process (``gather`` concatenates
    per-process partial sums; pass ``local_only`` when ``scores`` already holds every row,
    e.g. a queue plus the gathered batch). Each iteration first makes every prototype's
    total mass 1/K, then every sample's mass 1/N; the result is scaled by N so each row
    is a distribution over prototypes.
    """
    if eps <= 0 or iters < 1:
        raise ValueError(f"sinkhorn: need eps > 0 and iters >= 1, got eps={eps}, iters={iters}")
    with torch.autocast(device_type=scores.device.type, enabled=False):
        log_q = at_least_float32(scores.detach()) / eps  # (n, K)
        n_local, k = log_q.shape
        for _ in range(iters):
            # prototypes: each column sums to 1/K over all rows of all processes
            col_lse, processes = _global_logsumexp_over_rows(log_q, gather)
            n_total = n_local * processes  # every process holds n_local rows (constant shapes)
            log_q = log_q - col_lse - math.log(k)
            # samples: each row sums to 1/N
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n_total)
        return torch.exp(log_q + math.log(n_total))  # rows sum to 1
