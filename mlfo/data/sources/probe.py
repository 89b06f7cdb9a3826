"""Probing: open every video once to learn its frame count, rate, size and decodability.

Sized for real datasets (Kinetics-400: 240k files): it runs on every core, and per file
it costs an open whose stream probe decodes nothing, one demux pass (packet headers, no
decoding: the frame index the reader needs anyway, exact where a container's own frame
count is a guess) and one decoded picture (``VideoReader.verify``: the last keyframe, its
packet alone). Rate, size and B-frame delay come from the container and codec headers.
Damage is caught without decoding everything: a cut index leaves no readable packet, a
broken codec or damaged tail fails on the last keyframe, and where the demuxer flags a
packet corrupt (a cut file) that frame and the last are decoded as well, as before. Only
files whose frames must be counted by decoding (no timestamps, packed B-frames, B-frames
in AVI) are decoded in full, by the reader itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from mlfo.data.readers import open_video
from mlfo.data.readers.frames import list_frame_files
from mlfo.errors import VideoDecodeError

POOL_MIN_FILES = 16  # fewer files are probed in this process: a pool costs more to start


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a cluster job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def probe_video(path: str, backend: str = "auto", thorough: bool = False) -> dict:
    """Metadata of one video, and whether it decodes where damage would show (``thorough``:
    everywhere, decoding every frame, about 10x the time).

    Never raises for a bad file: problems go to ``status``.
    """
    meta = {"num_frames": 0, "fps": 0.0, "width": 0, "height": 0, "status": "ok", "rotation": 0}
    if not os.path.exists(path):
        meta["status"] = "missing"
        return meta
    try:
        with open_video(path, backend=backend) as reader:
            meta.update(num_frames=reader.num_frames, fps=round(reader.fps, 4),
                        width=reader.width, height=reader.height)
            reader.verify(thorough)
            meta["rotation"] = int(getattr(reader, "rotation", 0))
    except VideoDecodeError as err:
        reason = str(err)
        reason = reason[len(path) + 2:] if reason.startswith(path + ": ") else reason
        meta["status"] = "empty" if "no frames" in reason or "no image files" in reason else f"unreadable: {reason}"
    except Exception as err:  # a decoder bug must not stop a scan of thousands of files
        meta["status"] = f"unreadable: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return meta


def _probe_job(job: tuple[str, str, bool]) -> dict:
    path, backend, thorough = job
    return probe_video(path, backend, thorough=True) if thorough else probe_video(path, backend)


def file_key(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file; for a frame folder (number of frames, folder mtime)."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    if os.path.isdir(path):
        return (len(list_frame_files(path)), stat.st_mtime_ns)
    return (stat.st_size, stat.st_mtime_ns)


def probe_all(paths: list[str], backend: str, progress: bool, workers: int | None = None,
              thorough: bool = False) -> list[dict]:
    """``probe_video`` of every path, in order; ``workers`` processes (None: every core).

    The progress bar (stderr) shows files done, rate, time left and problems so far.
    """
    workers = available_cores() if workers is None else max(1, int(workers))
    jobs = [(p, backend, thorough) for p in paths]
    bar = None
    if progress and paths:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc="mlfo: probing videos", unit="video", file=sys.stderr,
                   mininterval=0.5, smoothing=0.1)
    results = []
    problems = 0

    def done(meta: dict) -> None:
        nonlocal problems
        results.append(meta)
        if bar:
            if meta["status"] != "ok":
                problems += 1
                bar.set_postfix_str(f"{problems} problem{'s' if problems != 1 else ''}", refresh=False)
            bar.update()

    workers = min(workers, max(1, len(paths) // 4))
    if workers > 1 and len(paths) >= POOL_MIN_FILES:
        # fork: workers need only PyAV and start at once; spawn would re-import torch.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
        # Chunks amortise the pipe per file, small enough to keep every core busy to the end.
        chunksize = max(1, min(64, len(paths) // (workers * 16)))
        with multiprocessing.get_context(method).Pool(workers) as pool:
            for meta in pool.imap(_probe_job, jobs, chunksize=chunksize):
                done(meta)
    else:
        for job in jobs:
            done(_probe_job(job))
    if bar:
        bar.close()
    return results
