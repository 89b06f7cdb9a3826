"""Full fine-tuning (and the frozen end-to-end linear probe) of an encoder on labelled videos.

Training: one random clip per video and epoch, random resized crop + horizontal flip,
dropout before a linear classifier, SGD with a cosine schedule and a lower learning rate
for the pretrained backbone than for the new classifier. With ``freeze_backbone`` the
backbone stays fixed (BatchNorm statistics too) and only BN + linear on its pooled
feature learns: the linear probe with training-time augmentation.

Testing: once, after the last epoch (no epoch is picked by looking at test), averaging
the softmax over every view (clips x crops) of each test video.

Resumable: ``<out>/last.pt`` is written atomically after every epoch with the model,
optimizer, schedule position and config; ``resume="auto"`` continues from it.
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

from mlfo.errors import MLFOError
from mlfo.eval.extract import ViewConfig, extract_features

CHECKPOINT = "last.pt"


@dataclass
class FinetuneConfig:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 0.05  # classifier learning rate
    backbone_lr_mult: float = 0.1  # backbone lr = lr * this (pretrained weights move less)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: int = 1
    dropout: float = 0.5
    clip_len: int = 16
    frame_step: int = 1
    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.2, 1.0)
    freeze_backbone: bool = False  # the frozen end-to-end linear probe
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


class TrainClipDataset(torch.utils.data.Dataset):
    """One random clip per video: uint8 (T, S, S, 3) after random resized crop + flip.

    Randomness comes from (seed, epoch, index), so it does not depend on worker count and a
    resumed run draws the same clips. Returns None for a video that fails to decode.
    """

    def __init__(self, records, clip_len: int, frame_step: int, crop_size: int, crop_scale, backend="auto", seed=0):
        from mlfo.data.transforms import RandomResizedCropFlip

        self.records = list(records)
        self.clip_len, self.frame_step, self.backend, self.seed = clip_len, frame_step, backend, seed
        self.geometry = RandomResizedCropFlip(crop_size, scale=crop_scale)
        self.epoch = 0

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index: int):
        from mlfo.data.sampling import clip_indices
        from mlfo.data.readers import open_video

        rec = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        try:
            with open_video(rec.path, self.backend) as reader:
                extent = (self.clip_len - 1) * self.frame_step + 1
                start = int(rng.integers(0, max(0, reader.num_frames - extent) + 1))
                frames = reader.get_frames(clip_indices(start, self.clip_len, reader.num_frames, self.frame_step))
        except Exception:  # noqa: BLE001 - a bad video is skipped, never fatal
            return None
        gen = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        return {"clip": self.geometry(frames, gen), "label": int(rec.label)}


def _collate_clips(batch):
    good = [b for b in batch if b is not None]
    if not good:
        return {"clip": None, "label": None, "num_skipped": len(batch)}
    return {"clip": torch.stack([b["clip"] for b in good]), "label": torch.tensor([b["label"] for b in good]),
            "num_skipped": len(batch) - len(good)}


@dataclass
class FinetuneResult:
    metrics: dict[str, float]
    probabilities: np.ndarray  # (N_test, C) mean softmax over views
    labels: np.ndarray  # (N_test,)
    history: list[dict] = field(default_factory=list)
    skipped_test: list[str] = field(default_factory=list)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


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

    from mlfo.data.transforms import normalize_clips
    from mlfo.eval.knn import topk_accuracy
    from mlfo.train.checkpoint import atomic_torch_save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    model = ClipClassifier(backbone, num_classes, cfg.dropout, cfg.freeze_backbone).to(device)
    head_params = list(model.head.parameters())
    groups = [{"params": head_params, "lr": cfg.lr}]
    if not cfg.freeze_backbone:
        groups.append({"params": list(model.backbone.parameters()), "lr": cfg.lr * cfg.backbone_lr_mult})
    optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    dataset = TrainClipDataset(train_records, cfg.clip_len, cfg.frame_step, cfg.crop_size, cfg.crop_scale,
                               backend, cfg.seed)
    batches_per_epoch = max(1, math.ceil(len(dataset) / cfg.batch_size))
    total_steps = cfg.epochs * batches_per_epoch
    warmup_steps = min(cfg.warmup_epochs * batches_per_epoch, total_steps // 2)

    start_epoch, history = 0, []
    ckpt_path = out_dir / CHECKPOINT
    if resume and resume != "never":
        path = ckpt_path if resume == "auto" else Path(resume)
        if path.is_file():
            state = torch.load(path, map_location=device, weights_only=False)
            if state.get("config") != cfg.to_dict() or state.get("num_classes") != num_classes:
                raise MLFOError(f"{path}: was written with another fine-tuning config; use another --out "
                                "or --resume never")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, history = int(state["epoch"]), list(state["history"])
            torch.set_rng_state(state["rng"]["torch"])
            if state["rng"].get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["rng"]["cuda"])
            print(f"resumed from {path} (epoch {start_epoch}/{cfg.epochs})")
        elif resume != "auto":
            raise MLFOError(f"{path}: no such fine-tuning checkpoint to resume")

    for epoch in range(start_epoch, cfg.epochs):
        dataset.epoch = epoch
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                             num_workers=cfg.num_workers, collate_fn=_collate_clips,
                                             drop_last=len(dataset) > cfg.batch_size,
                                             pin_memory=device.type == "cuda")
        model.train()
        bar = tqdm(loader, desc=f"finetune epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress,
                   dynamic_ncols=True)
        loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
        for i, batch in enumerate(bar):
            skipped += batch["num_skipped"]
            if batch["clip"] is None or len(batch["label"]) < 2:
                continue
            step = epoch * batches_per_epoch + i
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = base * _lr_factor(step, total_steps, warmup_steps)
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
                        "train_top1": 100 * correct / max(seen, 1), "skipped": skipped})
        atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                           "history": history, "config": cfg.to_dict(), "num_classes": num_classes,
                           "encoder": encoder_info or {},
                           "rng": {"torch": torch.get_rng_state(),  # dropout draws continue exactly
                                   "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}},
                          ckpt_path)

    # Multi-view test: mean softmax over every clip x crop view of each video.
    model.eval()
    scorer = nn.Sequential(model, nn.Softmax(dim=1))
    test_ds = test_views.dataset(test_records, backend=backend)
    res = extract_features({"model": scorer}, test_ds, batch_size=max(cfg.batch_size, 1),
                           views_per_video=test_views.views_per_video, num_workers=cfg.num_workers,
                           device=device, progress=progress, desc="finetune test")
    probs = res.features["model"]["high"]
    labels = np.array([test_records[i].label for i in res.kept], dtype=np.int64)
    if len(labels) == 0:
        raise MLFOError("finetune: every test video failed to decode")
    metrics = topk_accuracy(probs, labels)
    skipped = [test_records[i].path for i in res.failed]
    return FinetuneResult(metrics, probs, labels, history, skipped)


# ---------------------------------------------------------------------------- protocol driver


def pair_parts(parts) -> dict[str, tuple]:
    """DataParts -> {split: (train part, test part)}; split "" when there are no official splits."""
    by_split: dict[str, dict] = {}
    for part in parts:
        split, _, subset = part.subdir.rpartition("/")
        by_split.setdefault(split, {})[subset] = part
    missing = [s or "data" for s, d in by_split.items() if not ("train" in d and "test" in d)]
    if missing:
        raise MLFOError("finetune: needs a train and a test subset (data with train.csv + test.csv, or "
                        f"--split-dir); missing for {', '.join(missing)}")
    return {s: (d["train"], d["test"]) for s, d in by_split.items()}


def run_finetune_protocol(
    encoders: list,
    parts,
    classes: list[str],
    groups: dict[str, str],
    out: str | os.PathLike,
    cfg: FinetuneConfig,
    test_views: ViewConfig,
    *,
    resume: str = "auto",
    backend: str = "auto",
    progress: bool = True,
    plot: bool = True,
) -> list[dict]:
    """Fine-tune each encoder (the first is the main one, the rest baselines) on each split;
    one card per encoder: ``<out>/<label>.card.json``, baselines under ``<out>/baselines/<key>``."""
    import copy

    from mlfo.eval import plots
    from mlfo.eval.cards import make_card, print_cards, write_card
    from mlfo.eval.features import BASELINES_DIR
    from mlfo.eval.knn import topk_accuracy

    out = Path(out)
    label = "linear-e2e" if cfg.freeze_backbone else "finetune"
    pairs = pair_parts(parts)
    num_classes = max(len(classes), 1 + max(r.label for p in parts for r in p.records))
    cards = []
    for enc in encoders:
        root = out if enc.key == "main" else out / BASELINES_DIR / enc.key
        per_split, details, group_results = {}, {}, {}
        for split, (train_part, test_part) in pairs.items():
            run_dir = root / split if split else root
            print(f"{label}: {enc.info['name']}{' ' + split if split else ''} -> {run_dir}")
            backbone = copy.deepcopy(enc.module)  # every split starts from the same weights
            res = finetune(backbone, train_part.records, test_part.records, num_classes, run_dir, cfg, test_views,
                           resume=resume, backend=backend, progress=progress, encoder_info=enc.info)
            name = split or "default"
            per_split[name] = res.metrics
            details[name] = {"history": res.history, "skipped_test": res.skipped_test,
                             "n_train": len(train_part.records), "n_test": len(res.labels)}
            group_results[name] = _group_metrics(res.probabilities, res.labels, classes, groups, topk_accuracy)
            if plot:
                plots.confusion_matrix_plot(res.labels, res.probabilities.argmax(1),
                                            classes or [str(i) for i in range(num_classes)],
                                            run_dir / f"{label}_confusion.png",
                                            title=f"{enc.info['name']}: {label} confusion (rows: true class)")
        names = list(per_split)
        metrics = {k: float(np.mean([per_split[s][k] for s in names])) for k in per_split[names[0]]}
        common = [g for g in group_results[names[0]] if all(g in group_results[s] for s in names)]
        group_means = {g: {k: float(np.mean([group_results[s][g][k] for s in names]))
                           for k in group_results[names[0]][g]} for g in common}
        protocol = dict(cfg.to_dict(), test_views=test_views.to_dict(),
                        split=names[0] if len(names) == 1 else "mean of " + ", ".join(names),
                        selection="none: the model after the last epoch is tested once",
                        test="mean softmax over every view (clips x crops) of each test video")
        dataset = dict(next(iter(pairs.values()))[0].info)
        card = make_card(label, enc.info, metrics, protocol, dataset,
                         splits=per_split if len(names) > 1 else {}, groups=group_means,
                         extra={"label": label, "training": details})
        path = write_card(card, root, label)
        print(f"card: {path}")
        cards.append(card)
    print_cards(cards)
    return cards


def _group_metrics(probs, labels, classes, groups, topk_accuracy) -> dict:
    if not groups or not classes:
        return {}
    class_group = np.array([groups.get(c, "") for c in classes] + [""])
    per_video = class_group[np.where(labels < len(classes), labels, len(classes))]
    return {g: topk_accuracy(probs[per_video == g], labels[per_video == g])
            for g in sorted(set(groups.values())) if g and (per_video == g).any()}
