"""The training loop: one process or many (torchrun + DDP), resumable step by step.

Generic over the method it trains (``mlfo.method`` documents the interface): the engine
owns the data loader, the optimizer and its schedule, precision, DDP, checkpoints and
logs; the method owns what a step computes.

Determinism by construction:
- the data order is a pure function of (seed, epoch): a DistributedSampler whose ranks
  interleave one permutation, so the union of the ranks' local batches is the batch a
  single process would see, and a resumed epoch skips exactly the samples it consumed;
- every random choice of an item is keyed by (seed, epoch, video index) in the dataset
  and on the device, never by the rank, the worker or how many steps ran before;
- the learning rate is a pure function of the position in training.
A checkpoint therefore only needs the method's state, the optimizer, the scaler and the
position to continue exactly where a killed run stopped.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mlfo.config import Config, diff_configs, to_dict
from mlfo.data.loading import ResumableDistributedSampler, SkipLog, batch_size_of, build_loader
from mlfo.data.provenance import name_digests
from mlfo.distributed import DistContext, all_gather_objects, all_reduce_min, barrier
from mlfo.errors import MLFOError
from mlfo.train import checkpoint as ckpt_io
from mlfo.train import finite
from mlfo.train.indexing import load_training_index
from mlfo.train.metrics_log import METRICS_FILE, MetricsLogger, truncate_metrics
from mlfo.train.optim import build_optimizer, lr_factor
from mlfo.train.parallel import ParallelMethod, to_channels_last
from mlfo.train.position import layout_note, restore_position, sampler_block
from mlfo.train.run_folder import write_run_config
from mlfo.train.seeding import derive_seed, get_rng_state, seed_everything, seed_worker, set_rng_state
from mlfo.train.skip_report import report_unusable, write_skip_summary

# Settings a resume may change without a word (where the run goes and how long it lasts).
_RESUME_MAY_CHANGE = ("train.out_dir", "train.max_steps", "train.epochs", "train.progress", "train.dist_timeout_min")


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    global_step: int
    epoch: int
    skipped_videos: list[str] = field(default_factory=list)


def learning_rate(cfg: Config, progress: float, steps_per_epoch: int) -> float:
    """LR at ``progress`` epochs into training (fractional): warmup, then the schedule."""
    o = cfg.optim
    return o.lr * lr_factor(progress, cfg.train.epochs, schedule=o.schedule, warmup=o.warmup_epochs,
                            step_length=1 / steps_per_epoch, milestones=o.lr_decay_epochs,
                            decay=o.lr_decay_factor)


def check_runtime(cfg: Config, device: torch.device) -> None:
    """Refuse settings that cannot work on this device, before anything is built."""
    if device.type != "cuda":
        if cfg.train.amp != "off":
            raise MLFOError(
                f"train.amp: {cfg.train.amp} autocast is GPU-only; on CPU mlfo trains in fp32 "
                "(CPU bf16 gave inf Conv3d weight gradients and NaN losses within 15 steps)"
            )
        if cfg.train.sync_bn:
            raise MLFOError("train.sync_bn: SyncBatchNorm needs GPUs (it does not run on CPU)")


def _set_frozen_bn(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _plain_float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Trainer:
    """Builds data, the method and its optimizer from a Config, then ``fit()``s.

    ``method_cls(cfg)`` builds the method (see ``mlfo.method``); it is built after
    seeding, with the same seed on every rank, so every rank starts from the same weights.
    ``index``: what ``mlfo.train.indexing.index_training_data`` returned in this process.
    """

    def __init__(self, cfg: Config, ctx: DistContext, method_cls, out_dir: str | Path | None = None,
                 index=None):
        self.cfg, self.ctx, self.device = cfg, ctx, ctx.device
        self._index = index
        self.out_dir = Path(out_dir or cfg.train.out_dir)
        check_runtime(cfg, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed clip sizes: cuDNN times its kernels once
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(cfg.train.seed)
        method = method_cls(cfg)
        if cfg.train.sync_bn and ctx.distributed:
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        method.to(self.device)
        if cfg.train.channels_last:
            method.to(memory_format=torch.channels_last_3d)
        self.method = method  # the bare module: state dicts, hooks
        self._build_data()
        self._build_optimization()
        self.epoch = 0
        self.samples_in_epoch = 0  # global samples consumed in ``epoch`` (any layout)
        self.global_step = 0
        self.last_checkpoint: Path | None = None
        self.good = finite.GoodCheckpoints()  # what a stop may name as the last good checkpoint
        self.skips = SkipLog(self.records, where=f" (rank {ctx.rank})")

    # -- building ---------------------------------------------------------------------

    def _build_data(self) -> None:
        d, ctx = self.cfg.data, self.ctx
        # Every node leader indexed before joining the group (writing missing demo data first);
        # the others read its cache, in this process (no pool forked once communicators exist).
        barrier(ctx)
        index = self._index if self._index is not None else load_training_index(d, progress=False, workers=1)
        self._index = None
        min_frames = self.method.min_frames
        self.records = index.usable(min_frames=min_frames)
        # Listed in the run folder by fit(), once a resume has been accepted.
        self._list_unusable = lambda: report_unusable(index, min_frames, self.out_dir, d.train)
        self.trained_on = name_digests(r.path for r in self.records)  # (N,) int64, mlfo.data.provenance
        global_batch = d.batch_size * ctx.world_size
        if len(self.records) < global_batch:
            raise MLFOError(f"data.batch_size: {d.batch_size} videos x {ctx.world_size} process(es) "
                            f"exceeds the {len(self.records)} usable videos in {d.train}")
        self.dataset = self.method.train_dataset(self.records)
        self.sampler = ResumableDistributedSampler(self.dataset, ctx.world_size, ctx.rank, self.cfg.train.seed)
        self.loader = build_loader(
            self.dataset, batch_size=d.batch_size, sampler=self.sampler, num_workers=d.num_workers,
            drop_last=True, pin_memory=d.pin_memory and self.device.type == "cuda",
            persistent_workers=d.persistent_workers, prefetch_factor=d.prefetch_factor,
            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, ctx.rank)),
        )
        self.steps_per_epoch = len(self.sampler) // d.batch_size
        self.global_batch = global_batch

    def _build_optimization(self) -> None:
        cfg, ctx = self.cfg, self.ctx
        o = cfg.optim
        self.optimizer = build_optimizer(o.name, list(self.method.parameters()), lr=o.lr,
                                         weight_decay=o.weight_decay, momentum=o.momentum)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
        self.parallel = ParallelMethod(self.method, ctx, compile=cfg.train.compile)

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything for an exact resume; RNG states of every rank (collective call)."""
        rng_states = all_gather_objects(self.ctx, get_rng_state())
        return {
            "config": to_dict(self.cfg),
            "method": self.method.state_dict(),
            "encoder_arch": self.method.encoder.arch,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step": self.samples_in_epoch // self.global_batch,  # batches consumed in ``epoch``
            "global_step": self.global_step,
            "sampler": sampler_block(seed=self.cfg.train.seed, epoch=self.epoch, samples=self.samples_in_epoch,
                                     batch_size=self.cfg.data.batch_size, world_size=self.ctx.world_size,
                                     dataset_size=len(self.dataset)),
            "rng": rng_states,  # list indexed by rank
            "world_size": self.ctx.world_size,
            "trained_on": torch.from_numpy(self.trained_on),  # digests of the training videos' names
        }

    def load_state_dict(self, state: dict, path: Path, changed: list[str] = ()) -> None:
        # The position first: a checkpoint of another data order is refused before any change.
        epoch, samples = restore_position(state, path, seed=self.cfg.train.seed, dataset_size=len(self.dataset))
        ckpt_io.load_module_state(self.method, state["method"], path, changed)
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.global_step, self.samples_in_epoch = epoch, int(state["global_step"]), samples
        note = layout_note(state, path, self.cfg.data.batch_size, self.ctx.world_size)
        if note and self.ctx.is_main:
            print(note, file=sys.stderr)
        if not self._full_batch_left():
            self.epoch, self.samples_in_epoch = self.epoch + 1, 0
        rng = state.get("rng") or []
        if state.get("world_size") == self.ctx.world_size and self.ctx.rank < len(rng):
            set_rng_state(rng[self.ctx.rank])
        elif self.ctx.is_main:
            print(f"mlfo: resuming with {self.ctx.world_size} process(es) instead of "
                  f"{state.get('world_size')}: random states start fresh", file=sys.stderr)

    def _full_batch_left(self) -> bool:
        """Whether the epoch has another full batch for every rank after the samples consumed
        (with a changed layout, the old layout's epoch end is not this one's)."""
        self.sampler.set_start(self.samples_in_epoch)
        return len(self.sampler) >= self.cfg.data.batch_size

    def save(self, name: str) -> Path:
        """Write a checkpoint of a finite state; a non-finite one stops the run unsaved."""
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
            raise MLFOError(f"{path}: not a resumable mlfo pretraining checkpoint")
        changed = [k for k in diff_configs(state.get("config", {}), to_dict(self.cfg)) if k not in _RESUME_MAY_CHANGE]
        self.load_state_dict(state, path, changed)
        if changed and self.ctx.is_main:
            print(f"mlfo: resuming with changed settings: {', '.join(changed)}", file=sys.stderr)
        if isinstance(state.get("trained_on"), torch.Tensor):  # a resume may bring new videos
            self.trained_on = np.union1d(self.trained_on, state["trained_on"].numpy()).astype(np.int64)
        self.last_checkpoint = path
        self.good.saved(path, self.global_step)
        if self.ctx.is_main:
            truncate_metrics(self.out_dir / METRICS_FILE, self.global_step)
            print(f"mlfo: resumed from {path} at epoch {self.epoch}, step {self.global_step}", file=sys.stderr)

    def _write_run_files(self) -> None:
        """The resolved config and the list of unusable videos, in the run folder."""
        if self.ctx.is_main:
            write_run_config(self.out_dir, self.cfg)
            self._list_unusable()
        self._list_unusable = None

    def _stop_if_nonfinite(self, named, what: str, where: str) -> None:
        """Raise on every rank when any rank holds a non-finite tensor among ``named``."""
        bad = finite.nonfinite(named)
        if all_reduce_min(self.ctx, int(not bad)) == 0:
            raise MLFOError(f"{where}: non-finite {what} ({finite.describe(bad) or 'on another rank'}); "
                            f"last good checkpoint: {self.good.describe()}")

    # -- one step -------------------------------------------------------------------------

    def _global_mean(self, loss: float, logs: dict[str, float], n_local: int) -> tuple[float, dict[str, float]]:
        """Loss and logs averaged over the global batch (each rank's values are means over
        its local anchors; weighted by local batch size). Every rank gets the same values,
        so a non-finite loss stops every rank at the same step."""
        if not self.ctx.distributed:
            return loss, logs
        names = list(logs)
        values = torch.tensor([loss, *(logs[k] for k in names), 1.0], dtype=torch.float64, device=self.device)
        values *= n_local
        dist.all_reduce(values)
        values = (values[:-1] / values[-1]).tolist()
        return values[0], dict(zip(names, values[1:]))

    def train_step(self, batch: dict, epoch: int, progress: float) -> dict | None:
        """One optimizer step; returns the log row, or None when the whole batch was skipped."""
        n_local = batch_size_of(batch)
        if all_reduce_min(self.ctx, n_local) == 0:
            return None  # some rank has no decodable video: every rank skips together
        lr = learning_rate(self.cfg, progress, self.steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        forward = self.parallel.for_epoch(epoch)
        self.method.before_forward(epoch, self.global_step)
        x = self.method.prepare(batch, epoch, self.device)
        if self.cfg.train.channels_last:
            x = to_channels_last(x)  # as the weights: no layout conversion inside the convolutions
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            total, logs = forward(x, epoch)
        logs = {k: f for k, v in logs.items() if (f := _plain_float(v)) is not None}
        loss, logs = self._global_mean(float(total.detach()), logs, n_local)
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
        self._stop_if_nonfinite(finite.norm_statistics(self.method), "BatchNorm statistics",
                                f"step {self.global_step + 1} (epoch {epoch})")
        self.good.step_passed()  # the checkpoints written before this step led to a finite one
        row = {} if "loss/total" in logs else {"loss": loss}
        row.update(logs)
        row["lr"] = lr
        row["videos"] = n_local * self.ctx.world_size
        return row

    # -- the loop -----------------------------------------------------------------------

    def fit(self, resume: str | Path | None = None) -> TrainResult:
        from tqdm import tqdm

        cfg, ctx = self.cfg, self.ctx
        if self.steps_per_epoch == 0:
            raise MLFOError(f"data.batch_size: {cfg.data.batch_size} leaves no full batch per process")
        if resume:
            self.resume(resume)
        elif ctx.is_main:
            truncate_metrics(self.out_dir / METRICS_FILE, 0)  # a fresh start: no lines of an earlier one
        self._write_run_files()  # only now: a refused resume leaves the run folder as it was
        if ctx.is_main:
            print(f"mlfo: pretraining {cfg.backbone.name} on {len(self.records)} videos: "
                  f"{self.steps_per_epoch} steps/epoch x {cfg.train.epochs} epochs, "
                  f"{cfg.data.batch_size} x {ctx.world_size} videos/step on {ctx.world_size} process(es) "
                  f"({self.device.type}); run folder {self.out_dir}", file=sys.stderr, flush=True)
        logger = MetricsLogger(self.out_dir if ctx.is_main else None, tensorboard=cfg.train.tensorboard,
                               purge_step=self.global_step + 1)  # TensorBoard drops events after the resume point
        self.method.train()
        if cfg.train.freeze_bn:
            _set_frozen_bn(self.method)
        max_steps = cfg.train.max_steps or None
        samples_per_epoch = self.steps_per_epoch * self.global_batch
        started = time.time()
        stop = False
        try:
            while self.epoch < cfg.train.epochs and not stop:
                epoch = self.epoch
                self.sampler.set_epoch(epoch)
                self.sampler.set_start(self.samples_in_epoch)
                step_in_epoch = self.samples_in_epoch // self.global_batch
                bar = tqdm(total=self.steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch}",
                           disable=not (ctx.is_main and cfg.train.progress), dynamic_ncols=True,
                           file=sys.stderr, leave=False)
                self.skips.write = bar.write
                for batch in self.loader:
                    skipped = self.skips.add(batch["skipped"])
                    progress = epoch + self.samples_in_epoch / samples_per_epoch
                    row = self.train_step(batch, epoch, progress)
                    self.samples_in_epoch += self.global_batch
                    step_in_epoch += 1
                    bar.update(1)
                    if row is None:
                        continue
                    self.global_step += 1
                    row = {"epoch": epoch, "step": self.global_step, "step_in_epoch": step_in_epoch,
                           **row, "skipped": skipped, "time": round(time.time() - started, 3)}
                    logger.log(row)
                    bar.set_postfix(loss=f"{row.get('loss/total', row.get('loss', 0.0)):.3f}", refresh=False)
                    if max_steps and self.global_step >= max_steps:
                        stop = True
                        break
                    if cfg.checkpoint.every_steps and self.global_step % cfg.checkpoint.every_steps == 0:
                        self.save(ckpt_io.LAST)
                bar.close()
                if stop and self._full_batch_left():
                    self.save(ckpt_io.LAST)
                    break
                self.epoch, self.samples_in_epoch = epoch + 1, 0
                self.save(ckpt_io.LAST)
                every = cfg.checkpoint.every_epochs
                if every and (self.epoch % every == 0 or self.epoch == cfg.train.epochs):
                    self.save(ckpt_io.epoch_checkpoint_name(self.epoch))
                    if ctx.is_main:
                        ckpt_io.prune_epoch_checkpoints(self.out_dir, cfg.checkpoint.keep)
                if ctx.is_main and cfg.train.progress:
                    print(f"mlfo: epoch {epoch} done, step {self.global_step}, "
                          f"{time.time() - started:.0f} s", file=sys.stderr)
        finally:
            logger.close()
        skipped = sorted({p for paths in all_gather_objects(ctx, self.skips.paths) for p in paths})
        if ctx.is_main:
            write_skip_summary(self.out_dir, skipped)
        return TrainResult(self.out_dir, self.last_checkpoint, self.global_step, self.epoch, skipped)
