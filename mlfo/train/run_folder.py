"""One owner per run folder: an exclusive lock for the run's life, and the rules for
starting in a folder that already holds a run.

The lock is ``flock`` on ``OUT/.mlfo.lock``. The kernel drops it when its process dies,
so a killed run leaves no lock behind; the file keeps the holder's PID and host for the
message that refuses a second run. Under torchrun only rank 0 takes it (the ranks of
one job share the folder by design).

A folder that holds checkpoints is resumed only with ``--resume auto|PATH`` and started
again only with ``--overwrite`` (which deletes the old run's checkpoints and lists);
otherwise the run is refused before anything is written. Temporary files of checkpoint
writes that were killed are removed once the lock is held.

The resolved config goes to ``OUT/config.yaml`` unless that file is the user's own (``mlfo
pretrain exp/config.yaml --out exp``): then to ``OUT/config.resolved.yaml``; a file mlfo
did not write is never replaced. It is written only once a resume has been accepted.
A ``metrics.jsonl`` whose lines are not a run's (JSON objects with a step) is refused:
a run appends to it and a fresh start empties it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from mlfo.errors import MLFOError, make_folder
from mlfo.train import checkpoint as ckpt_io

LOCK_FILE = ".mlfo.lock"
CONFIG_FILES = ("config.yaml", "config.resolved.yaml")  # the first that is free or mlfo's own
# What a run writes besides checkpoints and metrics; --overwrite deletes these with them.
RUN_LISTS = ("skipped_videos.txt", "unusable_videos.txt", "metrics.png")


class RunFolder:
    """A run folder this process owns until ``release()`` (or its exit)."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode(errors="replace").split()
    return f"PID {text[0]} on {text[1]}" if len(text) >= 2 else "PID unknown"


def _lock(out: Path) -> int | None:
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise MLFOError(f"{out}: run folder not writable ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            holder = _holder(fd)
            os.close(fd)
            raise MLFOError(f"{out}: in use by another mlfo run ({holder}); wait for it to end "
                            "or choose another --out") from None
        # e.g. a file system mounted without lock support: run, but say what is not guarded
        print(f"mlfo: {out / LOCK_FILE}: cannot lock ({err.strerror}); a second run on this "
              "folder would not be stopped", file=sys.stderr)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    except OSError as err:
        os.close(fd)
        raise MLFOError(f"{out}: run folder not writable ({err.strerror})") from None
    return fd


def _checkpoints(out: Path) -> list[Path]:
    last = [out / ckpt_io.LAST] if (out / ckpt_io.LAST).is_file() else []
    return last + sorted(out.glob("epoch_*.pt"))


def _check_start(out: Path, resume: str | None, overwrite: bool) -> None:
    """Refuse a start that would silently reset or mix with the run already in ``out``."""
    resuming = bool(resume) and resume != "never"
    if overwrite and resuming:
        raise MLFOError("--overwrite: starts from scratch, --resume continues; give one of them")
    found = _checkpoints(out)
    if not found or overwrite:
        return
    if not resuming:
        raise MLFOError(f"{out}: holds a run ({found[0].name}); add --resume auto to continue it "
                        "or --overwrite to start again")
    if resume == "auto" and not (out / ckpt_io.LAST).is_file():
        raise MLFOError(f"{out}: holds {found[-1].name} but no {ckpt_io.LAST}; resume one with "
                        f"--resume {found[-1]} or start again with --overwrite")


def config_target(out: Path) -> Path:
    """Where the resolved config may go without replacing a file mlfo did not write."""
    from mlfo.config import written_by_mlfo

    for name in CONFIG_FILES:
        path = out / name
        if not path.exists() or (path.is_file() and written_by_mlfo(path)):
            return path
    raise MLFOError(f"{out}: {' and '.join(CONFIG_FILES)} are files mlfo did not write; move one "
                    "away so that the run's resolved config can be saved beside it")


def write_run_config(out: str | Path, cfg) -> Path:
    """Save ``cfg`` resolved in the run folder (see the module docstring); returns the file."""
    from mlfo.config import config_text

    out = Path(out)
    path = config_target(out)
    if path.name != CONFIG_FILES[0]:
        print(f"mlfo: {out / CONFIG_FILES[0]} is not a file mlfo wrote: kept as it is; the resolved "
              f"config is saved as {path}", file=sys.stderr)
    text = config_text(cfg).encode()
    return ckpt_io.atomic_write(path, lambda fh: fh.write(text))


def _check_metrics_file(out: Path) -> None:
    """A run appends to ``metrics.jsonl`` and a fresh start empties it: refused when the
    file there is not one a run wrote (every line a JSON object with a step, a torn last
    line allowed: what a killed run leaves)."""
    from mlfo.train.metrics_log import METRICS_FILE

    path = out / METRICS_FILE
    if not os.path.lexists(path):
        return
    ours = path.is_file() and not path.is_symlink()
    if ours:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            ours = all(isinstance(row := json.loads(line), dict) and isinstance(row.get("step"), int)
                       for line in lines[:-1] if line.strip())
        except (UnicodeDecodeError, ValueError):
            ours = False
    if not ours:
        raise MLFOError(f"{path}: not a metrics file of an mlfo run; move it away (a run writes its "
                        "metrics there)")


def _clear(out: Path, overwrite: bool) -> None:
    stale = ckpt_io.stale_temp_files(out)
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        print(f"mlfo: removed {len(stale)} temporary file(s) of killed checkpoint writes in {out}",
              file=sys.stderr)
    if overwrite:
        old = _checkpoints(out) + [out / n for n in RUN_LISTS if (out / n).is_file()]
        for p in old:
            p.unlink()
        if old:
            print(f"mlfo: --overwrite: deleted {', '.join(p.name for p in old)} of the previous run in {out}",
                  file=sys.stderr)


def claim_run_folder(out_dir: str | Path, resume: str | None = None, overwrite: bool = False) -> RunFolder:
    """Create (if needed) and lock ``out_dir``, check the start against what it holds and
    remove leftovers of killed writes. Raises MLFOError with one line when it cannot."""
    out = Path(out_dir)
    make_folder(out, "run folder (--out, train.out_dir)")
    fd = _lock(out)
    try:
        _check_start(out, resume, overwrite)
        config_target(out)  # refused now rather than after the checkpoints are gone
        _check_metrics_file(out)
        _clear(out, overwrite)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    return RunFolder(out, fd)


def claim_on_rank_0(ctx, out_dir: str | Path, resume: str | None = None, overwrite: bool = False) -> RunFolder | None:
    """``claim_run_folder`` by rank 0 of ``ctx`` (a ``DistContext``); when it refuses, every
    rank raises (none is left waiting in a collective). The other ranks get None."""
    from mlfo.distributed import on_rank_0

    return on_rank_0(ctx, lambda: claim_run_folder(out_dir, resume, overwrite), str(out_dir))
