"""``ucf101``: the official ``classInd.txt`` / ``trainlist0N.txt`` / ``testlist0N.txt``."""

from __future__ import annotations

from pathlib import Path

from mlfo.data.sources.formats.common import read_lines, resolve_video
from mlfo.errors import MLFOError


def entries(root: Path, split_dir: Path, split: int, subset: str):
    class_file = split_dir / "classInd.txt"
    classes: list[str] = []
    for n, line in read_lines(class_file):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise MLFOError(f"{class_file}:{n}: expected '<{len(classes) + 1}> <ClassName>', got {line!r}")
        classes.append(parts[1])
    lookup = {c: i for i, c in enumerate(classes)}
    list_file = split_dir / f"{subset}list0{split}.txt"
    entries = []
    for n, line in read_lines(list_file):
        parts = line.split()
        rel = parts[0]
        class_name = rel.replace("\\", "/").split("/")[0] if "/" in rel.replace("\\", "/") else ""
        if len(parts) == 2:  # trainlist: "Class/v_Class_g08_c01.avi 1", label 1-based
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= len(classes):
                raise MLFOError(f"{list_file}:{n}: unknown label {parts[1]!r} (classInd.txt has 1..{len(classes)})")
            label = int(parts[1]) - 1
            if class_name and class_name != classes[label]:
                raise MLFOError(f"{list_file}:{n}: label {parts[1]} is {classes[label]}, but the path says {class_name}")
        elif len(parts) == 1:  # testlist: the class is the folder
            if class_name not in lookup:
                raise MLFOError(f"{list_file}:{n}: unknown class {class_name or rel!r} (not in classInd.txt)")
            label = lookup[class_name]
        else:
            raise MLFOError(f"{list_file}:{n}: expected '<Class/video.avi> [label]', got {line!r}")
        entries.append((resolve_video(root, rel), classes[label], label))
    return entries, classes, []
