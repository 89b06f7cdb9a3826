"""Per-video features of frozen encoders, averaged over an explicit set of views.

A video's feature is the mean of ``encoder(view)`` over its views (``ViewConfig``).
Several encoders (the pretrained one and its baselines) run on the same decoded batches,
so decoding, the slow part on a CPU, happens once. ``write_features`` stores one feature
set per data part and encoder, with the views in its ``protocol.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlfo.data import provenance
from mlfo.data.loading import SkipLog, batch_size_of, build_loader
from mlfo.data.splits import DataPart
from mlfo.errors import MLFOError
from mlfo.eval.cards import code_version
from mlfo.eval.encoders import Encoder
from mlfo.eval.features import BASELINES_DIR, FeatureSet, save_feature_set
from mlfo.eval.views import ViewConfig


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


@torch.no_grad()
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
) -> ExtractionResult:
    """Mean over each video's views of each encoder's pooled features.

    ``batch_size`` counts clips per forward pass; a loader batch holds
    ``batch_size // views_per_video`` videos (one when the view count varies).
    """
    from tqdm.auto import tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for m in encoders.values():
        m.to(device).eval()
    videos_per_batch = max(1, batch_size // views_per_video) if views_per_video else 1
    loader = build_loader(dataset, batch_size=videos_per_batch, num_workers=num_workers,
                          pin_memory=device.type == "cuda")
    sums = {k: {lv: [] for lv in levels} for k in encoders}
    kept, failed = [], []
    start = time.perf_counter()
    bar = tqdm(total=len(dataset), unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    skips = SkipLog(getattr(dataset, "records", None), write=bar.write)
    for batch in loader:
        skips.add(batch["skipped"])
        failed += [index for index, _ in batch["skipped"]]
        if "views" in batch:
            views = batch["views"]
            counts = (batch["views_counts"].tolist() if "views_counts" in batch
                      else [views.shape[1]] * views.shape[0])
            views = views.flatten(0, 1) if "views_counts" not in batch else views  # (sum V_i, 3, T, S, S)
            owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(device)
            for key, module in encoders.items():
                per_level = {lv: torch.zeros(len(counts), 0) for lv in levels}
                for c in range(0, len(views), batch_size):
                    clips = views[c : c + batch_size].to(device, non_blocking=True).float()
                    out = _pooled(module, clips, levels)
                    for lv in levels:
                        feats = out[lv].float()
                        if per_level[lv].shape[1] == 0:
                            per_level[lv] = torch.zeros(len(counts), feats.shape[1], device=device, dtype=torch.float64)
                        per_level[lv].index_add_(0, owner[c : c + len(clips)], feats.double())
                denom = torch.tensor(counts, device=device, dtype=torch.float64)[:, None]
                for lv in levels:
                    sums[key][lv].append((per_level[lv] / denom).float().cpu().numpy())
            kept += batch["index"].tolist()
        bar.update(batch_size_of(batch) + len(batch["skipped"]))
        if failed:
            bar.set_postfix(skipped=len(failed))
    bar.close()
    features = {
        k: {lv: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for lv, v in per.items()}
        for k, per in sums.items()
    }
    return ExtractionResult(features, kept, skips.entries, sorted(failed), time.perf_counter() - start, str(device))


def write_features(
    encoder: Encoder,
    baselines: list[Encoder],
    parts: list[DataPart],
    classes: list[str],
    groups: dict[str, str],
    dropped: list[dict],
    out: str | os.PathLike,
    views: ViewConfig,
    *,
    levels: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Extract every part with the encoder and its baselines; write feature sets.

    Returns encoder key -> written feature folders. The encoder's sets go to ``out/<part>``,
    baseline ``b``'s to ``out/baselines/<b>/<part>``.
    """
    out = Path(out)
    level_names = ["low", "mid", "high"] if levels else ["high"]
    all_encoders = [encoder] + baselines
    modules = {e.key: e.module for e in all_encoders}
    written: dict[str, list[Path]] = {e.key: [] for e in all_encoders}
    for part in parts:
        if not part.records:
            raise MLFOError(f"{part.info.get('source')}: no readable videos to extract")
        dataset = views.dataset(part.records, backend=backend)
        res = compute_features(modules, dataset, levels=level_names, batch_size=batch_size,
                               views_per_video=views.views_per_video, num_workers=num_workers,
                               device=device, progress=progress, desc=f"extract {part.subdir or 'videos'}")
        part_dropped = [d for d in dropped if d["part"] == part.subdir]
        skipped = part_dropped + res.skipped
        kept = [part.records[i] for i in res.kept]
        if not kept:
            raise MLFOError(f"{part.info.get('source')}: every video failed to decode")
        for enc in all_encoders:
            feats = res.features[enc.key]
            protocol = {
                "encoder": enc.info,
                "views": views.to_dict(),
                "levels": level_names,
                "data": part.info,
                "classes": classes,
                "groups": groups,
                "n_videos": len(kept),
                "n_skipped": len(skipped),
                "skipped": skipped,
                "feature_dim": int(feats["high"].shape[1]),
                "device": res.device,
                "seconds": round(res.seconds, 2),
                "code_version": code_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            overlap = provenance.overlap_summary(enc.trained_on, kept)
            if overlap is not None:  # the encoder records its pretraining videos
                protocol["pretraining_overlap"] = overlap
                if overlap["videos"] and part.info.get("subset") != "train":
                    print(f"mlfo: {part.subdir or 'videos'}: {overlap['videos']} of {overlap['of']} videos were "
                          f"among {enc.info['name']}'s pretraining videos (matched by {overlap['matched']})")
            fs = FeatureSet(
                features=feats["high"], labels=np.array([r.label for r in kept], dtype=np.int64),
                paths=[r.path for r in kept], label_names=[r.label_name for r in kept], protocol=protocol,
                levels={lv: feats[lv] for lv in level_names if lv != "high"},
            )
            base = out if enc.key == "main" else out / BASELINES_DIR / enc.key
            written[enc.key].append(save_feature_set(fs, base / part.subdir))
        msg = f"{part.subdir or 'videos'}: {len(kept)} videos, {views.describe()}"
        if skipped:
            msg += f"; skipped {len(skipped)} (see protocol.json 'skipped')"
        print(msg)
    return written
