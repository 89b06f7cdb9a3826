"""Issue 19, item 3: ``mlfo data scan SRC --out FILE`` writes its index only over an index
it wrote (or any file with --overwrite), never over SRC, a folder or a dataset's files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from videos import write_indexed_video  # noqa: E402

from mlfo.cli import main  # noqa: E402


@pytest.fixture
def dataset(tmp_path) -> Path:
    (tmp_path / "videos").mkdir()
    for name in ("a", "b"):
        write_indexed_video(tmp_path / "videos" / f"{name}.mp4", 40, codec="libx264", size=(32, 24))
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"name": "zoom"}, {"name": "pan"}]}))
    (tmp_path / "train.csv").write_text("path,n_frames,label\nvideos/a.mp4,40,pan\nvideos/b.mp4,40,zoom\n")
    return tmp_path


def scan(*args) -> int:
    return main(["data", "scan", *[str(a) for a in args], "--quiet"])


def test_scan_refuses_to_write_over_the_datasets_own_files(dataset, capsys):
    csv, classes = dataset / "train.csv", dataset / "classes.json"
    before = {p: p.read_bytes() for p in (csv, classes)}
    assert scan(csv, "--out", classes) == 2
    assert capsys.readouterr().err == (f"mlfo: error: {classes}: exists and is not an index mlfo wrote; give "
                                       "another --out, or add --overwrite to replace it\n")
    assert scan(csv, "--out", csv, "--overwrite") == 2  # the source itself, even with --overwrite
    assert "is the source being scanned" in capsys.readouterr().err
    assert scan(csv, "--out", dataset / "videos") == 2
    assert "is a folder" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (csv, classes)} == before
    assert scan(dataset / "videos", "--out", dataset / "videos" / "a.mp4") == 2  # a video of the source
    assert (dataset / "videos" / "a.mp4").read_bytes()[4:8] == b"ftyp"


def test_scan_replaces_its_own_index_and_anything_with_overwrite(dataset, capsys):
    csv, index = dataset / "train.csv", dataset / "my-index.csv"
    assert scan(csv, "--out", index) == 0
    first = index.read_text()
    assert first.startswith("path,num_frames,fps,")
    (dataset / "videos" / "c.mp4").write_bytes((dataset / "videos" / "a.mp4").read_bytes())
    with open(csv, "a") as f:
        f.write("videos/c.mp4,40,pan\n")
    assert scan(csv, "--out", index, "--no-cache") == 0  # mlfo's own index: rewritten
    assert "c.mp4" in index.read_text()
    notes = dataset / "notes.csv"
    notes.write_text("my notes\n")
    assert scan(csv, "--out", notes, "--overwrite") == 0
    assert notes.read_text().startswith("path,num_frames,fps,")
