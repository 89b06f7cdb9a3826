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


def read_classes_json(file: Path) -> tuple[list[str], dict[str, str]]:
    """THE classes.json reader: ``{"classes": [name | {"name", "group"}, ...]}`` -> the class
    names in label order and class -> group (the demo data's motion / appearance groups)."""
    try:
        entries = json.loads(file.read_text(encoding="utf-8-sig"))["classes"]  # -sig: a BOM is no JSON
        names = [e["name"] if isinstance(e, dict) else str(e) for e in entries]
        groups = {e["name"]: e["group"] for e in entries if isinstance(e, dict) and e.get("group")}
        if not isinstance(entries, list) or not all(isinstance(n, str) for n in [*names, *groups.values()]):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise MLFOError(f"{file}: not a classes.json with a 'classes' list of names or {{name, group}}") from None
    return names, groups


def classes_json(folder: Path) -> list[str] | None:
    """The class names of ``folder/classes.json``, or None when there is none."""
    file = folder / "classes.json"
    return read_classes_json(file)[0] if file.is_file() else None


def read_lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise MLFOError(f"{path}: split file not found")
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")  # Excel writes a BOM
    except OSError as err:
        raise MLFOError(f"{path}: cannot read split file ({err.strerror})") from None
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
