"""benchmarks/gpu_check.py: without CUDA it says so and exits 0; its whole run - every
setting, the loader, the checkpoint resume, the fine-tune resume and extraction - works
on CPU at a tiny size (``--cpu-smoke``: fp32, channels_last, compile, a one-process
gloo DDP group), so what only a GPU adds (autocast, GradScaler, NCCL, SyncBatchNorm,
memory counters) is the part left unexecuted here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from train_helpers import REPO, subprocess_env

SCRIPT = str(REPO / "benchmarks" / "gpu_check.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the check would run")
def test_without_cuda_it_says_so_and_exits_0():
    run = subprocess.run([sys.executable, SCRIPT], env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "no CUDA device on this machine" in run.stdout and "nothing to check" in run.stdout


@pytest.mark.slow
def test_the_whole_check_runs_on_cpu_at_a_tiny_size(tmp_path):
    run = subprocess.run([sys.executable, SCRIPT, "--cpu-smoke", "--steps", "2", "--work-dir", str(tmp_path)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    for setting in ("fp32", "channels_last", "channels_last + compile", "DDP (gloo)"):
        assert any(line.startswith(setting + " ") and line.rstrip().endswith("ok") for line in out.splitlines()), setting
    assert "loader: 2 workers" in out or "loader: 1 workers" in out
    assert "pretraining checkpoint: saved after the timed steps and resumed on cpu: ok" in out
    assert "fine-tune: 1 epoch on 44 videos" in out and "resumed and re-tested: ok" in out
    assert "extraction: fp32" in out and "all checks passed" in out
