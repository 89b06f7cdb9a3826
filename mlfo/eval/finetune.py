"""Full fine-tuning (and the frozen end-to-end linear probe) of an encoder on labelled videos.

Training: one random clip per video and epoch, random resized crop + horizontal flip,
dropout before a linear classifier, SGD with a cosine schedule and a lower learning rate
for the pretrained backbone than for the new classifier. With ``freeze_backbone`` the
backbone stays fixed (BatchNorm statistics too) and only BN + linear on its pooled
feature learns: the linear probe with training-time augmentation.

Testing: once, after the last epoch (no epoch is picked by looking at test), averaging
the softmax over every view (clips x crops) of each test video.

Resumable through the checkpoint module pretraining uses: ``<out>/last.pt`` is written
atomically after every epoch with the model, optimizer, schedule position, RNG state and
config; ``resume="auto"`` continues from it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlfo.data.datasets import RandomClipDataset
from mlfo.data.loading import ResumableDistributedSampler, SkipLog, batch_size_of, build_loader
from mlfo.data.transforms import normalize_clips
from mlfo.errors import MLFOError
from mlfo.eval.extract import compute_features
from mlfo.eval.knn import topk_accuracy
from mlfo.eval.views import ViewConfig
from mlfo.train import checkpoint as ckpt_io
from mlfo.train.optim import build_optimizer, lr_factor, set_learning_rates
from mlfo.train.seeding import get_rng_state, set_rng_state


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
    seed: int = 0
    num_workers: int = 0
    device: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        d.pop("num_workers")
        d.pop("device")
        return d


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


@dataclass
class FinetuneResult:
    metrics: dict[str, float]
    probabilities: np.ndarray  # (N_test, C) mean softmax over views
    labels: np.ndarray  # (N_test,)
    history: list[dict] = field(default_factory=list)
    skipped_test: list[str] = field(default_factory=list)


def _resume(path: Path, cfg: FinetuneConfig, num_classes: int, model, optimizer) -> tuple[int, list]:
    state = ckpt_io.load_checkpoint(path, map_location="cpu")  # RNG states must stay on the CPU
    if state.get("config") != cfg.to_dict() or state.get("num_classes") != num_classes:
        raise MLFOError(f"{path}: was written with another fine-tuning config; use another --out "
                        "or --resume never")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    epoch = int(state["epoch"])
    print(f"resumed from {path} (epoch {epoch}/{cfg.epochs})")
    return epoch, list(state["history"])


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
    backend: str = "auto",
    progress: bool = True,
    encoder_info: dict | None = None,
) -> FinetuneResult:
    """Train ``backbone`` + classifier on ``train_records``; test once on ``test_records``."""
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    model = ClipClassifier(backbone, num_classes, cfg.dropout, cfg.freeze_backbone).to(device)
    groups = [{"params": list(model.head.parameters()), "lr": cfg.lr}]
    if not cfg.freeze_backbone:
        groups.append({"params": list(model.backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_mult})
    optimizer = build_optimizer("sgd", groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    dataset = RandomClipDataset(train_records, cfg.clip_len, cfg.frame_step, cfg.crop_size, cfg.crop_scale,
                                backend, cfg.seed)
    # One shuffle per epoch, seeded by (seed, epoch); keys carry the epoch to the workers.
    sampler = ResumableDistributedSampler(dataset, num_replicas=1, rank=0, seed=cfg.seed * 1000)
    loader = build_loader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                          drop_last=len(dataset) > cfg.batch_size, pin_memory=device.type == "cuda")
    batches_per_epoch = max(1, math.ceil(len(dataset) / cfg.batch_size))
    total_steps = cfg.epochs * batches_per_epoch
    warmup_steps = min(cfg.warmup_epochs * batches_per_epoch, total_steps // 2)

    start_epoch, history = 0, []
    ckpt_path = out_dir / ckpt_io.LAST
    found = ckpt_io.find_resume_path(resume, out_dir)
    if found is not None:
        start_epoch, history = _resume(found, cfg, num_classes, model, optimizer)

    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        bar = tqdm(loader, desc=f"finetune epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   dynamic_ncols=True)
        skips = SkipLog(dataset.records, write=bar.write)
        loss_sum, correct, seen = 0.0, 0, 0
        for i, batch in enumerate(bar):
            skips.add(batch["skipped"])
            if batch_size_of(batch) < 2:
                continue
            step = epoch * batches_per_epoch + i
            set_learning_rates(optimizer, base_lrs, lr_factor(step, total_steps, warmup=warmup_steps))
            x = normalize_clips(batch["clip"].to(device, non_blocking=True))
            y = batch["label"].to(device)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        bar.close()
        history.append({"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                        "train_top1": 100 * correct / max(seen, 1), "skipped": len(skips)})
        ckpt_io.atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                   "epoch": epoch + 1, "history": history, "config": cfg.to_dict(),
                                   "num_classes": num_classes, "encoder": encoder_info or {},
                                   "rng": get_rng_state()},  # dropout draws continue exactly
                                  ckpt_path)

    # Multi-view test: mean softmax over every clip x crop view of each video.
    model.eval()
    scorer = nn.Sequential(model, nn.Softmax(dim=1))
    test_ds = test_views.dataset(test_records, backend=backend)
    res = compute_features({"model": scorer}, test_ds, batch_size=max(cfg.batch_size, 1),
                           views_per_video=test_views.views_per_video, num_workers=cfg.num_workers,
                           device=device, progress=progress, desc="finetune test")
    probs = res.features["model"]["high"]
    labels = np.array([test_records[i].label for i in res.kept], dtype=np.int64)
    if len(labels) == 0:
        raise MLFOError("finetune: every test video failed to decode")
    metrics = topk_accuracy(probs, labels)
    return FinetuneResult(metrics, probs, labels, history, [s["path"] for s in res.skipped])
