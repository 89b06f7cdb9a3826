"""``prepare(SRC, DST)``: a training copy of a dataset, on every core, resumable, each
video verified, its index written so training starts without probing; ``combine(DST, N)``
joins the indexes of ``--shard K/N`` runs (a SLURM array, several machines)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlfo.data.prepare.destination import STATE_DIR, check_destination, read_manifest, write_atomic, write_manifest
from mlfo.data.prepare.encode import Encoding
from mlfo.data.prepare.job import Job, run_job
from mlfo.data.prepare.layout import out_rel, plan_source, rewritten
from mlfo.data.sources import cache as index_cache
from mlfo.data.sources import load_index
from mlfo.data.sources.formats import read_entries
from mlfo.data.sources.probe import available_cores
from mlfo.data.sources.records import VideoRecord
from mlfo.errors import MLFOError

# The presets crop 112 pixels from at least half the frame's area: on a 4:3 (or wider) frame
# of short side 160 every crop spans >= 160 * sqrt(0.5) = 113 source pixels, so no crop is enlarged.
DEFAULT_SHORT_SIDE = 160


@dataclass
class Report:
    dst: Path
    done: int = 0  # videos encoded now
    kept: int = 0  # videos an earlier run had finished
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    indexes: list[str] = field(default_factory=list)  # index files written (empty for a shard)
    split_dir: str | None = None  # the copy's split folder (UCF101 / HMDB51)


def _shard_file(dst: Path, k: int, n: int, kind: str) -> Path:
    return dst / STATE_DIR / f"{kind}-{k}-of-{n}.{'csv' if kind == 'shard' else 'txt'}"


def prepare(source, dst, *, fmt: str = "auto", split_dir=None, short_side: int = DEFAULT_SHORT_SIDE,
            fps: float | None = None, encoding: Encoding = Encoding(), workers: int | None = None,
            shard: tuple[int, int] = (1, 1), backend: str = "auto", progress: bool = True) -> Report:
    """Copy ``source`` (any source ``mlfo data scan`` reads) into ``dst``; see the module doc."""
    k, n = shard
    if not 1 <= k <= n:
        raise MLFOError(f"--shard: expected K/N with 1 <= K <= N, got {k}/{n}")
    if short_side < 16:
        raise MLFOError(f"--short-side: expected at least 16 pixels, got {short_side}")
    layout = plan_source(source, fmt, split_dir)
    dst = Path(os.path.abspath(dst))
    manifest = {"source": os.path.abspath(source), "kind": layout.kind, "short_side": short_side, "fps": fps,
                "split_dir": os.path.abspath(split_dir) if split_dir else None, "encoding": encoding.as_dict(),
                "targets": layout.targets, "videos": len(layout.videos)}
    check_destination(layout.root, dst, manifest)
    write_manifest(dst, manifest)
    for file, rel, mode in layout.texts:
        write_atomic(dst / rel, rewritten(file, mode))
    jobs = [Job(str(layout.root / rel), str(dst / out_rel(rel)), encoding, short_side, fps, backend)
            for rel in layout.videos[k - 1::n]]
    report = Report(dst, split_dir=next((t["split_dir"] for t in layout.targets if "split_dir" in t), None))
    rows = {}
    for result in _run_all(jobs, workers, progress):
        if result["status"] == "failed":
            report.failed.append((result["source"], result["reason"]))
            continue
        report.done += result["status"] == "done"
        report.kept += result["status"] == "kept"
        rows[result["target"]] = result
    _write_rows(_shard_file(dst, k, n, "shard"), rows)
    write_atomic(_shard_file(dst, k, n, "failed"), "".join(f"{s}: {r}\n" for s, r in sorted(report.failed)).encode())
    if n == 1:
        report.indexes = write_indexes(dst, layout.targets, rows)
    return report


def combine(dst, n: int) -> list[str]:
    """Join the indexes of shards 1..n of ``dst`` into the copy's index files."""
    dst = Path(os.path.abspath(dst))
    manifest = read_manifest(dst)
    if manifest is None:
        raise MLFOError(f"{dst}: not a prepared copy (no {STATE_DIR}/manifest.json)")
    missing = [str(k) for k in range(1, n + 1) if not _shard_file(dst, k, n, "shard").is_file()]
    if missing:
        raise MLFOError(f"{dst}: shard{'s' if len(missing) > 1 else ''} {', '.join(missing)} of {n} not finished")
    rows = {}
    for k in range(1, n + 1):
        for path, row in index_cache.read_cache(_shard_file(dst, k, n, "shard")).items():
            rows[path] = {**row, "file_size": int(row["file_size"]), "mtime_ns": int(row["mtime_ns"])}
    return write_indexes(dst, manifest["targets"], rows)


def _run_all(jobs: list[Job], workers: int | None, progress: bool):
    """Results of ``run_job``, as they finish; a progress bar with rate, time left, failures."""
    from tqdm import tqdm

    workers = max(1, min(available_cores() if workers is None else workers, len(jobs)))
    bar = tqdm(total=len(jobs), desc="mlfo: preparing videos", unit="video", file=sys.stderr,
               disable=not progress, mininterval=0.5, smoothing=0.1)
    failed = 0
    if workers > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        pool = multiprocessing.get_context(method).Pool(workers)
        results = pool.imap_unordered(run_job, jobs, chunksize=1)
    else:
        pool, results = None, map(run_job, jobs)
    try:
        for result in results:
            failed += result["status"] == "failed"
            bar.set_postfix_str(f"{failed} failed", refresh=False)
            bar.update()
            yield result
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()


def _records(rows: dict) -> tuple[list[VideoRecord], dict]:
    records = [VideoRecord(path, int(r["num_frames"]), float(r["fps"]), int(r["width"]), int(r["height"]))
               for path, r in sorted(rows.items())]
    return records, {path: (int(r["file_size"]), int(r["mtime_ns"])) for path, r in rows.items()}


def _write_rows(path: Path, rows: dict) -> None:
    records, keys = _records(rows)
    if not index_cache.write_cache(path, records, keys):
        raise MLFOError(f"{path}: cannot write the index")


def write_indexes(dst: Path, targets: list[dict], rows: dict) -> list[str]:
    """The index of every selection of the copy (``load_index(DST...)`` then probes nothing):
    seeded from the verified copies' metadata, labelled by ``load_index`` itself."""
    if not rows:  # no video copied: nothing to index (the failures are listed)
        return []
    written, seeded = [], set()
    for target in targets:
        source = dst / target["source"]
        if source.is_dir():
            cache_path, selected = source / index_cache.INSIDE_NAME, rows
        else:
            cache_path = index_cache.default_cache_path(source)
            names = {p for p, _, _ in read_entries("csv", source, None, 1, "train")[0]}
            selected = {p: r for p, r in rows.items() if p in names}
        if cache_path not in seeded:  # every copy's row, then labelled below
            _write_rows(cache_path, selected)
            seeded.add(cache_path)
        split_dir = dst / target["split_dir"] if "split_dir" in target else None
        index = load_index(source, fmt=target["fmt"], split=target.get("split", 1), subset=target.get("subset", "train"),
                           split_dir=split_dir, progress=False, workers=1)
        if index.cache_path and index.cache_path not in written:
            written.append(index.cache_path)
    return written
