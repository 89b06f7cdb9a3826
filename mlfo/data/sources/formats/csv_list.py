"""``csv``: rows ``path[,n_frames][,label]``, header optional, paths relative to the CSV's
folder. Without a header, two columns are ``path,label``. Labels are class names or
integers; a ``classes.json`` beside the CSV (the demo data) fixes the class list."""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

from mlfo.data.sources.formats.common import classes_json
from mlfo.errors import MLFOError


def _read_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty rows with their line numbers. ``utf-8-sig``: a byte-order mark (Excel's
    "CSV UTF-8") is not part of the first cell, where it would hide the ``path`` header."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MLFOError(f"{csv_path}: cannot read CSV ({str(err).splitlines()[0]})") from None
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    if not rows:
        raise MLFOError(f"{csv_path}: no rows")
    return rows


def _layout(csv_path: Path, rows: list) -> tuple[list, int, int, int | None, int | None]:
    """(data rows, width, path column, label column, n_frames column): from the header,
    or from the width (path,label / path,n_frames,label) where there is none."""
    head = [c.lower() for c in rows[0][1]]
    if "path" in head:
        frames_col = next((head.index(c) for c in ("n_frames", "num_frames", "frames") if c in head), None)
        label_col = head.index("label") if "label" in head else None
        return rows[1:], len(head), head.index("path"), label_col, frames_col
    width = len(rows[0][1])
    if width > 3:
        raise MLFOError(f"{csv_path}:{rows[0][0]}: expected path[,n_frames][,label], got {width} columns")
    return rows, width, 0, (width - 1 if width > 1 else None), (1 if width == 3 else None)


def _parse(csv_path: Path, rows: list) -> tuple[list[tuple[str, str, str]], list[str], bool]:
    """(where, path, label) of every usable row, "file:line: problem" for the others, and
    whether the CSV has a label column."""
    rows, width, path_col, label_col, frames_col = _layout(csv_path, rows)
    skipped, parsed = [], []
    for n, row in rows:
        where = f"{csv_path}:{n}"
        if len(row) != width:
            skipped.append(f"{where}: expected {width} columns, got {len(row)}")
        elif not row[path_col]:
            skipped.append(f"{where}: empty path")
        elif frames_col is not None and row[frames_col] and not row[frames_col].isdigit():
            skipped.append(f"{where}: n_frames {row[frames_col]!r} is not a whole number")
        elif label_col is not None and not row[label_col]:
            skipped.append(f"{where}: empty label")
        else:
            label = row[label_col] if label_col is not None else ""
            parsed.append((where, os.path.normpath(csv_path.parent / row[path_col]), label))
    if not parsed:
        raise MLFOError(f"{csv_path}: no usable rows ({skipped[0] if skipped else 'header only'})")
    return parsed, skipped, label_col is not None


def _numeric_entries(parsed: list, classes: list[str]) -> list[tuple[str, str, int]]:
    """Integer labels index ``classes``; -1 marks an unlabelled row (as in the scan cache
    of an unlabelled folder)."""
    entries = []
    for where, p, lab in parsed:
        if int(lab) == -1:
            entries.append((p, "", -1))
            continue
        if not 0 <= int(lab) < len(classes):
            raise MLFOError(f"{where}: label {lab} outside 0..{len(classes) - 1}")
        entries.append((p, classes[int(lab)], int(lab)))
    return entries


def entries(csv_path: Path) -> tuple[list[tuple[str, str, int]], list[str], list[str]]:
    root = csv_path.parent
    parsed, skipped, labelled = _parse(csv_path, _read_rows(csv_path))
    if not labelled:
        return [(p, "", -1) for _, p, _ in parsed], [], skipped
    given = classes_json(root)
    if all(re.fullmatch(r"-?\d+", label) for _, _, label in parsed):
        classes = given or [str(i) for i in range(max(int(lab) for _, _, lab in parsed) + 1)]
        return _numeric_entries(parsed, classes), classes, skipped
    classes = given or sorted({lab for _, _, lab in parsed})
    lookup = {c: i for i, c in enumerate(classes)}
    entries = []
    for where, p, lab in parsed:
        if lab not in lookup:
            raise MLFOError(f"{where}: unknown label {lab!r} (not in {root / 'classes.json'})")
        entries.append((p, lab, lookup[lab]))
    return entries, classes, skipped
