"""Where a prepared copy may be written: a new or empty folder, or one an earlier run of
the same preparation (same source, same settings) left, which it then resumes. Never a
folder inside the source, nor one holding anything else: nothing of the user's is touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlfo.errors import MLFOError

STATE_DIR = ".mlfo-prepare"  # the manifest, the shard indexes and the failure lists
MANIFEST = "manifest.json"
SETTINGS = ("source", "kind", "split_dir", "short_side", "fps", "encoding")  # must match to resume


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_destination(src_root: Path, dst: Path, manifest: dict) -> bool:
    """Refuse a DST that may not be written; True when it resumes an earlier run."""
    real_src, real_dst = os.path.realpath(src_root), os.path.realpath(dst)
    if _within(real_dst, real_src):
        raise MLFOError(f"{dst}: DST is inside the source folder {src_root}; choose a folder outside it")
    if _within(real_src, real_dst):
        raise MLFOError(f"{dst}: DST holds the source {src_root}; choose a new folder")
    if not dst.exists():
        return False
    if not dst.is_dir():
        raise MLFOError(f"{dst}: DST exists and is not a folder")
    earlier = read_manifest(dst)
    if earlier is None:
        others = sorted(p.name for p in dst.iterdir() if p.name != STATE_DIR)
        if others:
            raise MLFOError(f"{dst}: DST holds other files ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''});"
                            " prepare writes only into a new or empty folder")
        return False
    changed = [k for k in SETTINGS if earlier.get(k) != manifest.get(k)]
    if changed:
        raise MLFOError(f"{dst}: DST holds a copy prepared with another {', '.join(changed)} "
                        f"({', '.join(f'{k}={earlier.get(k)!r}, not {manifest.get(k)!r}' for k in changed)}); choose a new folder")
    return True


def read_manifest(dst: Path) -> dict | None:
    path = dst / STATE_DIR / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise MLFOError(f"{path}: unreadable manifest of an earlier prepare; choose a new DST") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Whole or absent: a temporary name in the same folder, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(dst: Path, manifest: dict) -> None:
    write_atomic(dst / STATE_DIR / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
