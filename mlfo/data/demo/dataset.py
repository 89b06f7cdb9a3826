"""Writing the demo dataset: videos, CSV lists with a stratified split, ``classes.json``.

    generate_demo_dataset("demo_data", seed=0)   # videos/*.mp4, all/train/test.csv, classes.json

The files do not depend on the number of worker processes.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mlfo.data.demo.classes import CLASS_NAMES, CLASSES
from mlfo.data.demo.encode import write_mp4
from mlfo.data.demo.render import render_demo_video
from mlfo.errors import MLFOError

FORMAT_VERSION = 2  # 2: smaller shared texture pool (2 backgrounds, 3 object textures)


@dataclass(frozen=True)
class _Job:
    out_dir: str
    class_name: str
    index: int
    seed: int
    num_frames: int
    height: int
    width: int
    fps: int
    crf: int

    @property
    def relpath(self) -> str:
        return f"videos/{self.class_name}_{self.index:03d}.mp4"


def _write_one(job: _Job) -> str:
    frames = render_demo_video(job.class_name, job.seed, job.index, job.num_frames, job.height, job.width)
    write_mp4(Path(job.out_dir) / job.relpath, frames, fps=job.fps, crf=job.crf)
    return job.relpath


def _params(seed, videos_per_class, num_frames, height, width, fps, crf, train_fraction, classes) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "videos_per_class": videos_per_class,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "fps": fps,
        "crf": crf,
        "train_fraction": train_fraction,
        "classes": list(classes),
    }


def _is_complete(out_dir: Path, params: dict) -> bool:
    """True when ``out_dir`` already holds a finished dataset made with ``params``."""
    try:
        meta = json.loads((out_dir / "classes.json").read_text())
        if meta.get("params") != params:
            return False
        with open(out_dir / "all.csv", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError):
        return False
    expected = params["videos_per_class"] * len(params["classes"])
    return len(rows) == expected and all((out_dir / r["path"]).is_file() for r in rows)


_OWN_FILES = {"all.csv", "train.csv", "test.csv", "classes.json"}
_OWN_VIDEO = re.compile(r"^(%s)_\d{3}\.mp4$" % "|".join(map(re.escape, CLASS_NAMES)))


def _check_folder_is_ours(out: Path, overwrite: bool) -> None:
    """Refuse to write into a folder holding anything but the demo dataset (or the videos
    of a generation that was killed), and over another demo dataset unless ``overwrite``."""
    if not out.is_dir():
        return
    foreign = [p.name for p in out.iterdir() if p.name not in _OWN_FILES | {"videos"}]
    if (out / "videos").is_dir():
        foreign += [f"videos/{p.name}" for p in (out / "videos").iterdir() if not _OWN_VIDEO.match(p.name)]
    lists = sorted(n for n in _OWN_FILES if (out / n).exists())
    try:
        meta = json.loads((out / "classes.json").read_text())
        demo_meta = isinstance(meta, dict) and "params" in meta
    except (OSError, ValueError, TypeError):
        demo_meta = False
    if lists and not demo_meta:
        foreign += lists  # a train.csv / classes.json that the demo generator did not write
    if foreign:
        raise MLFOError(f"{out}: holds files that are not the demo dataset ({', '.join(sorted(foreign)[:3])}); "
                        "the demo dataset is written only into an absent or empty folder, or over itself")
    if lists and not overwrite:
        raise MLFOError(f"{out}: holds a demo dataset made with other settings; give another folder, "
                        "or replace it with --force (mlfo demo-data)")


def generate_demo_dataset(
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    videos_per_class: int = 30,
    num_frames: int = 64,
    height: int = 80,
    width: int = 80,
    fps: int = 25,
    crf: int = 20,
    train_fraction: float = 2 / 3,
    classes: list[str] | tuple[str, ...] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the demo dataset to ``out_dir`` and return its path.

    Layout: ``videos/<class>_<i>.mp4``, ``all.csv`` / ``train.csv`` / ``test.csv``
    (``path,n_frames,label``, paths relative to ``out_dir``, split stratified by class:
    the first ``round(train_fraction * videos_per_class)`` videos of each class train)
    and ``classes.json``. A folder already holding the same dataset (same parameters)
    is reused as is unless ``overwrite``; one holding another demo dataset is replaced
    only with ``overwrite``; one holding anything else is refused (the user's files are
    never written over). ``workers`` defaults to the CPU count.
    ``progress(done, total)`` is called after each video.
    """
    classes = tuple(classes) if classes is not None else CLASS_NAMES
    _check_settings(classes, videos_per_class, num_frames, height, width, train_fraction)
    out = Path(out_dir)
    params = _params(seed, videos_per_class, num_frames, height, width, fps, crf, train_fraction, classes)
    if not overwrite and _is_complete(out, params):
        return out
    if out.exists() and not out.is_dir():
        raise MLFOError(f"{out}: exists and is not a folder")
    _check_folder_is_ours(out, overwrite)
    (out / "videos").mkdir(parents=True, exist_ok=True)

    jobs = [
        _Job(str(out), name, i, seed, num_frames, height, width, fps, crf)
        for name in classes
        for i in range(videos_per_class)
    ]
    elapsed = _write_videos(jobs, workers, progress)
    n_train = min(videos_per_class - 1, max(1, round(train_fraction * videos_per_class)))
    _write_lists(out, jobs, n_train, params, elapsed)
    return out


