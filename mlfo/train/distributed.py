"""Process-group setup and teardown for runs launched by ``torchrun``.

Launch detection follows torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE,
MASTER_ADDR/PORT set by its rendezvous), so the same code runs single-process, on one
node with several GPUs or CPU processes, and across nodes. The gather used by the losses
lives in ``mlfo.utils.distributed``; this module only owns the process group's lifetime.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mlfo.errors import MLFOError


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


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    if not launched_by_torchrun():
        return DistContext(device=resolve_device(device_preference))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    device = resolve_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
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


def all_gather_objects(ctx: DistContext, obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` when single-process."""
    if not (ctx.distributed and dist.is_initialized()):
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_min(ctx: DistContext, value: int) -> int:
    if not (ctx.distributed and dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_object(ctx: DistContext, obj, src: int = 0):
    if not (ctx.distributed and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
