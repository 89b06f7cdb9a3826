"""The dataset formats, one module each; every ``entries(...)`` returns
``(entries, classes, skipped)``: ``(path, class name, label)`` per video, the class list,
and ``"file:line: problem"`` for every row it dropped."""

from __future__ import annotations

from pathlib import Path

from mlfo.data.sources.formats import csv_list, folder, hmdb51, ucf101
from mlfo.errors import MLFOError

FORMATS = ("auto", "folder", "csv", "ucf101", "hmdb51")
SPLIT_FORMATS = ("ucf101", "hmdb51")  # official splits: need split_dir, split and subset


def detect_format(source: Path, split_dir: Path | None) -> str:
    if source.is_file():
        return "csv"
    if split_dir is not None:
        if (split_dir / "classInd.txt").is_file():
            return "ucf101"
        if any(split_dir.glob("*_test_split*.txt")):
            return "hmdb51"
        raise MLFOError(f"{split_dir}: neither UCF101 (classInd.txt) nor HMDB51 (*_test_splitN.txt) split files")
    return "folder"


def read_entries(fmt: str, source: Path, split_dir: Path | None, split: int, subset: str):
    """The entries of ``source`` in format ``fmt`` (already resolved, not ``auto``)."""
    if fmt == "folder":
        return folder.entries(source)
    if fmt == "csv":
        return csv_list.entries(source)
    module = ucf101 if fmt == "ucf101" else hmdb51
    return module.entries(source, split_dir, split, subset)
