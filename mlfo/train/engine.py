"""The pretraining loop: one process or many (torchrun + DDP), resumable step by step.

Determinism by construction:
- the data order is a pure function of (seed, epoch) (a DistributedSampler whose ranks
  interleave one permutation, so the union of the ranks' local batches is the batch a
  single process would see), and a resumed epoch skips its consumed batches;
- geometry (crop/flip) is keyed by (seed, epoch, video index) inside the dataset and
  colour by the same key on the training device, so no augmentation depends on the
  rank, the worker or how many steps ran before;
- the learning rate is a pure function of the position in training.
A checkpoint therefore only needs the weights, the optimizer, the scaler, the prototype
queue and the position to continue exactly where a killed run stopped.
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
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mlfo.config import Config, config_from_dict, diff_configs, save_config, to_dict
from mlfo.data.datasets import PretrainDataset, collate_skip_none
from mlfo.data.transforms import ColorAugment, normalize_clips
from mlfo.errors import MLFOError, VideoDecodeError
from mlfo.train import checkpoint as ckpt_io
from mlfo.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_min,
    barrier,
    init_distributed,
    teardown,
)
from mlfo.train.metrics_log import METRICS_FILE, MetricsLogger, truncate_metrics
from mlfo.train.seeding import derive_seed, get_rng_state, seed_everything, seed_worker, set_rng_state

# Keys the colour stream is derived from, so it never collides with the dataset's own.
_COLOR_STREAM = 0xC0102


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that yields ``(epoch, index)`` and can start mid-epoch.

    Rank r takes positions r, r + W, r + 2W, ... of one permutation seeded by
    (seed, epoch), so W ranks with local batch b together cover exactly the global batch
    of a single process with batch W * b. ``start`` skips the first samples of this
    rank's share (the batches a resumed run already consumed). The epoch travels with
    every index so that persistent DataLoader workers need no state update.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())[self.start :]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)


class EpochKeyedDataset(Dataset):
    """Wraps PretrainDataset: takes ``(epoch, index)``, keys the dataset's randomness on
    the epoch, and turns a video that fails to decode into a ``{"skipped": index}``
    marker (so the loader can report its path) instead of an exception."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        try:
            item = self.dataset[index]
        except VideoDecodeError:
            item = None
        if item is None:
            return {"skipped": index}
        return item


class KeyedPretrainDataset(PretrainDataset):
    """PretrainDataset whose per-item stream is keyed by (seed, epoch, index) only.

    The data module also mixes the rank into the key; the index alone is already unique
    across ranks within an epoch, and leaving the rank out makes a W-process run see the
    very clips a single process sees (the DDP equivalence test relies on it).
    """

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, index])


def collate_with_skips(batch: list[dict]) -> dict:
    """Stack the good items (via the dataset's collate); list the skipped indices."""
    skipped = [b["skipped"] for b in batch if "skipped" in b]
    good = [b for b in batch if "skipped" not in b]
    out = collate_skip_none(good) if good else {}
    out["skipped_indices"] = skipped
    return out


# ---------------------------------------------------------------------------------------
# Schedule
# ---------------------------------------------------------------------------------------


def build_color_augment(d) -> ColorAugment | None:
    """The colour augmentation a DataConfig asks for (None when switched off)."""
    if not d.color_augment:
        return None
    return ColorAugment(per_frame_color=d.per_frame_color, p_gray=d.color_p_gray, brightness=d.color_strength,
                        contrast=d.color_strength, saturation=d.color_strength, hue=d.color_hue)


def learning_rate(cfg: Config, progress: float) -> float:
    """LR at ``progress`` epochs into training (fractional): warmup, then the schedule."""
    o = cfg.optim
    if o.warmup_epochs > 0 and progress < o.warmup_epochs:
        return o.lr * (progress + 1e-8) / o.warmup_epochs
    if o.schedule == "step":
        passed = sum(1 for e in o.lr_decay_epochs if progress >= e)
        return o.lr * o.lr_decay_factor**passed
    if o.schedule == "cosine":
        span = max(cfg.train.epochs - o.warmup_epochs, 1e-8)
        t = min(max(progress - o.warmup_epochs, 0.0) / span, 1.0)
        return o.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    return o.lr


def build_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


# ---------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------


class ModelWithObjective(nn.Module):
    """The model and its objective as one module, so that DDP sees the loss as the output.

    With a loss switched off (say timestamp matching at one level), the model still
    returns that head's embeddings; DDP, wrapping the model alone, would find those heads
    "used" but never reached by the backward pass and stop. Tracing from the loss, it
    finds them unused instead.
    """

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, clips: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict]:
        out = self.model(clips, with_graph=self.objective.graph_active(epoch))
        return self.objective(out, epoch)


