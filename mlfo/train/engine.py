"""The training loop: one process or many (torchrun + DDP), resumable step by step.

Generic over the method it trains (``mlfo.train.interface.Method``) and configured by
its own ``TrainerConfig``: the engine owns the data loader, the optimizer and its
schedule, precision, DDP, checkpoints and logs; the method owns what a step computes.

Determinism by construction:
- the data order is a pure function of (seed, epoch): a DistributedSampler whose ranks
  interleave one permutation, so the union of the ranks' local batches is the batch a
  single process would see, and a resumed epoch skips exactly the samples it consumed;
- every random choice of an item is keyed by (seed, epoch, index) in the dataset and on
  the device, never by the rank, the worker or how many steps ran before;
- the learning rate is a pure function of the position in training.
A checkpoint therefore only needs the method's state, the optimizer, the scaler and the
position to continue exactly where a killed run stopped.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from mlfo.data.loading import ResumableDistributedSampler, SkipBound, SkipLog, batch_size_of, build_loader
from mlfo.distributed import DistContext, all_gather_objects, all_reduce_min, barrier, host_values
from mlfo.errors import MLFOError
from mlfo.train import checkpoint as ckpt_io
from mlfo.train import finite
from mlfo.train.interface import Method, TrainerConfig, check_runtime
from mlfo.train.metrics_log import METRICS_FILE, MetricsLogger, truncate_metrics
from mlfo.train.optim import build_optimizer, lr_factor, set_learning_rates
from mlfo.train.parallel import ParallelMethod, broadcast_buffers, to_channels_last
from mlfo.train.position import layout_note, restore_position, sampler_block
from mlfo.train.seeding import derive_seed, get_rng_state, seed_everything, seed_worker, set_rng_state
from mlfo.train.skip_report import write_skip_summary

__all__ = ["Method", "Trainer", "TrainerConfig", "TrainResult"]


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    global_step: int
    epoch: int
    skipped_videos: list[str] = field(default_factory=list)


def learning_rate_factor(cfg: TrainerConfig, progress: float, steps_per_epoch: int) -> float:
    """The schedule at ``progress`` epochs into training (fractional): warmup, then decay;
    every param group's rate is its base rate times this (``optim.set_learning_rates``)."""
    return lr_factor(progress, cfg.epochs, schedule=cfg.schedule, warmup=cfg.warmup_epochs,
                     step_length=1 / steps_per_epoch, milestones=cfg.milestones, decay=cfg.decay)


