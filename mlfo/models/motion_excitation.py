"""Motion excitation (ME), the block that makes low / mid features direction-sensitive.

From TEA (Li et al., CVPR 2020), as MLFO's reference implementation uses it (method.md §2):
squeeze channels (1x1x1 conv + BN, C -> C/16), transform each frame with a depthwise
3x3 spatial conv, take the feature difference "transformed frame t+1 minus frame t"
(zero for the last step), average it over space, expand back (1x1x1 conv + BN) and use
``sigmoid(.) - 0.5`` as a channel gate: ``out = x + gate * x``.

Because the difference runs forward in time, a clip and its time-reversed copy get
different gates, which is what the motion contrast with reversed negatives relies on.
Everything stays 5-D (N, C, T, H, W), so ``channels_last_3d`` inputs need no copies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MotionExcitation(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        squeezed = max(1, channels // reduction)
        self.squeeze = nn.Conv3d(channels, squeezed, 1, bias=False)
        self.squeeze_bn = nn.BatchNorm3d(squeezed)
        # Depthwise spatial conv applied to every frame (frames 1.. are used; transforming
        # all of them keeps a 1-step input valid and costs little at C/16 channels).
        self.transform = nn.Conv3d(squeezed, squeezed, (1, 3, 3), padding=(0, 1, 1),
                                   groups=squeezed, bias=False)
        self.expand = nn.Conv3d(squeezed, channels, 1, bias=False)
        self.expand_bn = nn.BatchNorm3d(channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C, T, H, W) -> gate (N, C, T, 1, 1) in (-0.5, 0.5)."""
        squeezed = self.squeeze_bn(self.squeeze(x))                  # (N, C/r, T, H, W)
        moved = self.transform(squeezed)[:, :, 1:]                   # frames 1..T-1
        difference = moved - squeezed[:, :, :-1]                     # (N, C/r, T-1, H, W)
        difference = F.pad(difference, (0, 0, 0, 0, 0, 1))           # last step: zero
        motion = difference.mean(dim=(3, 4), keepdim=True)           # (N, C/r, T, 1, 1)
        return torch.sigmoid(self.expand_bn(self.expand(motion))) - 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gate(x) * x
