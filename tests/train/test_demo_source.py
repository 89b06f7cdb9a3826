"""The user's files are never written as a side effect: data.generate_demo writes the demo
dataset only into the demo preset's own, absent folder; a missing data.train is one line."""

from __future__ import annotations

import pytest

import mlfo.data.demo.dataset as demo_dataset
from mlfo.cli import main
from mlfo.data.demo import ensure_demo_source
from mlfo.errors import MLFOError
from train_helpers import tiny_overrides


def user_folder(root):
    folder = root / "my" / "data"
    folder.mkdir(parents=True)
    files = {"train.csv": b"path,label\nclip_a.avi,jump\n", "test.csv": b"path,label\nclip_b.avi,run\n",
             "classes.json": b'{"classes": ["jump", "run"]}\n'}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder, files


def test_typo_in_data_train_is_one_line_and_touches_nothing(tmp_path, capsys):
    folder, files = user_folder(tmp_path)
    typo = folder / "trian.csv"
    # The demo preset has data.generate_demo on: it must not fill the user's folder.
    assert main(["pretrain", "demo_cpu", *tiny_overrides(typo, tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlfo: error: data.train: {typo} not found") and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # byte for byte, nothing added


def test_demo_data_goes_only_into_the_presets_own_absent_folder(tmp_path, monkeypatch):
    written = []
    monkeypatch.setattr(demo_dataset, "generate_demo_dataset", lambda out, seed=0: written.append(str(out)))
    monkeypatch.chdir(tmp_path)
    ensure_demo_source("demo_data/train.csv", generate=True)  # the preset on a fresh clone
    assert written == ["demo_data"]
    with pytest.raises(MLFOError, match="data.train: demo_data/train.csv not found"):
        ensure_demo_source("demo_data/train.csv", generate=False)
    (tmp_path / "demo_data").mkdir()
    (tmp_path / "demo_data" / "notes.txt").write_text("mine")  # the folder holds a user's file
    with pytest.raises(MLFOError, match="only into an absent demo_data/train.csv"):
        ensure_demo_source("demo_data/train.csv", generate=True)
    folder, _ = user_folder(tmp_path)
    with pytest.raises(MLFOError, match="not found"):
        ensure_demo_source(folder / "missing" / "train.csv", generate=True)  # another location
    assert written == ["demo_data"] and (tmp_path / "demo_data" / "notes.txt").read_text() == "mine"


def test_the_presets_own_location_is_the_one_generation_allows():
    from mlfo.config import load_config

    assert load_config("demo_cpu", []).data.train == demo_dataset.DEMO_TRAIN
