"""Dataset sources: which videos exist, their labels, and what is in each file.

``load_index`` turns a dataset description into a ``VideoIndex``: one ``VideoRecord``
per video (path, frame count, fps, size, label, status). Sources:

- ``folder``: every video file (and frame folder) below a directory; labelled when each
  video sits in a class sub-folder (``ROOT/<class>/<video>``), classes sorted by name.
- ``csv``: rows ``path[,n_frames][,label]``, header optional, paths relative to the
  CSV's folder. Without a header, two columns are ``path,label``. Labels are class names
  or integers; a ``classes.json`` beside the CSV (the demo data) fixes the class list.
- ``ucf101``: the official ``classInd.txt`` / ``trainlist0N.txt`` / ``testlist0N.txt``.
- ``hmdb51``: the official ``<class>_test_splitN.txt`` files (1 = train, 2 = test).

In every source a "video" may also be a folder of frame images (``.../v_X_g01_c01/``
in place of ``.../v_X_g01_c01.avi``).

Probing (opening every file to count its frames) is the slow part, so its results are
cached in an index CSV beside the source, keyed by path, size and modification time:
later runs only probe new or changed files. The cache is itself a valid CSV source.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlfo.data.frame_folder import IMAGE_SUFFIXES, list_frame_files
from mlfo.data.video_reader import open_video
from mlfo.errors import MLFOError, VideoDecodeError

VIDEO_SUFFIXES = (
    ".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv", ".3gp",
)
FORMATS = ("auto", "folder", "csv", "ucf101", "hmdb51")
SUBSETS = ("train", "test")
CACHE_SUFFIX = ".mlfo-index.csv"
CACHE_VERSION = "1"
POOL_MIN_FILES = 16  # fewer files are probed in this process: a pool costs more to start


@dataclass
class VideoRecord:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    label: int = -1
    label_name: str = ""
    status: str = "ok"  # "ok", "missing", "empty" or "unreadable: <reason>"


@dataclass
class VideoIndex:
    records: list[VideoRecord]
    classes: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)  # "file:line: problem" for dropped rows
    cache_path: str | None = None  # where the probe results were written, if anywhere

    def usable(self, min_frames: int = 0) -> list[VideoRecord]:
        """Records that decode and have more than ``min_frames`` frames."""
        return [r for r in self.records if r.status == "ok" and r.num_frames > min_frames]


# -- probing ---------------------------------------------------------------------------------


def probe_video(path: str, backend: str = "auto") -> dict:
    """Metadata of one video, and whether its first and last frames decode.

    Never raises for a bad file: problems go to ``status``. The last frame is decoded
    because a truncated file often opens fine and only fails at the damage.
    """
    meta = {"num_frames": 0, "fps": 0.0, "width": 0, "height": 0, "status": "ok"}
    if not os.path.exists(path):
        meta["status"] = "missing"
        return meta
    try:
        with open_video(path, backend=backend) as reader:
            meta.update(num_frames=reader.num_frames, fps=round(reader.fps, 4),
                        width=reader.width, height=reader.height)
            reader.get_frames(sorted({0, reader.num_frames - 1}))
    except VideoDecodeError as err:
        reason = str(err)
        reason = reason[len(path) + 2:] if reason.startswith(path + ": ") else reason
        meta["status"] = "empty" if "no frames" in reason or "no image files" in reason else f"unreadable: {reason}"
    except Exception as err:  # a decoder bug must not stop a scan of thousands of files
        meta["status"] = f"unreadable: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return meta


def _probe_job(job: tuple[str, str]) -> dict:
    return probe_video(*job)


def _file_key(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file; for a frame folder (number of frames, folder mtime)."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    if os.path.isdir(path):
        return (len(list_frame_files(path)), stat.st_mtime_ns)
    return (stat.st_size, stat.st_mtime_ns)


def _probe_all(paths: list[str], backend: str, progress: bool, workers: int) -> list[dict]:
    jobs = [(p, backend) for p in paths]
    bar = None
    if progress and paths:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="mlfo: probing videos", unit="video", file=sys.stderr)
    results = []
    if workers > 1 and len(paths) >= POOL_MIN_FILES:
        # fork: workers need only PyAV and start at once; spawn would re-import torch.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for meta in pool.imap(_probe_job, jobs, chunksize=4):
                results.append(meta)
                if bar:
                    bar.update()
    else:
        for job in jobs:
            results.append(_probe_job(job))
            if bar:
                bar.update()
    if bar:
        bar.close()
    return results


# -- the index cache -------------------------------------------------------------------------

CACHE_COLUMNS = ["path", "num_frames", "fps", "width", "height", "label", "label_name", "status",
                 "file_size", "mtime_ns"]


def default_cache_path(source: Path, fmt: str, split: int, subset: str) -> Path:
    """``<source>.mlfo-index.csv`` beside the source (split and subset in the name for the
    official split formats); under ``~/.cache/mlfo/index`` when that folder is read-only."""
    stem = source.stem if source.is_file() else source.name
    tag = f".{fmt}-split{split}-{subset}" if fmt in ("ucf101", "hmdb51") else ""
    beside = source.parent / f"{stem}{tag}{CACHE_SUFFIX}"
    if os.access(source.parent, os.W_OK):
        return beside
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:12]
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlfo" / "index"
    return home / f"{digest}-{beside.name}"


def _read_cache(path: Path) -> dict[str, dict]:
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


def _write_cache(path: Path, records: list[VideoRecord], keys: dict[str, tuple[int, int]]) -> bool:
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
                                 r.status, size, mtime])
        os.replace(tmp, path)  # atomic: a reader never sees half a cache
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


# -- parsing the sources ---------------------------------------------------------------------

def _resolve_video(root: Path, rel: str) -> str:
    """A split file's video path, or the frame folder that stands in for it."""
    rel_path = Path(rel.replace("\\", "/"))
    candidates = [root / rel_path, root / rel_path.with_suffix(""),
                  root / rel_path.name, root / rel_path.with_suffix("").name]
    for cand in candidates:
        if cand.exists():
            return os.path.normpath(cand)
    return os.path.normpath(candidates[0])


