"""Finite state or no checkpoint.

A loss can stay finite while the state under it is not: with a huge learning rate,
BatchNorm normalises exploding activations, so the loss looks fine while the running
variances reach inf. The engine therefore checks the normalisation statistics before
every save and every ``finite_check_steps`` steps (a few dozen small tensors: one device
sync and one all-reduce, not paid at every step) and, before any save, every parameter,
buffer and optimizer-state tensor, so that a checkpoint it writes is finite;
``GoodCheckpoints`` says which of them a stop may call good.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn


def nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an inf (one sync for all)."""
    names, flags = [], []
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel():
            names.append(name)
            flags.append(torch.isfinite(t).all())
    if not flags:
        return []
    ok = torch.stack([f.to(flags[0].device) for f in flags]).cpu().tolist()
    return [n for n, good in zip(names, ok) if not good]


def norm_statistics(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The running mean and variance of every BatchNorm layer of ``module``."""
    for prefix, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            for name in ("running_mean", "running_var"):
                t = getattr(m, name, None)
                if t is not None:
                    yield f"{prefix}.{name}", t


def training_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[tuple[str, torch.Tensor]]:
    """Parameters, buffers and optimizer-state tensors: what a checkpoint stores."""
    yield from module.named_parameters()
    yield from module.named_buffers()
    for i, state in enumerate(optimizer.state.values()):
        for key, value in state.items():
            yield f"optimizer.state.{i}.{key}", value


def describe(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


class GoodCheckpoints:
    """Which checkpoints of this run are known good: finite when written (``save``
    refuses others) and followed by a passed check of the statistics. A finite state can still
    be ruined (weights of 1e27 after one huge update): the step after it fails, and
    resuming it would fail the same way, so a stop names it as such, not as good."""

    def __init__(self):
        self._saved: dict[Path, list] = {}  # path -> [global step it holds, followed by a finite step]

    def saved(self, path: Path, step: int) -> None:
        self._saved[Path(path)] = [step, False]

    def step_passed(self) -> None:
        for entry in self._saved.values():
            entry[1] = True

    def describe(self) -> str:
        """The newest good checkpoint, and the unproven ones that led to the failing step."""
        good = [(step, str(p)) for p, (step, ok) in self._saved.items() if ok and p.exists()]
        text = max(good)[1] if good else "none verified in this run"
        doubtful = [f"{p} holds step {step}" for p, (step, ok) in self._saved.items() if not ok]
        if doubtful:
            text += f" ({', '.join(doubtful)}, the state that led to this failure)"
        return text