def _check_settings(classes, videos_per_class, num_frames, height, width, train_fraction) -> None:
    unknown = [c for c in classes if c not in CLASS_NAMES]
    if unknown:
        raise MLFOError(f"classes: unknown demo class {unknown[0]!r} (choose from {', '.join(CLASS_NAMES)})")
    if videos_per_class < 2:
        raise MLFOError(f"videos_per_class: need at least 2 (one train, one test), got {videos_per_class}")
    if height % 2 or width % 2 or min(height, width) < 16:
        raise MLFOError(f"frame size: height and width must be even and at least 16, got {height}x{width}")
    if num_frames < 2:
        raise MLFOError(f"num_frames: need at least 2, got {num_frames}")
    if not 0 < train_fraction < 1:
        raise MLFOError(f"train_fraction: must be between 0 and 1, got {train_fraction}")


def _write_videos(jobs: list[_Job], workers: int | None, progress) -> float:
    """Render and encode every video (one process per CPU by default); returns the seconds."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    start = time.perf_counter()
    if workers == 1:
        _consume(map(_write_one, jobs), len(jobs), progress)
    else:
        # fork: workers only need numpy and PyAV, and start instantly.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        with multiprocessing.get_context(method).Pool(workers) as pool:
            _consume(pool.imap(_write_one, jobs, chunksize=4), len(jobs), progress)
    return time.perf_counter() - start


def _write_lists(out: Path, jobs: list[_Job], n_train: int, params: dict, elapsed: float) -> None:
    """all.csv, train.csv (the first ``n_train`` videos of each class), test.csv, classes.json."""
    rows = [(job.relpath, params["num_frames"], job.class_name, job.index < n_train) for job in jobs]
    for name, keep in (("all", lambda r: True), ("train", lambda r: r[3]), ("test", lambda r: not r[3])):
        with open(out / f"{name}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "n_frames", "label"])
            writer.writerows(r[:3] for r in rows if keep(r))
    by_name = {c.name: c for c in CLASSES}
    meta = {
        "classes": [asdict(by_name[name]) for name in params["classes"]],
        "params": params,
        "generation_seconds": round(elapsed, 2),
    }
    (out / "classes.json").write_text(json.dumps(meta, indent=2) + "\n")


def _consume(results, total: int, progress) -> None:
    for done, _ in enumerate(results, 1):
        if progress is not None:
            progress(done, total)


def demo_summary(out_dir: str | os.PathLike) -> str:
    """A human-readable table of a generated demo dataset (classes, groups, split sizes)."""
    out = Path(out_dir)
    try:
        meta = json.loads((out / "classes.json").read_text())
        counts: dict[str, dict[str, int]] = {}
        for split in ("train", "test"):
            with open(out / f"{split}.csv", newline="") as f:
                for row in csv.DictReader(f):
                    counts.setdefault(row["label"], {"train": 0, "test": 0})[split] += 1
    except (OSError, ValueError, KeyError) as err:
        raise MLFOError(f"{out}: not a demo dataset ({err})") from None
    p = meta["params"]
    width = max(len(c["name"]) for c in meta["classes"])
    lines = [
        f"demo dataset in {out}",
        f"  {len(meta['classes'])} classes, {sum(sum(c.values()) for c in counts.values())} videos "
        f"({p['width']}x{p['height']}, {p['num_frames']} frames at {p['fps']} fps, H.264), seed {p['seed']}",
        "",
        f"  {'class':<{width}}  {'group':<10}  train  test  description",
    ]
    for c in meta["classes"]:
        n = counts.get(c["name"], {"train": 0, "test": 0})
        lines.append(f"  {c['name']:<{width}}  {c['group']:<10}  {n['train']:>5}  {n['test']:>4}  {c['description']}")
    lines += ["", f"  files: {out / 'all.csv'}, {out / 'train.csv'}, {out / 'test.csv'}, {out / 'classes.json'}"]
    return "\n".join(lines)


# Where the demo preset (``mlfo/configs/demo_cpu.yaml``, ``data.train``) keeps its data.
DEMO_TRAIN = "demo_data/train.csv"


def ensure_demo_source(train: str | os.PathLike, generate: bool = False) -> None:
    """Check that the training source ``train`` exists. With ``generate``
    (``data.generate_demo``, the demo preset) a missing source is written as the demo
    dataset, but only when ``train`` is the preset's own location (``demo_data/train.csv``)
    and its folder is absent or empty: a typo'd path never writes into a folder of the
    user's, and no existing file is ever replaced."""
    source = Path(train)
    if source.exists():
        return
    folder = source.parent
    own = os.path.abspath(source) == os.path.abspath(DEMO_TRAIN)
    if not generate or not own or (folder.exists() and (not folder.is_dir() or any(folder.iterdir()))):
        hint = (f" (data.generate_demo writes the demo dataset only into an absent {DEMO_TRAIN}; "
                "write it elsewhere with `mlfo demo-data DIR`)") if generate else ""
        raise MLFOError(f"data.train: {source} not found{hint}")
    print(f"mlfo: writing the demo dataset to {folder} ...", file=sys.stderr, flush=True)
    generate_demo_dataset(folder, seed=0)
