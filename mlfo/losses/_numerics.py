"""Precision policy shared by the losses."""

import torch


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """Promote half / bfloat16 to float32 (softmax, log-sum-exp); keep float32 and float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
