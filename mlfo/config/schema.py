"""The pretraining configuration: one dataclass per concern, and the checks that need
more than a type (ranges and combinations).

The model and objective sections are the dataclasses their own modules define
(``mlfo.models.ModelConfig``, ``mlfo.losses.objective.ObjectiveConfig``), so a switch
added there is configurable here with no extra code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlfo.errors import MLFOError
from mlfo.losses.objective import ObjectiveConfig
from mlfo.models import ModelConfig


@dataclass
class BackboneConfig:
    """Arguments of ``mlfo.models.build_backbone``."""

    name: Literal["r3d_18", "r2plus1d_18", "r3d_small"] = "r3d_18"
    stem: Literal["reference", "torchvision"] = "reference"
    widths: list[int] | None = None  # None: the architecture's own widths


@dataclass
class DataConfig:
    """Where the training videos are and how clips are cut from them."""

    train: str = ""  # a CSV, a folder of videos, or a UCF101/HMDB51 root
    fmt: Literal["auto", "folder", "csv", "ucf101", "hmdb51"] = "auto"
    split: int = 1
    split_dir: str | None = None
    backend: Literal["auto", "pyav", "frames", "torchcodec"] = "auto"
    # Write the built-in demo dataset when ``train`` is the demo preset's own
    # demo_data/train.csv and demo_data/ is absent, so that the preset runs on a fresh
    # clone; any other missing ``train`` is an error (mlfo.data.demo.ensure_demo_source).
    generate_demo: bool = False
    clip_len: int = 16  # T frames per clip
    r_max: int = 3  # largest frame-rate step of the three-clip sampler
    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.5, 1.0)
    # Opt-in: frames leave the decoder's scaler with this short side before the crop (less
    # to convert and resize; other pixels). None: as stored, the exact path. 160 for 112.
    decode_size: int | None = None
    # Opt-in: "cuda" decodes on the GPU (torchcodec + NVDEC; data.backend=torchcodec). CUDA
    # cannot start in forked workers, so it decodes in the training process (num_workers=0).
    # Not run here: this machine has no GPU (tests check the key reaches the reader only).
    decode_device: Literal["cpu", "cuda"] = "cpu"
    color_augment: bool = True  # grayscale + colour jitter on the training device
    per_frame_color: bool = True  # reference: colour/grayscale drawn per frame
    # Colour augmentation strengths (defaults: the reference). Milder values suit data
    # whose colours carry no class information and would otherwise be learned first.
    color_p_gray: float = 0.5  # probability of "grayscale" (one random channel copied)
    color_strength: float = 0.5  # brightness / contrast / saturation factors in 1 +- this
    color_hue: float = 0.25  # hue shift in +- this (fraction of a turn)
    # Colour ramp: p_gray, strength and hue grow linearly from 0 to the values above over
    # the first this-many optimizer steps (0: full strength from the start, the reference).
    color_ramp_steps: int = 0
    batch_size: int = 64  # videos per process (x3 clips)
    num_workers: int = 4
    persistent_workers: bool = True
    pin_memory: bool = True  # only used on GPU
    prefetch_factor: int = 2
    # A video that fails to decode is replaced by another of the same rank's share (named in
    # skipped_videos.txt); more than this share of an epoch's videos failing stops the run.
    max_skipped_share: float = 0.05


@dataclass
class OptimConfig:
    """Adam with step decay, as the reference; warmup and cosine are extra options."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd only
    schedule: Literal["step", "cosine", "constant"] = "step"
    lr_decay_epochs: list[int] = field(default_factory=lambda: [70])
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0


@dataclass
class CheckpointConfig:
    """``last.pt`` every epoch (and every ``every_steps`` steps if > 0), ``epoch_NNNN.pt``
    every ``every_epochs`` epochs, of which the newest ``keep`` stay (0 keeps all)."""

    every_steps: int = 0
    every_epochs: int = 10
    keep: int = 3
    # BatchNorm statistics are checked for NaN/inf before every save and every this many
    # steps (0: only before saves); see docs/design.md, "Where the engine synchronises".
    finite_check_steps: int = 100


@dataclass
class TrainConfig:
    """The run itself: length, device, speed switches, logging."""

    epochs: int = 100
    seed: int = 0
    out_dir: str = "runs/pretrain"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16", "fp16"] = "off"  # GPU only
    channels_last: bool = False  # channels_last_3d memory format (GPU speed-up)
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm across processes (GPU only)
    # Minutes any wait of the process group may last (NCCL's default: 10). At start every
    # rank waits while its node's first process indexes the data (a first scan of a large
    # dataset takes minutes; a cached one, seconds).
    dist_timeout_min: float = 60.0
    # BatchNorm layers use their running statistics and do not update them: makes a
    # multi-process run equal to a single-process one; also for tiny per-GPU batches.
    freeze_bn: bool = False
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True
    # RankMe of the embeddings in the prototype queue every this-many steps into the
    # metrics (no extra forward pass; 0: off): collapse or progress without labels.
    health_every: int = 50


@dataclass
class Config:
    """Everything ``mlfo pretrain`` needs; saved resolved beside every run and checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


_AT_LEAST_ONE = ("data.clip_len", "data.crop_size", "data.batch_size", "data.r_max", "train.epochs",
                 "data.prefetch_factor")
_NON_NEGATIVE = ("data.num_workers", "train.max_steps", "checkpoint.every_steps", "checkpoint.every_epochs",
                 "checkpoint.finite_check_steps", "checkpoint.keep", "optim.weight_decay", "optim.warmup_epochs", "data.color_strength",
                 "data.color_hue", "data.color_ramp_steps", "train.health_every")


def validate(cfg: Config) -> Config:
    """Checks that need more than a type: ranges and combinations."""
    for keys, least, rule in ((_AT_LEAST_ONE, 1, "be at least 1"), (_NON_NEGATIVE, 0, "not be negative")):
        for key in keys:
            section, name = key.split(".")
            value = getattr(getattr(cfg, section), name)
            if value < least:
                raise MLFOError(f"{key}: must {rule}, got {value}")
    if not cfg.train.dist_timeout_min > 0:
        raise MLFOError(f"train.dist_timeout_min: must be positive, got {cfg.train.dist_timeout_min}")
    if not cfg.optim.lr > 0:
        raise MLFOError(f"optim.lr: must be positive, got {cfg.optim.lr}")
    if not 0 <= cfg.data.max_skipped_share <= 1:
        raise MLFOError(f"data.max_skipped_share: must be in [0, 1], got {cfg.data.max_skipped_share}")
    if not 0 <= cfg.data.color_p_gray <= 1:
        raise MLFOError(f"data.color_p_gray: must be in [0, 1], got {cfg.data.color_p_gray}")
    low, high = cfg.data.crop_scale
    if not 0 < low <= high <= 1:
        raise MLFOError(f"data.crop_scale: need 0 < min <= max <= 1, got {cfg.data.crop_scale}")
    if cfg.data.decode_size is not None and cfg.data.decode_size < cfg.data.crop_size:
        raise MLFOError(f"data.decode_size: must be at least data.crop_size ({cfg.data.crop_size}), "
                        f"got {cfg.data.decode_size}")
    _check_decode_device(cfg.data)
    if cfg.train.sync_bn and cfg.train.freeze_bn:
        raise MLFOError("train.sync_bn: cannot be combined with train.freeze_bn")
    return cfg


def _check_decode_device(d: DataConfig) -> None:
    """GPU decoding: torchcodec only, in the training process, frames already on the device."""
    if d.decode_device == "cpu":
        return
    if d.backend != "torchcodec":
        raise MLFOError(f"data.decode_device: {d.decode_device} needs data.backend=torchcodec, got {d.backend}")
    if d.num_workers != 0:
        raise MLFOError(f"data.decode_device: {d.decode_device} decodes in the training process (CUDA cannot "
                        f"start in forked workers): set data.num_workers=0, got {d.num_workers}")
    if d.pin_memory:
        raise MLFOError(f"data.decode_device: frames decoded on {d.decode_device} cannot be pinned: "
                        "set data.pin_memory=false")
