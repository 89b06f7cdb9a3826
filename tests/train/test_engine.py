"""End-to-end pretraining on tiny data: exact resume after SIGKILL, 2-process DDP equals
one process, bad videos never stop a run, non-finite losses stop it clearly, export,
plot. Every run here is a few seconds on one thread."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import mlfo
from mlfo.cli import main
from mlfo.errors import MLFOError
from mlfo.train.checkpoint import load_checkpoint
from mlfo.train.pretrain import pretrain
from mlfo.train.metrics_log import read_metrics
from train_helpers import mlfo_command, subprocess_env, tiny_config, tiny_overrides

STEPS = 10  # 2 epochs of 5 steps (22 videos, 4 per step); queue and graph start in epoch 1

pytestmark = pytest.mark.slow


def losses(run_dir: Path, key: str = "loss/total") -> np.ndarray:
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)), "steps missing or repeated"
    return np.array([r.get(key, np.nan) for r in rows])


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    result = pretrain(tiny_config(tiny_data, out, **{"checkpoint.every_steps": 1}))
    assert result.global_step == STEPS and result.last_checkpoint == out / "last.pt"
    return out


def test_run_writes_checkpoints_metrics_and_config(reference_run):
    rows = read_metrics(reference_run)
    assert len(rows) == STEPS
    assert {"epoch", "step", "lr", "loss/total", "loss/high", "acc/high", "loss/proto", "time", "skipped"} <= set(rows[0])
    assert "loss/graph_high" not in rows[0] and "loss/graph_high" in rows[-1]  # graph from epoch 1
    assert [r["lr"] for r in rows] == [1e-3] * 5 + [pytest.approx(1e-4)] * 5  # step decay at epoch 1
    assert all(np.isfinite(r["loss/total"]) for r in rows)
    assert (reference_run / "config.yaml").is_file()
    # keep=1: only the newest numbered checkpoint survives
    assert sorted(p.name for p in reference_run.glob("epoch_*.pt")) == ["epoch_0002.pt"]
    ckpt = load_checkpoint(reference_run / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["global_step"]) == (2, 0, STEPS)
    assert ckpt["config"]["model"]["num_prototypes"] == 8 and len(ckpt["rng"]) == 1
    assert ckpt["method"]["objective.queue.count"] > 0  # the prototype queue is saved


def test_sigkill_then_resume_reproduces_the_loss_trajectory(tiny_data, reference_run, tmp_path):
    out = tmp_path / "killed"
    args = tiny_overrides(tiny_data, out, **{"checkpoint.every_steps": 1})
    proc = subprocess.Popen(mlfo_command("pretrain", "demo_cpu", *args), env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if (out / "last.pt").exists() and len(read_metrics(out)) >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    saved = load_checkpoint(out / "last.pt")
    assert 1 <= saved["global_step"] < STEPS, "the run finished before it could be killed"

    resumed = subprocess.run(mlfo_command("pretrain", "demo_cpu", *args, "--resume", "auto"),
                             env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {out / 'last.pt'}" in resumed.stderr
    expected, got = losses(reference_run), losses(out)
    assert len(got) == STEPS
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    for key in ("loss/proto", "loss/graph_high", "acc/high"):  # queue and graph restored too
        np.testing.assert_allclose(losses(out, key), losses(reference_run, key), rtol=1e-6, atol=1e-7)


def test_two_process_torchrun_equals_one_process_on_the_global_batch(tiny_data, tmp_path):
    """2 ranks x 2 videos vs 1 process x 4 videos, same seed: the ranks interleave one
    permutation, so each step's global batch holds the same videos with the same
    augmentations. BatchNorm is frozen (running statistics) in both runs, because
    per-rank batch statistics would otherwise legitimately differ; everything else -
    gathers, Sinkhorn, the queue, DDP gradient averaging, Adam - is compared through
    the per-step losses over 7 steps (the last two with the queue and graph loss)."""
    common = {"train.freeze_bn": "true", "train.max_steps": 7}
    single = tmp_path / "single"
    pretrain(tiny_config(tiny_data, single, **common))
    ddp = tmp_path / "ddp"
    args = tiny_overrides(tiny_data, ddp, **common, **{"data.batch_size": 2})
    cmd = [mlfo_command()[0], "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "mlfo.cli", "pretrain", "demo_cpu", *args]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = read_metrics(ddp)
    assert len(rows) == 7 and all(r["videos"] == 4 for r in rows)
    np.testing.assert_allclose(losses(ddp), losses(single), rtol=1e-5, atol=0)
    np.testing.assert_allclose(losses(ddp, "loss/proto"), losses(single, "loss/proto"), rtol=1e-5, atol=1e-6)
    assert len(load_checkpoint(ddp / "last.pt")["rng"]) == 2  # RNG states of both ranks
    # The comparison can fail: another seed gives other losses.
    other = tmp_path / "other_seed"
    pretrain(tiny_config(tiny_data, other, **{**common, "train.max_steps": 2, "train.seed": 1}))
    assert not np.allclose(losses(other), losses(single)[:2], rtol=1e-3)


def test_unreadable_videos_are_skipped_and_reported(tiny_data, tmp_path, monkeypatch, capsys):
    # Broken files in the CSV: one garbage, one truncated mp4 (caught by the scan or mid-run).
    data = tmp_path / "data"
    shutil.copytree(tiny_data.parent, data)
    videos = sorted((data / "videos").glob("*.mp4"))
    (data / "videos" / "garbage.mp4").write_bytes(b"\x00not a video" * 500)
    (data / "videos" / "truncated.mp4").write_bytes(videos[0].read_bytes()[:700])
    with open(data / "train.csv", "a") as f:
        f.write("videos/garbage.mp4,20,ring\nvideos/truncated.mp4,20,ring\n")
    # And a file that becomes unreadable after the scan (e.g. storage trouble mid-run).
    import mlfo.data.datasets as datasets

    real_open = datasets.open_video
    vanishing = videos[1].resolve()

    def flaky_open(path, *args, **kwargs):
        if Path(path).resolve() == vanishing:
            raise mlfo.errors.VideoDecodeError(f"{path}: read error")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "open_video", flaky_open)
    out = tmp_path / "run"
    result = pretrain(tiny_config(data / "train.csv", out, **{"train.epochs": 1}))
    assert result.global_step == 5 and (out / "last.pt").is_file()
    assert str(vanishing) in {str(Path(p).resolve()) for p in result.skipped_videos}
    err = capsys.readouterr().err
    assert "skipped 1 unreadable video(s)" in err and str(videos[1].name) in err
    assert str(videos[1].name) in (out / "skipped_videos.txt").read_text()
    assert sum(r["skipped"] for r in read_metrics(out)) == 1
    assert {r["videos"] for r in read_metrics(out)} == {4}  # replaced: every step holds the full batch


def test_the_skipped_column_counts_the_videos_of_every_rank(tiny_data, tmp_path, monkeypatch):
    """The count comes from the step's all-reduce (every rank's failures), not from rank
    0's own batch: here the reduction reports 3 failures elsewhere at step 2."""
    from mlfo.train.engine import Trainer

    real = Trainer._global_mean
    calls = []

    def elsewhere(self, total, logs, failed):
        loss, means, failed = real(self, total, logs, failed)
        calls.append(failed)
        return loss, means, failed + (3 if len(calls) == 2 else 0)

    monkeypatch.setattr(Trainer, "_global_mean", elsewhere)
    out = tmp_path / "run"
    pretrain(tiny_config(tiny_data, out, **{"train.max_steps": 3, "data.max_skipped_share": 0.5}))
    assert [r["skipped"] for r in read_metrics(out)] == [0, 3, 0] and calls == [0, 0, 0]


