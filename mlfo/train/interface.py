"""What the engine (``mlfo.train.engine``) runs, and how: the method interface as a typed
``Protocol`` and the trainer's own small config. Neither knows which method it trains:
pretraining (``mlfo.method``) and fine-tuning (``mlfo.eval.finetune``) map their configs
onto ``TrainerConfig`` and implement ``Method``.

The interface is a ``torch.nn.Module`` (DDP wraps it; its state dict is the checkpoint's
``method``) with the hooks below: what Lightning's hooks give, and no more.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import Dataset

from mlfo.errors import MLFOError


@runtime_checkable
class Method(Protocol):
    """A training method. Built after ``seed_everything(seed)`` on every rank (same weights)."""

    min_frames: int  # a training item's source needs more frames than this

    def train_dataset(self, records: Sequence) -> Dataset:
        """The keyed dataset ``[(epoch, i)] -> item`` of the usable records."""

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups, each with its base ``lr`` (the schedule scales them)."""

    def prepare(self, batch: dict, epoch: int, device: torch.device) -> Any:
        """A collated batch -> the forward's input on ``device`` (a tensor or a tuple of them)."""

    def forward(self, inputs: Any, epoch: int) -> tuple[torch.Tensor, dict]:
        """(total loss, {name: float or 0-dim tensor}): the loss is minimised, the rest logged."""

    def before_forward(self, epoch: int, step: int) -> None:
        """Before every step (``step``: optimizer steps done so far)."""

    def before_optimizer_step(self, epoch: int) -> None:
        """Between backward and the optimizer step (gradients may be changed here)."""

    def gradient_phase(self, epoch: int) -> Hashable:
        """Equal for epochs whose steps give gradients to the same parameters (DDP re-wraps
        where it changes, ``mlfo.train.parallel``)."""

    def compile(self) -> None:
        """``torch.compile`` what suits the compiler (``TrainerConfig.compile``)."""

    def extra_state(self) -> dict:
        """What a checkpoint stores beside the engine's state (provenance, the config)."""

    def load_extra_state(self, state: dict, path) -> list[str]:
        """Check a checkpoint's ``extra_state`` before resuming (raise ``MLFOError`` to refuse);
        returns notes for the user."""


@dataclass
class TrainerConfig:
    """The run, as the engine sees it: length, optimization, precision, processes, saves, logs."""

    epochs: int
    batch_size: int  # items per process and step
    seed: int = 0
    max_steps: int = 0  # stop after this many optimizer steps (0: every epoch)
    name: str = "training"  # the start line's "<name> on N videos"
    # optimizer and the learning-rate schedule (mlfo.train.optim; position in epochs)
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: Sequence[float] = ()
    decay: float = 0.1
    # precision and speed
    amp: str = "off"  # off | bf16 | fp16 (GPU only)
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False  # GPU only
    freeze_bn: bool = False
    # data loading
    num_workers: int = 0
    pin_memory: bool = True
    persistent_workers: bool = False
    prefetch_factor: int = 2
    max_skipped_share: float = 0.05  # more failed videos in an epoch stop the run (SkipBound)
    data_name: str = "the data"  # names the data in that message
    # checkpoints: last.pt every N steps / after every epoch; epoch_XXXX.pt every N epochs
    every_steps: int = 0
    every_epochs: int = 0
    keep: int = 0
    # also check the normalisation statistics every N steps (0: only before each save)
    finite_check_steps: int = 0
    progress: bool = True
    tensorboard: bool = True


def check_runtime(cfg: TrainerConfig, device: torch.device) -> None:
    """Refuse settings that cannot work (on this device), before anything is built."""
    if cfg.sync_bn and cfg.compile:
        raise MLFOError("train.compile with train.sync_bn: torch.compile cannot trace SyncBatchNorm's "
                        "collectives (it splits the compiled model there; open compile + DDP bugs upstream); "
                        "set one of them to false")
    if device.type != "cuda":
        if cfg.amp != "off":
            raise MLFOError(
                f"train.amp: {cfg.amp} autocast is GPU-only; on CPU mlfo trains in fp32 "
                "(CPU bf16 gave inf Conv3d weight gradients and NaN losses within 15 steps)"
            )
        if cfg.sync_bn:
            raise MLFOError("train.sync_bn: SyncBatchNorm needs GPUs (it does not run on CPU)")
