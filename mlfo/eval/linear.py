"""Linear probe on cached features, with model selection that never sees the test split.

The probe is BatchNorm (no affine) + Linear, trained by SGD with momentum and a cosine
learning-rate schedule. lr, weight decay and the number of epochs are chosen on a
stratified hold-out part of the train split; the chosen setting is then refitted on the
whole train split (same schedule, stopped at the chosen epoch) and the test split is
scored once. Reporting the best test epoch instead -- common in the field -- inflates
numbers, so mlfo does not.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mlfo.errors import MLFOError
from mlfo.train.optim import build_optimizer, lr_factor, set_learning_rates
from mlfo.train.seeding import derive_seed


@dataclass
class LinearProbeConfig:
    lrs: tuple[float, ...] = field(default=(1.0, 0.1, 0.01), metadata={"help": "learning rates tried"})
    weight_decays: tuple[float, ...] = field(default=(0.0, 1e-4, 1e-3), metadata={
        "flag": "--wds", "help": "weight decays tried"})
    epochs: int = field(default=100, metadata={"help": "epochs of the cosine schedule"})
    batch_size: int | None = field(default=None, metadata={
        "help": "None: 256, smaller on small sets (at least 8 steps per epoch)"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    holdout: float = field(default=0.15, metadata={
        "help": "fraction of each train class held out to choose lr / wd / epoch"})
    refit: bool = field(default=True, metadata={
        "flag": "--keep-best", "invert": True,
        "help": "keep the model trained without the hold-out instead of refitting on all of train"})
    seed: int = field(default=0, metadata={"help": "seed of the probe's initialisation and order"})
    device: str | None = field(default=None, metadata={"help": "cuda / cpu (default: cuda when available)"})

    def __post_init__(self):
        if not self.lrs or not self.weight_decays:
            raise MLFOError("lrs: give at least one learning rate and one weight decay")
        if self.epochs < 1:
            raise MLFOError(f"epochs: must be at least 1, got {self.epochs}")
        if not 0 < self.holdout < 1:
            raise MLFOError(f"holdout: must be between 0 and 1, got {self.holdout}")

    def protocol(self) -> dict:
        return {"probe": "BatchNorm (no affine) + linear on frozen cached features, SGD momentum 0.9, cosine lr",
                "epochs": self.epochs, "lrs": list(self.lrs), "weight_decays": list(self.weight_decays),
                "batch_size": self.batch_size or "auto (see selection.batch_size)", "holdout": self.holdout,
                "seed": self.seed,
                "selection": (f"lr, weight decay and epoch chosen on a stratified {self.holdout:.0%} hold-out of "
                              "train; " + ("refitted on all of train" if self.refit else "held-out model kept")
                              + "; test evaluated once")}


@dataclass
class LinearProbeResult:
    metrics: dict[str, float]  # test top1 / top5, percent
    chosen: dict  # lr, weight_decay, epoch, holdout_top1
    search: list[dict] = field(default_factory=list)  # every (lr, wd): best epoch, its hold-out acc
    predictions: np.ndarray | None = None  # test predictions (Q,)
    scores: np.ndarray | None = None  # test class probabilities (Q, C)


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, holdout): about ``fraction`` of each class is held out; a class with a
    single video stays entirely in the fit part (it could not be learnt otherwise)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(derive_seed(seed, "holdout"))
    fit, hold = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_hold = int(round(fraction * len(idx))) if len(idx) > 1 else 0
        n_hold = min(max(n_hold, 1 if len(idx) > 1 and fraction > 0 else 0), len(idx) - 1)
        hold.extend(idx[:n_hold])
        fit.extend(idx[n_hold:])
    return np.sort(np.array(fit, dtype=np.int64)), np.sort(np.array(hold, dtype=np.int64))


def _make_probe(dim: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))


def _train(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    lr: float,
    weight_decay: float,
    cfg: LinearProbeConfig,
    epochs_to_run: int,
    eval_x: torch.Tensor | None = None,
    eval_y: torch.Tensor | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train for ``epochs_to_run`` epochs of a cosine schedule that spans ``cfg.epochs``;
    returns the model and the per-epoch accuracy on (eval_x, eval_y) when given."""
    gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "probe order"))  # not the init's stream
    torch.manual_seed(derive_seed(cfg.seed, "probe init"))
    model = _make_probe(x.shape[1], num_classes).to(x.device)
    opt = build_optimizer("sgd", model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(len(x) / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    steps = 0
    curve = []
    for _ in range(epochs_to_run):
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        for start in range(0, len(x), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            set_learning_rates(opt, [lr], lr_factor(steps, total))
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        if eval_x is not None:
            curve.append(_accuracy(model, eval_x, eval_y))
    return model, curve


@torch.no_grad()
def _probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.softmax(model(x), dim=1)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((_probabilities(model, x).argmax(1) == y).float().mean() * 100)


def linear_probe(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    cfg: LinearProbeConfig | None = None,
) -> LinearProbeResult:
    """Select (lr, weight decay, epoch) on a stratified hold-out of train, refit, score test once."""
    cfg = cfg or LinearProbeConfig()
    if cfg.batch_size is None:
        cfg = dataclasses.replace(cfg, batch_size=int(min(256, max(16, math.ceil(len(train) / 8)))))
    if len(train) < 4:
        raise MLFOError(f"linear probe: needs at least 4 train videos, got {len(train)}")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    x_all = torch.as_tensor(np.asarray(train), dtype=torch.float32, device=device)
    y_all = torch.as_tensor(np.asarray(train_labels), dtype=torch.long, device=device)
    fit_idx, hold_idx = stratified_holdout(np.asarray(train_labels), cfg.holdout, cfg.seed)
    if len(hold_idx) == 0:
        raise MLFOError("linear probe: no class has two train videos, nothing to hold out for model selection")
    fit_t = torch.as_tensor(fit_idx, device=device)
    hold_t = torch.as_tensor(hold_idx, device=device)

    search, best, best_model = [], None, None
    for lr, wd in itertools.product(cfg.lrs, cfg.weight_decays):
        model, curve = _train(
            x_all[fit_t], y_all[fit_t], num_classes, lr, wd, cfg, cfg.epochs, x_all[hold_t], y_all[hold_t]
        )
        epoch = int(np.argmax(curve)) + 1  # earliest best epoch
        entry = {"lr": lr, "weight_decay": wd, "epoch": epoch, "holdout_top1": curve[epoch - 1]}
        search.append(entry)
        if best is None or entry["holdout_top1"] > best["holdout_top1"]:
            best = entry
            if not cfg.refit:  # keep the held-out-selected model, trained up to its best epoch
                best_model, _ = _train(x_all[fit_t], y_all[fit_t], num_classes, lr, wd, cfg, epoch)

    if cfg.refit:
        best_model, _ = _train(x_all, y_all, num_classes, best["lr"], best["weight_decay"], cfg, best["epoch"])
    x_test = torch.as_tensor(np.asarray(test), dtype=torch.float32, device=device)
    probs = _probabilities(best_model, x_test).cpu().numpy()
    from mlfo.eval.knn import topk_accuracy

    metrics = topk_accuracy(probs, np.asarray(test_labels))
    chosen = dict(best, n_fit=int(len(fit_idx)), n_holdout=int(len(hold_idx)), refit=cfg.refit,
                  batch_size=cfg.batch_size)
    return LinearProbeResult(metrics, chosen, search, probs.argmax(1), probs)
