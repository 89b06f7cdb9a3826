"""Processes: the torchrun process group's lifetime, and collectives that degrade to the
identity in a single process.

Launch detection follows torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR/PORT set by its rendezvous), so the same code runs single-process, on one
node with several GPUs or CPU processes, and across nodes.

The MLFO losses contrast every local clip against the *global* batch (all processes).
They take a ``gather`` callable; the default, :func:`all_gather_with_grad`, concatenates
every process's rows along dim 0 and lets gradients reach the local rows from every
process's loss. Nothing here assumes a process count, a device or a backend: it works
with gloo (CPU) and nccl alike.

Constant shapes: every process holds the same number of rows at every step (the
training loader replaces a video that fails to decode, ``mlfo.data.loading``), so a
gather is one ``all_gather`` of equal tensors and this process's rows start at
``rank x rows``: no row counts are exchanged and nothing is read back to the host.

Gradient convention: each process's loss is the mean over its *local* anchors and the
backward of the gather sums the gradients of every process for the local rows. DDP then
averages parameter gradients over processes, which gives exactly the gradient of one
process computing the mean loss over the global batch.
"""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from mlfo.errors import MLFOError

def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def local_offset(n: int) -> int:
    """Index of this process's first row in a gathered tensor of ``n`` rows per process."""
    return rank() * n


def _gather_rows(x: torch.Tensor) -> torch.Tensor:
    """(n, ...) on every process -> (world x n, ...) in rank order: one all_gather."""
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate all processes' rows. Backward: sum the gradient of the whole
    gathered tensor over processes and return this process's slice of it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        offset = local_offset(x.shape[0])
        ctx.local_rows = (offset, offset + x.shape[0])
        return _gather_rows(x)

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
    return _gather_rows(x.detach())


def local_only(x: torch.Tensor) -> torch.Tensor:
    """A ``gather`` that keeps the local rows: contrast within this process's batch only."""
    return x


def gather_global(x: torch.Tensor, gather=all_gather_with_grad) -> tuple[torch.Tensor, int]:
    """``gather(x)`` and the index of this process's first row in it.

    When the gather returns only the local rows (single process, or ``local_only``) the
    offset is 0; otherwise every process holds ``x.shape[0]`` rows (constant shapes) and
    the offset is ``rank x rows``. Either way nothing is communicated for it.
    """
    x_global = gather(x)
    if x_global.shape[0] == x.shape[0]:
        return x_global, 0
    return x_global, local_offset(x.shape[0])


# ----------------------------------------------------------------- the process group


@dataclass
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` takes this process's GPU when there is one, else the CPU."""
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise MLFOError("train.device: cuda requested but no GPU is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def leads_its_node() -> bool:
    """True in the first process of each node (LOCAL_RANK 0), and outside torchrun: the
    process that prepares what the node's processes share (the data index) before the
    process group exists."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


def init_distributed(device_preference: str = "auto", timeout: timedelta | None = None) -> DistContext:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU).

    ``timeout`` bounds every wait of the group, joining included: a rank whose node
    leader is still indexing the data waits here for it (NCCL's own default is 10 min).
    """
    if not launched_by_torchrun():
        return DistContext(device=resolve_device(device_preference))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        options = {"timeout": timeout} if timeout is not None else {}
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device, **options)
        else:
            dist.init_process_group("gloo", **options)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        if ctx.device.type == "cuda":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def teardown(ctx: DistContext) -> None:
    """Leave the process group cleanly.

    Measured with gloo: tearing down while the DDP reducer and its communication buffers
    were still alive made one rank abort at exit in ~30 % of runs. Callers drop their
    model references first; we collect garbage, wait for every rank, then destroy.
    """
    gc.collect()
    if ctx.distributed and dist.is_initialized():
        barrier(ctx)
        dist.destroy_process_group()


@contextmanager
def leaving_group(ctx: DistContext):
    """Leave the process group when the block ends: cleanly (``teardown``: every rank
    waits for the others) after success, at once after an error (a rank that failed never
    reaches the others' barrier; torchrun stops them)."""
    try:
        yield ctx
    except BaseException:
        if ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()
        raise
    teardown(ctx)


def process_context(device: str | None = None, timeout: timedelta = timedelta(minutes=60)) -> DistContext:
    """Where an extraction runs: under torchrun, the process group with each process on its
    LOCAL_RANK's GPU (or the CPU), every wait bounded by ``timeout`` (it covers rank 0's
    merge); otherwise this process on ``device`` (default: the GPU when there is one)."""
    if launched_by_torchrun():
        return init_distributed((device or "auto").split(":")[0], timeout=timeout)
    return DistContext(device=torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))


def on_rank_0(ctx: DistContext, fn, what: str):
    """``fn()`` on rank 0 alone (claiming a folder); when it raises ``MLFOError``, every rank
    raises, so none is left waiting in a collective: rank 0 its own error, the others one
    line naming ``what``. -> ``fn()``'s result on rank 0, None on the others."""
    result, refused = None, None
    if ctx.is_main:
        try:
            result = fn()
        except MLFOError as err:
            refused = err
    if all_reduce_min(ctx, int(refused is None)) == 0:
        raise refused or MLFOError(f"{what}: refused by rank 0 (see its message)")
    return result


def all_gather_objects(ctx: DistContext, obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when single-process."""
    if not (ctx.distributed and dist.is_initialized()):
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def host_values(values: list, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Numbers of the host as a tensor on ``device`` without making the host wait: on a
    GPU a pinned copy queued on the stream (``torch.tensor(..., device=cuda)`` copies from
    pageable memory, which synchronises the stream first)."""
    t = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def all_reduce_min(ctx: DistContext, value: int) -> int:
    if not (ctx.distributed and dist.is_initialized()):
        return value
    t = host_values([value], torch.int64, ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
