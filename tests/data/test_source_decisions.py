"""Three source decisions (README, Data sources): a CSV from Excel (byte-order mark) reads
like any other; HMDB51's split files and a class-folder copy of the same data give every
class the same integer; a display rotation is reported by ``data scan``, frames stay as stored."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from videos import read_index, write_indexed_video  # noqa: E402

from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.sources import load_index, summarize  # noqa: E402


def _clip(path: Path, frames: int = 12) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_indexed_video(path, frames, size=(32, 24))


def test_a_csv_with_a_byte_order_mark_keeps_its_header_and_labels(tmp_path):
    for name in ("a.mp4", "b.mp4"):
        _clip(tmp_path / name)
    text = "path,label\na.mp4,cat\nb.mp4,dog\n"
    (tmp_path / "list.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8"
    index = load_index(tmp_path / "list.csv", cache=False, progress=False)
    assert index.classes == ["cat", "dog"] and index.skipped == []
    assert [(Path(r.path).name, r.label) for r in index.records] == [("a.mp4", 0), ("b.mp4", 1)]
    (tmp_path / "bare.csv").write_bytes(b"\xef\xbb\xbfa.mp4,1\nb.mp4,0\n")  # no header: integer labels
    bare = load_index(tmp_path / "bare.csv", cache=False, progress=False)
    assert [(Path(r.path).name, r.label) for r in bare.records] == [("a.mp4", 1), ("b.mp4", 0)]


def test_hmdb51_and_folder_give_a_class_the_same_label(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    for cls in ("climb_stairs", "climb", "wave"):  # file names sort climb_stairs_... first
        _clip(root / cls / f"{cls}_a.avi")
        (splits / f"{cls}_test_split1.txt").write_text(f"{cls}_a.avi 1\n")
    by_split = load_index(root, fmt="hmdb51", split_dir=splits, cache=False, progress=False)
    by_folder = load_index(root, fmt="folder", cache=False, progress=False)
    assert by_split.classes == by_folder.classes == ["climb", "climb_stairs", "wave"]
    labels = {(Path(r.path).name, r.label) for r in by_split.records}
    assert labels == {(Path(r.path).name, r.label) for r in by_folder.records}
    assert ("climb_a.avi", 0) in labels


def _rotate_mp4(path: Path) -> None:
    """Write a phone's 90-degree display matrix into the mp4 track header (tkhd)."""
    data = bytearray(path.read_bytes())
    matrix = data.find(b"tkhd") + 44  # version 0 tkhd: the matrix follows 40 bytes of fields
    assert struct.unpack(">9i", data[matrix:matrix + 36]) == (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


def test_a_display_rotation_is_reported_and_frames_stay_as_stored(tmp_path):
    root = tmp_path / "clips"
    _clip(root / "upright.mp4", 40)
    _rotate_mp4(_clip(root / "phone.mp4", 40))
    index = load_index(root, progress=False)
    rotation = {Path(r.path).name: r.rotation for r in index.records}
    assert rotation == {"phone.mp4": 90, "upright.mp4": 0}
    assert all(r.status == "ok" for r in index.records)
    report = summarize(index, min_frames=32)
    assert f"  {root / 'phone.mp4'}: a player turns it 90 degrees clockwise" in report.splitlines()
    cached = load_index(root, progress=False)  # from the index cache, not probed again
    assert [r.rotation for r in cached.records] == [r.rotation for r in index.records]
    with open_video(root / "phone.mp4") as reader:
        frames = reader.get_frames([5, 0])
        assert frames.shape == (2, 24, 32, 3) and [read_index(f) for f in frames] == [5, 0]
