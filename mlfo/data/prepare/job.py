"""One video of a prepared copy, as a worker process does it: kept if an earlier run
finished it, else encoded under a temporary name, verified, and only then renamed into
place (``os.replace``), so a final name always holds a whole, checked copy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mlfo.data.prepare.encode import Encoding, frame_plan, transcode
from mlfo.data.prepare.verify import verify_output
from mlfo.data.readers import open_video
from mlfo.data.sources.probe import file_key
from mlfo.errors import VideoDecodeError


@dataclass(frozen=True)
class Job:
    source: str  # absolute path of the source video (file or frame folder)
    target: str  # absolute path of its copy
    encoding: Encoding
    short_side: int
    fps: float | None = None  # resample to this rate; None keeps every frame
    backend: str = "auto"


def temp_path(target: str) -> Path:
    """Hidden (a folder scan skips it) and unique per video: one job writes it at a time."""
    path = Path(target)
    return path.with_name(f".{path.name}.partial")


def run_job(job: Job) -> dict:
    """``{"source", "target", "status": "done"|"kept"|"failed", "reason", meta...}``; never
    raises for a bad source (a scan of thousands of files must go on)."""
    result = {"source": job.source, "target": job.target, "status": "failed", "reason": ""}
    try:
        with open_video(job.source, job.backend) as reader:
            expected = len(frame_plan(reader.num_frames, reader.fps, job.fps))
            kept = _finished(job.target, expected)
            if kept:
                result.update(kept, status="kept")
            else:
                result.update(_encode(reader, job), status="done")
    except VideoDecodeError as err:
        reason = str(err)
        result["reason"] = reason[len(job.source) + 2:] if reason.startswith(job.source + ": ") else reason
    except Exception as err:  # noqa: BLE001  a decoder or encoder bug: this video fails, the rest go on
        result["reason"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return result


def _meta(reader, target: str) -> dict:
    size, mtime = file_key(target)
    return {"num_frames": reader.num_frames, "fps": round(reader.fps, 4), "width": reader.width,
            "height": reader.height, "file_size": size, "mtime_ns": mtime}


def _finished(target: str, expected: int) -> dict | None:
    """The metadata of a copy an earlier run completed (it has the planned frame count)."""
    if not os.path.isfile(target):
        return None
    try:
        with open_video(target, "pyav") as reader:
            return _meta(reader, target) if reader.num_frames == expected else None
    except VideoDecodeError:
        return None  # not ours to keep: encoded again, then replaced


def _encode(reader, job: Job) -> dict:
    tmp = temp_path(job.target)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = transcode(reader, tmp, job.encoding, job.short_side, job.fps)
        try:
            verify_output(str(tmp), info["thumbs"])
        except VideoDecodeError as err:
            detail = str(err).split(": ", 1)[-1]
            raise VideoDecodeError(f"{job.source}: the copy failed verification ({detail})") from None
        os.replace(tmp, job.target)
    finally:
        tmp.unlink(missing_ok=True)
    with open_video(job.target, "pyav") as out:
        return _meta(out, job.target)
