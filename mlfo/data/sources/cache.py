"""The index cache: probe results kept beside the source, keyed by path, size and mtime.

Later runs only probe new or changed files. The cache is itself a valid CSV source.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from mlfo.data.sources.probe import file_key
from mlfo.data.sources.records import VideoRecord

CACHE_SUFFIX = ".mlfo-index.csv"
CACHE_COLUMNS = ["path", "num_frames", "fps", "width", "height", "label", "label_name", "status",
                 "file_size", "mtime_ns", "rotation"]


INSIDE_NAME = CACHE_SUFFIX  # a folder's own index, inside it (``mlfo data prepare`` writes one)


def default_cache_path(source: Path) -> Path:
    """The one index of a source, whatever selects its videos: for a folder (also a UCF101 /
    HMDB51 root, for every split and subset) ``<folder>/.mlfo-index.csv`` where that exists,
    else ``<folder>.mlfo-index.csv`` beside it; for a CSV ``<name>.mlfo-index.csv``. Under
    ``~/.cache/mlfo/index`` when the folder beside is read-only."""
    if source.is_dir() and (source / INSIDE_NAME).is_file():
        return source / INSIDE_NAME
    stem = source.stem if source.is_file() else source.name
    beside = source.parent / f"{stem}{CACHE_SUFFIX}"
    if os.access(source.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlfo" / "index"
    return home / f"{digest}-{beside.name}"


def read_cache(path: Path) -> dict[str, dict]:
    """path -> cached row; an unreadable or foreign cache is ignored (it is only a cache)."""
    if not path.is_file():
        return {}
    base = os.path.abspath(path.parent)
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or set(CACHE_COLUMNS) - set(rows[0]):
            return {}
        return {os.path.normpath(os.path.join(base, row["path"])): row for row in rows}
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}


def write_cache(path: Path, records: list[VideoRecord], keys: dict[str, tuple[int, int]]) -> bool:
    base = os.path.abspath(path.parent)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CACHE_COLUMNS)
            for r in records:
                try:
                    rel = os.path.relpath(r.path, base)
                except ValueError:  # another drive (Windows)
                    rel = r.path
                size, mtime = keys[r.path]
                writer.writerow([rel, r.num_frames, r.fps, r.width, r.height, r.label, r.label_name,
                                 r.status, size, mtime, r.rotation])
        os.replace(tmp, path)  # atomic: a reader never sees half a cache
        return True
    except OSError:
        return False
    finally:  # whatever stopped the write (an error, Ctrl-C): no temp file left beside the data
        tmp.unlink(missing_ok=True)


def still_valid(cached: dict[str, dict], skip) -> tuple[list[VideoRecord], dict[str, tuple[int, int]]]:
    """The cached rows not in ``skip`` whose file is unchanged, as records and keys: kept when
    a cache shared by several selections (splits, subsets) is written back."""
    records, keys = [], {}
    for path, row in cached.items():
        if path in skip:
            continue
        key = file_key(path)
        if key[0] >= 0 and key == (int(row["file_size"]), int(row["mtime_ns"])):
            records.append(record_of(path, row))
            keys[path] = key
    return records, keys


def record_of(path: str, row: dict) -> VideoRecord:
    return VideoRecord(path=path, num_frames=int(row["num_frames"]), fps=float(row["fps"]),
                       width=int(row["width"]), height=int(row["height"]), label=int(row["label"]),
                       label_name=row["label_name"], status=row["status"], rotation=int(row["rotation"]))
