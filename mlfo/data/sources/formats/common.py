"""Helpers shared by the dataset formats: split-file lines, video paths, classes.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlfo.errors import MLFOError


def resolve_video(root: Path, rel: str) -> str:
    """A split file's video path, or the frame folder that stands in for it."""
    rel_path = Path(rel.replace("\\", "/"))
    candidates = [root / rel_path, root / rel_path.with_suffix(""),
                  root / rel_path.name, root / rel_path.with_suffix("").name]
    for cand in candidates:
        if cand.exists():
            return os.path.normpath(cand)
    return os.path.normpath(candidates[0])


def classes_json(folder: Path) -> list[str] | None:
    file = folder / "classes.json"
    if not file.is_file():
        return None
    try:
        entries = json.loads(file.read_text())["classes"]
        return [e["name"] if isinstance(e, dict) else str(e) for e in entries]
    except (ValueError, KeyError, TypeError):
        raise MLFOError(f"{file}: not a classes.json with a 'classes' list") from None


def read_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise MLFOError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise MLFOError(f"{path}: cannot read split file ({err.strerror})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
