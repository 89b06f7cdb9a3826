"""The videos ``mlfo inspect`` looks at and their features, through ``mlfo extract``'s
views and code (``mlfo.eval.shards.extract_sharded``): one path, so inspection extracts
under torchrun, and resumes from finished shards, wherever extraction does.

Each video is extracted as two items, its even and its odd clips (``HalfViews``), so one
pass gives both the video's feature (the view-weighted mean of the halves: the feature
``mlfo extract`` writes, up to float rounding) and two disjoint views of it for the
alignment of ``mlfo.inspect.health``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from mlfo.data.datasets import EvalClipDataset, item_key
from mlfo.data.splits import EvalData
from mlfo.errors import MLFOError
from mlfo.eval.views import CROPS, ViewConfig

LEVELS = ("low", "mid", "high")


@dataclass
class Collection:
    """The collection's videos, then the extra query files (``--query``)."""

    records: list  # VideoRecord
    n_collection: int
    classes: list[str]
    groups: dict[str, str]  # class -> group, when the data names groups
    dropped: list[dict] = field(default_factory=list)  # {"path", "reason"}: not indexed / unreadable
    query_rows: list[int] = field(default_factory=list)  # rows of the ``--query`` videos

    @property
    def labelled(self) -> bool:
        return any(r.label >= 0 for r in self.records[: self.n_collection])


def load_collection(data: str, data_cfg: EvalData, queries=(), progress: bool = True) -> Collection:
    """Every part ``data`` resolves to (train and test alike) as one collection, plus the
    ``queries`` files, each probed here: an unreadable one is one line naming it."""
    from mlfo.data.sources import VideoRecord, probe_video

    parts, classes, groups, dropped = data_cfg.resolve(data, progress=progress)
    seen: set[str] = set()  # a video in several parts (UCF101 --split all) is one video of the collection
    records = [r for part in parts for r in part.records if not (r.path in seen or seen.add(r.path))]
    if not records:
        raise MLFOError(f"{data}: no readable videos to inspect")
    n, row_of, query_rows = len(records), {str(Path(r.path).resolve()): i for i, r in enumerate(records)}, []
    for path in queries:
        resolved = str(Path(path).resolve())
        if resolved not in row_of:  # a file outside the collection: probed, extracted, never a neighbour
            meta = probe_video(str(path), backend=data_cfg.backend)
            if meta["status"] != "ok" or meta["num_frames"] <= 0:
                raise MLFOError(f"--query {path}: {meta['status'] if meta['status'] != 'ok' else 'no frames'}")
            row_of[resolved] = len(records)
            records.append(VideoRecord(resolved, **meta))
        if row_of[resolved] not in query_rows:
            query_rows.append(row_of[resolved])
    return Collection(records, n, classes, groups, [{"path": d["path"], "reason": d["reason"]} for d in dropped],
                      query_rows)


class _ClipSubset(EvalClipDataset):
    """The views of every other clip (``parity`` 0: clips 0, 2, ...; 1: clips 1, 3, ...)."""

    def __init__(self, base: EvalClipDataset, parity: int):
        self.__dict__.update(base.__dict__)
        self.parity = parity

    def clip_indices(self, num_frames: int) -> list[list[int]]:
        return super().clip_indices(num_frames)[self.parity :: 2]


class HalfViews(Dataset):
    """Item 2i: video i's even clips, item 2i + 1: its odd clips (``EvalClipDataset`` items)."""

    def __init__(self, views: ViewConfig, records, backend: str = "auto"):
        check_views(views)
        base = views.dataset(records, backend=backend)
        self.halves = (_ClipSubset(base, 0), _ClipSubset(base, 1))
        self.records = [r for r in records for _ in (0, 1)]  # item -> its video (skip messages)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key) -> dict:
        _, item = item_key(key)
        out = self.halves[item % 2][item // 2]
        out["index"] = item
        return out


def check_views(views: ViewConfig) -> None:
    if views.stride is not None or views.num_clips < 2:
        raise MLFOError("--clips: inspect needs at least 2 uniform clips per video (alignment compares "
                        "the even and the odd clips), and no --stride")


def half_weights(views: ViewConfig) -> tuple[int, int]:
    """Views in the even and in the odd half of a video."""
    crops = CROPS[views.crop_mode]
    return math.ceil(views.num_clips / 2) * crops, (views.num_clips // 2) * crops


@dataclass
class VideoFeatures:
    """One encoder's features of the videos that decoded (both halves)."""

    videos: np.ndarray  # (n,) indices into Collection.records
    levels: dict[str, np.ndarray]  # level -> (n, C): the mean over every view
    halves: dict[str, tuple[np.ndarray, np.ndarray]]  # level -> even / odd clips' (n, C)


def extract(encoders: dict, collection: Collection, views: ViewConfig, folder: Path, ctx, *,
            shard_videos: int = 256, batch_size: int = 32, workers: int = 0, precision: str = "fp32",
            backend: str = "auto", progress: bool = True) -> tuple[dict[str, VideoFeatures], list[dict]] | None:
    """Features of every video for every encoder (one decoding pass for all), through
    ``mlfo extract``'s sharded path: under torchrun the ranks share the shards, and shards
    already in ``folder`` are not computed again. On rank 0: the features and the videos
    that failed to decode, as {"path", "reason"}; None on the other ranks."""
    from mlfo.eval.shards import extract_sharded

    dataset = HalfViews(views, collection.records, backend)
    w_even, w_odd = half_weights(views)
    res = extract_sharded(encoders, dataset, folder, ctx, shard_videos=2 * shard_videos, levels=LEVELS,
                          device=ctx.device, precision=precision, progress=progress, desc="inspect: features",
                          batch_size=batch_size, views_per_video=w_even, num_workers=workers)
    if res is None:
        return None
    row_of = {item: row for row, item in enumerate(res.kept)}
    videos = np.array([v for v in range(len(collection.records)) if 2 * v in row_of and 2 * v + 1 in row_of],
                      dtype=np.int64)
    even = np.array([row_of[2 * v] for v in videos], dtype=np.int64)
    odd = np.array([row_of[2 * v + 1] for v in videos], dtype=np.int64)
    out = {}
    for key, per_level in res.features.items():
        levels, halves = {}, {}
        for lv, feats in per_level.items():
            a, b = feats[even], feats[odd]
            halves[lv] = (a, b)
            levels[lv] = ((w_even * a.astype(np.float64) + w_odd * b) / (w_even + w_odd)).astype(np.float32)
        out[key] = VideoFeatures(videos, levels, halves)
    failed = sorted({item // 2 for item in res.failed})
    reasons = {s["path"]: s.get("reason", "") for s in res.skipped}
    skipped = [{"path": collection.records[v].path, "reason": reasons.get(collection.records[v].path, "decode")}
               for v in failed]
    return out, skipped
