"""What ``mlfo extract`` wrote into its output folder, so that it never overwrites anything
else, never leaves stale features beside new ones, and a half-done extraction is known.

``OUT/mlfo-extract.json`` (the *record*) lists every file the extraction writes, before it
writes it, with the extraction's fingerprint (encoders, views, levels, precision, classes),
each part's video list digest, and its state: ``running`` until the last part is written,
then ``complete``. Claiming a folder (rank 0, after every input is validated, before
anything is written):

- a file the extraction would write, or a feature set ``mlfo eval`` would read, that the
  record does not list is the user's: refused, whatever the flags;
- an input (the video list, the split folder) among the files to write or remove: refused;
- the same fingerprint resumes (finished parts and shards are kept) or adds parts (a
  ``--subset test`` after a ``--subset train``);
- another fingerprint, or another video list for a part already there, needs
  ``--overwrite``, which first deletes every file the record lists (stale baselines
  included), and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mlfo.errors import MLFOError, make_folder
from mlfo.eval.features import FEATURE_SET_GLOBS, RECORD_FILE, SHARDS_DIR

RECORD_KIND = "mlfo extract record"


def fingerprint(obj) -> str:
    """A short digest of a JSON-able description (encoders, views, data, ...)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class OutputFolder:
    """The claimed output folder and its record (rank 0 only writes it)."""

    root: Path
    record: dict = field(default_factory=dict)

    @property
    def done_parts(self) -> list[str]:
        return list(self.record.get("done_parts", []))

    def shard_folder(self, part: str, part_fingerprint: str) -> Path:
        return self.root / SHARDS_DIR / f"{part.replace('/', '-') or 'videos'}-{part_fingerprint}"

    def will_write(self, paths: list[Path]) -> None:
        """List ``paths`` in the record before they are written (so --overwrite finds them)."""
        files = set(self.record["files"]) | {p.relative_to(self.root).as_posix() for p in paths}
        self.record["files"] = sorted(files)
        self.save()

    def part_done(self, part: str) -> None:
        self.record["done_parts"] = self.done_parts + [part]
        self.save()

    def remove_shards(self, folder: Path | None = None) -> None:
        shutil.rmtree(folder or self.root / SHARDS_DIR, ignore_errors=True)

    def complete(self) -> None:
        self.record["state"] = "complete"
        self.save()
        self.remove_shards()

    def save(self) -> None:
        path = self.root / RECORD_FILE
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            tmp.write_text(json.dumps(self.record, indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as err:
            raise MLFOError(f"{self.root}: cannot write there ({err.strerror or err})") from None


def read_record(root: Path) -> dict | None:
    """The record in ``root``, None when there is none; one line when it is not one."""
    path = root / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise MLFOError(f"{path}: not a readable extraction record ({str(err).splitlines()[0]})") from None
    if not isinstance(record, dict) or record.get("kind") != RECORD_KIND or not isinstance(record.get("files"), list):
        raise MLFOError(f"{path}: not an mlfo extraction record")
    return record


def _existing(root: Path, planned: list[Path]) -> list[Path]:
    """Files the extraction would write, or feature sets eval would read, that exist."""
    found = {p for p in planned if p.exists()}
    for pattern in FEATURE_SET_GLOBS:
        found |= set(root.glob(pattern))
    return sorted(found)


def _remove(root: Path, files: set[Path]) -> None:
    """Delete ``files`` (what the old record lists), then the folders they leave empty."""
    for path in sorted(files):
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            raise MLFOError(f"{path}: cannot remove it ({err.strerror or err})") from None
    for folder in sorted({p.parent for p in files}, key=lambda p: -len(p.parts)):
        while folder != root and folder.is_relative_to(root):
            try:
                folder.rmdir()  # only when empty: a user's file keeps its folder
            except OSError:
                break
            folder = folder.parent


def claim(root: Path, planned: list[Path], inputs: list[Path], description: dict, overwrite: bool) -> OutputFolder:
    """Check ``root`` for this extraction (see the module doc) and write its record."""
    root = Path(root)
    old = read_record(root) if root.is_dir() else None
    listed = {root / f for f in (old or {}).get("files", [])}
    resolved_out = {p.resolve() for p in set(planned) | listed}
    for source in inputs:
        if Path(source).resolve() in resolved_out:
            raise MLFOError(f"{source}: is an input of this extraction and a file it would write; "
                            "choose another output folder")
    foreign = [p for p in _existing(root, planned) if p not in listed] if root.is_dir() else []
    if foreign:
        raise MLFOError(f"{foreign[0]}: exists and was not written by this output folder's mlfo extract "
                        f"({len(foreign)} such file{'s' if len(foreign) > 1 else ''}); move it or choose "
                        "another output folder")
    fp = fingerprint({k: v for k, v in description.items() if k not in ("parts", "summary")})
    parts = description.get("parts", {})
    same = old is not None and old.get("fingerprint") == fp and all(
        (old.get("parts") or {}).get(name, digest) == digest for name, digest in parts.items())
    if old is not None and not same and not overwrite:
        raise MLFOError(f"{root}: holds the features of another extraction ({old.get('summary', 'see ' + RECORD_FILE)}"
                        f"); pass --overwrite to replace its {len(listed)} files, or choose another output folder")
    make_folder(root, "output folder", writable=True)
    folder = OutputFolder(root, old if same else {})
    if old is not None and not same:
        _remove(root, listed)
        folder.remove_shards()
    if not folder.record:
        folder.record = {"kind": RECORD_KIND, "fingerprint": fp, "state": "running",
                         "summary": description.get("summary", ""), "parts": {}, "done_parts": [], "files": []}
    folder.record["parts"] = {**folder.record.get("parts", {}), **parts}  # another subset may join
    folder.record["state"] = "running"
    folder.save()
    return folder
