"""One rule for failing items in a training run (issue 19 item 7): only a video that fails
to decode is skipped, and replaced so that every step holds the full batch; a
misconfiguration stops the run in one line naming the key, anything else with its
traceback, and more than ``data.max_skipped_share`` of an epoch's videos failing stops it."""

from __future__ import annotations

import importlib.util
import resource
import subprocess
from pathlib import Path

import pytest

import mlfo
from mlfo.cli import main
from mlfo.errors import MLFOError
from mlfo.train.metrics_log import read_metrics
from mlfo.train.pretrain import pretrain
from train_helpers import mlfo_command, subprocess_env, tiny_config, tiny_overrides

pytestmark = pytest.mark.slow


def _failing(monkeypatch, names: set[str]) -> None:
    """Videos whose file name is in ``names`` fail to decode (as a truncated file would)."""
    import mlfo.data.datasets as datasets

    real_open = datasets.open_video

    def open_video(path, *args, **kwargs):
        if Path(path).name in names:
            raise mlfo.errors.VideoDecodeError(f"{path}: decoding failed (Invalid data)")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "open_video", open_video)


def test_more_failures_than_the_share_stop_the_run_in_one_line(tiny_data, tmp_path, monkeypatch):
    videos = sorted(p.name for p in (tiny_data.parent / "videos").glob("*.mp4"))
    _failing(monkeypatch, set(videos[:6]))  # 6 of 22 videos; an epoch uses 20
    with pytest.raises(MLFOError, match=r"^data.max_skipped_share: \d+ videos of .*train.csv failed to decode in "
                                        r"epoch 0, more than 0.05 of its 20") as raised:
        pretrain(tiny_config(tiny_data, tmp_path / "run", **{"train.epochs": 1}))
    assert "\n" not in str(raised.value)


def test_max_skipped_share_is_checked(tiny_data, tmp_path, capsys):
    assert main(["pretrain", "demo_cpu", *tiny_overrides(tiny_data, tmp_path / "r", **{"data.max_skipped_share": 1.5})]) == 2
    assert "data.max_skipped_share: must be in [0, 1], got 1.5" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("torchcodec") is not None, reason="torchcodec is installed here")
def test_torchcodec_backend_without_torchcodec_stops_in_one_line(tiny_data, tmp_path, capsys):
    """Refused before the data is probed (which would call every video unreadable); met in a
    DataLoader worker instead (an index cached earlier), it is the same one line
    (tests/data/test_loading.py)."""
    out = tmp_path / "run"
    code = main(["pretrain", "demo_cpu", *tiny_overrides(tiny_data, out, **{"data.backend": "torchcodec",
                                                                             "data.num_workers": 1})])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("mlfo: error:")]
    assert len(errors) == 1 and errors[0].startswith("mlfo: error: data.backend: torchcodec is not usable here")
    assert "skipped unreadable video" not in err and "Traceback" not in err
    assert not (out / "last.pt").exists()


def _limit_memory():  # a crop of 100000 px asks for ~120 GB: make that allocation fail here
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_a_crop_larger_than_memory_is_not_a_skipped_video(tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(mlfo_command("pretrain", "demo_cpu", *tiny_overrides(tiny_data, out, **{
        "data.crop_size": 100000, "data.num_workers": 1})), env=subprocess_env(), capture_output=True, text=True,
        timeout=300, preexec_fn=_limit_memory)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "allocate" in proc.stderr  # stopped with its traceback
    assert "skipped unreadable video" not in proc.stderr and not (out / "last.pt").exists()


def test_a_run_with_replaced_videos_resumes_exactly(tiny_data, tmp_path, monkeypatch):
    """The replacement is drawn from (epoch, failed index, attempt): a run stopped after 2
    steps and resumed trains on what an uninterrupted run trained on, step for step, with
    every step's batch full."""
    videos = sorted(p.name for p in (tiny_data.parent / "videos").glob("*.mp4"))
    _failing(monkeypatch, set(videos[::7]))  # 4 of 22
    settings = {"train.epochs": 1, "data.max_skipped_share": 0.5}
    whole = tmp_path / "whole"
    pretrain(tiny_config(tiny_data, whole, **settings))
    parts = tmp_path / "parts"
    pretrain(tiny_config(tiny_data, parts, **settings, **{"train.max_steps": 2}))
    result = pretrain(tiny_config(tiny_data, parts, **settings), resume="auto")
    assert result.global_step == 5 and result.skipped_videos
    assert set((parts / "skipped_videos.txt").read_text().split()) == set(result.skipped_videos)
    expected, got = read_metrics(whole), read_metrics(parts)
    assert [r["step"] for r in got] == list(range(1, 6)) and {r["videos"] for r in got} == {4}
    for key in ("loss/total", "loss/proto", "loss/high"):
        assert [r.get(key) for r in got] == pytest.approx([r.get(key) for r in expected], rel=1e-6, abs=1e-7), key
