"""``mlfo extract`` under torchrun: the processes share the shards and rank 0 merges them;
an interrupted extraction resumes from the shards on disk."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlfo.cli import main
from mlfo.eval.features import RECORD_FILE, SHARDS_DIR, load_feature_set

sys.path.insert(0, str(Path(__file__).parent))
from eval_fixtures import ShardSpy, csv_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--arch", "r3d_small", "--clip-len", "4", "--clips", "2", "--resize", "32", "--crop-size", "32",
        "--workers", "0", "--quiet", "--shard-videos", "2", "--batch-size", "3"]


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return csv_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "feats"
    assert run("extract", "random", data, out, *ARGS) == 0
    return out


def _same_features(a: Path, b: Path, atol: float = 1e-5) -> None:
    for part in ("train", "test"):
        fa, fb = load_feature_set(a / part), load_feature_set(b / part)
        assert fa.paths == fb.paths and fa.labels.tolist() == fb.labels.tolist()
        np.testing.assert_allclose(fa.features, fb.features, rtol=0, atol=atol)


def test_two_torchrun_processes_agree_with_one(data, single, tmp_path):
    out = tmp_path / "ddp"
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "mlfo.cli", "extract", "random", str(data), str(out), *ARGS]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_features(single, out)
    assert not (out / SHARDS_DIR).exists() and '"complete"' in (out / RECORD_FILE).read_text()
    assert done.stdout.count("train: 5 videos") == 1  # rank 0 alone writes and reports
    assert load_feature_set(out / "test").protocol["processes"] == 2
    assert load_feature_set(single / "train").features.std(0).max() > 1e-3  # the comparison can fail


def test_interrupted_extraction_resumes_from_its_finished_shards(data, single, tmp_path, monkeypatch, capsys):
    out, spy = tmp_path / "feats", ShardSpy(monkeypatch)
    spy.interrupt()  # Ctrl-C right after the first shard is on disk
    assert run("extract", "random", data, out, *ARGS) == 130
    assert len(spy.saved) == 1 and spy.saved[0].is_file()
    assert run("eval", "knn", out, "--no-plots") == 2  # a half-done extraction is never tabled
    assert "did not finish" in capsys.readouterr().err

    spy.record()
    assert run("extract", "random", data, out, *ARGS) == 0
    assert "1 of 3 shards were done earlier" in capsys.readouterr().out
    assert spy.computed == [2, 3, 4] + [0, 1, 2]  # train without its first shard (videos 0, 1), then test
    _same_features(single, out)
    assert run("eval", "knn", out, "--no-plots") == 0
