"""Graph constraint (method.md §3e): which other videos should be close, and pulling them.

``infer_graph`` builds a target graph W from the instance graph P_ins (confident
neighbours) and the prototype codes (same cluster), and ``graph_loss`` asks each level's
graph embedding of clip A to predict W over the clips B of the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlfo.losses._numerics import at_least_float32
from mlfo.distributed import all_gather_no_grad, all_gather_with_grad, gather_global

__all__ = ["infer_graph", "graph_loss", "GRAPH_REDUCTIONS"]

GRAPH_REDUCTIONS = ("reference", "per_anchor")


@torch.no_grad()
def infer_graph(
    p_ins: torch.Tensor,
    codes_a: torch.Tensor,
    codes_b: torch.Tensor,
    threshold: float = 0.05,
    gather=all_gather_no_grad,
    memory_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Target graph W, (b, B): local rows x global columns, rows summing to 1.

    Args:
        p_ins: (b, B) instance graph softmax_j(z_A(i) . z_B(j) / tau); (b, B + M) with a
            memory of M past videos (columns after the global batch).
        codes_a, codes_b: (b, K) Sinkhorn codes of the local clips A and B.
        threshold: entries of p_ins below it are dropped (the diagonal is always kept).
        memory_labels: (M,) cluster of each memory video (its argmax(q_A + q_B) when stored).
    W_ij = p_ins_ij [p_ins_ij >= threshold or j is i] M_ij, with the semantic mask
    M_ij = [argmax(q_A + q_B)(i) == argmax(q_A + q_B)(j)], then row-normalised.
    """
    labels = (codes_a + codes_b).argmax(dim=1)  # (b,) cluster of each local video
    all_labels, offset = gather_global(labels, gather)  # (B,)
    if memory_labels is not None:
        all_labels = torch.cat([all_labels, memory_labels.to(all_labels)])  # (B + M,)
    b = labels.shape[0]
    rows = torch.arange(b, device=p_ins.device)
    keep = p_ins >= threshold
    keep[rows, rows + offset] = True  # the video itself
    same_cluster = labels[:, None] == all_labels[None, :]  # (b, B)
    w = at_least_float32(p_ins) * keep * same_cluster
    return w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)


def graph_loss(
    g_a: torch.Tensor,
    g_b: torch.Tensor,
    target: torch.Tensor,
    tau: float = 0.07,
    reduction: str = "reference",
    gather=all_gather_with_grad,
    memory_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft cross-entropy of softmax_j(g_A(i) . g_B(j) / tau) against the target graph.

    Args:
        g_a, g_b: (b, C) L2-normalised graph embeddings of the local clips A and B.
        target: (b, B) W from ``infer_graph``.
        reduction: "reference" = mean over all B x B entries of -W_ij log softmax_ij, as
            the reference implementation; it equals "per_anchor" / B, so its effective
            weight shrinks as the global batch B grows (1/256 at 4 x 64).
            "per_anchor" = sum over j, mean over anchors i (batch-size independent).
        memory_keys: (M, C) detached graph embeddings of past clips B: extra columns of
            the softmax (the target then has B + M columns). "reference" still divides by
            B, so a memory adds neighbours without also shrinking the term.
    """
    if reduction not in GRAPH_REDUCTIONS:
        raise ValueError(f"graph_loss: reduction must be one of {GRAPH_REDUCTIONS}, got {reduction!r}")
    keys = gather(g_b)  # (B, C)
    n_batch = keys.shape[0]
    if memory_keys is not None:
        keys = torch.cat([keys, memory_keys.detach().to(keys)])  # (B + M, C)
    log_prob = F.log_softmax(at_least_float32(g_a @ keys.t()) / tau, dim=1)  # (b, B [+ M])
    per_anchor = -(target * log_prob).sum(dim=1).mean()
    if reduction == "per_anchor":
        return per_anchor
    return per_anchor / n_batch  # = mean over local rows x global columns
