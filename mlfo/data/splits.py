"""Labelled data for evaluation: which videos form each part (split N / train, test), the
class list shared by every part, and the class groups.

The same resolution serves feature extraction and fine-tuning:

- UCF101 / HMDB51 (``split_dir``): ``split{N}/{train,test}`` for N in ``split`` (1-3 or all);
- a folder with ``train.csv`` and ``test.csv`` (the demo data): ``train`` and ``test``;
- anything else ``load_index`` reads: one part, in ``subset``'s folder if given.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mlfo.data.sources import detect_format, load_index
from mlfo.data.sources.formats.common import read_classes_json
from mlfo.errors import MLFOError


@dataclass
class EvalData:
    """Where the labelled videos of an evaluation are and how to read them."""

    fmt: Literal["auto", "folder", "csv", "ucf101", "hmdb51"] = field(default="auto", metadata={
        "help": "dataset format"})
    split_dir: str | None = field(default=None, metadata={"help": "UCF101 / HMDB51 official split files"})
    split: str | None = field(default=None, metadata={"help": "official split 1, 2, 3 or all (default 1)"})
    subset: Literal["train", "test", "both"] | None = field(default=None, metadata={
        "help": "which subset (default: both when the data has train and test)"})
    backend: Literal["auto", "pyav", "frames", "torchcodec"] = field(default="auto", metadata={
        "help": "video decoder"})

    def resolve(self, data: str, progress: bool = True):
        """``resolve_data(data, ...)`` with these settings."""
        return resolve_data(data, fmt=self.fmt, split=self.split, subset=self.subset, split_dir=self.split_dir,
                            backend=self.backend, progress=progress)


@dataclass
class DataPart:
    """One list of videos to extract (e.g. split 1 / test) and where its features go."""

    subdir: str  # "" | "train" | "test" | "split1/train" ...
    records: list  # VideoRecord
    info: dict  # source, fmt, split, subset, name


def _has_train_test_csv(path: Path) -> bool:
    return path.is_dir() and (path / "train.csv").is_file() and (path / "test.csv").is_file()


def find_groups(data: str | os.PathLike) -> tuple[list[str], dict[str, str]]:
    """Class names and class -> group from a ``classes.json`` beside the data (demo data), or empty."""
    p = Path(data)
    for cand in ([p / "classes.json"] if p.is_dir() else []) + [p.parent / "classes.json"]:
        if cand.is_file():
            return read_classes_json(cand)
    return [], {}


def resolve_data(
    data: str,
    *,
    fmt: str = "auto",
    split: str | None = None,
    subset: str | None = None,
    split_dir: str | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> tuple[list[DataPart], list[str], dict[str, str], list[dict]]:
    """The parts to extract, the class list shared by all parts, class groups, and the videos
    dropped before extraction (unreadable when indexed).

    - UCF101 / HMDB51 (``--split-dir``): ``split{N}/{train,test}`` for N in --split (1-3 or all);
    - a folder with train.csv and test.csv (the demo data): ``train`` and ``test``;
    - anything else ``load_index`` reads: one part, in ``--subset``'s folder if given.
    ``--subset train|test`` restricts to one subset.
    """
    if fmt == "auto" and split_dir is not None and Path(split_dir).is_dir() and Path(data).is_dir():
        fmt = detect_format(Path(data), Path(split_dir))
    if subset not in (None, "both", "train", "test"):
        raise MLFOError(f"--subset: expected train, test or both, got {subset!r}")
    indexes = []
    for subdir, kwargs, info in _jobs(data, fmt, split, subset, split_dir):
        index = load_index(kwargs.pop("source"), backend=backend, progress=progress, **kwargs)
        indexes.append((subdir, index, dict(info, fmt=kwargs.get("fmt", fmt),
                                            source=str(Path(index.source)) if index.source else data)))
    names, groups = find_groups(data)
    classes = _shared_classes(names, [ix for _, ix, _ in indexes])
    parts, dropped = _parts(indexes, classes, dict(name=_dataset_name(data, fmt, split_dir), split_dir=split_dir))
    return parts, classes, groups, dropped


def _jobs(data: str, fmt: str, split, subset, split_dir) -> list[tuple[str, dict, dict]]:
    """(subdir, load_index arguments, info) of every part the data and options select."""
    subsets = ["train", "test"] if subset in (None, "both") else [subset]
    path = Path(data)
    jobs: list[tuple[str, dict, dict]] = []
    if fmt in ("ucf101", "hmdb51") or split_dir is not None:
        if split in (None, "all"):
            splits = [1, 2, 3] if split == "all" else [1]
        elif str(split).isdigit() and 1 <= int(split) <= 3:
            splits = [int(split)]
        else:
            raise MLFOError(f"--split: expected 1, 2, 3 or all, got {split!r}")
        for s in splits:
            for sub in subsets:
                jobs.append((f"split{s}/{sub}", dict(source=data, fmt=fmt, split=s, subset=sub, split_dir=split_dir),
                             {"split": s, "subset": sub}))
    elif split is not None:
        raise MLFOError(f"--split: official splits need UCF101 / HMDB51 data with --split-dir (got {data})")
    elif _has_train_test_csv(path):
        for sub in subsets:
            jobs.append((sub, dict(source=str(path / f"{sub}.csv"), fmt="csv"), {"subset": sub}))
    else:
        sub = subset if subset in ("train", "test") else ""
        jobs.append((sub, dict(source=data, fmt=fmt), {"subset": sub or None}))
    return jobs


def _parts(indexes, classes: list[str], common: dict) -> tuple[list[DataPart], list[dict]]:
    """One ``DataPart`` per index with the shared labels; the videos dropped (not usable)."""
    parts, dropped = [], []
    for subdir, index, info in indexes:
        records = []
        dropped += [{"path": s, "reason": "not indexed", "part": subdir} for s in getattr(index, "skipped", [])]
        for rec in index.records:
            if rec.status != "ok" or rec.num_frames <= 0:
                dropped.append({"path": rec.path, "reason": rec.status if rec.status != "ok" else "no frames",
                                "part": subdir})
                continue
            records.append(_with_shared_label(rec, index.classes, classes))
        parts.append(DataPart(subdir, records, dict(info, **common)))
    return parts, dropped


def _dataset_name(data: str, fmt: str, split_dir: str | None) -> str:
    if fmt in ("ucf101", "hmdb51"):
        return fmt
    p = Path(data).resolve()
    return p.name if p.is_dir() else f"{p.parent.name}/{p.name}"


def _shared_classes(preferred: list[str], indexes) -> list[str]:
    """One class list for every part, so label k means the same class in train and test."""
    seen = []
    for ix in indexes:
        for c in ix.classes:
            if c not in seen:
                seen.append(c)
    if preferred and all(c in preferred for c in seen):
        return list(preferred)
    if all(list(ix.classes) == list(indexes[0].classes) for ix in indexes):
        return list(indexes[0].classes)
    return sorted(seen)


def _with_shared_label(rec, own_classes: list[str], classes: list[str]):
    name = rec.label_name or (own_classes[rec.label] if 0 <= rec.label < len(own_classes) else "")
    label = classes.index(name) if name in classes else rec.label
    return dataclasses.replace(rec, label=label, label_name=name)
