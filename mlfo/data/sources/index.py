"""``load_index``: turn a dataset description into a ``VideoIndex``, probing (and caching)
what it must; ``summarize``: the human report of ``mlfo data scan``.

Sources (``mlfo.data.sources.formats``): ``folder``, ``csv``, ``ucf101``, ``hmdb51``. In
every source a "video" may also be a folder of frame images (``.../v_X_g01_c01/`` in place
of ``.../v_X_g01_c01.avi``). Probing (opening every file to count its frames) is the slow
part, so its results are cached in an index CSV beside the source
(``mlfo.data.sources.cache``).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from mlfo.data.sources import cache as index_cache
from mlfo.data.sources import probe
from mlfo.data.sources.formats import FORMATS, SPLIT_FORMATS, detect_format, read_entries
from mlfo.data.sources.records import VideoIndex, VideoRecord
from mlfo.errors import MLFOError

SUBSETS = ("train", "test")


def load_index(
    source,
    *,
    fmt: str = "auto",
    split: int = 1,
    subset: str = "train",
    split_dir=None,
    backend: str = "auto",
    cache: bool | str | os.PathLike = True,
    progress: bool = True,
    workers: int | None = None,
    refresh: bool = False,
    thorough: bool = False,
) -> VideoIndex:
    """Index the videos of a dataset; see the module docstring for the formats.

    ``cache``: True writes/reads ``default_cache_path`` (one per source: every split and
    subset of a UCF101 / HMDB51 root shares it, so each file is probed once); a path uses
    that file; False probes every file; ``refresh`` probes every file and rewrites the
    cache. ``workers`` processes probe in parallel when there are many files (None: one
    per available core). ``thorough`` decodes every frame of every file (and so probes
    every file again).
    """
    source, fmt, split_dir = _checked_source(source, fmt, split, subset, split_dir)
    entries, classes, skipped = read_entries(fmt, source, split_dir, int(split), subset)
    cache_path = None
    if cache:
        cache_path = Path(cache) if not isinstance(cache, bool) else index_cache.default_cache_path(source)
    cached = index_cache.read_cache(cache_path) if cache_path and not (refresh or thorough) else {}
    keys = {path: probe.file_key(path) for path, _, _ in entries}
    metas, to_probe = _cached_metas(entries, cached, keys)
    for path, meta in zip(to_probe, probe.probe_all(to_probe, backend, progress, workers, thorough)):
        metas[path] = meta
    records = [VideoRecord(path=path, label=label, label_name=name, **metas[path]) for path, name, label in entries]
    written = None
    if cache_path and _write_back(cache_path, cached, records, keys, bool(to_probe)):
        written = str(cache_path)
    return VideoIndex(records=records, classes=classes, source=str(source), skipped=skipped, cache_path=written)


def _checked_source(source, fmt: str, split, subset: str, split_dir) -> tuple[Path, str, Path | None]:
    """The source as an absolute path, its format resolved, and the split folder: or one line."""
    if not os.path.exists(source):
        raise MLFOError(f"{source}: source not found")
    source = Path(os.path.abspath(source))
    if fmt not in FORMATS:
        raise MLFOError(f"format: unknown dataset format {fmt!r} (choose from {', '.join(FORMATS)})")
    split_dir = Path(os.path.abspath(split_dir)) if split_dir is not None else None
    if split_dir is not None and not split_dir.is_dir():
        raise MLFOError(f"{split_dir}: split folder not found")
    if fmt == "auto":
        fmt = detect_format(source, split_dir)
    if fmt == "csv" and not source.is_file():
        raise MLFOError(f"{source}: a CSV source must be a file")
    if fmt != "csv" and not source.is_dir():
        raise MLFOError(f"{source}: a {fmt} source must be a folder")
    if fmt in SPLIT_FORMATS:
        if split_dir is None:
            raise MLFOError(f"split_dir: the {fmt} format needs the folder of its split files")
        if subset not in SUBSETS:
            raise MLFOError(f"subset: expected train or test, got {subset!r}")
        if int(split) not in (1, 2, 3):
            raise MLFOError(f"split: expected 1, 2 or 3, got {split!r}")
    return source, fmt, split_dir


def _cached_metas(entries, cached: dict, keys: dict) -> tuple[dict[str, dict | None], list[str]]:
    """Metadata of every entry whose cached row is for the same file; the paths to probe."""
    metas: dict[str, dict | None] = {}
    to_probe = []
    for path, _, _ in entries:
        row = cached.get(path)
        if row is not None and (int(row["file_size"]), int(row["mtime_ns"])) == keys[path] and keys[path][0] >= 0:
            metas[path] = {"num_frames": int(row["num_frames"]), "fps": float(row["fps"]),
                           "width": int(row["width"]), "height": int(row["height"]), "status": row["status"],
                           "rotation": int(row["rotation"])}
        elif path not in metas:
            metas[path] = None
            to_probe.append(path)
    return metas, to_probe


def _write_back(cache_path: Path, cached: dict, records: list, keys: dict, probed: bool) -> bool:
    """Write the cache when anything changed: these records, plus the still-valid rows of
    files this selection did not name (other splits and subsets). True if it is current."""
    others, other_keys = index_cache.still_valid(cached, skip=keys)
    unchanged = not probed and len(others) + len(keys) == len(cached) and all(
        (cached[r.path]["label"], cached[r.path]["label_name"]) == (str(r.label), r.label_name) for r in records)
    if unchanged:
        return True
    unique = list({r.path: r for r in records}.values())  # a file listed twice is one row
    return index_cache.write_cache(cache_path, unique + others, {**keys, **other_keys})


def summarize(index: VideoIndex, min_frames: int) -> str:
    """A human summary: counts per status, classes, frame statistics, every problem file."""
    records = index.records
    lines = [f"source: {index.source}", f"videos: {len(records)}"]
    by_status: dict[str, int] = {}
    for r in records:
        key = "unreadable" if r.status.startswith("unreadable") else r.status
        by_status[key] = by_status.get(key, 0) + 1
    lines.append("status: " + ", ".join(f"{k} {v}" for k, v in sorted(by_status.items())))
    if index.classes:
        counts = {c: 0 for c in index.classes}
        for r in records:
            if 0 <= r.label < len(index.classes):
                counts[index.classes[r.label]] += 1
        shown = ", ".join(f"{c} ({n})" for c, n in counts.items())
        lines.append(f"classes: {len(index.classes)}: {shown}")
    else:
        lines.append("classes: none (unlabelled)")
    ok = [r for r in records if r.status == "ok"]
    if ok:
        frames = [r.num_frames for r in ok]
        lines.append(f"frames: min {min(frames)}, median {statistics.median(frames):g}, max {max(frames)}")
        fps = [r.fps for r in ok]
        lines.append(f"fps: min {min(fps):g}, max {max(fps):g}")
    short = [r for r in ok if r.num_frames <= min_frames]
    usable = len(ok) - len(short)
    lines.append(f"usable: {usable} (status ok and more than {min_frames} frames)")
    problems = index.problems(min_frames)
    if problems:
        lines.append(f"problems ({len(problems)}):")
        lines += [f"  {path}: {status}" for path, status in problems]
    rotated = [r for r in ok if r.rotation]
    if rotated:
        lines.append(f"display rotation ({len(rotated)}; frames are read as stored, not turned upright):")
        lines += [f"  {r.path}: a player turns it {r.rotation} degrees clockwise" for r in rotated]
    if index.skipped:
        lines.append(f"skipped rows ({len(index.skipped)}):")
        lines += [f"  {s}" for s in index.skipped]
    if index.cache_path:
        lines.append(f"index: {index.cache_path}")
    return "\n".join(lines)
