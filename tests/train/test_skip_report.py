"""Everything a run leaves out is named: unusable videos (path and reason) in the run
folder, dropped CSV rows with their line numbers, on the console and in `data scan`."""

from __future__ import annotations

import shutil

import pytest

from mlfo.cli import main
from train_helpers import tiny_overrides

pytestmark = pytest.mark.slow


def test_unusable_videos_and_dropped_rows_are_listed(tiny_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny_data.parent, data)
    (data / "videos" / "garbage.mp4").write_bytes(b"\x00not a video" * 500)
    with open(data / "train.csv", "a") as f:
        f.write("videos/garbage.mp4,20,ring\n"       # line 24: unreadable
                "videos/move_up_000.mp4,20\n"         # line 25: a column short
                "videos/move_up_001.mp4,many,move_up\n")  # line 26: n_frames not a number
    csv = data / "train.csv"
    out = tmp_path / "run"
    assert main(["pretrain", "demo_cpu", *tiny_overrides(csv, out, **{"train.max_steps": 1})]) == 0
    err = capsys.readouterr().err
    listing = out / "unusable_videos.txt"
    assert f"mlfo: 1 of 23 videos unusable (unreadable or at most 8 frames), listed in {listing}" in err
    assert f"mlfo: 2 row(s) of {csv} dropped, listed in {listing}:" in err
    assert f"{csv}:25: expected 3 columns, got 2" in err and f"{csv}:26: n_frames 'many' is not a whole number" in err
    text = listing.read_text()
    assert f"{data / 'videos' / 'garbage.mp4'}\tunreadable" in text
    assert f"{csv}:25: expected 3 columns" in text and f"{csv}:26: n_frames" in text

    assert main(["data", "scan", str(csv), "--min-frames", "8", "--quiet"]) == 0
    scan = capsys.readouterr().out
    assert "skipped rows (2):" in scan and f"{csv}:25: expected 3 columns, got 2" in scan
    assert f"{data / 'videos' / 'garbage.mp4'}: unreadable" in scan
