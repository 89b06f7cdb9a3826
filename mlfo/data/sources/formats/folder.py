"""``folder``: every video file (and frame folder) below a directory; labelled when each
video sits in a class sub-folder (``ROOT/<class>/<video>``), classes sorted by name."""

from __future__ import annotations

import os
from pathlib import Path

from mlfo.data.readers.frames import IMAGE_SUFFIXES
from mlfo.data.sources.records import VIDEO_SUFFIXES
from mlfo.errors import MLFOError


def _walk_videos(root: Path) -> list[Path]:
    """Video files and frame folders below ``root`` (a frame folder is not descended into)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here != root and any(f.lower().endswith(IMAGE_SUFFIXES) for f in filenames):
            found.append(here)
            dirnames[:] = []
            continue
        found += [here / f for f in sorted(filenames)
                  if f.lower().endswith(VIDEO_SUFFIXES) and not f.startswith(".")]
    return found


def _utf8_names(videos: list[Path]) -> tuple[list[Path], list[str]]:
    """The videos whose path is valid UTF-8, and a line for each of the others: such a name
    (surrogate escapes in Python) can be neither printed, nor written to the index, nor
    opened by PyAV, so it is reported, not used."""
    good, skipped = [], []
    for video in videos:
        try:
            str(video).encode("utf-8")
            good.append(video)
        except UnicodeEncodeError:
            shown = str(video).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            skipped.append(f"{shown}: file name is not valid UTF-8 (rename it to use it)")
    return good, skipped


def entries(root: Path) -> tuple[list[tuple[str, str, int]], list[str], list[str]]:
    videos, skipped = _utf8_names(_walk_videos(root))
    if not videos:
        raise MLFOError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) or frame folders found"
                        + (f" ({skipped[0]})" if skipped else ""))
    parts = [v.relative_to(root).parts for v in videos]
    if all(len(p) == 2 for p in parts):  # ROOT/<class>/<video>: labelled
        classes = sorted({p[0] for p in parts})
        lookup = {c: i for i, c in enumerate(classes)}
        return [(str(v), p[0], lookup[p[0]]) for v, p in zip(videos, parts)], classes, skipped
    return [(str(v), "", -1) for v in videos], [], skipped
