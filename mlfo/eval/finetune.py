"""Full fine-tuning (and the frozen end-to-end linear probe) of an encoder on labelled
videos, as a classifier method on the training engine (``mlfo.train.engine``): it runs
under ``torchrun`` like pretraining, with AMP, compile, the run-folder lock, finite
checks, exact resume across world and batch sizes, progress, metrics.jsonl and TensorBoard.

Training: one random clip per video and epoch, random resized crop + horizontal flip,
dropout before a linear classifier, SGD with a cosine schedule and a lower learning rate
for the pretrained backbone than for the new classifier. With ``freeze_backbone`` the
backbone stays fixed (BatchNorm statistics too) and only BN + linear on its pooled
feature learns: the linear probe with training-time augmentation.

Testing: once, after the last epoch (no epoch is picked by looking at test), averaging
the softmax over every view (clips x crops) of each test video. The test videos are
sharded across the ranks (rank r scores videos r, r + W, ...; each exactly once) and
rank 0 gathers the predictions in index order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from mlfo.data.datasets import RandomClipDataset
from mlfo.data.transforms import normalize_clips
from mlfo.distributed import DistContext, all_gather_objects, resolve_device
from mlfo.errors import MLFOError
from mlfo.eval.extract import compute_features
from mlfo.eval.knn import topk_accuracy
from mlfo.eval.views import ViewConfig
from mlfo.train import checkpoint as ckpt_io
from mlfo.train.engine import Trainer, TrainerConfig
from mlfo.train.metrics_log import read_metrics
from mlfo.train.run_folder import claim_on_rank_0


@dataclass
class FinetuneConfig:
    epochs: int = field(default=30, metadata={"help": "training epochs"})
    batch_size: int = field(default=16, metadata={
        "help": "training clips per step, and test clips per forward pass"})
    lr: float = field(default=0.05, metadata={"help": "classifier learning rate"})
    backbone_lr_mult: float = field(default=0.1, metadata={
        "help": "backbone lr = lr x this (pretrained weights move less)"})
    weight_decay: float = field(default=1e-4, metadata={"flag": "--wd", "help": "weight decay"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    warmup_epochs: int = field(default=1, metadata={"help": "linear warmup epochs"})
    dropout: float = field(default=0.5, metadata={"help": "dropout before the classifier"})
    clip_len: int = field(default=16, metadata={"help": "frames per clip"})
    frame_step: int = field(default=1, metadata={"help": "temporal stride inside a clip"})
    crop_size: int = field(default=112, metadata={"help": "crop size"})
    crop_scale: tuple[float, float] = field(default=(0.2, 1.0), metadata={
        "help": "random resized crop area range"})
    freeze_backbone: bool = field(default=False, metadata={
        "help": "frozen end-to-end linear probe: train only BN + linear on augmented clips"})
    amp: Literal["off", "bf16", "fp16"] = field(default="off", metadata={"help": "autocast (GPU only)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the classifier"})
    checkpoint_steps: int = field(default=0, metadata={
        "help": "also write last.pt every N steps (0: after every epoch only)"})
    seed: int = 0
    num_workers: int = 0
    device: str | None = None

    def to_dict(self) -> dict:
        """The settings that define the result (a resume must keep them; the card shows them)."""
        d = asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        for runtime in ("num_workers", "device", "amp", "compile", "checkpoint_steps"):
            d.pop(runtime)
        return d

    def trainer(self, name: str, progress: bool) -> TrainerConfig:
        """The engine's settings: SGD, cosine after a warmup of at most half the run."""
        return TrainerConfig(
            epochs=self.epochs, batch_size=self.batch_size, seed=self.seed, name=name, optimizer="sgd",
            weight_decay=self.weight_decay, momentum=self.momentum, schedule="cosine",
            warmup_epochs=min(self.warmup_epochs, self.epochs / 2), amp=self.amp, compile=self.compile,
            num_workers=self.num_workers, every_steps=self.checkpoint_steps, progress=progress)


