"""Process-group helpers that degrade to the identity in a single process.

The MLFO losses contrast every local clip against the *global* batch (all processes).
They take a ``gather`` callable; the default, :func:`all_gather_with_grad`, concatenates
every process's rows along dim 0 and lets gradients reach the local rows from every
process's loss. Nothing here assumes a process count, a device or a backend: it works
with gloo (CPU) and nccl alike, and with processes holding different numbers of rows
(the training collate drops videos that fail to decode, so local batches can differ).

Gradient convention: each process's loss is the mean over its *local* anchors and the
backward of the gather sums the gradients of every process for the local rows. DDP then
averages parameter gradients over processes, which gives exactly the gradient of one
process computing the mean loss over the global batch (for equal local batch sizes).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = [
    "is_distributed",
    "world_size",
    "rank",
    "local_sizes",
    "local_offset",
    "all_gather_with_grad",
    "all_gather_no_grad",
    "all_reduce_mean",
    "local_only",
    "gather_global",
]


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """Number of rows every process holds, in rank order ([n] in a single process)."""
    if not is_distributed() or world_size() == 1:
        return [n]
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def local_offset(n: int, device: torch.device | str = "cpu") -> int:
    """Index of this process's first row in a gathered tensor (0 in a single process)."""
    return sum(local_sizes(n, device)[: rank()])


def _gather_rows(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """all_gather of tensors whose dim 0 may differ per process: pad to the max, strip."""
    longest = max(sizes)
    padded = x
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0], *x.shape[1:]))
        padded = torch.cat([x, pad], dim=0)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:size] for part, size in zip(parts, sizes)], dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate all processes' rows. Backward: sum the gradient of the whole
    gathered tensor over processes and return this process's slice of it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        sizes = local_sizes(x.shape[0], x.device)
        offset = sum(sizes[: rank()])
        ctx.local_rows = (offset, offset + x.shape[0])
        return _gather_rows(x, sizes)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)  # every process's loss depends on our rows
        start, stop = ctx.local_rows
        return grad[start:stop]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """(n_local, ...) -> (n_global, ...) in rank order; gradients flow back to the local rows.

    The identity when torch.distributed is not initialised (or has one process).
    """
    if not is_distributed() or world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


@torch.no_grad()
def all_gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """(n_local, ...) -> (n_global, ...) in rank order, detached (targets, codes, queues)."""
    if not is_distributed() or world_size() == 1:
        return x.detach()
    return _gather_rows(x.detach(), local_sizes(x.shape[0], x.device))


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a new tensor; ``x`` itself is left untouched)."""
    x = x.detach().clone()
    if is_distributed() and world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x /= world_size()
    return x


def local_only(x: torch.Tensor) -> torch.Tensor:
    """A ``gather`` that keeps the local rows: contrast within this process's batch only."""
    return x


def gather_global(x: torch.Tensor, gather=all_gather_with_grad) -> tuple[torch.Tensor, int]:
    """``gather(x)`` and the index of this process's first row in it.

    When the gather returns only the local rows (single process, or ``local_only``) the
    offset is 0 without any communication; otherwise it is found from every process's
    row count (one small collective).
    """
    x_global = gather(x)
    if x_global.shape[0] == x.shape[0]:
        return x_global, 0
    return x_global, local_offset(x.shape[0], x.device)