def test_non_finite_loss_stops_with_step_term_and_checkpoint(tiny_data, tmp_path, monkeypatch):
    from mlfo.losses.objective import MLFOObjective

    real_forward = MLFOObjective.forward
    calls = {"n": 0}

    def exploding(self, out, epoch):
        total, logs = real_forward(self, out, epoch)
        calls["n"] += 1
        if calls["n"] == 3:
            logs = {**logs, "loss/proto": float("nan")}
            total = total * float("nan")
        return total, logs

    monkeypatch.setattr(MLFOObjective, "forward", exploding)
    out = tmp_path / "nan"
    with pytest.raises(MLFOError) as err:
        pretrain(tiny_config(tiny_data, out, **{"checkpoint.every_steps": 2}))
    message = str(err.value)
    assert "step 3" in message and "loss/proto" in message and str(out / "last.pt") in message
    assert "\n" not in message
    assert len(read_metrics(out)) == 2


def test_export_and_load_encoder_round_trip(reference_run, tiny_data, tmp_path, capsys):
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from mlfo.data.provenance import from_text, video_digests
    from mlfo.data.sources import load_index

    ckpt = reference_run / "last.pt"
    exported = tmp_path / "encoder.safetensors"
    assert main(["export", str(ckpt), str(exported)]) == 0
    tensors = load_file(exported)  # plain safetensors: tensors under torchvision names
    with safe_open(str(exported), framework="pt") as fh:
        meta = fh.metadata()
    arch = json.loads(meta["arch"])
    assert arch["name"] == "r3d_small" and arch["widths"] == [8, 16, 16, 32]
    assert json.loads(meta["source"])["checkpoint"] == str(ckpt.resolve())
    assert "stem.0.weight" in tensors and "layer4.1.conv2.1.running_var" in tensors
    trained = load_checkpoint(ckpt)
    assert set(tensors) == {k[len("model.backbone."):] for k in trained["method"] if k.startswith("model.backbone.")}
    for key, value in tensors.items():
        assert torch.equal(value, trained["method"][f"model.backbone.{key}"]), key
    # The pretraining videos travel with the encoder: 22 training videos' identities.
    np.testing.assert_array_equal(from_text(meta["trained_on"]), trained["trained_on"].numpy())
    rows = tiny_data.read_text().splitlines()[1:]
    records = load_index(tiny_data, progress=False).records
    np.testing.assert_array_equal(trained["trained_on"].numpy(), video_digests(records))
    assert len(rows) == len(records) == 22 and len(trained["trained_on"]) == 22 + 1  # + the identity marker
    # A plain tensor .pt (a bare torchvision state dict) loads too, its architecture inferred.
    plain = tmp_path / "plain.pt"
    torch.save(tensors, plain)
    from_export, from_ckpt, from_plain = mlfo.load_encoder(exported), mlfo.load_encoder(ckpt), mlfo.load_encoder(plain)
    assert not from_export.training
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(from_export(x), from_ckpt(x)) and torch.equal(from_plain(x), from_ckpt(x))
    # No suffix: .safetensors is added; another suffix is refused (not silently renamed).
    assert main(["export", str(ckpt), str(tmp_path / "bare")]) == 0 and (tmp_path / "bare.safetensors").is_file()
    capsys.readouterr()
    assert main(["export", str(ckpt), str(tmp_path / "encoder.pt")]) == 2
    assert "name it encoder.safetensors" in capsys.readouterr().err and not (tmp_path / "encoder.pt").exists()
    with pytest.raises(MLFOError, match="neither an exported encoder"):
        torch.save({"foo": 1}, tmp_path / "junk.pt")
        mlfo.load_encoder(tmp_path / "junk.pt")
    (tmp_path / "cut.safetensors").write_bytes(exported.read_bytes()[:5000])
    with pytest.raises(MLFOError, match="cut.safetensors: not a readable safetensors file"):
        mlfo.load_encoder(tmp_path / "cut.safetensors")
    assert main(["export", str(tmp_path / "missing.pt"), str(exported)]) == 2


def test_plot_draws_a_png(reference_run, tmp_path):
    png = tmp_path / "plot.png"
    assert main(["plot", str(reference_run), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert main(["plot", str(tmp_path)]) == 2  # no metrics there
