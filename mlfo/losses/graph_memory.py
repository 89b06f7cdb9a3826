"""A memory of past videos for the graph constraint (``objective.graph_memory > 0``).

With 16 videos per step the graph target of ``infer_graph`` is about the identity: few
other videos of the batch pass the threshold and share the cluster. The memory keeps the
last N videos' high clip-B embeddings, graph embeddings (one per graph level) and
clusters, so each anchor also has candidates from past steps. Like the prototype queue it
holds the same (gathered) rows on every process and is saved in the objective's state
dict (``graph_memory.embeddings``, ``graph_memory.count``).
"""

from __future__ import annotations

import torch

from mlfo.losses._numerics import at_least_float32
from mlfo.losses.prototypes import EmbeddingQueue

__all__ = ["GraphMemory"]

A, B = 0, 1  # clip order in every MLFOOutput tensor


class GraphMemory(EmbeddingQueue):
    """One row per past video: [z_B high (C) | g_B per graph level (C each) | cluster (1)].

    Args:
        length: videos kept (the newest first).
        levels: the graph levels whose embeddings are stored, in order.
    """

    def __init__(self, length: int, levels: list[str]):
        super().__init__(length, dim=0, views=1)
        self.levels = list(levels)

    def parts(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The memory split into its parts: "high_b" (M, C), one (M, C) graph embedding per
        level, "labels" (M,) clusters. Empty (M = 0) before the first push or when the rows
        have another width than ``like`` (b, C) implies."""
        rows = self.valid()[0]  # (M, D)
        c = like.shape[-1]
        names = ["high_b", *self.levels]
        if rows.shape[0] == 0 or rows.shape[1] != c * len(names) + 1:
            empty = like.new_zeros(0, c)
            return {**{n: empty for n in names}, "labels": empty.new_zeros(0, dtype=torch.long)}
        parts = {n: rows[:, i * c:(i + 1) * c] for i, n in enumerate(names)}
        parts["labels"] = rows[:, -1].round().long()
        return parts

    @staticmethod
    @torch.no_grad()
    def instance_graph(z_a: torch.Tensor, keys_b: torch.Tensor, memory_b: torch.Tensor, tau: float) -> torch.Tensor:
        """(b, B + M) softmax_j(z_A(i) . [z_B of the global batch; memory] / tau).

        z_a: (b, C) local clips A; keys_b: (B, C) gathered clips B; memory_b: (M, C).
        """
        keys = torch.cat([keys_b, memory_b.to(keys_b)])
        return torch.softmax(at_least_float32(z_a.detach()) @ at_least_float32(keys).t() / tau, dim=1)

    @torch.no_grad()
    def remember(self, out, codes: torch.Tensor, gather) -> None:
        """Store this global batch: z_B (high), g_B of every level, cluster argmax(q_A + q_B).

        codes: (2, b, K) Sinkhorn codes of clips A and B; gather: the no-grad gather.
        """
        labels = (codes[A] + codes[B]).argmax(dim=1).to(out.clip["high"].dtype)
        parts = [out.clip["high"][B], *(out.graph[level][B] for level in self.levels), labels[:, None]]
        rows = gather(torch.cat([p.detach() for p in parts], dim=1))  # (B, D)
        self.push(rows.unsqueeze(0))
