"""Projection heads and prototypes of MLFO (method.md §2).

Per level, three 2-layer heads written as 1x1 Conv1d over time, so one head embeds every
time step of a (N, C, t) pooled feature at once: the clip head (steps averaged after
projection, as the reference does), the per-step head for timestamp matching, and the
graph head. The global head (an MLP with BatchNorm) feeds the K prototypes.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Sequential):
    """(N, C_in, t) -> (N, C_out, t): Conv1d(C_in, C_in, 1) [-BN] - ReLU - Conv1d(C_in, C_out, 1).

    The reference implementation has no BatchNorm here; ``batchnorm=True`` adds one
    after the first layer (the SimCLR / MoCo v2 style).
    """

    def __init__(self, in_channels: int, out_channels: int, batchnorm: bool = False):
        layers: list[nn.Module] = [nn.Conv1d(in_channels, in_channels, 1)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(in_channels))
        layers += [nn.ReLU(inplace=True), nn.Conv1d(in_channels, out_channels, 1)]
        super().__init__(*layers)


class GlobalHead(nn.Sequential):
    """(N, C_in) -> (N, C_out): Linear - BN - ReLU - Linear, the prototype head's input."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int | None = None):
        hidden = hidden or in_channels
        super().__init__(
            nn.Linear(in_channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_channels),
        )


def make_prototypes(embed_dim: int, num_prototypes: int) -> nn.Linear:
    """K prototype vectors as the rows of a bias-free Linear(C, K); rows start unit-norm."""
    prototypes = nn.Linear(embed_dim, num_prototypes, bias=False)
    normalize_rows_(prototypes.weight)
    return prototypes


@torch.no_grad()
def normalize_rows_(weight: torch.Tensor) -> None:
    """Rescale each row of ``weight`` to unit L2 norm in place (outside autograd)."""
    weight.div_(weight.norm(dim=1, keepdim=True).clamp_min(1e-12))
