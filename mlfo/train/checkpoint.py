"""Checkpoint files, for pretraining and fine-tuning alike: atomic writes, safe loads,
``last.pt`` plus numbered epochs with keep-k, and where a resume starts.

A checkpoint is a ``torch.save`` dict of tensors and plain Python data only (the RNG
states too, see ``mlfo.train.seeding``), so it is loaded with ``weights_only=True``: a
file that would need arbitrary unpickling, which can run code, is refused.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

from mlfo.errors import MLFOError

LAST = "last.pt"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")
_TEMP_FILE = re.compile(r"^\.(last|epoch_\d+)\.pt\.[A-Za-z0-9_]{8}\.tmp$")  # mkstemp: .<name>.XXXXXXXX.tmp


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(binary file)`` on a temporary file in the same folder, fsync, then rename
    over ``path``: a run killed mid-write leaves the previous file intact, never a
    truncated one (and a ``.<name>.*.tmp`` that ``stale_temp_files`` finds)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save`` through ``atomic_write``."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporary checkpoint files that killed ``atomic_write`` calls left in a run folder."""
    folder = Path(folder)
    return sorted(p for p in folder.glob(".*.tmp") if p.is_file() and _TEMP_FILE.match(p.name))


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.pt"


def prune_epoch_checkpoints(out_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` ``epoch_NNNN.pt`` files (keep=0: keep all)."""
    if keep <= 0:
        return []
    found = sorted(
        (int(m.group(1)), p) for p in Path(out_dir).iterdir() if (m := _EPOCH_FILE.match(p.name))
    )
    removed = [p for _, p in found[:-keep]]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise MLFOError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            raise MLFOError(f"{path}: refused: it holds Python objects other than tensors and plain data, "
                            "and loading it could run code from the file") from None
        raise MLFOError(f"{path}: not a readable checkpoint (UnpicklingError)") from None
    except Exception as err:  # truncated or not a torch file
        raise MLFOError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(ckpt, dict):
        raise MLFOError(f"{path}: not an mlfo checkpoint")
    return ckpt


def find_resume_path(resume: str | None, out_dir: str | Path) -> Path | None:
    """``auto``: ``out_dir/last.pt`` when it exists, else start fresh; ``never`` (or None):
    start fresh; otherwise a checkpoint path (or a run folder holding ``last.pt``)."""
    if not resume or resume == "never":
        return None
    if resume == "auto":
        candidate = Path(out_dir) / LAST
        return candidate if candidate.is_file() else None
    path = Path(resume)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise MLFOError(f"{resume}: no checkpoint to resume from")
    return path
