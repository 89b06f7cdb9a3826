"""Motion contrast for the low and mid levels (method.md §3b).

The instance contrast of ``instance.py`` plus hard negatives: each anchor clip's own
video played backwards. A representation that ignores the direction of motion cannot
separate a clip from its reversal, so these negatives force it to encode motion.
"""

from __future__ import annotations

import torch

from mlfo.losses.instance import contrast_with_negatives
from mlfo.distributed import all_gather_with_grad

__all__ = ["motion_contrast", "REVERSED_SOURCES"]

# Which reversed clips are an anchor's hard negatives: "both" = both clips of its own video
# reversed (reference); "positive" = only the reversed positive; "anchor" = only its own.
REVERSED_SOURCES = ("both", "positive", "anchor")


def motion_contrast(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    reversed_a: torch.Tensor | None = None,
    reversed_b: torch.Tensor | None = None,
    tau: float = 0.07,
    gather=all_gather_with_grad,
    source: str = "both",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-positive InfoNCE with the own video's time-reversed clips as extra negatives.

    Args:
        z_a, z_b: (b, C) embeddings of the normal-order clips A and B.
        reversed_a, reversed_b: (b, C) embeddings of the time-reversed A and B, or None
            for plain instance contrast (reversed negatives switched off).
        source: which reversed clips each anchor gets, see ``REVERSED_SOURCES``. With
            colour jitter drawn per clip (or per frame), the anchor's own reversal keeps
            the anchor's colours while its positive has other colours, so it is closer
            than the positive until the encoder is colour-invariant; the reversed
            *positive* has the positive's colours, so only the order of time tells the two
            apart ("positive").
    Returns:
        (loss, acc) as in ``contrast_with_negatives``; accuracy counts a reversed clip
        ranked above the positive as a miss.
    """
    if source not in REVERSED_SOURCES:
        raise ValueError(f"motion_contrast: source must be one of {REVERSED_SOURCES}, got {source!r}")
    extra = None
    if reversed_a is not None and reversed_b is not None:
        anchors = torch.cat([z_a, z_b])  # (2b, C): anchors A then anchors B
        if source == "both":
            negatives = torch.stack([reversed_a, reversed_b], dim=1).repeat(2, 1, 1)  # (2b, 2, C)
        elif source == "positive":  # A's positive is B: reversed B; B's is A: reversed A
            negatives = torch.cat([reversed_b, reversed_a]).unsqueeze(1)  # (2b, 1, C)
        else:
            negatives = torch.cat([reversed_a, reversed_b]).unsqueeze(1)
        extra = torch.einsum("nc,nkc->nk", anchors, negatives)  # (2b, k) cosine similarities
    elif (reversed_a is None) != (reversed_b is None):
        raise ValueError("motion_contrast: pass both reversed_a and reversed_b, or neither")
    loss, acc, _ = contrast_with_negatives(z_a, z_b, tau, gather, extra_negatives=extra)
    return loss, acc
