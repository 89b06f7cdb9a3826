"""Checkpoint files, for pretraining and fine-tuning alike: atomic writes, safe loads,
``last.pt`` plus numbered epochs with keep-k, and where a resume starts.

A checkpoint is a ``torch.save`` dict of tensors and plain Python data only (the RNG
states too, see ``mlfo.train.seeding``), so it is loaded with ``weights_only=True``: a
file that would need arbitrary unpickling, which can run code, is refused.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

from mlfo.errors import MLFOError

LAST = "last.pt"
_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pt$")
# mkstemp names of atomic_write: .<name>.XXXXXXXX.tmp (checkpoints and the run's config)
_TEMP_FILE = re.compile(r"^\.(last\.pt|epoch_\d+\.pt|config\.yaml|config\.resolved\.yaml)\.[A-Za-z0-9_]{8}\.tmp$")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
# torch's wording of one mismatched tensor in a load_state_dict error
_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[.*?\])\) "
                            r"from checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)")


def atomic_write(path: str | Path, write) -> Path:
    """Call ``write(binary file)`` on a temporary file in the same folder, fsync, then rename
    over ``path``: a run killed mid-write leaves the previous file intact, never a
    truncated one (and a ``.<name>.*.tmp`` that ``stale_temp_files`` finds). A full disk
    is one line saying so, the temporary file removed and the previous file intact."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise MLFOError(f"{path}: cannot write: {_reason(err)}") from None
    try:
        _write_synced(fd, write)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, Exception) and _os_error(err) is not None:
            kept = "the previous file is intact" if path.exists() else "nothing was written"
            raise MLFOError(f"{path}: cannot write: {_reason(_os_error(err))}; {kept}") from None
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


def _write_synced(fd: int, write) -> None:
    fh = os.fdopen(fd, "wb")
    try:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    finally:
        try:
            fh.close()
        except OSError:
            pass  # the error that matters was raised above (closing flushes again)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError with an errno behind ``err`` (torch.save wraps its writer's in a RuntimeError)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno is not None:
            return err
        err = err.__cause__ or err.__context__
    return None


def _reason(err: OSError) -> str:
    code = errno.errorcode.get(err.errno, str(err.errno))
    return "the disk is full (ENOSPC)" if err.errno in _DISK_FULL else f"{err.strerror or err} ({code})"


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


def load_module_state(module, state: dict, path: str | Path, notes: list[str] = ()) -> None:
    """``module.load_state_dict(state)``, refused in one line naming the checkpoint, the
    first mismatch and the method's resume ``notes`` (e.g. the settings changed since the
    checkpoint), instead of torch's multi-line ``Error(s)
    in loading state_dict`` (e.g. a resume with other backbone widths). Torch does the
    matching, so a module that resizes a buffer on load (the prototype queue) still can."""
    if not isinstance(state, dict):
        raise MLFOError(f"{path}: the checkpoint's model state is not a dict of tensors")
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        problems = [_SIZE_MISMATCH.sub(r"\1 is \2 in the checkpoint, \3 in this run", line.strip().rstrip("."))
                    for line in str(err).splitlines()[1:] if line.strip()]
        if not problems:
            raise
        first = problems[0] if len(problems[0]) <= 200 else problems[0][:197] + "..."
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        settings = "".join(f"; {note.removeprefix('mlfo: ')}" for note in notes if note)
        raise MLFOError(f"{path}: holds another architecture than this run's ({first}{more}{settings}); "
                        "resume with the checkpoint's settings or start a new run") from None
