"""Per-video features of frozen encoders, averaged over an explicit set of views.

A video's feature is the mean of ``encoder(view)`` over its views (``ViewConfig``).
Several encoders (the pretrained one and its baselines) run on the same decoded batches,
so decoding, the slow part on a CPU, happens once. The views arrive as uint8 and are
normalised on the device; on a GPU the forward runs under bf16 autocast with
``cudnn.benchmark`` (``precision="auto"``), fp32 elsewhere.

``iter_features`` yields the features batch by batch (what ``mlfo.eval.shards`` writes to
disk as it goes); ``compute_features`` collects them for a whole dataset.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mlfo.data.loading import SkipLog, batch_size_of, build_loader
from mlfo.data.transforms import normalize_clips
from mlfo.errors import MLFOError

PRECISIONS = ("auto", "fp32", "bf16")


def _pooled(module: nn.Module, clips: torch.Tensor, levels: Sequence[str]) -> dict[str, torch.Tensor]:
    """level -> (N, C) globally average-pooled features of a batch of clips."""
    if list(levels) == ["high"]:
        return {"high": module(clips)}
    maps = module.forward_levels(clips)
    return {lv: maps[lv].mean(dim=(2, 3, 4)) for lv in levels}


@dataclass
class ExtractionResult:
    features: dict[str, dict[str, np.ndarray]]  # encoder key -> level -> (N_ok, C)
    kept: list[int]  # dataset indices of the videos that have features, in order
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"} of videos that failed to decode
    failed: list[int] = field(default_factory=list)  # their dataset indices
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"


@dataclass
class BatchFeatures:
    """One loader batch's features: ``index`` (videos with features, in row order), the
    ``failed`` indices and their skip entries ({"path", "reason"})."""

    index: list[int]
    features: dict[str, dict[str, np.ndarray]]  # encoder key -> level -> (len(index), C)
    failed: list[int]
    skipped: list[dict]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on a GPU, fp32 elsewhere (CPU autocast is slower than fp32 there)."""
    if precision not in PRECISIONS:
        raise MLFOError(f"--precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _views_of(batch: dict) -> tuple[torch.Tensor, list[int]]:
    """uint8 (sum V_i, T, S, S, 3) views of a collated batch and each video's view count."""
    views = batch["views"]
    if "views_counts" in batch:  # sliding windows: already concatenated
        return views, batch["views_counts"].tolist()
    return views.flatten(0, 1), [views.shape[1]] * views.shape[0]


def _forward_views(encoders: dict[str, nn.Module], views: torch.Tensor, counts: list[int],
                   levels: Sequence[str], batch_size: int, device: torch.device,
                   precision: str) -> dict[str, dict[str, np.ndarray]]:
    """Each encoder's per-video mean over ``views`` (``counts[i]`` consecutive views per video)."""
    if views.dtype != torch.uint8:
        raise TypeError(f"views must be uint8 (V, T, S, S, 3) frames, got {views.dtype}")
    owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(device)
    denom = torch.tensor(counts, device=device, dtype=torch.float64)[:, None]
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, module in encoders.items():
        sums: dict[str, torch.Tensor] = {}
        for c in range(0, len(views), batch_size):
            clips = normalize_clips(views[c : c + batch_size].to(device, non_blocking=True))  # (n, 3, T, S, S)
            with _autocast(device, precision):
                pooled = _pooled(module, clips, levels)
            for lv in levels:
                feats = pooled[lv].double()  # (n, C)
                if lv not in sums:
                    sums[lv] = torch.zeros(len(counts), feats.shape[1], device=device, dtype=torch.float64)
                sums[lv].index_add_(0, owner[c : c + len(clips)], feats)
        out[key] = {lv: (sums[lv] / denom).float().cpu().numpy() for lv in levels}
    return out


@torch.no_grad()
def iter_features(encoders: dict[str, nn.Module], dataset, *, indices: Sequence[int] | None = None,
                  levels: Sequence[str] = ("high",), batch_size: int = 32, views_per_video: int | None = None,
                  num_workers: int = 0, device: torch.device, precision: str = "fp32",
                  skips: SkipLog | None = None) -> Iterator[BatchFeatures]:
    """``BatchFeatures`` of ``dataset[indices]`` (all items by default), in order.

    ``batch_size`` counts clips per forward pass; a loader batch holds
    ``batch_size // views_per_video`` videos (one when the view count varies).
    """
    for m in encoders.values():
        m.to(device).eval()
    videos_per_batch = max(1, batch_size // views_per_video) if views_per_video else 1
    order = list(range(len(dataset))) if indices is None else list(indices)
    loader = build_loader(dataset, batch_size=videos_per_batch, sampler=order, num_workers=num_workers,
                          pin_memory=device.type == "cuda")
    skips = skips or SkipLog(getattr(dataset, "records", None), write=lambda _: None)
    cudnn = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cudnn or device.type == "cuda"  # same view shapes every batch
    try:
        for batch in loader:
            first = len(skips.entries)
            skips.add(batch["skipped"])
            failed = [index for index, _ in batch["skipped"]]
            feats = {k: {} for k in encoders}
            if batch_size_of(batch):
                views, counts = _views_of(batch)
                feats = _forward_views(encoders, views, counts, levels, batch_size, device, precision)
            index = batch["index"].tolist() if batch_size_of(batch) else []
            yield BatchFeatures(index, feats, failed, skips.entries[first:])
    finally:
        torch.backends.cudnn.benchmark = cudnn


def stack_batches(parts: Sequence[BatchFeatures], keys: Sequence[str], levels: Sequence[str]):
    """Concatenate batches' features: encoder key -> level -> (sum N, C) (a (0, 0) array when empty)."""
    return {k: {lv: (np.concatenate([p.features[k][lv] for p in parts if p.index])
                     if any(p.index for p in parts) else np.zeros((0, 0), np.float32))
                for lv in levels} for k in keys}


def compute_features(
    encoders: dict[str, nn.Module],
    dataset,
    *,
    levels: Sequence[str] = ("high",),
    batch_size: int = 32,
    views_per_video: int | None = None,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "extract",
    precision: str = "fp32",
    indices: Sequence[int] | None = None,
) -> ExtractionResult:
    """Mean over each video's views of each encoder's pooled features, for every item of
    ``dataset`` (or ``indices``). ``dataset[i]["views"]``: uint8 (V, T, S, S, 3).
    ``precision``: fp32 (default), bf16 (autocast) or auto (bf16 on a GPU)."""
    from tqdm.auto import tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    precision = resolve_precision(precision, device)
    start = time.perf_counter()
    total = len(dataset) if indices is None else len(indices)
    bar = tqdm(total=total, unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    skips = SkipLog(getattr(dataset, "records", None), write=bar.write)
    batches = []
    for part in iter_features(encoders, dataset, indices=indices, levels=levels, batch_size=batch_size,
                              views_per_video=views_per_video, num_workers=num_workers, device=device,
                              precision=precision, skips=skips):
        batches.append(part)
        bar.update(len(part.index) + len(part.failed))
        if skips.entries:
            bar.set_postfix(skipped=len(skips.entries))
    bar.close()
    kept = [i for p in batches for i in p.index]
    failed = sorted(i for p in batches for i in p.failed)
    return ExtractionResult(stack_batches(batches, list(encoders), levels), kept, skips.entries, failed,
                            time.perf_counter() - start, str(device), precision)
