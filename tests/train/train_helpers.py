"""Shared helpers: a tiny demo dataset and a tiny pretraining configuration.

Sizes are chosen for 2 shared cores: 48x48 videos of 20 frames, 4-frame clips cropped to
32x32, a narrow r3d_small (widths 8-16-16-32), 4 videos per step; one step takes well
under a second. Queue and graph loss start in epoch 1 so a two-epoch run exercises them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlfo.config import load_config

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(data_csv: Path, out_dir: Path, **extra) -> list[str]:
    settings = {
        "data.train": str(data_csv),
        "data.clip_len": 4,
        "data.crop_size": 32,
        "data.batch_size": 4,
        "data.num_workers": 0,
        "backbone.name": "r3d_small",
        "backbone.widths": "[8,16,16,32]",
        "model.embed_dim": 16,
        # 4-frame clips: the low / mid / high features have 2 / 1 / 1 steps
        "model.fine_steps": "{low: 2, mid: 1, high: 1}",
        "objective.timestamp_mid": "false",
        "objective.timestamp_high": "false",
        "model.num_prototypes": 8,
        "model.me_reduction": 4,
        "objective.queue_length": 16,
        "objective.queue_start": 1,
        "objective.graph_start": 1,
        "optim.lr_decay_epochs": "[1]",
        "train.epochs": 2,
        "train.device": "cpu",
        "train.progress": "false",
        "train.tensorboard": "false",
        "train.out_dir": str(out_dir),
        "checkpoint.every_epochs": 1,
        "checkpoint.keep": 1,
    }
    settings.update(extra)
    return [f"{k}={v}" for k, v in settings.items()]


def tiny_config(data_csv: Path, out_dir: Path, **extra):
    return load_config("demo_cpu", tiny_overrides(data_csv, out_dir, **extra))


def subprocess_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mlfo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlfo.cli", *args]


INDEX_LOG = "indices-rank{rank}.jsonl"


def recording_train_step(real_step):
    """``Trainer.train_step`` that also appends this rank's video indices of the step to
    ``out_dir/indices-rank<R>.jsonl``: which samples a run consumed, in order."""
    import json

    def train_step(self, batch, epoch, progress):
        with open(self.out_dir / INDEX_LOG.format(rank=self.ctx.rank), "a") as f:
            f.write(json.dumps({"epoch": epoch, "index": batch["index"].tolist()}) + "\n")
        return real_step(self, batch, epoch, progress)

    return train_step


def read_index_log(out_dir: Path, rank: int = 0) -> list[dict]:
    import json

    return [json.loads(line) for line in (out_dir / INDEX_LOG.format(rank=rank)).read_text().splitlines()]


def wait_until_unlocked(run_dir: Path, timeout: float = 60.0) -> None:
    """After killing a run: wait until its run-folder lock is free, i.e. every killed
    process that held it (torchrun's workers die a moment after torchrun) has exited."""
    import fcntl
    import time

    from mlfo.train.run_folder import LOCK_FILE

    deadline = time.time() + timeout
    with open(run_dir / LOCK_FILE, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.time() > deadline:
                    raise TimeoutError(f"{run_dir}: still locked {timeout:.0f} s after the kill") from None
                time.sleep(0.05)
