"""Local-to-global timestamp matching (method.md §3c).

Clips A and B are the two halves of the span that the overview clip G covers at half the
frame rate. Pooling each of A's and B's t per-step features to t/2 steps and
concatenating them gives t steps aligned with G's t steps; each step must find its
counterpart among G's steps (and vice versa). Negatives are the other steps of the same
video only, so the loss needs no communication between processes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mlfo.losses._numerics import at_least_float32

__all__ = ["timestamp_matching", "local_steps"]


def local_steps(fine_a: torch.Tensor, fine_b: torch.Tensor) -> torch.Tensor:
    """(b, t, C) per-step features of A and B -> (b, t, C) on G's time grid, L2-normalised.

    Each clip is average-pooled over pairs of adjacent steps (t -> t/2), then A's steps
    are followed by B's.
    """
    b, t, c = fine_a.shape
    if t % 2:
        raise ValueError(f"timestamp_matching: the number of steps must be even, got {t}")
    pooled_a = fine_a.reshape(b, t // 2, 2, c).mean(dim=2)  # (b, t/2, C)
    pooled_b = fine_b.reshape(b, t // 2, 2, c).mean(dim=2)
    return F.normalize(torch.cat([pooled_a, pooled_b], dim=1), dim=-1)  # (b, t, C)


def timestamp_matching(
    fine_a: torch.Tensor, fine_b: torch.Tensor, fine_g: torch.Tensor, tau: float = 0.07
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of matching local steps to G's steps, both directions averaged.

    Args:
        fine_a, fine_b, fine_g: (b, t, C) L2-normalised per-step embeddings.
    Returns:
        loss: mean over videos, steps and the two directions.
        acc: fraction of steps (both directions) whose best match is the right step.
    """
    local = local_steps(fine_a, fine_b)  # (b, t, C)
    logits = at_least_float32(local @ fine_g.transpose(1, 2)) / tau  # (b, t_local, t_G)
    b, t, _ = logits.shape
    target = torch.arange(t, device=logits.device).repeat(b)  # (b*t,)
    local_to_global = F.cross_entropy(logits.reshape(b * t, t), target)
    global_to_local = F.cross_entropy(logits.transpose(1, 2).reshape(b * t, t), target)
    loss = 0.5 * (local_to_global + global_to_local)
    with torch.no_grad():
        hits = (logits.argmax(dim=2).reshape(-1) == target).float().mean()
        hits_back = (logits.argmax(dim=1).reshape(-1) == target).float().mean()
        acc = 0.5 * (hits + hits_back)
    return loss, acc
