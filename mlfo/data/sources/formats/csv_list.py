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


def entries(csv_path: Path) -> tuple[list[tuple[str, str, int]], list[str], list[str]]:
    root = csv_path.parent
    try:
        with open(csv_path, newline="") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MLFOError(f"{csv_path}: cannot read CSV ({str(err).splitlines()[0]})") from None
    rows = [(n, [c.strip() for c in row]) for n, row in rows if any(c.strip() for c in row)]
    if not rows:
        raise MLFOError(f"{csv_path}: no rows")
    head = [c.lower() for c in rows[0][1]]
    if "path" in head:
        columns = head
        rows = rows[1:]
        label_col = columns.index("label") if "label" in columns else None
        frames_col = next((columns.index(c) for c in ("n_frames", "num_frames", "frames") if c in columns), None)
        width = len(columns)
    else:
        width = len(rows[0][1])
        if width > 3:
            raise MLFOError(f"{csv_path}:{rows[0][0]}: expected path[,n_frames][,label], got {width} columns")
        columns = ["path", "n_frames", "label"] if width == 3 else ["path", "label"][:width]
        label_col = columns.index("label") if "label" in columns else None
        frames_col = 1 if width == 3 else None
    path_col = columns.index("path")
    skipped, parsed = [], []
    for n, row in rows:
        where = f"{csv_path}:{n}"
        if len(row) != width:
            skipped.append(f"{where}: expected {width} columns, got {len(row)}")
            continue
        if not row[path_col]:
            skipped.append(f"{where}: empty path")
            continue
        if frames_col is not None and row[frames_col] and not row[frames_col].isdigit():
            skipped.append(f"{where}: n_frames {row[frames_col]!r} is not a whole number")
            continue
        label = row[label_col] if label_col is not None else ""
        if label_col is not None and not label:
            skipped.append(f"{where}: empty label")
            continue
        parsed.append((where, os.path.normpath(root / row[path_col]), label))
    if not parsed:
        raise MLFOError(f"{csv_path}: no usable rows ({skipped[0] if skipped else 'header only'})")
    if label_col is None:
        return [(p, "", -1) for _, p, _ in parsed], [], skipped
    given = classes_json(root)
    numeric = all(re.fullmatch(r"-?\d+", label) for _, _, label in parsed)
    if numeric:
        # -1 marks an unlabelled row (as in the scan cache of an unlabelled folder).
        classes = given or [str(i) for i in range(max(int(lab) for _, _, lab in parsed) + 1)]
        entries = []
        for where, p, lab in parsed:
            if int(lab) == -1:
                entries.append((p, "", -1))
                continue
            if not 0 <= int(lab) < len(classes):
                raise MLFOError(f"{where}: label {lab} outside 0..{len(classes) - 1}")
            entries.append((p, classes[int(lab)], int(lab)))
        return entries, classes, skipped
    classes = given or sorted({lab for _, _, lab in parsed})
    lookup = {c: i for i, c in enumerate(classes)}
    entries = []
    for where, p, lab in parsed:
        if lab not in lookup:
            raise MLFOError(f"{where}: unknown label {lab!r} (not in {root / 'classes.json'})")
        entries.append((p, lab, lookup[lab]))
    return entries, classes, skipped
