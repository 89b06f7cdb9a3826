"""Optimizers and the learning-rate schedule: one module for pretraining, fine-tuning and
the linear probe.

A schedule is a pure function of the position in training (no scheduler object with
state to save), so a resumed run computes the same rate as an uninterrupted one. The
position's unit is the caller's: epochs for pretraining (fractional, so the rate moves
every step), optimizer steps for fine-tuning and the probe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("step", "cosine", "constant")


def build_optimizer(name: str, params, *, lr: float, weight_decay: float = 0.0,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``params``: parameters or param groups (each group may carry its own ``lr``)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}, got {name!r}")


def lr_factor(
    position: float,
    total: float,
    *,
    schedule: str = "cosine",
    warmup: float = 0.0,
    step_length: float = 1.0,
    milestones: Sequence[float] = (),
    decay: float = 0.1,
) -> float:
    """Multiplier of the base learning rate at ``position`` (steps done, in any unit).

    Linear warmup over ``warmup`` (the step at ``position`` is the ``(position +
    step_length) / warmup``-th part of it), then ``step`` (times ``decay`` at every
    milestone passed), ``cosine`` (from 1 down to 0 at ``total``) or ``constant``.
    """
    if warmup > 0 and position < warmup:
        return (position + step_length) / warmup
    if schedule == "step":
        return decay ** sum(1 for m in milestones if position >= m)
    if schedule == "cosine":
        span = max(total - warmup, 1e-8)
        done = min(max(position - warmup, 0.0), span)
        return 0.5 * (1 + math.cos(math.pi * done / span))
    if schedule == "constant":
        return 1.0
    raise ValueError(f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}")


def set_learning_rates(optimizer: torch.optim.Optimizer, base_lrs: Sequence[float], factor: float) -> None:
    """Every param group's rate = its base rate x ``factor``."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor
