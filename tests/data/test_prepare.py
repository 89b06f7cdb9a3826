"""``mlfo data prepare``: the copy's layout, frames, labels, splits and index; resume,
verification, a corrupt source, shards, and the DSTs it refuses (issue 17 part 1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_sources import frame_folder, one_line_error  # noqa: E402
from videos import read_index, write_indexed_video  # noqa: E402

import mlfo.data.prepare.job as job_module  # noqa: E402
import mlfo.data.sources.probe as probe  # noqa: E402
from mlfo.cli import main  # noqa: E402
from mlfo.data.prepare import combine, prepare  # noqa: E402
from mlfo.data.prepare.verify import verify_output  # noqa: E402
from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.sources import load_index  # noqa: E402
from mlfo.errors import VideoDecodeError  # noqa: E402

SIZE = (64, 48)


def video(path: Path, frames: int = 36, codec: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_indexed_video(path, frames, codec=codec or ("mpeg4" if path.suffix == ".avi" else "libx264"),
                               size=SIZE)


def assert_frames_exact(path: Path, count: int, step: int = 1, short: int = 32) -> None:
    with open_video(path) as reader:
        assert reader.num_frames == count and min(reader.height, reader.width) == short
        order = [count - 1, 0, count // 2, 3]  # by seeking, then in order
        got = [read_index(f) for f in reader.get_frames(order)]
        assert got == [i * step for i in order]
        assert [read_index(f) for f in reader.get_frames(range(count))] == [i * step for i in range(count)]


def files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def count_probes(monkeypatch):
    probed = []
    real = probe.probe_video
    monkeypatch.setattr(probe, "probe_video", lambda path, backend: probed.append(path) or real(path, backend))
    return probed


def test_folder_copy_keeps_paths_frames_and_labels_and_leaves_out_a_corrupt_video(tmp_path, count_probes, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    video(src / "walk" / "w1.mp4", 40)
    video(src / "jump" / "j1.avi", 36)
    frame_folder(src / "jump" / "j2", frames=34)
    (src / "jump" / "broken.mp4").write_bytes(b"not a video at all")
    assert main(["data", "prepare", str(src), str(dst), "--short-side", "32", "--workers", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "prepared 3 videos" in out and out.count("failed: ") == 1 and "broken.mp4: not a readable video" in out
    assert sorted(p for p in files(dst) if not p.startswith(".")) == ["jump/j1.mp4", "jump/j2.mp4", "walk/w1.mp4"]
    assert not list(dst.rglob("*.partial"))
    assert_frames_exact(dst / "walk" / "w1.mp4", 40)
    assert_frames_exact(dst / "jump" / "j1.mp4", 36)
    assert_frames_exact(dst / "jump" / "j2.mp4", 34, short=24)  # 32x24 frames: never enlarged
    count_probes.clear()
    index = load_index(dst, progress=False)  # the written index: nothing probed
    assert count_probes == [] and index.cache_path == str(dst / ".mlfo-index.csv")
    assert index.classes == ["jump", "walk"]
    assert {(Path(r.path).name, r.label, r.num_frames, r.status) for r in index.records} == {
        ("j1.mp4", 0, 36, "ok"), ("j2.mp4", 0, 34, "ok"), ("w1.mp4", 1, 40, "ok")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]  # written only into DST


def test_csv_source_rewritten_with_classes_json_and_fps_resampling(tmp_path, count_probes):
    src, dst = tmp_path / "data", tmp_path / "copy"
    video(src / "videos" / "a.mp4", 40)
    video(src / "videos" / "b.avi", 36)
    (src / "classes.json").write_text('{"classes": ["run", "walk"]}')
    (src / "train.csv").write_text(f"path,n_frames,label\nvideos/a.mp4,40,walk\n{src / 'videos' / 'b.avi'},36,run\n")
    report = prepare(src / "train.csv", dst, short_side=32, fps=12.5, workers=1, progress=False)
    assert (report.done, report.failed) == (2, [])
    assert (dst / "train.csv").read_text() == "path,n_frames,label\nvideos/a.mp4,40,walk\nvideos/b.mp4,36,run\n"
    assert (dst / "classes.json").read_text() == (src / "classes.json").read_text()
    assert_frames_exact(dst / "videos" / "a.mp4", 20, step=2)  # every second frame at half the rate
    count_probes.clear()
    index = load_index(dst / "train.csv", progress=False)
    assert count_probes == [] and index.classes == ["run", "walk"]
    assert [(Path(r.path).name, r.label, r.fps) for r in index.records] == [("a.mp4", 1, 12.5), ("b.mp4", 0, 12.5)]


def ucf_layout(tmp_path: Path) -> tuple[Path, Path]:
    root, splits = tmp_path / "UCF101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    video(root / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi")
    video(root / "Archery" / "v_Archery_g08_c01.avi")
    frame_folder(root / "Archery" / "v_Archery_g01_c01", frames=34)
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nArchery/v_Archery_g08_c01.avi 2\r\n")
    (splits / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    return root, splits


def test_ucf101_layout_keeps_every_split(tmp_path, count_probes):
    root, splits = ucf_layout(tmp_path)
    dst = tmp_path / "ucf_small"
    report = prepare(root, dst, split_dir=splits, short_side=32, workers=1, progress=False)
    assert report.done == 3 and report.split_dir == "ucfTrainTestlist"
    new_splits = dst / "ucfTrainTestlist"
    assert (new_splits / "testlist01.txt").read_text() == "Archery/v_Archery_g01_c01.mp4\n"
    assert (new_splits / "classInd.txt").read_text() == (splits / "classInd.txt").read_text()
    count_probes.clear()
    for subset in ("train", "test"):
        before = load_index(root, split_dir=splits, subset=subset, cache=False, progress=False)
        after = load_index(dst, split_dir=new_splits, subset=subset, progress=False)
        assert after.classes == before.classes
        assert [(Path(r.path).stem, r.label, r.num_frames) for r in after.records] == [
            (Path(r.path).stem, r.label, r.num_frames) for r in before.records]
    assert len(count_probes) == 3  # the uncached source reads above; the copy's index is complete


def test_hmdb51_layout(tmp_path):
    root, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    for cls in ("wave", "brush_hair"):
        for name in ("a", "b"):
            video(root / cls / f"{cls}_{name}.avi", 34)
        (splits / f"{cls}_test_split1.txt").write_text(f"{cls}_a.avi 1 \n{cls}_b.avi 2 \n")
    dst = tmp_path / "hmdb_small"
    assert main(["data", "prepare", str(root), str(dst), "--split-dir", str(splits), "--short-side", "32",
                 "--quiet"]) == 0
    assert (dst / "splits" / "wave_test_split1.txt").read_text() == "wave_a.mp4 1 \nwave_b.mp4 2 \n"
    test = load_index(dst, split_dir=dst / "splits", subset="test", progress=False)
    assert [(Path(r.path).name, r.label, r.status) for r in test.records] == [
        ("brush_hair_b.mp4", 0, "ok"), ("wave_b.mp4", 1, "ok")]


def test_resume_keeps_finished_copies_and_replaces_a_partial_one(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for name in ("a", "b", "c"):
        video(src / f"{name}.mp4", 34)
    prepare(src, dst, short_side=32, workers=1, progress=False)
    finished = files(dst)
    (dst / "c.mp4").unlink()  # an interrupted run: c was being written
    (dst / ".c.mp4.partial").write_bytes(b"half a file")
    report = prepare(src, dst, short_side=32, workers=1, progress=False)
    assert (report.done, report.kept) == (1, 2)
    now = files(dst)
    assert now["a.mp4"] == finished["a.mp4"] and now["b.mp4"] == finished["b.mp4"]  # not written again
    assert not (dst / ".c.mp4.partial").exists()
    assert_frames_exact(dst / "c.mp4", 34)


def test_verification_refuses_a_copy_with_a_lost_or_shifted_frame(tmp_path, monkeypatch):
    src = video(tmp_path / "v.mp4", 36)
    with open_video(src) as reader:
        info = job_module.transcode(reader, tmp_path / "ok.mp4", job_module.Encoding(), 32)
    verify_output(str(tmp_path / "ok.mp4"), info["thumbs"])
    with pytest.raises(VideoDecodeError, match="wrote 35 frames, reads back 36"):
        verify_output(str(tmp_path / "ok.mp4"), info["thumbs"][1:])
    shifted = np.concatenate([info["thumbs"][:10], info["thumbs"][11:], info["thumbs"][-1:]])
    with pytest.raises(VideoDecodeError, match="frame 10 reads back as another picture"):
        verify_output(str(tmp_path / "ok.mp4"), shifted)
    real = job_module.transcode

    def dropping(reader, out, *args):  # an encoder that loses a frame
        result = real(reader, out, *args)
        return dict(result, thumbs=np.concatenate([result["thumbs"], result["thumbs"][-1:]]))

    monkeypatch.setattr(job_module, "transcode", dropping)
    (tmp_path / "src").mkdir()
    os.replace(src, tmp_path / "src" / "v.mp4")
    report = prepare(tmp_path / "src", tmp_path / "out", short_side=32, workers=1, progress=False)
    assert report.done == 0 and len(report.failed) == 1
    assert "the copy failed verification (wrote 37 frames, reads back 36)" in report.failed[0][1]
    assert sorted(p for p in files(tmp_path / "out") if not p.startswith(".")) == []  # nothing half-written


def test_shards_combine_into_one_index(tmp_path, count_probes, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for name in ("a", "b", "c"):
        video(src / "cls" / f"{name}.mp4", 34)
    first = prepare(src, dst, short_side=32, workers=1, shard=(1, 2), progress=False)
    assert first.done == 2 and first.indexes == []
    one_line_error(lambda: combine(dst, 2), str(dst), words="shard 2 of 2 not finished")
    assert main(["data", "prepare", str(src), str(dst), "--short-side", "32", "--shard", "2/2", "--quiet"]) == 0
    assert main(["data", "prepare", str(src), str(dst), "--combine", "2"]) == 0
    assert f"index: {dst / '.mlfo-index.csv'}" in capsys.readouterr().out
    count_probes.clear()
    index = load_index(dst, progress=False)
    assert count_probes == [] and sorted(Path(r.path).name for r in index.records) == ["a.mp4", "b.mp4", "c.mp4"]


def test_refused_destinations_touch_nothing(tmp_path):
    src = tmp_path / "src"
    video(src / "a.mp4", 34)
    one_line_error(lambda: prepare(src, src / "copy", progress=False), str(src / "copy"), words="inside the source")
    one_line_error(lambda: prepare(src, src, progress=False), words="inside the source")
    one_line_error(lambda: prepare(src, tmp_path, progress=False), words="holds the source")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line_error(lambda: prepare(src, mine, progress=False), str(mine), words="holds other files (notes.txt)")
    assert files(mine) == {"notes.txt": (mine / "notes.txt").stat().st_mtime_ns}
    (tmp_path / "file").write_text("x")
    one_line_error(lambda: prepare(src, tmp_path / "file", progress=False), words="not a folder")
    done = tmp_path / "done"
    prepare(src, done, short_side=32, workers=1, progress=False)
    before = files(done)
    one_line_error(lambda: prepare(src, done, short_side=48, progress=False), str(done),
                   words="another short_side (short_side=32, not 48)")
    assert files(done) == before
    one_line_error(lambda: prepare(src, done, shard=(3, 2), progress=False), words="--shard")
    assert main(["data", "prepare", str(src), str(tmp_path / "new"), "--shard", "two"]) == 2
    assert not (tmp_path / "src" / "copy").exists() and not (tmp_path / "new").exists()


def test_demo_layout_train_and_test_csvs_resolve_as_the_source_did(tmp_path):
    """A folder with train.csv / test.csv (the demo data): evaluation takes DST for SRC."""
    from mlfo.data.splits import resolve_data

    src, dst = tmp_path / "demo", tmp_path / "demo_small"
    for name in ("a", "b", "c"):
        video(src / "videos" / f"{name}.mp4", 34)
    (src / "classes.json").write_text('{"classes": [{"name": "up", "group": "g"}, {"name": "down", "group": "g"}]}')
    (src / "train.csv").write_text("path,label\nvideos/a.mp4,up\nvideos/b.mp4,down\n")
    (src / "test.csv").write_text("path,label\nvideos/c.mp4,up\n")
    (src / "notes.md").write_text("not part of the dataset")
    prepare(src, dst, short_side=32, workers=1, progress=False)
    assert not (dst / "notes.md").exists()
    before, after = resolve_data(str(src), progress=False), resolve_data(str(dst), progress=False)
    assert after[1:3] == before[1:3]  # classes and groups
    assert [(p.subdir, [(Path(r.path).stem, r.label, r.num_frames) for r in p.records]) for p in after[0]] == [
        (p.subdir, [(Path(r.path).stem, r.label, r.num_frames) for r in p.records]) for p in before[0]]
    video(tmp_path / "elsewhere.mp4", 34)
    (src / "extra.csv").write_text("path,label\n../elsewhere.mp4,up\n")
    one_line_error(lambda: prepare(src, tmp_path / "other", progress=False), str(src / "extra.csv"),
                   words="lies outside")


def test_odd_frame_rates_fit_the_mpeg4_clock(tmp_path):
    """A 187.35 fps AVI (real footage, pymecavideo) made avcodec_open2(mpeg4) fail: its exact
    rate 78125/417 needs a 17-bit clock."""
    from fractions import Fraction

    from mlfo.data.prepare.encode import frame_rate

    assert frame_rate(25.0) == 25 and frame_rate(29.97002997) == Fraction(30000, 1001)
    rate = frame_rate(78125 / 417)
    assert rate.numerator <= 65535 and abs(float(rate) - 78125 / 417) < 1e-4
    src = tmp_path / "src"
    video(src / "fast.mp4", 34)
    with open_video(src / "fast.mp4") as reader:  # the same clip, re-timed at the odd rate
        reader.fps = 78125 / 417
        info = job_module.transcode(reader, tmp_path / "fast.mp4", job_module.Encoding(), 32)
    assert info["num_frames"] == 34 and abs(info["fps"] - 187.3501) < 1e-3
    verify_output(str(tmp_path / "fast.mp4"), info["thumbs"])
