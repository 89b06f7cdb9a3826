"""Issue 19, items 4, 8, 17 and 18: a run folder keeps what the user put there, a refused
resume writes nothing, a full disk and another architecture are one line each."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch

from mlfo.cli import main
from mlfo.config import load_config, save_config, to_dict
from mlfo.train.checkpoint import load_checkpoint
from train_helpers import tiny_overrides

pytestmark = pytest.mark.slow


def pretrain_cli(*args) -> int:
    return main(["pretrain", "demo_cpu", *[str(a) for a in args]])


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".mlfo.lock"}


@pytest.fixture(scope="module")
def one_step_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "run"
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"train.max_steps": 1})) == 0
    return out


@pytest.fixture
def run(one_step_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(one_step_run, out)
    return out


def test_a_users_config_yaml_in_the_run_folder_is_kept(tiny_data, tmp_path, capsys):
    exp = tmp_path / "exp #2"
    exp.mkdir()
    mine = "# my experiment: why lr is 5e-4\noptim:\n  lr: 5.0e-4  # halved\n"
    (exp / "config.yaml").write_text(mine)
    args = [*tiny_overrides(tiny_data, tmp_path / "elsewhere", **{"train.max_steps": 1}), "--out", exp]
    assert main(["pretrain", str(exp / "config.yaml"), *map(str, args)]) == 0
    assert (exp / "config.yaml").read_text() == mine and (exp / "last.pt").is_file()
    assert f"{exp / 'config.yaml'} is not a file mlfo wrote: kept as it is" in capsys.readouterr().err
    resolved = load_config(exp / "config.resolved.yaml")
    assert resolved.optim.lr == 5e-4 and resolved.train.out_dir == str(exp)
    # A resume keeps it too; with both names taken by the user's files, the run is refused unwritten.
    assert main(["pretrain", str(exp / "config.yaml"), *map(str, args), "train.max_steps=2", "--resume", "auto"]) == 0
    assert (exp / "config.yaml").read_text() == mine
    (exp / "config.resolved.yaml").write_text("# mine too\n")
    before = files(exp)
    capsys.readouterr()
    assert main(["pretrain", str(exp / "config.yaml"), *map(str, args), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml and config.resolved.yaml are files mlfo did not write" in err and err.count("\n") == 1
    assert files(exp) == before


def test_which_config_files_mlfo_wrote(tmp_path):
    from mlfo.config import written_by_mlfo

    cfg = load_config("demo_cpu")
    save_config(cfg, tmp_path / "new.yaml")
    import yaml

    (tmp_path / "old.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))  # before the header
    (tmp_path / "noted.yaml").write_text("# note\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    assert written_by_mlfo(tmp_path / "new.yaml") and written_by_mlfo(tmp_path / "old.yaml")
    assert not written_by_mlfo(tmp_path / "noted.yaml") and not written_by_mlfo(tmp_path / "missing.yaml")
    assert load_config(tmp_path / "new.yaml") == cfg


@pytest.mark.parametrize("change", ["other data", "batch too large", "other architecture"])
def test_a_refused_resume_leaves_the_run_folder_as_it_was(change, run, tiny_data, tmp_path, capsys):
    extra = {"train.max_steps": 2}
    if change == "other data":
        fewer = tmp_path / "fewer.csv"
        fewer.write_text("".join(tiny_data.read_text().splitlines(keepends=True)[:-4]))
        shutil.copytree(tiny_data.parent / "videos", tmp_path / "videos")
        data, named = fewer, "written for 22 usable training videos, this run has 18"
    elif change == "batch too large":
        data, named = tiny_data, "data.batch_size: 100 videos x 1 process(es) exceeds the 22 usable videos"
        extra["data.batch_size"] = 100
    else:
        data, named = tiny_data, f"{run / 'last.pt'}: holds another architecture than this run's"
        extra["backbone.widths"] = "[8,16,16,16]"
    before = files(run)
    capsys.readouterr()
    assert pretrain_cli(*tiny_overrides(data, run, **extra), "--resume", "auto") == 2
    err = [line for line in capsys.readouterr().err.split("\n") if "probing videos" not in line]  # new data
    assert err[-1] == "" and err[-2].startswith("mlfo: error: ") and named in err[-2] and len(err) == 2, err
    assert files(run) == before  # config.yaml still describes last.pt


def test_another_architecture_names_the_tensor_and_the_setting(run, tiny_data, capsys):
    assert pretrain_cli(*tiny_overrides(tiny_data, run, **{"backbone.widths": "[8,16,16,16]"}),
                        "--resume", "auto") == 2
    err = capsys.readouterr().err
    assert "layer4.0.conv1.0.weight is [32, 16, 3, 3, 3] in the checkpoint, [16, 16, 3, 3, 3] in this run" in err
    assert "resuming with changed settings: backbone.widths" in err and "Error(s) in loading" not in err


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_loses_nothing(tiny_data, tmp_path, capsys,
                                                                             monkeypatch):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save_on_a_full_disk(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, fh, *args, **kwargs)
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    assert pretrain_cli(*tiny_overrides(tiny_data, out, **{"checkpoint.every_steps": 1})) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"mlfo: error: {out / 'last.pt'}: cannot write: the disk is full (ENOSPC); "
                        "the previous file is intact\n"), err
    assert "Traceback" not in err
    monkeypatch.undo()
    assert load_checkpoint(out / "last.pt")["global_step"] == 1  # the step-1 checkpoint, whole
    assert not list(out.glob(".*.tmp"))


def test_a_full_disk_under_torchrun_stops_every_rank_in_one_line(tiny_data, tmp_path):
    import subprocess
    import sys

    from train_helpers import subprocess_env

    out = tmp_path / "run"
    args = tiny_overrides(tiny_data, out, **{"data.batch_size": 2, "checkpoint.every_steps": 1,
                                             "train.dist_timeout_min": 3})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(Path(__file__).parent / "full_disk.py"), "pretrain", "demo_cpu", *args]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=150)
    assert run.returncode != 0
    assert (f"mlfo: error: {out / 'last.pt'}: cannot write: the disk is full (ENOSPC); the previous file is intact"
            in run.stderr), run.stderr[-3000:]
    assert f"mlfo: error: {out / 'last.pt'}: not written by rank 0 (see its message)" in run.stderr
    assert load_checkpoint(out / "last.pt")["global_step"] == 1 and not list(out.glob(".*.tmp"))