@dataclass
class PretrainResult:
    out_dir: Path
    last_checkpoint: Path | None
    global_step: int
    epoch: int
    skipped_videos: list[str] = field(default_factory=list)


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


def _set_frozen_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _plain_float(v) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class Pretrainer:
    """Builds data, model, objective and optimizer from a Config, then ``fit()``s."""

    def __init__(self, cfg: Config, ctx: DistContext, out_dir: str | Path | None = None):
        self.cfg = cfg
        self.ctx = ctx
        self.device = ctx.device
        self.out_dir = Path(out_dir or cfg.train.out_dir)
        check_runtime(cfg, self.device)
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
        self._build_data()
        self._build_model()
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.last_checkpoint: Path | None = None
        self.skipped: list[str] = []  # paths of videos this rank failed to decode

    # -- building ---------------------------------------------------------------------

    def _build_data(self) -> None:
        from mlfo.data.sources import load_index

        d, ctx = self.cfg.data, self.ctx
        if not d.train:
            raise MLFOError("data.train: no training data given (a CSV, a folder of videos or a dataset root)")
        source = Path(d.train)
        if d.generate_demo and not source.exists():
            if ctx.is_main:
                from mlfo.data.demo import generate_demo_dataset

                print(f"mlfo: writing the demo dataset to {source.parent} ...", file=sys.stderr, flush=True)
                generate_demo_dataset(source.parent, seed=0)
            barrier(ctx)

        def load():
            return load_index(str(source), fmt=d.fmt, split=d.split, subset="train", split_dir=d.split_dir,
                              backend=d.backend, progress=ctx.is_main)

        # Rank 0 scans first (and writes the scan cache) so the others read the cache.
        index = load() if ctx.is_main else None
        barrier(ctx)
        if index is None:
            index = load()
        min_frames = 2 * d.clip_len  # videos with at most 2T frames cannot give A, B, G
        self.records = index.usable(min_frames=min_frames)
        unusable = len(index.records) - len(self.records)
        if ctx.is_main and unusable:
            print(f"mlfo: {unusable} of {len(index.records)} videos unusable (unreadable or "
                  f"at most {min_frames} frames); see `mlfo data scan {d.train}`", file=sys.stderr)
        global_batch = d.batch_size * ctx.world_size
        if len(self.records) < global_batch:
            raise MLFOError(f"data.batch_size: {d.batch_size} videos x {ctx.world_size} process(es) "
                            f"exceeds the {len(self.records)} usable videos in {d.train}")
        self.dataset = KeyedPretrainDataset(self.records, clip_len=d.clip_len, r_max=d.r_max, crop_size=d.crop_size,
                                       crop_scale=tuple(d.crop_scale), backend=d.backend, seed=self.cfg.train.seed)
        self.sampler = ResumableDistributedSampler(self.dataset, ctx.world_size, ctx.rank, self.cfg.train.seed)
        workers = d.num_workers
        on_gpu = self.device.type == "cuda"
        self.loader = DataLoader(
            EpochKeyedDataset(self.dataset),
            batch_size=d.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_with_skips,
            drop_last=True,
            pin_memory=d.pin_memory and on_gpu,
            persistent_workers=d.persistent_workers and workers > 0,
            prefetch_factor=d.prefetch_factor if workers > 0 else None,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, ctx.rank)),
        )
        self.steps_per_epoch = len(self.sampler) // d.batch_size
        self.color = build_color_augment(d)
        self.normalize = normalize_clips

    def _build_model(self) -> None:
        from mlfo.losses.objective import MLFOObjective
        from mlfo.models import MLFOModel, build_backbone

        cfg, ctx = self.cfg, self.ctx
        seed_everything(cfg.train.seed)  # same initial weights on every rank
        backbone = build_backbone(cfg.backbone.name, stem=cfg.backbone.stem, widths=cfg.backbone.widths)
        model = MLFOModel(backbone, cfg.model)
        if cfg.train.sync_bn and ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(self.device)
        if cfg.train.channels_last:
            model.to(memory_format=torch.channels_last_3d)
        self.model = model  # the bare module: state dicts, prototypes
        self.objective = MLFOObjective(cfg.objective, cfg.model.num_prototypes).to(self.device)
        self.optimizer = build_optimizer(cfg, list(model.parameters()))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
        forward = ModelWithObjective(model, self.objective)
        if ctx.distributed:
            # Graph heads are unused before graph_start, prototypes may be frozen.
            forward = nn.parallel.DistributedDataParallel(
                forward, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if cfg.train.compile:
            forward = torch.compile(forward)
        self.forward_model = forward

    # -- state --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything for an exact resume; RNG states of every rank (collective call)."""
        rng_states = all_gather_objects(self.ctx, get_rng_state())
        return {
            "config": to_dict(self.cfg),
            "model": self.model.state_dict(),
            "encoder_arch": self.model.backbone.arch,
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": {"kind": self.cfg.optim.schedule, "lr": self.optimizer.param_groups[0]["lr"]},
            "epoch": self.epoch,
            "step": self.step_in_epoch,  # batches consumed in ``epoch``
            "global_step": self.global_step,
            "sampler": {"seed": self.cfg.train.seed, "epoch": self.epoch, "start_batches": self.step_in_epoch,
                        "batch_size": self.cfg.data.batch_size, "world_size": self.ctx.world_size},
            "rng": rng_states,  # list indexed by rank
            "world_size": self.ctx.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step"])
        self.global_step = int(state["global_step"])
        if self.step_in_epoch >= self.steps_per_epoch:
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        rng = state.get("rng") or []
        if state.get("world_size") == self.ctx.world_size and self.ctx.rank < len(rng):
            set_rng_state(rng[self.ctx.rank])
        elif self.ctx.is_main:
            print(f"mlfo: resuming with {self.ctx.world_size} process(es) instead of "
                  f"{state.get('world_size')}: random states start fresh", file=sys.stderr)

    def save(self, name: str) -> Path:
        state = self.state_dict()  # every rank takes part (RNG gather)
        path = self.out_dir / name
        if self.ctx.is_main:
            ckpt_io.atomic_torch_save(state, path)
        barrier(self.ctx)
        if name == ckpt_io.LAST:
            self.last_checkpoint = path
        return path

    def resume(self, path: str | Path) -> None:
        state = ckpt_io.load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
        if "optimizer" not in state or "global_step" not in state:
            raise MLFOError(f"{path}: not a resumable mlfo pretraining checkpoint")
        changed = diff_configs(state.get("config", {}), to_dict(self.cfg))
        changed = [k for k in changed if k not in ("train.out_dir", "train.max_steps", "train.epochs", "train.progress")]
        if changed and self.ctx.is_main:
            print(f"mlfo: resuming with changed settings: {', '.join(changed)}", file=sys.stderr)
        self.load_state_dict(state)
        self.last_checkpoint = Path(path)
        if self.ctx.is_main:
            truncate_metrics(self.out_dir / METRICS_FILE, self.global_step)
            print(f"mlfo: resumed from {path} at epoch {self.epoch}, step {self.global_step}", file=sys.stderr)

    # -- one step -------------------------------------------------------------------------

    def augment(self, clips: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """uint8 (B, 3, T, S, S, 3) -> float (3, B, 3, T, S, S): colour (keyed per video) + normalise."""
        clips = clips.to(self.device, non_blocking=True)
        if self.color is None:
            out = self.normalize(clips.flatten(0, 1))  # (3B, 3, T, S, S)
            out = out.unflatten(0, clips.shape[:2])
        else:
            per_video = []
            gen = torch.Generator(device=self.device)
            for video, index in zip(clips, indices.tolist()):  # video (3, T, S, S, 3)
                gen.manual_seed(derive_seed(self.cfg.train.seed, _COLOR_STREAM, epoch, index))
                per_video.append(self.color(video, generator=gen))  # (3, 3, T, S, S)
            out = torch.stack(per_video)
        return out.transpose(0, 1).contiguous()  # (3 clips, B, 3, T, S, S)

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
        cfg = self.cfg
        n_local = int(batch["clips"].shape[0]) if "clips" in batch else 0
        if all_reduce_min(self.ctx, n_local) == 0:
            return None  # some rank has no decodable video: every rank skips together
        lr = learning_rate(cfg, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.normalize_prototypes()
        x = self.augment(batch["clips"], batch["index"], epoch)
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        with autocast:
            total, logs = self.forward_model(x, epoch)
        logs = {k: f for k, v in logs.items() if (f := _plain_float(v)) is not None}
        loss, logs = self._global_mean(float(total.detach()), logs, n_local)
        if not math.isfinite(loss):
            bad = [k for k, v in logs.items() if not math.isfinite(v) and k != "loss/total"]
            where = self.last_checkpoint or "none yet"
            raise MLFOError(
                f"step {self.global_step + 1} (epoch {epoch}): non-finite loss "
                f"({', '.join(bad) or 'total'}); last good checkpoint: {where}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.objective.prototypes_frozen(epoch):
            self.model.prototypes.weight.grad = None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        row = {} if "loss/total" in logs else {"loss": loss}
        row.update(logs)
        row["lr"] = lr
        row["videos"] = n_local * self.ctx.world_size
        return row

    # -- the loop -----------------------------------------------------------------------

    def _report_skips(self, indices: list[int], logger_write) -> int:
        for i in indices:
            path = self.records[i].path
            self.skipped.append(path)
            logger_write(f"mlfo: skipped unreadable video (rank {self.ctx.rank}): {path}")
        return len(indices)

    def fit(self, resume: str | Path | None = None) -> PretrainResult:
        from tqdm import tqdm

        cfg, ctx = self.cfg, self.ctx
        if self.steps_per_epoch == 0:
            raise MLFOError(f"data.batch_size: {cfg.data.batch_size} leaves no full batch per process")
        if resume:
            self.resume(resume)
        if ctx.is_main:
            print(f"mlfo: pretraining {cfg.backbone.name} on {len(self.records)} videos: "
                  f"{self.steps_per_epoch} steps/epoch x {cfg.train.epochs} epochs, "
                  f"{cfg.data.batch_size} x {ctx.world_size} videos/step on {ctx.world_size} process(es) "
                  f"({self.device.type}); run folder {self.out_dir}", file=sys.stderr, flush=True)
        logger = MetricsLogger(self.out_dir if ctx.is_main else None, tensorboard=cfg.train.tensorboard)
        self.forward_model.train()
        if cfg.train.freeze_bn:
            _set_frozen_bn(self.model)
        max_steps = cfg.train.max_steps or None
        started = time.time()
        stop = False
        try:
            while self.epoch < cfg.train.epochs and not stop:
                epoch = self.epoch
                self.sampler.set_epoch(epoch)
                self.sampler.set_start(self.step_in_epoch * cfg.data.batch_size)
                bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {epoch}",
                           disable=not (ctx.is_main and cfg.train.progress), dynamic_ncols=True,
                           file=sys.stderr, leave=False)
                for batch in self.loader:
                    skipped = self._report_skips(batch.get("skipped_indices", []), bar.write)
                    progress = epoch + self.step_in_epoch / self.steps_per_epoch
                    row = self.train_step(batch, epoch, progress)
                    self.step_in_epoch += 1
                    bar.update(1)
                    if row is None:
                        continue
                    self.global_step += 1
                    row = {"epoch": epoch, "step": self.global_step, "step_in_epoch": self.step_in_epoch,
                           **row, "skipped": skipped, "time": round(time.time() - started, 3)}
                    logger.log(row)
                    bar.set_postfix(loss=f"{row.get('loss/total', row.get('loss', 0.0)):.3f}", refresh=False)
                    if max_steps and self.global_step >= max_steps:
                        stop = True
                        break
                    if cfg.checkpoint.every_steps and self.global_step % cfg.checkpoint.every_steps == 0:
                        self.save(ckpt_io.LAST)
                bar.close()
                if stop and self.step_in_epoch < self.steps_per_epoch:
                    self.save(ckpt_io.LAST)
                    break
                self.epoch, self.step_in_epoch = epoch + 1, 0
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
        skipped = sorted({p for paths in all_gather_objects(ctx, self.skipped) for p in paths})
        if ctx.is_main:
            self._write_skip_summary(skipped)
        return PretrainResult(self.out_dir, self.last_checkpoint, self.global_step, self.epoch, skipped)

    def _write_skip_summary(self, skipped: list[str]) -> None:
        if not skipped:
            return
        (self.out_dir / "skipped_videos.txt").write_text("".join(p + "\n" for p in skipped))
        shown = "\n  ".join(skipped[:20]) + (f"\n  ... ({len(skipped) - 20} more)" if len(skipped) > 20 else "")
        print(f"mlfo: skipped {len(skipped)} unreadable video(s) during training "
              f"(list in {self.out_dir / 'skipped_videos.txt'}):\n  {shown}", file=sys.stderr)


def pretrain(cfg: Config, resume: str | None = None) -> PretrainResult:
    """Run pretraining in this process (joining torchrun's process group if launched by it).

    ``resume``: None, ``"auto"`` (``out_dir/last.pt`` if present) or a checkpoint path.
    """
    ctx = init_distributed(cfg.train.device)
    trainer = None
    ok = False
    try:
        resume_path = ckpt_io.find_resume_path(resume, cfg.train.out_dir)
        trainer = Pretrainer(cfg, ctx)
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


def config_of_checkpoint(path: str | Path) -> Config:
    return config_from_dict(ckpt_io.load_checkpoint(path)["config"])


__all__ = [
    "Pretrainer",
    "PretrainResult",
    "ResumableDistributedSampler",
    "check_runtime",
    "learning_rate",
    "pretrain",
]
