"""``hmdb51``: the official ``<class>_test_splitN.txt`` files (1 = train, 2 = test)."""

from __future__ import annotations

from pathlib import Path

from mlfo.data.sources.formats.common import read_lines, resolve_video
from mlfo.errors import MLFOError

HMDB_CODES = {"train": "1", "test": "2"}


def entries(root: Path, split_dir: Path, split: int, subset: str):
    suffix = f"_test_split{split}.txt"
    # Classes sorted by name, as the folder format sorts them (sorting the file names
    # would put "climb_stairs_test_split1.txt" before "climb_test_split1.txt").
    files = sorted(split_dir.glob(f"*{suffix}"), key=lambda f: f.name[: -len(suffix)])
    if not files:
        raise MLFOError(f"{split_dir / ('<class>' + suffix)}: split file not found")
    classes = [f.name[: -len(suffix)] for f in files]
    entries = []
    for label, (class_name, file) in enumerate(zip(classes, files)):
        for n, line in read_lines(file):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise MLFOError(f"{file}:{n}: expected '<video.avi> <0|1|2>', got {line!r}")
            if parts[1] == HMDB_CODES[subset]:
                entries.append((resolve_video(root, f"{class_name}/{parts[0]}"), class_name, label))
    return entries, classes, []
