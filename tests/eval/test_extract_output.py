"""``mlfo extract`` writes only what it may: never over the user's files or its own
inputs, never beside stale features of another extraction, and in one line when it
cannot write at all. Mixed encoders between train and test are refused."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from mlfo.cli import main
from mlfo.eval.features import RECORD_FILE, FeatureSet, save_feature_set

sys.path.insert(0, str(Path(__file__).parent))
from eval_fixtures import csv_dataset  # noqa: E402

TINY = ["--arch", "r3d_small", "--clip-len", "4", "--clips", "1", "--resize", "32", "--crop-size", "32",
        "--workers", "0", "--quiet"]
TWO_CLIPS = [*TINY, "--clips", "2"]  # another extraction


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return csv_dataset(tmp_path_factory.mktemp("data"), n_train=4, n_test=2)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mlfo: error: "), err
    return err[0]


def test_the_video_list_it_reads_is_never_overwritten(data, tmp_path, capsys):
    m = tmp_path / "m"
    m.mkdir()
    (m / "videos").symlink_to(data / "videos")
    listing = (data / "test.csv").read_text()
    (m / "index.csv").write_text(listing)
    assert run("extract", "random", m / "index.csv", m, *TINY) == 2
    assert "index.csv" in _one_error_line(capsys)
    assert (m / "index.csv").read_text() == listing
    assert not any((m / f).exists() for f in ("features.npy", "protocol.json", RECORD_FILE))  # nothing written


def test_a_file_it_did_not_write_is_refused_even_with_overwrite(data, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "test").mkdir(parents=True)
    notes = '{"my": "notes"}\n'
    (out / "test" / "protocol.json").write_text(notes)
    for extra in ([], ["--overwrite"]):
        assert run("extract", "random", data, out, *TINY, *extra) == 2
        assert "protocol.json: exists and was not written" in _one_error_line(capsys)
        assert (out / "test" / "protocol.json").read_text() == notes
        assert not (out / "train").exists()
    assert run("extract", "random", tmp_path / "missing.csv", tmp_path / "new", *TINY) == 2
    assert run("extract", "random", data, tmp_path / "new", *TINY, "--batch-size", "0") == 2
    assert "--batch-size" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "new").exists()  # inputs validated before anything is written


def test_rerun_resumes_and_another_extraction_needs_overwrite(data, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("extract", "random", data, out, *TINY, "--baseline", "random") == 0
    first = np.load(out / "train" / "features.npy")
    assert (out / "baselines" / "random" / "train" / "features.npy").is_file()
    capsys.readouterr()
    assert run("extract", "random", data, out, *TINY, "--baseline", "random") == 0  # same: nothing redone
    assert "written earlier by the same extraction; kept" in capsys.readouterr().out
    assert run("extract", "random", data, out, *TWO_CLIPS) == 2
    assert "--overwrite" in _one_error_line(capsys)
    np.testing.assert_array_equal(np.load(out / "train" / "features.npy"), first)


def test_overwrite_removes_the_stale_baselines_of_the_earlier_extraction(data, tmp_path, capsys):
    out = tmp_path / "out"
    user_file = out / "baselines" / "README.txt"
    assert run("extract", "random", data, out, *TINY, "--baseline", "random") == 0
    user_file.write_text("mine\n")
    assert run("extract", "random", data, out, *TWO_CLIPS, "--overwrite") == 0
    assert not (out / "baselines" / "random").exists() and user_file.read_text() == "mine\n"
    capsys.readouterr()
    assert run("eval", "knn", out, "--no-plots", "--k", "2") == 0
    assert "random-init" in capsys.readouterr().out  # one row: the encoder's (itself random) alone
    assert len(list(out.rglob("knn.card.json"))) == 1


def test_baseline_features_of_other_views_are_refused(data, tmp_path, capsys):
    """A folder without a record (an older mlfo, or copied by hand): the views decide."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("extract", "random", data, a, *TINY) == 0
    assert run("extract", "random", data, b, *TWO_CLIPS) == 0
    (b / "baselines").mkdir()
    os.replace(a, b / "baselines" / "random")
    (b / RECORD_FILE).unlink(missing_ok=True)
    assert run("eval", "knn", b, "--no-plots", "--k", "2") == 2
    assert "other views" in _one_error_line(capsys)


def _feature_set(folder: Path, encoder: dict) -> None:
    rng = np.random.default_rng(0)
    fs = FeatureSet(rng.normal(size=(4, 8)).astype(np.float32), np.array([0, 1, 0, 1]), list("abcd"),
                    ["x", "y", "x", "y"], {"classes": ["x", "y"], "encoder": encoder})
    save_feature_set(fs, folder)


def test_train_and_test_of_different_encoders_are_refused(tmp_path, capsys):
    """One side a random-init encoder (no sha256), the other a checkpoint: not comparable."""
    ckpt = {"name": "run/last", "kind": "checkpoint", "sha256": "ab" * 32, "arch": {"name": "r3d_small"}}
    rand = {"name": "random-init r3d_small", "kind": "random", "sha256": None, "seed": 0,
            "arch": {"name": "r3d_small"}}
    _feature_set(tmp_path / "f" / "train", ckpt)
    _feature_set(tmp_path / "f" / "test", rand)
    assert run("eval", "knn", tmp_path / "f", "--no-plots", "--k", "2") == 2
    assert "another encoder" in _one_error_line(capsys)
    _feature_set(tmp_path / "g" / "train", rand)
    _feature_set(tmp_path / "g" / "test", dict(rand, seed=1))  # another seed: other weights
    assert run("eval", "knn", tmp_path / "g", "--no-plots", "--k", "2") == 2
    _feature_set(tmp_path / "h" / "train", rand)
    _feature_set(tmp_path / "h" / "test", dict(rand))
    assert run("eval", "knn", tmp_path / "h", "--no-plots", "--k", "2") == 0


def test_read_only_output_is_one_line(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro" / "feats"
    real_mkdir = Path.mkdir

    def read_only_mkdir(self, *args, **kwargs):  # as a read-only mount answers (root ignores chmod)
        if self == out or out in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
    assert run("extract", "random", data, out, *TINY) == 2
    line = _one_error_line(capsys)
    assert str(out) in line and "Permission denied" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_one_line(data, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert run("extract", "random", data, ro, *TINY) == 2
        assert str(ro) in _one_error_line(capsys)
    finally:
        ro.chmod(0o700)


def test_subsets_extracted_one_after_the_other_share_the_folder(data, tmp_path):
    out = tmp_path / "out"
    assert run("extract", "random", data, out, *TINY, "--subset", "train") == 0
    assert run("eval", "knn", out, "--no-plots", "--k", "2") == 2  # no test/ yet
    assert run("extract", "random", data, out, *TINY, "--subset", "test") == 0  # the same extraction grows
    assert run("eval", "knn", out, "--no-plots", "--k", "2") == 0
    record = json.loads((out / RECORD_FILE).read_text())
    assert record["state"] == "complete" and sorted(record["done_parts"]) == ["test", "train"]


def test_disk_full_while_writing_a_shard_is_one_line_and_leaves_no_partial_file(data, tmp_path, monkeypatch, capsys):
    import mlfo.eval.shards as shards

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards.np, "savez", full)
    out = tmp_path / "out"
    assert run("extract", "random", data, out, *TINY) == 2
    line = _one_error_line(capsys)
    assert "shard-000000.npz" in line and "No space left on device" in line
    assert not [p for p in out.rglob("*") if p.is_file() and p.name != RECORD_FILE]
