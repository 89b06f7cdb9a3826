"""What a prepared copy holds: the source's videos at the same relative paths (as ``.mp4``),
its CSVs and split files rewritten to name them, ``classes.json`` / ``classInd.txt`` as
they are, and the selections (``load_index`` arguments) whose index is written."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from mlfo.data.sources.formats import SPLIT_FORMATS, detect_format, read_entries
from mlfo.data.sources.formats.folder import _walk_videos
from mlfo.data.sources.records import VIDEO_SUFFIXES
from mlfo.errors import MLFOError

OUT_SUFFIX = ".mp4"


@dataclass
class Layout:
    kind: str  # folder | csv | ucf101 | hmdb51
    root: Path  # the folder the videos' relative paths start from
    videos: list[str] = field(default_factory=list)  # relative paths of the videos to prepare
    texts: list[tuple[Path, str, str]] = field(default_factory=list)  # (file, dst rel, "csv"|"split"|"copy")
    targets: list[dict] = field(default_factory=list)  # load_index arguments, paths relative to DST


def out_rel(rel: str) -> str:
    """The copy's relative path of a video (a frame folder ``a/v`` becomes ``a/v.mp4``)."""
    rel = rel.replace("\\", "/")
    stem, suffix = os.path.splitext(rel)
    return (stem if suffix.lower() in VIDEO_SUFFIXES else rel) + OUT_SUFFIX


def plan_source(source, fmt: str = "auto", split_dir=None) -> Layout:
    """The layout of a source ``mlfo data scan`` reads; one line for what cannot be copied."""
    src = Path(os.path.abspath(source))
    if not src.exists():
        raise MLFOError(f"{source}: source not found")
    split_path = Path(os.path.abspath(split_dir)) if split_dir else None
    if split_path is not None and not split_path.is_dir():
        raise MLFOError(f"{split_dir}: split folder not found")
    kind = detect_format(src, split_path) if fmt == "auto" else fmt
    if kind in SPLIT_FORMATS:
        if split_path is None:
            raise MLFOError(f"--split-dir: the {kind} format needs the folder of its split files")
        layout = _split_layout(src, kind, split_path)
    elif kind == "csv":
        layout = _csv_layout(src)
    else:
        layout = _folder_layout(src)
    seen: dict[str, str] = {}
    for rel in layout.videos:
        other = seen.setdefault(out_rel(rel), rel)
        if other != rel:
            raise MLFOError(f"{layout.root / rel}: its copy would be {out_rel(rel)}, as {other}'s; rename one")
    return layout


def _inside(root: Path, path: str, where: str) -> str:
    rel = os.path.relpath(path, root)
    if rel.startswith(".."):
        raise MLFOError(f"{where}: {path} lies outside {root}; prepare copies only what is under its source")
    return rel.replace(os.sep, "/")


def _folder_layout(root: Path) -> Layout:
    if not root.is_dir():
        raise MLFOError(f"{root}: a folder source must be a folder")
    videos = [_inside(root, str(v), str(root)) for v in _walk_videos(root)]
    if not videos:
        raise MLFOError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}) or frame folders found")
    layout = Layout("folder", root, videos, targets=[{"source": ".", "fmt": "folder"}])
    for csv_file in sorted(root.glob("*.csv")):  # train.csv / test.csv beside the videos (the demo data)
        if csv_file.name.endswith(".mlfo-index.csv"):
            continue
        try:
            entries = read_entries("csv", csv_file, None, 1, "train")[0]
        except MLFOError:
            continue  # not a list of videos: not part of the dataset's description
        for path, _, _ in entries:  # a row naming a video outside SRC would name it in DST too
            _inside(root, path, str(csv_file))
        layout.texts.append((csv_file, csv_file.name, "csv"))
        layout.targets.append({"source": csv_file.name, "fmt": "csv"})
    _add_classes_json(layout, root)
    return layout


def _csv_layout(csv_file: Path) -> Layout:
    if not csv_file.is_file():
        raise MLFOError(f"{csv_file}: a CSV source must be a file")
    root = csv_file.parent
    entries, _, _ = read_entries("csv", csv_file, None, 1, "train")
    videos = sorted({_inside(root, p, str(csv_file)) for p, _, _ in entries if os.path.exists(p)})
    layout = Layout("csv", root, videos, [(csv_file, csv_file.name, "csv")],
                    [{"source": csv_file.name, "fmt": "csv"}])
    _add_classes_json(layout, root)
    return layout


def _split_layout(root: Path, kind: str, split_dir: Path) -> Layout:
    if not root.is_dir():
        raise MLFOError(f"{root}: a {kind} source must be a folder")
    layout = Layout(kind, root)
    videos = set()
    for split in (1, 2, 3):
        for subset in ("train", "test"):
            try:
                entries, _, _ = read_entries(kind, root, split_dir, split, subset)
            except MLFOError as err:
                if split == 1 or "split file not found" not in str(err):
                    raise
                continue
            videos |= {_inside(root, p, str(split_dir)) for p, _, _ in entries if os.path.exists(p)}
            layout.targets.append({"source": ".", "fmt": kind, "split": split, "subset": subset,
                                   "split_dir": split_dir.name})
    layout.videos = sorted(videos)
    for file in sorted(split_dir.glob("*.txt")):
        mode = "copy" if file.name == "classInd.txt" else "split"
        layout.texts.append((file, f"{split_dir.name}/{file.name}", mode))
    return layout


def _add_classes_json(layout: Layout, folder: Path) -> None:
    if (folder / "classes.json").is_file():
        layout.texts.append((folder / "classes.json", "classes.json", "copy"))


def rewritten(file: Path, mode: str) -> bytes:
    """The content of ``file`` in the copy: video paths renamed as ``out_rel`` names them."""
    data = file.read_bytes()
    if mode == "copy":
        return data
    text = data.decode("utf-8", errors="replace")
    if mode == "split":  # "<path> [label]" per line (UCF101, HMDB51)
        lines = []
        for line in text.splitlines():
            parts = line.split(maxsplit=1)
            lines.append(" ".join([out_rel(parts[0])] + parts[1:]) if parts else line)
        return ("\n".join(lines) + "\n").encode()
    rows = list(csv.reader(io.StringIO(text)))
    has_header = bool(rows) and "path" in [c.strip().lower() for c in rows[0]]
    col = [c.strip().lower() for c in rows[0]].index("path") if has_header else 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for n, row in enumerate(rows):
        if (n or not has_header) and len(row) > col and row[col].strip():
            path = row[col].strip()
            if os.path.isabs(path):  # an absolute path into SRC names the copy relative to DST's CSV
                path = os.path.relpath(path, file.parent)
            row = row[:col] + [out_rel(path)] + row[col + 1:]
        writer.writerow(row)
    return out.getvalue().encode()
