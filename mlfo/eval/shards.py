"""One data part's extraction split into shards: spread over torchrun's processes, written
as they finish, merged in index order, resumed from the shards that are on disk.

A shard is ``shard_videos`` consecutive videos of the part (the last one shorter). Rank 0
lists the shards not yet on disk and every rank takes every W-th of them, so a resumed
extraction (with any number of processes) computes only what is missing. Each shard is
one ``.npz`` (plain arrays and a JSON string, read with ``allow_pickle=False``) written to
a temporary name and renamed, so a killed process leaves whole shards or none. Rank 0
merges them into the part's ``ExtractionResult`` once every rank is done.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlfo.data.loading import SkipLog
from mlfo.distributed import DistContext, all_gather_objects, all_reduce_min
from mlfo.errors import MLFOError
from mlfo.eval.extract import BatchFeatures, ExtractionResult, iter_features, stack_batches


def shard_ranges(n: int, shard_videos: int) -> list[range]:
    """Consecutive index ranges of at most ``shard_videos`` videos covering ``range(n)``."""
    if shard_videos < 1:
        raise MLFOError(f"--shard-videos: must be at least 1, got {shard_videos}")
    return [range(s, min(n, s + shard_videos)) for s in range(0, n, shard_videos)]


def shard_file(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:06d}.npz"


def save_shard(path: Path, span: range, batches: Sequence[BatchFeatures], keys: Sequence[str],
               levels: Sequence[str]) -> None:
    """Write one shard atomically (temporary name in the same folder, then rename)."""
    stacked = stack_batches(batches, keys, levels)
    meta = {"start": span.start, "stop": span.stop, "kept": [i for b in batches for i in b.index],
            "failed": [i for b in batches for i in b.failed], "skipped": [s for b in batches for s in b.skipped]}
    arrays = {f"{k}.{lv}": stacked[k][lv].astype(np.float32) for k in keys for lv in levels}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, path)
    except OSError as err:  # disk full, read-only: one line, and no half-written shard
        tmp.unlink(missing_ok=True)
        raise MLFOError(f"{path}: cannot write the shard ({err.strerror or err})") from None


def load_shard(path: Path, span: range, keys: Sequence[str], levels: Sequence[str]) -> BatchFeatures | None:
    """The shard at ``path`` as one batch, or None when it is missing, unreadable or not
    the shard of ``span`` with these encoders and levels (then it is computed again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            feats = {k: {lv: z[f"{k}.{lv}"] for lv in levels} for k in keys}
    except (OSError, KeyError, ValueError):
        return None
    if (meta.get("start"), meta.get("stop")) != (span.start, span.stop):
        return None
    if any(len(a) != len(meta["kept"]) for per in feats.values() for a in per.values()):
        return None
    return BatchFeatures(meta["kept"], feats, meta["failed"], meta["skipped"])


def _compute_shards(encoders, dataset, folder: Path, spans: dict[int, range], *, levels, write, **loader) -> None:
    """Compute the shards ``spans`` (k -> range) in order, writing each when its last video is done."""
    from tqdm.auto import tqdm

    order = [i for k in sorted(spans) for i in spans[k]]
    owner = {i: k for k, span in spans.items() for i in span}
    pending = {k: len(span) for k, span in spans.items()}
    done: dict[int, list[BatchFeatures]] = {k: [] for k in spans}
    bar = tqdm(total=len(order), unit="video", desc=loader.pop("desc"), disable=not loader.pop("progress"),
               dynamic_ncols=True)
    skips = SkipLog(getattr(dataset, "records", None), write=write)
    for batch in iter_features(encoders, dataset, indices=order, levels=levels, skips=skips, **loader):
        for k in sorted({owner[i] for i in batch.index + batch.failed}):  # a batch may straddle two shards
            mine = [r for r, i in enumerate(batch.index) if owner[i] == k]
            done[k].append(BatchFeatures([batch.index[r] for r in mine],
                                         {key: {lv: a[mine] for lv, a in per.items()}
                                          for key, per in batch.features.items()},
                                         [i for i in batch.failed if owner[i] == k],
                                         [s for i, s in zip(batch.failed, batch.skipped) if owner[i] == k]))
            pending[k] -= len(mine) + len(done[k][-1].failed)
            if pending[k] == 0:
                save_shard(shard_file(folder, k), spans[k], done.pop(k), list(encoders), levels)
        bar.update(len(batch.index) + len(batch.failed))
    bar.close()


def extract_sharded(encoders: dict[str, nn.Module], dataset, folder: Path, ctx: DistContext, *,
                    shard_videos: int, levels: Sequence[str], device: torch.device, precision: str,
                    progress: bool = True, desc: str = "extract", **loader) -> ExtractionResult | None:
    """Every shard of ``dataset`` on disk under ``folder``, computed by the ranks together;
    the merged result on rank 0 (None elsewhere). A rank that fails stops every rank."""
    start = time.perf_counter()
    spans = shard_ranges(len(dataset), shard_videos)
    keys, levels = list(encoders), list(levels)
    missing = None
    if ctx.is_main:
        missing = [k for k, span in enumerate(spans) if load_shard(shard_file(folder, k), span, keys, levels) is None]
    missing = all_gather_objects(ctx, missing)[0]  # rank 0's list: every rank deals out the same shards
    mine = {k: spans[k] for k in missing[ctx.rank :: ctx.world_size]}
    ok = False
    try:
        if ctx.is_main and len(missing) < len(spans):
            print(f"mlfo: {desc}: {len(spans) - len(missing)} of {len(spans)} shards were done earlier; "
                  f"computing {len(missing)}")
        _compute_shards(encoders, dataset, folder, mine, levels=levels, device=device, precision=precision,
                        write=print if ctx.is_main else (lambda _: None), desc=desc,
                        progress=progress and ctx.is_main, **loader)
        ok = True
    finally:
        if all_reduce_min(ctx, int(ok)) == 0 and ok:
            raise MLFOError(f"{desc}: another process failed (see its message); run the same command "
                            "again to resume from the finished shards")
    return _merge(folder, spans, keys, levels, time.perf_counter() - start, device, precision) if ctx.is_main else None


def _merge(folder: Path, spans: list[range], keys, levels, seconds: float, device, precision) -> ExtractionResult:
    parts = []
    for k, span in enumerate(spans):
        part = load_shard(shard_file(folder, k), span, keys, levels)
        if part is None:
            raise MLFOError(f"{shard_file(folder, k)}: missing or unreadable after extraction")
        parts.append(part)
    return ExtractionResult(stack_batches(parts, keys, levels), [i for p in parts for i in p.index],
                            [s for p in parts for s in p.skipped], sorted(i for p in parts for i in p.failed),
                            seconds, str(device), precision)