class ClipClassifier(nn.Module):
    """backbone -> pooled feature (N, C) -> dropout (or BN when frozen) -> linear."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.5, frozen: bool = False):
        super().__init__()
        self.backbone = backbone
        self.frozen = frozen
        dim = backbone.level_channels["high"]
        # Frozen: the same BN + linear probe as on cached features. Fine-tuning: dropout + linear.
        self.head = nn.Sequential(nn.BatchNorm1d(dim, affine=False) if frozen else nn.Dropout(dropout),
                                  nn.Linear(dim, num_classes))
        if frozen:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # frozen BN statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                feats = self.backbone(x)
        else:
            feats = self.backbone(x)
        return self.head(feats)


class ClassifierMethod(nn.Module):
    """The classifier as the engine's method (``mlfo.train.interface.Method``): cross-entropy
    on one random clip per video; the fine-tuning config and the class count travel in the
    checkpoint, and a resume with others is refused."""

    min_frames = 0  # a shorter video repeats its last frame

    def __init__(self, backbone: nn.Module, num_classes: int, cfg: FinetuneConfig, backend: str = "auto",
                 encoder_info: dict | None = None):
        super().__init__()
        self.model = ClipClassifier(backbone, num_classes, cfg.dropout, cfg.freeze_backbone)
        self.cfg, self.num_classes, self.backend = cfg, num_classes, backend
        self.encoder_info = encoder_info or {}

    def train_dataset(self, records) -> RandomClipDataset:
        c = self.cfg
        return RandomClipDataset(records, c.clip_len, c.frame_step, c.crop_size, c.crop_scale, self.backend, c.seed)

    def param_groups(self) -> list[dict]:
        groups = [{"params": list(self.model.head.parameters()), "lr": self.cfg.lr}]
        if not self.cfg.freeze_backbone:
            groups.append({"params": list(self.model.backbone.parameters()),
                           "lr": self.cfg.lr * self.cfg.backbone_lr_mult})
        return groups

    def prepare(self, batch: dict, epoch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 clips (B, T, S, S, 3) -> float (B, 3, T, S, S) normalised, labels (B,)."""
        return (normalize_clips(batch["clip"].to(device, non_blocking=True)),
                batch["label"].to(device, non_blocking=True))

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict]:
        x, y = inputs
        logits = self.model(x)  # (B, num_classes)
        loss = nn.functional.cross_entropy(logits.float(), y)
        top1 = (logits.detach().argmax(1) == y).float().mean() * 100
        return loss, {"acc/top1": top1}  # left on the device: the engine reads it with the loss

    def before_forward(self, epoch: int, step: int) -> None:
        pass

    def before_optimizer_step(self, epoch: int) -> None:
        pass

    def gradient_phase(self, epoch: int) -> int:
        return 0  # every step reaches the same parameters

    def compile(self, *args, **kwargs) -> None:
        self.model.compile(*args, **kwargs)

    def extra_state(self) -> dict:
        return {"config": self.cfg.to_dict(), "num_classes": self.num_classes, "encoder": self.encoder_info}

    def load_extra_state(self, state: dict, path) -> list[str]:
        """Refuses another config or class count; the batch may change (with the number of
        processes: the engine continues at the next sample and says so)."""
        def settings(config) -> dict:
            return {k: v for k, v in (config or {}).items() if k != "batch_size"}

        same = settings(state.get("config")) == settings(self.cfg.to_dict())
        if not same or state.get("num_classes") != self.num_classes:
            raise MLFOError(f"{path}: was written with another fine-tuning config; use another --out "
                            "or --overwrite")
        return []


@dataclass
class FinetuneResult:
    metrics: dict[str, float]
    probabilities: np.ndarray  # (N_test, C) mean softmax over views
    labels: np.ndarray  # (N_test,)
    history: list[dict] = field(default_factory=list)
    skipped_test: list[str] = field(default_factory=list)



def _history(out_dir: Path) -> list[dict]:
    """Per epoch: the training loss and top-1 (means over its videos) and the skipped videos,
    from metrics.jsonl (truncated to the checkpoint on resume, so a resumed run's is exact)."""
    history: dict[int, dict] = {}
    for row in read_metrics(out_dir) if (out_dir / "metrics.jsonl").is_file() else []:
        h = history.setdefault(row["epoch"], {"epoch": row["epoch"] + 1, "loss": 0.0, "top1": 0.0, "n": 0,
                                              "skipped": 0})
        h["loss"] += row["loss"] * row["videos"]
        h["top1"] += row["acc/top1"] * row["videos"]
        h["n"] += row["videos"]
        h["skipped"] += row["skipped"]
    return [{"epoch": h["epoch"], "train_loss": h["loss"] / h["n"], "train_top1": h["top1"] / h["n"],
             "skipped": h["skipped"]} for _, h in sorted(history.items())]


def score_test_videos(model: nn.Module, records: Sequence, views: ViewConfig, ctx: DistContext, *,
                     batch_size: int, num_workers: int, backend: str, progress: bool):
    """Mean softmax over every view of each test video, sharded across ranks: rank r scores
    videos r, r + W, ... once each. Rank 0 gets (probabilities (N, C), record indices (N,),
    skipped paths) in index order; the other ranks get None."""
    shard = list(range(ctx.rank, len(records), ctx.world_size))
    probs, kept, skipped = np.zeros((0, 0), np.float32), np.zeros(0, np.int64), []
    if shard:
        scorer = nn.Sequential(model, nn.Softmax(dim=1)).eval()
        res = compute_features({"model": scorer}, views.dataset([records[i] for i in shard], backend=backend),
                               batch_size=max(batch_size, 1), views_per_video=views.views_per_video,
                               num_workers=num_workers, device=ctx.device, progress=progress and ctx.is_main,
                               desc="finetune test")
        probs, kept = res.features["model"]["high"], np.asarray(shard, dtype=np.int64)[res.kept]
        skipped = [s["path"] for s in res.skipped]
    parts = all_gather_objects(ctx, (probs, kept, skipped))
    if not ctx.is_main:
        return None
    kept = np.concatenate([p[1] for p in parts])
    probs = np.concatenate([p[0] for p in parts if len(p[1])]) if len(kept) else probs
    order = np.argsort(kept, kind="stable")
    return probs[order], kept[order], sorted(p for part in parts for p in part[2])


def finetune(
    backbone: nn.Module,
    train_records: Sequence,
    test_records: Sequence,
    num_classes: int,
    out_dir: str | os.PathLike,
    cfg: FinetuneConfig,
    test_views: ViewConfig,
    *,
    resume: str | None = "auto",
    overwrite: bool = False,
    backend: str = "auto",
    progress: bool = True,
    encoder_info: dict | None = None,
    ctx: DistContext | None = None,
) -> FinetuneResult | None:
    """Train ``backbone`` + classifier on ``train_records``; test once on ``test_records``.
    Every rank of ``ctx`` (default: this process alone) calls it; rank 0 gets the result."""
    ctx = ctx or DistContext(device=resolve_device(cfg.device or "auto"))
    out_dir = Path(out_dir)
    folder = trainer = None
    try:
        folder = claim_on_rank_0(ctx, out_dir, resume, overwrite)
        name = f"{'frozen-backbone probe' if cfg.freeze_backbone else 'fine-tuning'} "
        trainer = Trainer(cfg.trainer(name + (encoder_info or {}).get("name", "an encoder"), progress), ctx,
                          lambda: ClassifierMethod(backbone, num_classes, cfg, backend, encoder_info),
                          lambda method: list(train_records), out_dir)
        found = ckpt_io.find_resume_path(resume, out_dir)
        if found is not None:
            trainer.resume(found)
        trainer.fit()
        tested = score_test_videos(trainer.method.model, test_records, test_views, ctx, batch_size=cfg.batch_size,
                                  num_workers=cfg.num_workers, backend=backend, progress=progress)
        trainer.parallel.release()
    finally:
        del trainer
        if folder is not None:
            folder.release()
    if tested is None:
        return None
    probs, kept, skipped = tested
    labels = np.array([test_records[i].label for i in kept], dtype=np.int64)
    if len(labels) == 0:
        raise MLFOError("finetune: every test video failed to decode")
    return FinetuneResult(topk_accuracy(probs, labels), probs, labels, _history(out_dir), skipped)
