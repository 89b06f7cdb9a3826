"""The real-footage benchmark's dataset builder (benchmarks/real_footage_data.py), offline.

A synthetic "source" stands in for the registry footage: the cutting, the train/test
separation and the labels are checked without any download.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import real_footage_data as rfd

SMALL = rfd.Params(train_per_class=2, test_per_class=1, size=16)


def _source(frames: int = 250, h: int = 40, w: int = 56) -> np.ndarray:
    """A bright square moving right over a dark textured background; frame t is marked."""
    rng = np.random.default_rng(0)
    video = np.repeat(rng.integers(0, 60, (1, h, w, 3), dtype=np.uint8), frames, axis=0)
    for t in range(frames):
        x = (t * 2) % (w - 8)
        video[t, 10:18, x:x + 8] = 255
    return video


def test_segments_leave_a_gap_and_fit_a_4x_clip():
    train, test = rfd.segments(250, "split", SMALL).values()
    assert train[0] == 0 and test[1] == 250 and test[0] - train[1] == SMALL.gap
    assert test[1] - test[0] >= SMALL.span(SMALL.test_len, 4)
    assert train[1] - train[0] >= SMALL.span(SMALL.train_len, 4)
    assert rfd.segments(120, "test", SMALL) == {"test": (0, 120)}
    with pytest.raises(ValueError, match="4x"):
        rfd.segments(60, "test", SMALL)
    with pytest.raises(ValueError, match="too short"):
        rfd.segments(150, "split", SMALL)


def test_clips_cover_every_class_from_disjoint_frames(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "videos" / split).mkdir(parents=True)
    rows = rfd.plan_and_write("synthetic", _source(), "split", tmp_path, SMALL, np.random.default_rng(1))
    rfd.check_separation(rows, SMALL)
    for split, count, length in (("train", 2, SMALL.train_len), ("test", 1, SMALL.test_len)):
        for label in rfd.CLASSES:
            mine = [r for r in rows if r["split"] == split and r["label"] == label]
            assert len(mine) == count
            for r in mine:
                speed, reverse = int(r["speed"]), r["direction"] == "reversed"
                assert abs(r["last"] - r["first"]) == (length - 1) * speed
                assert (r["first"] > r["last"]) == reverse
    import av

    with av.open(str(tmp_path / rows[0]["path"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == SMALL.train_len and frames[0].shape == (16, 16, 3)


def test_check_separation_catches_a_shared_frame():
    rows = [{"source": "s", "split": "train", "speed": 2, "min": 0, "max": 20},
            {"source": "s", "split": "test", "speed": 1, "min": 20, "max": 30}]
    with pytest.raises(AssertionError, match="train and test"):
        rfd.check_separation(rows, SMALL)
    rows[1]["min"] = 21
    rfd.check_separation(rows, SMALL)


def test_crops_stay_inside_and_prefer_where_it_moves():
    motion = np.zeros((40, 60), np.float32)
    motion[:, 40:] = 10.0  # only the right part moves
    rng = np.random.default_rng(0)
    lefts = []
    for _ in range(200):
        top, left, side = rfd.draw_crop(motion, rng, SMALL)
        assert 0 <= top and top + side <= 40 and 0 <= left and left + side <= 60
        assert 20 <= side <= 40
        lefts.append(left + side / 2)
    assert np.mean(lefts) > 30  # centres pulled to the moving side


def test_pans_stay_inside_with_one_distribution_for_every_speed():
    rng = np.random.default_rng(0)
    speeds = {}
    for speed in rfd.SPEEDS:
        span = SMALL.span(SMALL.train_len, speed)
        for _ in range(100):
            top, left, side, dy, dx = rfd.draw_pan((256, 400), span, rng, SMALL)
            for t in (0, span - 1):
                assert -0.5 <= top + dy * t and top + dy * t + side <= 256.5
                assert -0.5 <= left + dx * t and left + dx * t + side <= 400.5
            speeds.setdefault(speed, []).append(np.hypot(dy, dx))
    means = [np.mean(v) for v in speeds.values()]
    assert max(means) - min(means) < 0.1 * np.mean(means)  # pan speed does not depend on the class
    video = np.zeros((60, 40, 40, 3), np.uint8)
    video[:, :, 20:] = 255  # right half white
    clip, _ = rfd.cut_clip(video, 0, 5, 1, False, (0.0, 0.0, 20, 0.0, 5.0), False, 20)
    assert clip[0].mean() < 1 and clip[4].mean() > 254  # the window moved right by 20 px


def test_cut_clip_reverses_and_strides():
    video = np.arange(100, dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    clip, used = rfd.cut_clip(video, 10, 5, 4, True, (0, 0, 8), False, 8)
    assert used == [26, 22, 18, 14, 10] and clip[:, 0, 0, 0].tolist() == used


def test_written_csvs_use_the_demo_layout(tmp_path, monkeypatch):
    """build() with one synthetic source in place of the registry footage."""
    monkeypatch.setattr(rfd, "SOURCES", (rfd.Source("synthetic", "pkg", "x.mp4", "split"),))
    monkeypatch.setattr(rfd, "PACKAGES", {"pkg": {"spec": "pkg==1", "sha256": "0" * 64}})
    monkeypatch.setattr(rfd, "fetch_package", lambda name, cache: (tmp_path / "pkg.whl", ""))
    monkeypatch.setattr(rfd, "extract_source", lambda source, package_file, cache: tmp_path / "x.mp4")
    monkeypatch.setattr(rfd, "decode_sequential", lambda path, short_side: _source())
    monkeypatch.setattr(rfd, "_sha256", lambda path: "1" * 64)
    out = rfd.build(tmp_path / "data", SMALL, cache=tmp_path)
    with open(out / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"path", "label"} and len(rows) == 2 * len(rfd.CLASSES)
    meta = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in meta["classes"]] == rfd.CLASSES
    assert {c["group"] for c in meta["classes"]} == {"forward", "reversed"}
    assert meta["counts"] == {"train": 12, "test": 6}


def _feature_set(features: np.ndarray, labels: np.ndarray):
    from mlfo.eval.features import FeatureSet

    classes = [f"{d}_{s}" for d in ("forward", "reversed") for s in ("1x", "2x", "4x")]
    return FeatureSet(features.astype(np.float32), labels.astype(np.int64), [f"v{i}" for i in range(len(labels))],
                      [classes[i] for i in labels], protocol={"classes": classes})


def test_speed_probe_reads_speed_only():
    """The 3-way speed probe scores features that carry speed (and not direction) near
    100 %, and features that carry only direction near chance (33 %)."""
    import real_footage as rf

    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(6), 30)
    speed, direction = labels % 3, labels // 3
    noise = rng.normal(0, 0.1, (len(labels), 8))
    by_speed = np.eye(8)[speed] + noise
    by_direction = np.eye(8)[direction] + noise
    assert rf._linear_speed(_feature_set(by_speed, labels), _feature_set(by_speed, labels)) > 95
    assert rf._linear_speed(_feature_set(by_direction, labels), _feature_set(by_direction, labels)) < 50


def test_table_and_plot_from_a_result(tmp_path):
    import real_footage as rf

    scores = {"kNN": 25.0, "R@1": 20.0, "linear": 22.0, "kNN speed": 45.0, "linear speed": 44.0, "kNN low": 23.0}
    result = {"raw": {"random init": {"0": dict(scores, kNN=17.0)},
                      "full MLFO": {"0": scores, "1": dict(scores, kNN=27.0)}},
              "runs": {"full MLFO": {"0": {"acc/high": 0.5, "wall_s": 600.0}, "1": {"acc/high": 0.7, "wall_s": 660.0}}},
              "steps": 800}
    table = rf.table(result)
    assert "| (e) full MLFO | 0,1 | 26.0 ± 1.4 |" in table and "| (a) random init | 0 | 17.0 |" in table
    assert "| 0.60 |" in table and table.rstrip().endswith("| 10.5 |")
    rf.plot(result, tmp_path / "rf.png")
    assert (tmp_path / "rf.png").stat().st_size > 10_000
