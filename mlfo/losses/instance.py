"""Multi-positive instance InfoNCE over the global batch (method.md §3a).

Every local clip (A and B of each local video) is an anchor. Its positive is the other
clip of the same video; its negatives are both clips of every other video in the global
batch (all processes). Self-similarity is excluded. Optional extra negatives per anchor
(the motion contrast's time-reversed clips, see ``motion.py``) join the denominator.
"""

from __future__ import annotations

import torch

from mlfo.losses._numerics import at_least_float32
from mlfo.distributed import all_gather_with_grad, gather_global

__all__ = ["instance_contrast", "contrast_with_negatives"]


def contrast_with_negatives(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    tau: float,
    gather=all_gather_with_grad,
    extra_negatives: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Multi-positive InfoNCE of local clips A, B against the global batch.

    Args:
        z_a, z_b: (b, C) L2-normalised embeddings of clips A and B of the local videos.
        tau: softmax temperature.
        gather: (b, ...) -> (B, ...) concatenation over processes (identity: local batch).
        extra_negatives: optional (2b, m) cosine similarities of each anchor (rows: local
            A then local B) to m additional negatives of its own.

    Returns:
        loss: mean over the 2b anchors of -log(sum_pos e^{s/tau} / sum_{all but self} e^{s/tau}).
        acc: fraction of anchors whose best positive beats every negative (ties miss).
        p_ins: (b, B) instance graph softmax_j(z_A(i) . z_B(j) / tau), detached.
    """
    b = z_a.shape[0]
    keys_a, offset = gather_global(z_a, gather)  # (B, C)
    keys_b, _ = gather_global(z_b, gather)  # (B, C)
    n_global = keys_a.shape[0]

    anchors = torch.cat([z_a, z_b])  # (2b, C)
    keys = torch.cat([keys_a, keys_b])  # (2B, C): global A then global B
    logits = anchors @ keys.t() / tau  # (2b, 2B)

    # Column of each anchor's own clip and of its positive (the other clip, same video).
    video = torch.arange(b, device=z_a.device) + offset  # global index of local videos
    self_col = torch.cat([video, video + n_global])  # (2b,)
    pos_col = torch.cat([video + n_global, video])  # (2b,)
    rows = torch.arange(2 * b, device=z_a.device)
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[rows, self_col] = True
    is_pos = torch.zeros_like(is_self)
    is_pos[rows, pos_col] = True

    if extra_negatives is not None:  # (2b, m) -> extra negative columns
        logits = torch.cat([logits, extra_negatives / tau], dim=1)
        pad = torch.zeros_like(extra_negatives, dtype=torch.bool)
        is_self = torch.cat([is_self, pad], dim=1)
        is_pos = torch.cat([is_pos, pad], dim=1)

    logits = at_least_float32(logits).masked_fill(is_self, float("-inf"))
    log_denominator = torch.logsumexp(logits, dim=1)  # positives and negatives, no self
    log_numerator = torch.logsumexp(logits.masked_fill(~is_pos, float("-inf")), dim=1)
    loss = (log_denominator - log_numerator).mean()

    with torch.no_grad():
        best_negative = logits.masked_fill(is_pos, float("-inf")).amax(dim=1)
        acc = (logits.masked_fill(~is_pos, float("-inf")).amax(dim=1) > best_negative).float().mean()
        p_ins = logits[:b, n_global : 2 * n_global].softmax(dim=1)  # z_A(i) . z_B(j) / tau
    return loss, acc, p_ins


def instance_contrast(
    z_a: torch.Tensor, z_b: torch.Tensor, tau: float = 0.07, gather=all_gather_with_grad
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """High-level instance contrast: ``(loss, acc, p_ins)``, see ``contrast_with_negatives``.

    z_a, z_b: (b, C) local embeddings; p_ins: (b, B) local rows x global columns.
    """
    return contrast_with_negatives(z_a, z_b, tau, gather)
