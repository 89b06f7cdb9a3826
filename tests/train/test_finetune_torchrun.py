"""``mlfo eval finetune`` under ``torchrun --nproc_per_node 2`` (gloo, CPU): the fine-tune
is the classifier method on the pretraining engine, so across 2 processes it sees each
training video once per epoch, scores each test video once (sharded, gathered to rank
0), and a run killed with SIGKILL resumes to the uninterrupted run's weights and card."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlfo.data.sources import load_index
from mlfo.train.checkpoint import load_checkpoint
from mlfo.train.metrics_log import read_metrics
from train_helpers import REPO, read_index_log, subprocess_env, wait_until_unlocked

pytestmark = pytest.mark.slow

EPOCHS = 2
TRAIN = 20  # training videos: 5 steps of 2 videos x 2 processes an epoch, every video in each
STEPS = EPOCHS * TRAIN // 4


@pytest.fixture(scope="module")
def data(tiny_data, tmp_path_factory) -> Path:
    """The tiny demo data with 20 of its 22 training videos (and its 11 test videos)."""
    folder = tmp_path_factory.mktemp("ft_data") / "data"
    shutil.copytree(tiny_data.parent, folder, ignore=shutil.ignore_patterns("*.mlfo-index.csv"))
    rows = (folder / "train.csv").read_text().splitlines()
    (folder / "train.csv").write_text("\n".join(rows[: 1 + TRAIN]) + "\n")
    return folder


def _command(data: Path, out: Path) -> list[str]:
    """One clip a video, two videos a process per step."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
            str(REPO / "tests" / "train" / "record_finetune.py"), "eval", "finetune", "random", str(data), str(out),
            "--arch", "r3d_small", "--epochs", str(EPOCHS), "--batch-size", "2", "--clip-len", "4",
            "--crop-size", "32", "--resize", "32", "--clips", "1", "--warmup-epochs", "0", "--workers", "0",
            "--checkpoint-steps", "1", "--no-plots", "--quiet"]


def _env(record_dir: Path) -> dict:
    record_dir.mkdir(parents=True, exist_ok=True)
    return {**subprocess_env(), "MLFO_RECORD_DIR": str(record_dir)}


@pytest.fixture(scope="module")
def whole_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft_whole")
    run = subprocess.run(_command(data, out / "run"), env=_env(out / "record"), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


def test_each_training_video_once_per_epoch_across_the_two_processes(whole_run):
    steps = {rank: read_index_log(whole_run / "run", rank) for rank in (0, 1)}
    assert len(steps[0]) == len(steps[1]) == STEPS
    for epoch in range(EPOCHS):
        seen = [i for rank in (0, 1) for s in steps[rank] if s["epoch"] == epoch for i in s["index"]]
        assert sorted(seen) == list(range(TRAIN)), epoch  # every video once, none twice
    rows = read_metrics(whole_run / "run")
    assert len(rows) == STEPS and all(r["videos"] == 4 for r in rows)
    assert len(load_checkpoint(whole_run / "run" / "last.pt")["rng"]) == 2


def test_each_test_video_is_scored_once_and_rank_0_writes_the_card(data, whole_run):
    test_paths = sorted(str(r.path) for r in load_index(data / "test.csv", progress=False).records)
    scored = {rank: json.loads((whole_run / "record" / f"scored-rank{rank}.jsonl").read_text()) for rank in (0, 1)}
    assert scored[0] and scored[1] and not set(scored[0]) & set(scored[1])  # both ranks scored, disjoint
    assert sorted(scored[0] + scored[1]) == test_paths
    card = json.loads((whole_run / "run" / "finetune.card.json").read_text())
    assert card["training"]["default"]["n_test"] == len(test_paths)
    assert [h["epoch"] for h in card["training"]["default"]["history"]] == list(range(1, EPOCHS + 1))


def test_sigkill_then_resume_under_torchrun_gives_the_uninterrupted_weights(data, whole_run, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_command(data, out), env=_env(tmp_path / "record"), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "last.pt").exists() and (out / "metrics.jsonl").exists() and len(read_metrics(out)) >= 4:
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers
                break
            time.sleep(0.05)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    saved = load_checkpoint(out / "last.pt")
    assert 1 <= saved["global_step"] < STEPS, "the run finished before it could be killed"
    wait_until_unlocked(out)  # the workers exit a moment after torchrun

    resumed = subprocess.run(_command(data, out), env=_env(tmp_path / "record2"), capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'last.pt'}" in resumed.stderr
    a, b = load_checkpoint(whole_run / "run" / "last.pt"), load_checkpoint(out / "last.pt")
    assert a["global_step"] == b["global_step"] == STEPS
    assert all(torch.equal(a["method"][k], b["method"][k]) for k in a["method"])
    cards = [json.loads((d / "finetune.card.json").read_text()) for d in (whole_run / "run", out)]
    assert cards[0]["metrics"] == cards[1]["metrics"]
    assert [r["loss"] for r in read_metrics(out)] == [r["loss"] for r in read_metrics(whole_run / "run")]
