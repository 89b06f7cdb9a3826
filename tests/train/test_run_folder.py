"""A run folder has one owner: a second run refuses naming the holder, a killed holder
leaves no lock, a finished folder is resumed or overwritten only on request, a fresh
start empties the metrics, a resume purges TensorBoard, leftovers of killed writes go."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlfo.cli import main
from mlfo.errors import MLFOError
from mlfo.train.metrics_log import read_metrics
from train_helpers import mlfo_command, subprocess_env, tiny_overrides

pytestmark = pytest.mark.slow


def pretrain_cli(*args) -> int:
    return main(["pretrain", "demo_cpu", *[str(a) for a in args]])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".mlfo.lock"}


def test_lock_is_exclusive_and_released(tmp_path):
    from mlfo.train.run_folder import claim_run_folder

    held = claim_run_folder(tmp_path / "run")
    with pytest.raises(MLFOError, match=r"in use by another mlfo run \(PID \d+ on "):
        claim_run_folder(tmp_path / "run")
    held.release()
    claim_run_folder(tmp_path / "run").release()


def test_second_run_refuses_naming_the_holder_and_a_killed_holder_leaves_no_lock(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_overrides(tiny_data, out, **{"train.epochs": 200, "checkpoint.every_steps": 1})
    holder = subprocess.Popen(mlfo_command("pretrain", "demo_cpu", *args), env=subprocess_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((out / "last.pt").exists() and len(read_metrics(out)) >= 2):
            assert holder.poll() is None, holder.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        # A second run on the same folder, even one that asks to resume, stops at once.
        assert pretrain_cli(*args, "--resume", "auto") == 2
        err = capsys.readouterr().err
        assert f"in use by another mlfo run (PID {holder.pid} on " in err and err.count("\n") == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # The killed run left a temporary file of a checkpoint write; its lock died with it.
    (out / ".last.pt.k1ll3d0x.tmp").write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    stale = list(out.glob(".last.pt.*.tmp"))  # ours, plus one if the kill hit a write
    before = read_metrics(out)
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"train.max_steps": before[-1]["step"] + 1}),
                        "--resume", "auto") == 0
    assert not list(out.glob(".last.pt.*.tmp")) and (out / "notes.tmp").read_text() == "not ours"
    assert f"removed {len(stale)} temporary file(s) of killed checkpoint writes" in capsys.readouterr().err


def test_finished_folder_is_resumed_or_overwritten_only_on_request(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"train.max_steps": 3})) == 0
    finished = snapshot(out)
    capsys.readouterr()
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"train.max_steps": 3})) == 2
    err = capsys.readouterr().err
    assert f"{out}: holds a run (last.pt); add --resume auto to continue it or --overwrite" in err
    assert err.count("\n") == 1 and snapshot(out) == finished  # nothing was written
    assert pretrain_cli(*tiny_overrides(tiny_data, out), "--overwrite", "--resume", "auto") == 2
    assert "give one of them" in capsys.readouterr().err and snapshot(out) == finished

    (out / "epoch_0099.pt").write_bytes(finished["last.pt"])  # an old run's numbered checkpoint
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"train.max_steps": 2}), "--overwrite") == 0
    assert "--overwrite: deleted last.pt, epoch_0099.pt" in capsys.readouterr().err
    assert [r["step"] for r in read_metrics(out)] == [1, 2]  # started again, not appended
    assert not (out / "epoch_0099.pt").exists()


def test_a_metrics_file_of_the_users_is_refused_not_emptied(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    mine = '{"step": 1, "loss": 2.0}\n{"epoch": 3, "note": "my own log, no step"}\n{"step": 4}\n'
    (out / "metrics.jsonl").write_text(mine)
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"train.max_steps": 2})) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"mlfo: error: {out / 'metrics.jsonl'}: not a metrics file of an mlfo run; move it away "
                   "(a run writes its metrics there)"]
    assert (out / "metrics.jsonl").read_text() == mine and not list(out.glob("*.pt"))


def test_fresh_start_empties_metrics_and_resume_purges_tensorboard(tiny_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss/total": 99.0}\n{"step": 2, "loss/total": 98.0}\n')
    extra = {"train.tensorboard": "true", "checkpoint.keep": 2}
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **extra)) == 0  # no checkpoint there: a fresh start
    first = read_metrics(out)
    assert [r["step"] for r in first] == list(range(1, 11)) and 99.0 not in [r["loss/total"] for r in first]
    # Resume from the epoch-1 checkpoint: steps 6-10 are logged again and must not double.
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **extra), "--resume", out / "epoch_0001.pt") == 0
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 11))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    steps = [e.step for e in events.Scalars("loss/total")]
    assert sorted(steps) == list(range(1, 11)), steps


def test_out_that_is_a_file_or_cannot_be_created_is_one_line(tiny_data, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    for out in (tmp_path / "file", tmp_path / "file" / "run", Path("/proc/mlfo-run")):
        assert pretrain_cli(*tiny_overrides(tiny_data, out)) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mlfo: error: {out}: ") and err.count("\n") == 1, err
    assert (tmp_path / "file").read_text() == "mine"
