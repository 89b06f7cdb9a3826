"""``pretrain(cfg)``: MLFO pretraining in this process, joining torchrun's process group
when launched by it. The engine is generic; this is where it meets the MLFO method."""

from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist

from mlfo.config import Config
from mlfo.distributed import init_distributed, teardown
from mlfo.method import MLFOMethod
from mlfo.train import checkpoint as ckpt_io
from mlfo.train.engine import Trainer, TrainResult
from mlfo.train.indexing import index_training_data


def pretrain(cfg: Config, resume: str | None = None) -> TrainResult:
    """Run pretraining; ``resume``: None, ``"auto"`` (``out_dir/last.pt`` if present) or a
    checkpoint path."""
    index = index_training_data(cfg)  # before the process group: see mlfo.train.indexing
    ctx = init_distributed(cfg.train.device, timeout=timedelta(minutes=cfg.train.dist_timeout_min))
    trainer = None
    ok = False
    try:
        resume_path = ckpt_io.find_resume_path(resume, cfg.train.out_dir)
        trainer = Trainer(cfg, ctx, MLFOMethod, index=index)
        result = trainer.fit(resume_path)
        ok = True
        return result
    finally:
        # Drop the DDP reducer and its buffers before leaving the group (see teardown).
        del trainer
        if ok:
            teardown(ctx)
        elif ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()
