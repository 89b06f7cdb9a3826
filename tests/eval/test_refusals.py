"""Evaluation refuses what it cannot score correctly: broken feature folders are one line
naming the file, a missing feature set is an error (never a row left out of the table),
non-finite features are refused with their count, classes are matched by name, and test
classes without train videos and test videos seen in pretraining are named and recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlfo.cli import main
from mlfo.eval.features import FeatureSet, save_feature_set

CLASSES = ["a", "b", "c"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


def feature_set(folder: Path, names: list[str], classes: list[str], per_class: int, seed: int,
                protocol: dict | None = None) -> Path:
    """Videos of class k lie near axis ``CLASSES.index(name)`` (class by *name*), labelled
    by their index in ``classes`` (this set's own numbering)."""
    rng = np.random.default_rng(seed)
    rows = [(name, i) for name in names for i in range(per_class)]
    feats = np.stack([np.eye(8)["abcd".index(n)] + 0.05 * rng.standard_normal(8) for n, _ in rows])
    fs = FeatureSet(feats.astype(np.float32), np.array([classes.index(n) for n, _ in rows]),
                    [f"videos/{n}_{seed}_{i}.mp4" for n, i in rows], [n for n, _ in rows],
                    {"classes": classes, "encoder": {"name": "enc"}, **(protocol or {})})
    return save_feature_set(fs, folder)


@pytest.fixture
def root(tmp_path) -> Path:
    """An encoder root with a random baseline, both with train/ and test/."""
    out = tmp_path / "feats"
    for base in (out, out / "baselines" / "random"):
        feature_set(base / "train", CLASSES, CLASSES, 4, seed=0)
        feature_set(base / "test", CLASSES, CLASSES, 2, seed=1)
    return out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("mlfo: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("damage, named", [
    ("missing_test", "test/features.npy"),
    ("missing_baseline_test", "baselines/random"),
    ("truncated", "test/features.npy"),
    ("garbage", "test/features.npy"),
    ("pickled", "test/features.npy"),
    ("missing_index", "test/index.csv"),
    ("short_index", "test/index.csv"),
    ("text_label", "test/index.csv:3"),
    ("missing_protocol", "test/protocol.json"),
    ("garbage_protocol", "test/protocol.json"),
    ("nan_row", "test/features.npy: 1 of 6 feature rows hold NaN or inf"),
])
def test_broken_feature_folders_are_one_line_naming_the_file(root, damage, named, capsys):
    test = root / "test"
    npy = test / "features.npy"
    if damage == "missing_test":
        shutil.rmtree(test)
    elif damage == "missing_baseline_test":
        shutil.rmtree(root / "baselines" / "random" / "test")
    elif damage == "truncated":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "garbage":
        npy.write_bytes(b"\x00garbage" * 50)
    elif damage == "pickled":
        np.save(npy, np.array([{"a": 1}] * 6, dtype=object), allow_pickle=True)
    elif damage == "missing_index":
        (test / "index.csv").unlink()
    elif damage == "short_index":
        lines = (test / "index.csv").read_text().splitlines()
        (test / "index.csv").write_text("\n".join(lines[:3]) + "\n")
    elif damage == "text_label":
        lines = (test / "index.csv").read_text().splitlines()
        lines[2] = lines[2].replace(",0,", ",zero,")
        (test / "index.csv").write_text("\n".join(lines) + "\n")
    elif damage == "missing_protocol":
        (test / "protocol.json").unlink()
    elif damage == "garbage_protocol":
        (test / "protocol.json").write_text('{"classes": ["a", ')
    elif damage == "nan_row":
        feats = np.load(npy)
        feats[3, 2] = np.nan
        np.save(npy, feats)
    for task in ("knn", "retrieval", "linear"):
        assert run("eval", task, root, "--no-plots") == 2
        assert named in one_line_error(capsys)
    assert not list(root.rglob("*.card.json"))  # no card for a table that would be wrong


def test_classes_are_matched_by_name_and_test_classes_without_train_are_named(tmp_path, capsys):
    # Extracted separately: train numbers a, b, c; test numbers c, a, b and has a class d
    # that no train video has.
    train = feature_set(tmp_path / "train", CLASSES, CLASSES, 4, seed=0)
    test_classes = ["c", "a", "b", "d"]
    test = feature_set(tmp_path / "test", test_classes, test_classes, 2, seed=1)
    for task, metric in (("knn", "top1"), ("retrieval", "R@1"), ("linear", "top1")):
        extra = ["--k", "3"] if task == "knn" else ["--epochs", "30"] if task == "linear" else []
        assert run("eval", task, "--train", train, "--test", test, "--out", tmp_path / task, "--no-plots",
                   *extra) == 0
        out = capsys.readouterr().out
        assert "1 test class(es) without train videos (d): their 2 test videos count as misses" in out
        card = json.loads((tmp_path / task / f"{task}.card.json").read_text())
        assert card["metrics"][metric] == pytest.approx(75.0)  # 6 of 8 right: every a, b, c; never d
        assert card["caveats"]["default"]["test_classes_absent_from_train"] == {
            "classes": ["d"], "test_videos": 2, "scored": "as misses"}


def test_test_videos_seen_in_pretraining_are_counted(tmp_path, capsys):
    from mlfo.data.provenance import name_digests, overlap_summary
    from mlfo.data.sources.records import VideoRecord

    train = feature_set(tmp_path / "train", CLASSES, CLASSES, 4, seed=0)
    probe = feature_set(tmp_path / "probe", CLASSES, CLASSES, 2, seed=1)
    paths = [line.split(",")[0] for line in (probe / "index.csv").read_text().splitlines()[1:]]
    records = [VideoRecord(p, num_frames=10, fps=25.0, width=32, height=32) for p in paths]
    seen = overlap_summary(name_digests(paths[:4]), records)  # what extraction records (names only)
    test = feature_set(tmp_path / "test", CLASSES, CLASSES, 2, seed=1, protocol={"pretraining_overlap": seen})
    assert run("eval", "knn", "--train", train, "--test", test, "--k", "3", "--no-plots") == 0
    assert "4 of 6 test videos were among the encoder's pretraining videos" in capsys.readouterr().out
    card = json.loads((tmp_path / "knn.card.json").read_text())
    assert card["caveats"]["default"]["pretraining_overlap"]["videos"] == 4
