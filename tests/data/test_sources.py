"""Dataset sources, the scan cache, bad input and ``mlfo data scan``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from videos import index_image, write_empty_video, write_indexed_video  # noqa: E402

import mlfo.data.sources.probe as probe  # noqa: E402
from mlfo.cli import main  # noqa: E402
from mlfo.data.sources import load_index  # noqa: E402
from mlfo.errors import MLFOError  # noqa: E402

FRAMES = 40


def video(path: Path, frames: int = FRAMES, codec: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or ("mpeg4" if path.suffix == ".avi" else "libx264")
    return write_indexed_video(path, frames, codec=codec, size=(32, 24))


def frame_folder(path: Path, frames: int = FRAMES) -> Path:
    path.mkdir(parents=True)
    for i in range(frames):
        Image.fromarray(index_image(i, (32, 24))).save(path / f"image_{i + 1:05d}.jpg")
    return path


def one_line_error(call, *names: str, words: str = "") -> str:
    with pytest.raises(MLFOError) as err:
        call()
    message = str(err.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message
    assert words in message, message
    return message


def by_name(index):
    return {Path(r.path).name: r for r in index.records}


# -- folder ---------------------------------------------------------------------------------


def test_folder_unlabelled_is_recursive(tmp_path):
    root = tmp_path / "clips"
    video(root / "a.mp4")
    video(root / "deeper" / "nested" / "b.avi", frames=30)
    (root / "readme.txt").write_text("not a video")
    index = load_index(root, progress=False)
    records = by_name(index)
    assert set(records) == {"a.mp4", "b.avi"} and index.classes == []
    assert records["b.avi"].num_frames == 30 and records["a.mp4"].num_frames == FRAMES
    assert (records["a.mp4"].width, records["a.mp4"].height, records["a.mp4"].fps) == (32, 24, 25.0)
    assert all(r.label == -1 and r.status == "ok" for r in index.records)


def test_folder_labelled_by_class_subfolders_with_frame_folders(tmp_path):
    root = tmp_path / "actions"
    video(root / "walk" / "w1.mp4")
    video(root / "jump" / "j1.avi")
    frame_folder(root / "jump" / "j2", frames=12)
    index = load_index(root, progress=False)
    assert index.classes == ["jump", "walk"]
    records = by_name(index)
    assert (records["w1.mp4"].label, records["w1.mp4"].label_name) == (1, "walk")
    assert (records["j2"].label, records["j2"].num_frames, records["j2"].status) == (0, 12, "ok")


# -- CSV ------------------------------------------------------------------------------------


def test_csv_with_header_names_and_classes_json(tmp_path):
    video(tmp_path / "videos" / "a.mp4")
    video(tmp_path / "videos" / "b.mp4")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"name": "zoom"}, {"name": "pan"}]}))
    (tmp_path / "train.csv").write_text("path,n_frames,label\nvideos/a.mp4,40,pan\nvideos/b.mp4,40,zoom\n")
    index = load_index(tmp_path / "train.csv", progress=False)
    assert index.classes == ["zoom", "pan"]  # classes.json order, not sorted
    assert [(Path(r.path).name, r.label) for r in index.records] == [("a.mp4", 1), ("b.mp4", 0)]
    assert all(Path(r.path).is_absolute() for r in index.records)


def test_csv_headerless_int_labels_and_path_only(tmp_path):
    video(tmp_path / "a.mp4")
    video(tmp_path / "b.mp4")
    (tmp_path / "labelled.csv").write_text("a.mp4,2\nb.mp4,0\n")
    index = load_index(tmp_path / "labelled.csv", progress=False)
    assert index.classes == ["0", "1", "2"] and [r.label for r in index.records] == [2, 0]
    (tmp_path / "plain.csv").write_text("a.mp4\nb.mp4\n")
    assert [r.label for r in load_index(tmp_path / "plain.csv", progress=False).records] == [-1, -1]


def test_csv_malformed_rows_are_skipped_and_reported_with_line(tmp_path):
    video(tmp_path / "a.mp4")
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,n_frames,label\na.mp4,40,run\na.mp4,forty,run\n,40,run\na.mp4,40\n")
    index = load_index(csv_path, progress=False)
    assert len(index.records) == 1
    assert index.skipped == [
        f"{csv_path}:3: n_frames 'forty' is not a whole number",
        f"{csv_path}:4: empty path",
        f"{csv_path}:5: expected 3 columns, got 2",
    ]


def test_csv_bad_files_are_one_line_errors(tmp_path):
    video(tmp_path / "a.mp4")
    only_bad = tmp_path / "bad.csv"
    only_bad.write_text("path,label\n,run\n")
    one_line_error(lambda: load_index(only_bad, progress=False), f"{only_bad}:2", words="no usable rows")
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    one_line_error(lambda: load_index(empty, progress=False), str(empty), words="no rows")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["run", "walk"]}))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("path,label\na.mp4,run\na.mp4,swim\n")
    one_line_error(lambda: load_index(unknown, progress=False), f"{unknown}:3", words="unknown label 'swim'")
    out_of_range = tmp_path / "range.csv"
    out_of_range.write_text("a.mp4,7\n")
    one_line_error(lambda: load_index(out_of_range, progress=False), f"{out_of_range}:1", words="label 7 outside 0..1")


# -- UCF101 and HMDB51 split files ---------------------------------------------------------------


@pytest.fixture
def ucf(tmp_path):
    root, splits = tmp_path / "UCF101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    video(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    video(root / "Archery" / "v_Archery_g08_c01.avi")
    frame_folder(root / "Archery" / "v_Archery_g01_c01")  # a frame dump stands in for the .avi
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nArchery/v_Archery_g08_c01.avi 2\r\n"
    )
    (splits / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g02_c01.avi\n")
    return root, splits


def test_ucf101_train_and_test_lists(ucf):
    root, splits = ucf
    train = load_index(root, split_dir=splits, subset="train", progress=False)  # auto: classInd.txt
    assert train.classes == ["ApplyEyeMakeup", "Archery"]
    assert [(Path(r.path).name, r.label, r.status) for r in train.records] == [
        ("v_ApplyEyeMakeup_g08_c01.avi", 0, "ok"), ("v_Archery_g08_c01.avi", 1, "ok")]
    test = load_index(root, fmt="ucf101", split_dir=splits, subset="test", progress=False)
    assert [(Path(r.path).name, r.label, r.status) for r in test.records] == [
        ("v_Archery_g01_c01", 1, "ok"), ("v_Archery_g02_c01.avi", 1, "missing")]
    assert train.cache_path == test.cache_path == str(root.parent / "UCF101.mlfo-index.csv")


def test_every_split_and_subset_shares_one_probe_per_video(ucf, monkeypatch):
    """Issue 17 part 5: a video probed once, whatever selects it (split, subset, a root scan)."""
    root, splits = ucf
    (splits / "trainlist02.txt").write_text("Archery/v_Archery_g08_c01.avi 2\nArchery/v_Archery_g01_c01.avi 2\n")
    (splits / "testlist02.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\n")
    probed = []
    real_probe = probe.probe_video
    monkeypatch.setattr(probe, "probe_video", lambda path, backend: probed.append(path) or real_probe(path, backend))
    scan = load_index(root, fmt="folder", progress=False)  # the root scan the README recommends
    assert len(probed) == 3 and scan.cache_path == str(root.parent / "UCF101.mlfo-index.csv")
    for split in (1, 2):
        for subset in ("train", "test"):
            index = load_index(root, split_dir=splits, split=split, subset=subset, progress=False)
            assert index.cache_path == scan.cache_path
    assert sorted(Path(p).name for p in probed) == [  # the missing test video: nothing to cache
        "v_ApplyEyeMakeup_g08_c01.avi", "v_Archery_g01_c01", "v_Archery_g02_c01.avi", "v_Archery_g08_c01.avi"]
    # The shared cache keeps every file's row, with the labels of the selection that wrote it last.
    again = load_index(root, fmt="folder", progress=False)
    assert len(probed) == 4 and by_name(again) == by_name(scan)


def test_ucf101_bad_split_files(ucf):
    root, splits = ucf
    one_line_error(lambda: load_index(root, fmt="ucf101", split_dir=splits, split=2, progress=False),
                   str(splits / "trainlist02.txt"), words="split file not found")
    (splits / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/x.avi 3\n")
    one_line_error(lambda: load_index(root, fmt="ucf101", split_dir=splits, progress=False),
                   f"{splits / 'trainlist01.txt'}:2", words="unknown label '3'")
    (splits / "testlist01.txt").write_text("Fencing/v_Fencing_g01_c01.avi\n")
    one_line_error(lambda: load_index(root, fmt="ucf101", split_dir=splits, subset="test", progress=False),
                   f"{splits / 'testlist01.txt'}:1", words="unknown class 'Fencing'")
    one_line_error(lambda: load_index(root, fmt="ucf101", progress=False), words="split_dir")


def test_hmdb51_split_codes(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    for cls in ("wave", "brush_hair"):
        for name in ("a.avi", "b.avi", "c.avi"):
            video(root / cls / f"{cls}_{name}", frames=20)
        (splits / f"{cls}_test_split1.txt").write_text(f"{cls}_a.avi 1 \n{cls}_b.avi 2 \n{cls}_c.avi 0 \n")
    train = load_index(root, split_dir=splits, progress=False)  # auto: *_test_split*.txt
    assert train.classes == ["brush_hair", "wave"]
    assert [(Path(r.path).name, r.label) for r in train.records] == [("brush_hair_a.avi", 0), ("wave_a.avi", 1)]
    test = load_index(root, fmt="hmdb51", split_dir=splits, subset="test", progress=False)
    assert sorted(Path(r.path).name for r in test.records) == ["brush_hair_b.avi", "wave_b.avi"]
    one_line_error(lambda: load_index(root, fmt="hmdb51", split_dir=splits, split=3, progress=False),
                   str(splits / "<class>_test_split3.txt"), words="split file not found")
    (splits / "wave_test_split1.txt").write_text("wave_a.avi 1\nwave_b.avi 7\n")
    one_line_error(lambda: load_index(root, fmt="hmdb51", split_dir=splits, progress=False),
                   f"{splits / 'wave_test_split1.txt'}:2", words="expected '<video.avi> <0|1|2>'")


# -- statuses, source errors, cache -------------------------------------------------------------


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "messy"
    video(root / "good.mp4")
    video(root / "short.mp4", frames=10)
    (root / "text.mp4").write_text("this is not a video")
    write_empty_video(root / "empty.avi")
    full = video(tmp_path / "full.avi", frames=60).read_bytes()
    (root / "cut.mp4").write_bytes(video(tmp_path / "full.mp4").read_bytes()[:3000])
    (root / "cut.avi").write_bytes(full[: len(full) // 2])
    return root


def test_status_of_every_bad_file(messy):
    records = by_name(load_index(messy, progress=False))
    assert records["good.mp4"].status == "ok"
    assert records["short.mp4"].status == "ok" and records["short.mp4"].num_frames == 10
    assert records["empty.avi"].status == "empty"
    assert records["text.mp4"].status.startswith("unreadable: not a readable video")
    assert records["cut.mp4"].status.startswith("unreadable:")
    assert records["cut.avi"].status == "ok" and 0 < records["cut.avi"].num_frames < 60
    assert all("\n" not in r.status and str(messy) not in r.status for r in records.values())
    index = load_index(messy, progress=False)
    assert {Path(r.path).name for r in index.usable(min_frames=32)} == {"good.mp4"}


def test_source_errors(tmp_path):
    one_line_error(lambda: load_index(tmp_path / "nope", progress=False), str(tmp_path / "nope"),
                   words="source not found")
    (tmp_path / "empty_dir").mkdir()
    one_line_error(lambda: load_index(tmp_path / "empty_dir", progress=False), str(tmp_path / "empty_dir"),
                   words="no video files")
    one_line_error(lambda: load_index(tmp_path, fmt="kinetics", progress=False), words="unknown dataset format")
    one_line_error(lambda: load_index(tmp_path, split_dir=tmp_path / "splits", progress=False),
                   str(tmp_path / "splits"), words="split folder not found")


def test_cache_reprobes_only_changed_files(tmp_path, monkeypatch):
    root = tmp_path / "clips"
    video(root / "a.mp4")
    video(root / "b.mp4")
    probed = []
    real_probe = probe.probe_video
    monkeypatch.setattr(probe, "probe_video", lambda path, backend: probed.append(path) or real_probe(path, backend))
    first = load_index(root, progress=False)
    assert len(probed) == 2 and first.cache_path == str(tmp_path / "clips.mlfo-index.csv")
    probed.clear()
    second = load_index(root, progress=False)
    assert probed == [] and second.records == first.records
    video(root / "b.mp4", frames=50)  # changed: size and mtime differ
    os.utime(root / "b.mp4", ns=(1, 1))
    third = load_index(root, progress=False)
    assert [Path(p).name for p in probed] == ["b.mp4"] and by_name(third)["b.mp4"].num_frames == 50
    # The cache is itself a CSV source.
    as_csv = load_index(first.cache_path, cache=False, progress=False)
    assert sorted(r.num_frames for r in as_csv.records) == [FRAMES, 50]
    probed.clear()
    load_index(root, cache=False, progress=False)
    assert len(probed) == 2


def test_probing_many_files_uses_the_worker_pool(tmp_path):
    root = tmp_path / "many"
    first = video(root / "v00.mp4", frames=8)
    for i in range(1, probe.POOL_MIN_FILES):
        (root / f"v{i:02d}.mp4").write_bytes(first.read_bytes())
    index = load_index(root, workers=2, cache=False, progress=False)
    assert len(index.records) == probe.POOL_MIN_FILES
    assert all(r.status == "ok" and r.num_frames == 8 for r in index.records)


# -- mlfo data scan -----------------------------------------------------------------------------


def test_scan_cli_lists_every_problem_file(messy, tmp_path, capsys):
    out = tmp_path / "index.csv"
    assert main(["data", "scan", str(messy), "--out", str(out), "--min-frames", "32"]) == 0
    printed = capsys.readouterr().out
    assert "videos: 6" in printed
    assert "status: empty 1, ok 3, unreadable 2" in printed
    assert "frames: min 10, median" in printed
    for name, problem in [("text.mp4", "unreadable: not a readable video"), ("cut.mp4", "unreadable:"),
                          ("empty.avi", "empty"), ("short.mp4", "too short: 10 frames <= 32"),
                          ("cut.avi", "too short")]:
        assert f"{messy / name}: {problem}" in printed
    assert "good.mp4:" not in printed
    assert f"index: {out}" in printed and out.is_file()
    header = out.read_text().splitlines()[0]
    assert header.startswith("path,num_frames,fps,width,height,label,label_name,status")


def test_scan_cli_labelled_summary_and_errors(tmp_path, capsys):
    root = tmp_path / "actions"
    video(root / "walk" / "w1.mp4")
    video(root / "jump" / "j1.mp4", frames=50)
    assert main(["data", "scan", str(root), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "classes: 2: jump (1), walk (1)" in printed
    assert "frames: min 40, median 45, max 50" in printed and "problems" not in printed
    assert main(["data", "scan", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mlfo: error: {tmp_path / 'missing'}: source not found"
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path,label\nw.mp4,walk\nj.mp4,jump,extra\n")
    assert main(["data", "scan", str(bad_csv)]) == 0
    printed = capsys.readouterr().out
    assert f"{bad_csv}:3: expected 2 columns, got 3" in printed
    assert f"{tmp_path / 'w.mp4'}: missing" in printed
