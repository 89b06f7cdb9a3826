"""How the engine calls the method for speed and across processes: the input's memory
layout, the compiled parts, and DDP.

DDP has to know which parameters a step leaves without a gradient. Searching the
autograd graph for them at every step (``find_unused_parameters=True``) costs a graph
traversal per step. Here every wrap is a ``static_graph`` DDP instead: it finds them in
its first step and trusts that set afterwards. The set changes only where the method
says (``gradient_phase(epoch)``: epochs of equal phase give gradients to the same
parameters, e.g. heads whose loss starts late), and the wrap is rebuilt there, so DDP
never searches again within a phase.

Buffers are not broadcast at every step (``forward_sync_buffers=False``): training never
reads another rank's buffers. BatchNorm in training mode normalises with batch
statistics, and only rank 0's running statistics are saved; the method's other buffers
(MLFO's prototype queue) are identical on every rank by construction. Rank 0's own
computation is the same either way (a broadcast from rank 0 leaves its buffers alone).
Where every rank must hold the same model - the evaluation after a fine-tune, which
uses the running statistics - ``broadcast_buffers`` copies rank 0's once.
"""

from __future__ import annotations

import gc

import torch
import torch.distributed as dist
from torch import nn

from mlfo.distributed import DistContext


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(..., C, T, H, W) -> the same values with C innermost in memory: ``channels_last_3d``
    for a 5-D tensor, and for more leading dims a layout whose flattening to 5-D still is
    (the method flattens (clips, videos) into one batch dim)."""
    if x.dim() < 5:
        return x
    k = x.dim() - 4  # position of C
    lead = range(k)
    stored = x.permute(*lead, k + 1, k + 2, k + 3, k).contiguous()  # (..., T, H, W, C) in memory
    return stored.permute(*lead, k + 3, k, k + 1, k + 2)  # viewed as (..., C, T, H, W) again


class ParallelMethod:
    """The method as a training step calls it: itself in one process, DDP across several.

    ``compile=True`` calls ``method.compile()``: a method compiles what suits the
    compiler (MLFO: its model, not its objective's host synchronisations and collectives).
    """

    def __init__(self, method: nn.Module, ctx: DistContext, compile: bool = False):
        self.method, self.ctx = method, ctx
        self._ddp: nn.Module | None = None
        self._phase = None
        if compile:
            method.compile()

    def for_epoch(self, epoch: int) -> nn.Module:
        if not self.ctx.distributed:
            return self.method
        phase = self.method.gradient_phase(epoch)
        if self._ddp is None or phase != self._phase:
            self.release()  # one reducer at a time: the old one's hooks go with it
            device = self.ctx.device
            self._ddp = nn.parallel.DistributedDataParallel(
                self.method, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True,
                forward_sync_buffers=False)
            self._phase = phase
        return self._ddp

    def release(self) -> None:
        """Drop the DDP wrapper (its reducer and buffers) now, not at some later collection."""
        self._ddp = None
        gc.collect()


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Every rank's buffers := rank 0's (one broadcast per buffer; nothing in one process)."""
    if not (ctx.distributed and dist.is_initialized()):
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
