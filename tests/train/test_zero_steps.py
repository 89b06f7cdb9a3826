"""A run that trained 0 steps is an error in one line, not a checkpoint that exports fine
(issue 19, item 7): an untrained model saved as ``last.pt`` would pass for an encoder."""

from __future__ import annotations

import pytest

import mlfo
from mlfo.errors import MLFOError
from mlfo.train.pretrain import pretrain
from train_helpers import tiny_config


def test_an_epoch_without_a_step_stops_unsaved(tiny_data, tmp_path, monkeypatch):
    import mlfo.data.datasets as datasets

    def unreadable(path, *args, **kwargs):
        raise mlfo.errors.VideoDecodeError(f"{path}: read error")

    monkeypatch.setattr(datasets, "open_video", unreadable)  # every video fails in the loader
    out = tmp_path / "run"
    with pytest.raises(MLFOError) as err:
        pretrain(tiny_config(tiny_data, out, **{"train.epochs": 1}))
    message = str(err.value)
    # With constant shapes the loader meets it first: a video and every replacement tried
    # for it failed, so not even one batch could be made.
    assert "failed to decode" in message and "is the data readable" in message and "\n" not in message
    assert not (out / "last.pt").exists() and not list(out.glob("epoch_*.pt"))
