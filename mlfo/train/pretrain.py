"""``pretrain(cfg)``: MLFO pretraining in this process, joining torchrun's process group
when launched by it. The engine is generic; this is where it meets the MLFO method."""

from __future__ import annotations

from datetime import timedelta

import torch.distributed as dist

from mlfo.config import Config
from mlfo.distributed import all_reduce_min, init_distributed, teardown
from mlfo.errors import MLFOError
from mlfo.method import MLFOMethod
from mlfo.train import checkpoint as ckpt_io
from mlfo.train.engine import Trainer, TrainResult
from mlfo.train.indexing import index_training_data
from mlfo.train.run_folder import claim_run_folder


def pretrain(cfg: Config, resume: str | None = None, overwrite: bool = False) -> TrainResult:
    """Run pretraining; ``resume``: None, ``"auto"`` (``out_dir/last.pt`` if present) or a
    checkpoint path; ``overwrite``: start again in a folder that holds a run. Rank 0 owns
    the run folder for the whole run (``mlfo.train.run_folder``)."""
    index = index_training_data(cfg)  # before the process group: see mlfo.train.indexing
    ctx = init_distributed(cfg.train.device, timeout=timedelta(minutes=cfg.train.dist_timeout_min))
    trainer = folder = None
    ok = False
    try:
        refused = None
        if ctx.is_main:
            try:
                folder = claim_run_folder(cfg.train.out_dir, resume, overwrite)
            except MLFOError as err:
                refused = err
        if all_reduce_min(ctx, int(refused is None)) == 0:  # every rank stops, none hangs
            raise refused or MLFOError(f"{cfg.train.out_dir}: refused by rank 0 (see its message)")
        resume_path = ckpt_io.find_resume_path(resume, cfg.train.out_dir)
        trainer = Trainer(cfg, ctx, MLFOMethod, index=index)
        result = trainer.fit(resume_path)
        ok = True
        return result
    finally:
        # Drop the DDP reducer and its buffers before leaving the group (see teardown).
        del trainer
        if folder is not None:
            folder.release()
        if ok:
            teardown(ctx)
        elif ctx.distributed and dist.is_initialized():
            dist.destroy_process_group()