def _set_frozen_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class Trainer:
    """Builds the method, its data and its optimizer, then ``fit()``s.

    ``build_method()`` is called after seeding, with the same seed on every rank, so every
    rank starts from the same weights; ``records_for(method)``: the usable training records
    (in the group: every rank calls it after a barrier).
    """

    def __init__(self, cfg: TrainerConfig, ctx: DistContext, build_method: Callable[[], Method],
                 records_for: Callable[[Method], Sequence], out_dir: str | Path):
        self.cfg, self.ctx, self.device = cfg, ctx, ctx.device
        self.out_dir = Path(out_dir)
        check_runtime(cfg, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed clip sizes: cuDNN times its kernels once
        seed_everything(cfg.seed)
        method = build_method()
        if cfg.sync_bn and ctx.distributed:
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        method.to(self.device)
        if cfg.channels_last:
            method.to(memory_format=torch.channels_last_3d)
        self.method = method  # the bare module: state dicts, hooks
        barrier(ctx)
        self._build_data(records_for(method))
        self._build_optimization()
        self.epoch = 0
        self.samples_in_epoch = 0  # global samples consumed in ``epoch`` (any layout)
        self.global_step = 0
        self.step_epoch = 0  # the epoch of the last step taken
        self.last_checkpoint: Path | None = None
        self.resumed = False
        self.good = finite.GoodCheckpoints()  # what a stop may name as the last good checkpoint
        self.skips = SkipLog(self.records, where=f" (rank {ctx.rank})")

    # -- building ---------------------------------------------------------------------

    def _build_data(self, records: Sequence) -> None:
        cfg, ctx = self.cfg, self.ctx
        self.records = records
        self.global_batch = cfg.batch_size * ctx.world_size
        if len(records) < self.global_batch:
            raise MLFOError(f"batch size: {cfg.batch_size} x {ctx.world_size} process(es) exceeds the "
                            f"{len(records)} usable training videos")
        self.dataset = self.method.train_dataset(records)
        self.sampler = ResumableDistributedSampler(self.dataset, ctx.world_size, ctx.rank, cfg.seed)
        self.loader = build_loader(
            self.dataset, batch_size=cfg.batch_size, sampler=self.sampler, num_workers=cfg.num_workers,
            drop_last=True, pin_memory=cfg.pin_memory and self.device.type == "cuda",
            persistent_workers=cfg.persistent_workers, prefetch_factor=cfg.prefetch_factor,
            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(derive_seed(cfg.seed, "loader", ctx.rank)),
            replace=self.sampler.replacement(),  # constant shapes: a failed video is replaced
        )
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        self.skip_bound = SkipBound(cfg.max_skipped_share, self.steps_per_epoch * self.global_batch, cfg.data_name)

    def _build_optimization(self) -> None:
        cfg = self.cfg
        groups = self.method.param_groups()
        self.base_lrs = [g["lr"] for g in groups]
        self.optimizer = build_optimizer(cfg.optimizer, groups, lr=self.base_lrs[0],
                                         weight_decay=cfg.weight_decay, momentum=cfg.momentum)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.parallel = ParallelMethod(self.method, self.ctx, compile=cfg.compile)

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything for an exact resume; RNG states of every rank (collective call)."""
        rng_states = all_gather_objects(self.ctx, get_rng_state())
        return {
            **self.method.extra_state(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.samples_in_epoch // self.global_batch,  # batches consumed in ``epoch``
            "global_step": self.global_step,
            "sampler": sampler_block(seed=self.cfg.seed, epoch=self.epoch, samples=self.samples_in_epoch,
                                     batch_size=self.cfg.batch_size, world_size=self.ctx.world_size,
                                     dataset_size=len(self.dataset)),
            "rng": rng_states,  # list indexed by rank
            "world_size": self.ctx.world_size,
        }

    def load_state_dict(self, state: dict, path: Path) -> None:
        # The position first: a checkpoint of another data order is refused before any change.
        epoch, samples = restore_position(state, path, seed=self.cfg.seed, dataset_size=len(self.dataset))
        notes = self.method.load_extra_state(state, path)
        ckpt_io.load_module_state(self.method, state["method"], path, notes)  # one line on a mismatch
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.global_step, self.samples_in_epoch = epoch, int(state["global_step"]), samples
        notes.append(layout_note(state, path, self.cfg.batch_size, self.ctx.world_size))
        if not self._full_batch_left():
            self.epoch, self.samples_in_epoch = self.epoch + 1, 0
        rng = state.get("rng") or []
        if state.get("world_size") == self.ctx.world_size and self.ctx.rank < len(rng):
            set_rng_state(rng[self.ctx.rank])
        else:
            notes.append(f"mlfo: resuming with {self.ctx.world_size} process(es) instead of "
                         f"{state.get('world_size')}: random states start fresh")
        for note in notes:
            if note and self.ctx.is_main:
                print(note, file=sys.stderr)

    def _full_batch_left(self) -> bool:
        """Whether the epoch has another full batch for every rank after the samples consumed
        (with a changed layout, the old layout's epoch end is not this one's)."""
        self.sampler.set_start(self.samples_in_epoch)
        return len(self.sampler) >= self.cfg.batch_size

    def save(self, name: str) -> Path:
        """Write a checkpoint of a trained, finite state; a non-finite one stops the run unsaved."""
        if self.global_step == 0:
            self._write_skips()
            raise MLFOError(f"{self.out_dir}: epoch {self.epoch} ended without a single optimizer step "
                            f"(every batch was skipped: {len(self.skips)} unreadable video(s) on rank "
                            f"{self.ctx.rank}, see skipped_videos.txt); nothing was saved")
        self._check_statistics()
        self._stop_if_nonfinite(finite.training_state(self.method, self.optimizer), f"state, not saved as {name}",
                                f"step {self.global_step}")
        state = self.state_dict()  # every rank takes part (RNG gather)
        path = self.out_dir / name
        failed = None
        if self.ctx.is_main:
            try:
                ckpt_io.atomic_torch_save(state, path)
            except MLFOError as err:  # e.g. a full disk: every rank stops in one line, together
                failed = err
        if all_reduce_min(self.ctx, int(failed is None)) == 0:
            raise failed or MLFOError(f"{path}: not written by rank 0 (see its message)")
        if name == ckpt_io.LAST:
            self.last_checkpoint = path
        self.good.saved(path, self.global_step)
        return path

    def resume(self, path: str | Path) -> None:
        path = Path(path)
        state = ckpt_io.load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        if not {"method", "optimizer", "global_step", "sampler"} <= set(state):
            raise MLFOError(f"{path}: not a resumable checkpoint of this kind of run")
        self.load_state_dict(state, path)
        self.last_checkpoint = path
        self.good.saved(path, self.global_step)
        self.resumed = True
        if self.ctx.is_main:
            truncate_metrics(self.out_dir / METRICS_FILE, self.global_step)
            print(f"mlfo: resumed from {path} at epoch {self.epoch}, step {self.global_step}", file=sys.stderr)

    # -- finite checks --------------------------------------------------------------------

    def _stop_if_nonfinite(self, named, what: str, where: str) -> None:
        """Raise on every rank when any rank holds a non-finite tensor among ``named``."""
        bad = finite.nonfinite(named)
        if all_reduce_min(self.ctx, int(not bad)) == 0:
            raise MLFOError(f"{where}: non-finite {what} ({finite.describe(bad) or 'on another rank'}); "
                            f"last good checkpoint: {self.good.describe()}")

    def _check_statistics(self) -> None:
        """The normalisation statistics (a finite loss can hide inf running variances): before
        every save and every ``finite_check_steps``; what passed proves the checkpoints before it."""
        self._stop_if_nonfinite(finite.norm_statistics(self.method), "BatchNorm statistics",
                                f"step {self.global_step} (epoch {self.step_epoch})")
        self.good.step_passed()

    # -- one step -------------------------------------------------------------------------

    def _global_mean(self, total: torch.Tensor, logs: dict, failed: int) -> tuple[float, dict[str, float], int]:
        """Loss and logs averaged over the global batch (each rank's values are means over
        its local items, and every rank holds the same number: constant shapes), and the
        videos that failed to decode in this step on all ranks, in one all-reduce and one
        host read. Every rank gets the same values, so a non-finite loss or too many
        failed videos stop every rank at the same step."""
        on_device = {k: v for k, v in logs.items() if isinstance(v, torch.Tensor)}
        on_host = {k: float(v) for k, v in logs.items() if not isinstance(v, torch.Tensor) and _is_number(v)}
        names = [*on_device, *on_host]
        values = torch.stack([total.detach(), *on_device.values()]).double()  # (1 + D,)
        if not self.ctx.distributed:
            numbers = values.tolist() + list(on_host.values())
            return numbers[0], dict(zip(names, numbers[1:])), failed
        values = torch.cat([values, host_values([*on_host.values(), failed], torch.float64, values.device)])
        dist.all_reduce(values)
        numbers = values.tolist()
        means = [v / self.ctx.world_size for v in numbers[:-1]]
        return means[0], dict(zip(names, means[1:])), int(numbers[-1])

    def train_step(self, batch: dict, epoch: int, progress: float) -> dict | None:
        """One optimizer step; returns the log row, or None when the whole batch was skipped."""
        n_local = batch_size_of(batch)  # the same on every rank at every step (constant shapes)
        factor = learning_rate_factor(self.cfg, progress, self.steps_per_epoch)
        set_learning_rates(self.optimizer, self.base_lrs, factor)  # the one place a rate is set
        forward = self.parallel.for_epoch(epoch)
        self.method.before_forward(epoch, self.global_step)
        x = self.method.prepare(batch, epoch, self.device)
        if self.cfg.channels_last:  # as the weights: no layout conversion inside the convolutions
            x = tuple(map(to_channels_last, x)) if isinstance(x, tuple) else to_channels_last(x)
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            total, logs = forward(x, epoch)
        loss, logs, failed = self._global_mean(total, logs, len(batch["skipped"]))
        self.skip_bound.add(epoch, failed)
        if not math.isfinite(loss):
            bad = [k for k, v in logs.items() if not math.isfinite(v) and k != "loss/total"]
            raise MLFOError(
                f"step {self.global_step + 1} (epoch {epoch}): non-finite loss "
                f"({', '.join(bad) or 'total'}); last good checkpoint: {self.good.describe()}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.method.before_optimizer_step(epoch)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        row = {} if "loss/total" in logs else {"loss": loss}
        row.update(logs)
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["videos"] = n_local * self.ctx.world_size
        row["skipped"] = failed  # videos replaced in this step, on every rank
        return row

    # -- the loop -----------------------------------------------------------------------

    def fit(self, resume: str | Path | None = None) -> TrainResult:
        """Train to the end (or ``max_steps``); ``resume``: a checkpoint to continue first."""
        cfg, ctx = self.cfg, self.ctx
        if self.steps_per_epoch == 0:
            raise MLFOError(f"batch size: {cfg.batch_size} leaves no full batch per process")
        if resume:
            self.resume(resume)
        elif ctx.is_main and not self.resumed:
            truncate_metrics(self.out_dir / METRICS_FILE, 0)  # a fresh start: no lines of an earlier one
        if ctx.is_main:
            print(f"mlfo: {cfg.name} on {len(self.records)} videos: "
                  f"{self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, "
                  f"{cfg.batch_size} x {ctx.world_size} videos/step on {ctx.world_size} process(es) "
                  f"({self.device.type}); run folder {self.out_dir}", file=sys.stderr, flush=True)
        logger = MetricsLogger(self.out_dir if ctx.is_main else None, tensorboard=cfg.tensorboard,
                               purge_step=self.global_step + 1)  # TensorBoard drops events after the resume point
        self.method.train()
        if cfg.freeze_bn:
            _set_frozen_bn(self.method)
        started = time.time()
        try:
            while self.epoch < cfg.epochs:
                if self._run_epoch(logger, started):
                    break
        finally:
            logger.close()
        broadcast_buffers(self.method, ctx)  # every rank ends with rank 0's model (see docs/design.md)
        return TrainResult(self.out_dir, self.last_checkpoint, self.global_step, self.epoch, self._write_skips())

    def _run_epoch(self, logger: MetricsLogger, started: float) -> bool:
        """The rest of ``self.epoch``; True when ``max_steps`` stopped the run."""
        from tqdm import tqdm

        cfg, epoch = self.cfg, self.epoch
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(self.samples_in_epoch)
        step_in_epoch = self.samples_in_epoch // self.global_batch
        samples_per_epoch = self.steps_per_epoch * self.global_batch
        bar = tqdm(total=self.steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch}",
                   disable=not (self.ctx.is_main and cfg.progress), dynamic_ncols=True, file=sys.stderr, leave=False)
        self.skips.write = bar.write
        stop = False
        for batch in self.loader:
            self.skips.add(batch["skipped"])  # this rank's: named in the log and skipped_videos.txt
            row = self.train_step(batch, epoch, epoch + self.samples_in_epoch / samples_per_epoch)
            self.samples_in_epoch += self.global_batch
            step_in_epoch += 1
            bar.update(1)
            if row is None:
                continue
            self.global_step, self.step_epoch = self.global_step + 1, epoch
            logger.log({"epoch": epoch, "step": self.global_step, "step_in_epoch": step_in_epoch,
                        **row, "time": round(time.time() - started, 3)})
            bar.set_postfix(loss=f"{row.get('loss/total', row.get('loss', 0.0)):.3f}", refresh=False)
            if cfg.max_steps and self.global_step >= cfg.max_steps:
                stop = True
                break
            if cfg.finite_check_steps and self.global_step % cfg.finite_check_steps == 0:
                self._check_statistics()
            if cfg.every_steps and self.global_step % cfg.every_steps == 0:
                self.save(ckpt_io.LAST)
        bar.close()
        if stop and self._full_batch_left():
            self.save(ckpt_io.LAST)
            return True
        self._end_epoch(epoch, started)
        return stop

    def _end_epoch(self, epoch: int, started: float) -> None:
        cfg = self.cfg
        self.epoch, self.samples_in_epoch = epoch + 1, 0
        self.save(ckpt_io.LAST)
        every = cfg.every_epochs
        if every and (self.epoch % every == 0 or self.epoch == cfg.epochs):
            self.save(ckpt_io.epoch_checkpoint_name(self.epoch))
            if self.ctx.is_main:
                ckpt_io.prune_epoch_checkpoints(self.out_dir, cfg.keep)
        if self.ctx.is_main and cfg.progress:
            print(f"mlfo: epoch {epoch} done, step {self.global_step}, "
                  f"{time.time() - started:.0f} s", file=sys.stderr)

    def _write_skips(self) -> list[str]:
        """Every rank's unreadable videos, written by rank 0 to ``skipped_videos.txt`` (collective)."""
        skipped = sorted({p for paths in all_gather_objects(self.ctx, self.skips.paths) for p in paths})
        if self.ctx.is_main:
            write_skip_summary(self.out_dir, skipped)
        return skipped


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
