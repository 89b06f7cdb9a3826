"""``pretrain(cfg)``: MLFO pretraining in this process, joining torchrun's process group
when launched by it. The engine is generic; this is where it meets the MLFO method: MLFO's
``Config`` becomes the engine's ``TrainerConfig``, its data the training records."""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from mlfo.config import Config
from mlfo.data.sampling import mlfo_min_frames
from mlfo.distributed import DistContext, init_distributed, teardown
from mlfo.errors import MLFOError
from mlfo.method import MLFOMethod
from mlfo.train import checkpoint as ckpt_io
from mlfo.train.engine import Trainer, TrainerConfig, TrainResult, check_runtime
from mlfo.train.indexing import index_training_data, load_training_index
from mlfo.train.run_folder import claim_on_rank_0, write_run_config
from mlfo.train.skip_report import report_unusable


def trainer_config(cfg: Config) -> TrainerConfig:
    """MLFO's settings as the engine's: the run, the optimizer, the loader, the saves."""
    t, o, d, c = cfg.train, cfg.optim, cfg.data, cfg.checkpoint
    return TrainerConfig(
        epochs=t.epochs, batch_size=d.batch_size, seed=t.seed, max_steps=t.max_steps,
        name=f"pretraining {cfg.backbone.name}", optimizer=o.name, weight_decay=o.weight_decay,
        momentum=o.momentum, schedule=o.schedule, warmup_epochs=o.warmup_epochs, milestones=o.lr_decay_epochs,
        decay=o.lr_decay_factor, amp=t.amp, channels_last=t.channels_last, compile=t.compile, sync_bn=t.sync_bn,
        freeze_bn=t.freeze_bn, num_workers=d.num_workers, pin_memory=d.pin_memory,
        persistent_workers=d.persistent_workers, prefetch_factor=d.prefetch_factor, every_steps=c.every_steps,
        max_skipped_share=d.max_skipped_share, data_name=str(d.train),
        every_epochs=c.every_epochs, keep=c.keep, finite_check_steps=c.finite_check_steps, progress=t.progress,
        tensorboard=t.tensorboard)


def _training_records(cfg: Config, ctx: DistContext, index, method: MLFOMethod) -> list:
    """The usable training videos. Every node leader
    indexed before joining the group; the others read its cache here, in this process (no
    pool forked once communicators exist)."""
    d = cfg.data
    index = index if index is not None else load_training_index(d, progress=False, workers=1)
    records = index.usable(min_frames=method.min_frames)  # rank 0 lists the others once a resume is accepted
    if len(records) < d.batch_size * ctx.world_size:
        raise MLFOError(f"data.batch_size: {d.batch_size} videos x {ctx.world_size} process(es) "
                        f"exceeds the {len(records)} usable videos in {d.train}")
    return records


def build_trainer(cfg: Config, ctx: DistContext, index=None, out_dir: str | Path | None = None) -> Trainer:
    """The engine set up for MLFO pretraining; ``index``: what ``index_training_data``
    returned in this process (None: read the cache)."""
    out_dir = Path(out_dir or cfg.train.out_dir)
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    return Trainer(trainer_config(cfg), ctx, functools.partial(MLFOMethod, cfg),
                   functools.partial(_training_records, cfg, ctx, index), out_dir)


def pretrain(cfg: Config, resume: str | None = None, overwrite: bool = False) -> TrainResult:
    """Run pretraining; ``resume``: None, ``"auto"`` (``out_dir/last.pt`` if present) or a
    checkpoint path; ``overwrite``: start again in a folder that holds a run. Rank 0 owns
    the run folder for the whole run (``mlfo.train.run_folder``)."""
    index = index_training_data(cfg)  # before the process group: see mlfo.train.indexing
    ctx = init_distributed(cfg.train.device, timeout=timedelta(minutes=cfg.train.dist_timeout_min))
    trainer = folder = None
    ok = False
    try:
        check_runtime(trainer_config(cfg), ctx.device)  # before anything is written
        folder = claim_on_rank_0(ctx, cfg.train.out_dir, resume, overwrite)
        resume_path = ckpt_io.find_resume_path(resume, cfg.train.out_dir)
        trainer = build_trainer(cfg, ctx, index=index)
        if resume_path:
            trainer.resume(resume_path)
        if ctx.is_main:  # after a resume was accepted: a refused one leaves the folder's config alone
            write_run_config(trainer.out_dir, cfg)  # never over a config.yaml of the user's
            report_unusable(index, mlfo_min_frames(cfg.data.clip_len), trainer.out_dir, cfg.data.train)
        result = trainer.fit()
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