def _walk_videos(root: Path) -> list[Path]:
    """Video files and frame folders below ``root`` (a frame folder is not descended into)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here != root and any(f.lower().endswith(IMAGE_SUFFIXES) for f in filenames):
            found.append(here)
            dirnames[:] = []
            continue
        found += [here / f for f in sorted(filenames)
                  if f.lower().endswith(VIDEO_SUFFIXES) and not f.startswith(".")]
    return found


def _folder_entries(root: Path) -> tuple[list[tuple[str, str, int]], list[str], list[str]]:
    videos = _walk_videos(root)
    if not videos:
        raise MLFOError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) or frame folders found")
    parts = [v.relative_to(root).parts for v in videos]
    if all(len(p) == 2 for p in parts):  # ROOT/<class>/<video>: labelled
        classes = sorted({p[0] for p in parts})
        lookup = {c: i for i, c in enumerate(classes)}
        return [(str(v), p[0], lookup[p[0]]) for v, p in zip(videos, parts)], classes, []
    return [(str(v), "", -1) for v in videos], [], []


def _classes_json(folder: Path) -> list[str] | None:
    file = folder / "classes.json"
    if not file.is_file():
        return None
    try:
        entries = json.loads(file.read_text())["classes"]
        return [e["name"] if isinstance(e, dict) else str(e) for e in entries]
    except (ValueError, KeyError, TypeError):
        raise MLFOError(f"{file}: not a classes.json with a 'classes' list") from None


def _csv_entries(csv_path: Path) -> tuple[list[tuple[str, str, int]], list[str], list[str]]:
    root = csv_path.parent
    try:
        with open(csv_path, newline="") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MLFOError(f"{csv_path}: cannot read CSV ({str(err).splitlines()[0]})") from None
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    if not rows:
        raise MLFOError(f"{csv_path}: no rows")
    head = [c.lower() for c in rows[0][1]]
    if "path" in head:
        columns = head
        rows = rows[1:]
        label_col = columns.index("label") if "label" in columns else None
        frames_col = next((columns.index(c) for c in ("n_frames", "num_frames", "frames") if c in columns), None)
        width = len(columns)
    else:
        width = len(rows[0][1])
        if width > 3:
            raise MLFOError(f"{csv_path}:{rows[0][0]}: expected path[,n_frames][,label], got {width} columns")
        columns = ["path", "n_frames", "label"] if width == 3 else ["path", "label"][:width]
        label_col = columns.index("label") if "label" in columns else None
        frames_col = 1 if width == 3 else None
    path_col = columns.index("path")
    skipped, parsed = [], []
    for n, row in rows:
        where = f"{csv_path}:{n}"
        if len(row) != width:
            skipped.append(f"{where}: expected {width} columns, got {len(row)}")
            continue
        if not row[path_col]:
            skipped.append(f"{where}: empty path")
            continue
        if frames_col is not None and row[frames_col] and not row[frames_col].isdigit():
            skipped.append(f"{where}: n_frames {row[frames_col]!r} is not a whole number")
            continue
        label = row[label_col] if label_col is not None else ""
        if label_col is not None and not label:
            skipped.append(f"{where}: empty label")
            continue
        parsed.append((where, os.path.normpath(root / row[path_col]), label))
    if not parsed:
        raise MLFOError(f"{csv_path}: no usable rows ({skipped[0] if skipped else 'header only'})")
    if label_col is None:
        return [(p, "", -1) for _, p, _ in parsed], [], skipped
    given = _classes_json(root)
    numeric = all(re.fullmatch(r"-?\d+", label) for _, _, label in parsed)
    if numeric:
        # -1 marks an unlabelled row (as in the scan cache of an unlabelled folder).
        classes = given or [str(i) for i in range(max(int(lab) for _, _, lab in parsed) + 1)]
        entries = []
        for where, p, lab in parsed:
            if int(lab) == -1:
                entries.append((p, "", -1))
                continue
            if not 0 <= int(lab) < len(classes):
                raise MLFOError(f"{where}: label {lab} outside 0..{len(classes) - 1}")
            entries.append((p, classes[int(lab)], int(lab)))
        return entries, classes, skipped
    classes = given or sorted({lab for _, _, lab in parsed})
    lookup = {c: i for i, c in enumerate(classes)}
    entries = []
    for where, p, lab in parsed:
        if lab not in lookup:
            raise MLFOError(f"{where}: unknown label {lab!r} (not in {root / 'classes.json'})")
        entries.append((p, lab, lookup[lab]))
    return entries, classes, skipped


def _read_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise MLFOError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise MLFOError(f"{path}: cannot read split file ({err.strerror})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _ucf101_entries(root: Path, split_dir: Path, split: int, subset: str):
    class_file = split_dir / "classInd.txt"
    classes: list[str] = []
    for n, line in _read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise MLFOError(f"{class_file}:{n}: expected '<{len(classes) + 1}> <ClassName>', got {line!r}")
        classes.append(parts[1])
    lookup = {c: i for i, c in enumerate(classes)}
    list_file = split_dir / f"{subset}list0{split}.txt"
    entries = []
    for n, line in _read_lines(list_file):
        parts = line.split()
        rel = parts[0]
        class_name = rel.replace("\\", "/").split("/")[0] if "/" in rel.replace("\\", "/") else ""
        if len(parts) == 2:  # trainlist: "Class/v_Class_g08_c01.avi 1", label 1-based
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise MLFOError(f"{list_file}:{n}: unknown label {parts[1]!r} (classInd.txt has 1..{len(classes)})")
            label = int(parts[1]) - 1
            if class_name and class_name != classes[label]:
                raise MLFOError(f"{list_file}:{n}: label {parts[1]} is {classes[label]}, but the path says {class_name}")
        elif len(parts) == 1:  # testlist: the class is the folder
            if class_name not in lookup:
                raise MLFOError(f"{list_file}:{n}: unknown class {class_name or rel!r} (not in classInd.txt)")
            label = lookup[class_name]
        else:
            raise MLFOError(f"{list_file}:{n}: expected '<Class/video.avi> [label]', got {line!r}")
        entries.append((_resolve_video(root, rel), classes[label], label))
    return entries, classes, []


HMDB_CODES = {"train": "1", "test": "2"}


def _hmdb51_entries(root: Path, split_dir: Path, split: int, subset: str):
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in split_dir.glob(f"*{suffix}"))
    if not files:
        raise MLFOError(f"{split_dir / ('<class>' + suffix)}: split file not found")
    classes = [f.name[: -len(suffix)] for f in files]
    entries = []
    for label, (class_name, file) in enumerate(zip(classes, files)):
        for n, line in _read_lines(file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise MLFOError(f"{file}:{n}: expected '<video.avi> <0|1|2>', got {line!r}")
            if parts[1] == HMDB_CODES[subset]:
                entries.append((_resolve_video(root, f"{class_name}/{parts[0]}"), class_name, label))
    return entries, classes, []


def detect_format(source: Path, split_dir: Path | None) -> str:
    if source.is_file():
        return "csv"
    if split_dir is not None:
        if (split_dir / "classInd.txt").is_file():
            return "ucf101"
        if any(split_dir.glob("*_test_split*.txt")):
            return "hmdb51"
        raise MLFOError(f"{split_dir}: neither UCF101 (classInd.txt) nor HMDB51 (*_test_splitN.txt) split files")
    return "folder"


# -- the index -------------------------------------------------------------------------------


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
    workers: int = 2,
    refresh: bool = False,
) -> VideoIndex:
    """Index the videos of a dataset; see the module docstring for the formats.

    ``cache``: True writes/reads ``default_cache_path``; a path uses that file; False
    probes every file; ``refresh`` probes every file and rewrites the cache. ``workers``
    processes probe in parallel when there are many files.
    """
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
    if fmt in ("ucf101", "hmdb51"):
        if split_dir is None:
            raise MLFOError(f"split_dir: the {fmt} format needs the folder of its split files")
        if subset not in SUBSETS:
            raise MLFOError(f"subset: expected train or test, got {subset!r}")
        if int(split) not in (1, 2, 3):
            raise MLFOError(f"split: expected 1, 2 or 3, got {split!r}")

    if fmt == "folder":
        entries, classes, skipped = _folder_entries(source)
    elif fmt == "csv":
        entries, classes, skipped = _csv_entries(source)
    elif fmt == "ucf101":
        entries, classes, skipped = _ucf101_entries(source, split_dir, int(split), subset)
    else:
        entries, classes, skipped = _hmdb51_entries(source, split_dir, int(split), subset)

    cache_path = None
    if cache:
        cache_path = Path(cache) if not isinstance(cache, bool) else default_cache_path(source, fmt, int(split), subset)
    cached = _read_cache(cache_path) if cache_path and not refresh else {}
    keys = {path: _file_key(path) for path, _, _ in entries}
    metas: dict[str, dict] = {}
    to_probe = []
    for path, _, _ in entries:
        row = cached.get(path)
        if row is not None and (int(row["file_size"]), int(row["mtime_ns"])) == keys[path] and keys[path][0] >= 0:
            metas[path] = {"num_frames": int(row["num_frames"]), "fps": float(row["fps"]),
                           "width": int(row["width"]), "height": int(row["height"]), "status": row["status"]}
        elif path not in metas:
            metas[path] = None
            to_probe.append(path)
    for path, meta in zip(to_probe, _probe_all(to_probe, backend, progress, workers)):
        metas[path] = meta
    records = [VideoRecord(path=path, label=label, label_name=name, **metas[path]) for path, name, label in entries]
    written = None
    if cache_path:
        changed = bool(to_probe) or set(cached) != set(keys) or any(
            (cached[r.path]["label"], cached[r.path]["label_name"]) != (str(r.label), r.label_name) for r in records
        )
        if not changed or _write_cache(cache_path, records, keys):
            written = str(cache_path)
    return VideoIndex(records=records, classes=classes, source=str(source), skipped=skipped, cache_path=written)


def summarize(index: VideoIndex, min_frames: int = 32) -> str:
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
    problems = [(r.path, r.status) for r in records if r.status != "ok"]
    problems += [(r.path, f"too short: {r.num_frames} frames <= {min_frames}") for r in short]
    if problems:
        lines.append(f"problems ({len(problems)}):")
        lines += [f"  {path}: {status}" for path, status in problems]
    if index.skipped:
        lines.append(f"skipped rows ({len(index.skipped)}):")
        lines += [f"  {s}" for s in index.skipped]
    if index.cache_path:
        lines.append(f"index: {index.cache_path}")
    return "\n".join(lines)


