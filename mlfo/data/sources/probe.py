"""Probing: open every video once to learn its frame count, rate, size and decodability."""

from __future__ import annotations

import multiprocessing
import os
import sys

from mlfo.data.readers import open_video
from mlfo.data.readers.frames import list_frame_files
from mlfo.errors import VideoDecodeError

POOL_MIN_FILES = 16  # fewer files are probed in this process: a pool costs more to start


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


def file_key(path: str) -> tuple[int, int]:
    """(size, mtime_ns) of a file; for a frame folder (number of frames, folder mtime)."""
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    if os.path.isdir(path):
        return (len(list_frame_files(path)), stat.st_mtime_ns)
    return (stat.st_size, stat.st_mtime_ns)


def probe_all(paths: list[str], backend: str, progress: bool, workers: int) -> list[dict]:
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
