"""Pretraining logs RankMe of the prototype queue every ``train.health_every`` steps (no
extra forward pass), into metrics.jsonl, TensorBoard and ``mlfo plot``."""

from __future__ import annotations

import pytest

from mlfo.inspect.health import rankme
from mlfo.train.checkpoint import load_checkpoint
from mlfo.train.metrics_log import read_metrics
from mlfo.train.plot import plot_run
from mlfo.train.pretrain import pretrain
from train_helpers import tiny_config

pytestmark = pytest.mark.slow


def test_queue_rankme_is_logged_every_n_steps_and_matches_the_saved_queue(tiny_data, tmp_path):
    out = tmp_path / "run"
    # 10 steps; the queue fills from epoch 1 (step 6 on), logged at steps 2, 4, ...
    pretrain(tiny_config(tiny_data, out, **{"train.health_every": 2, "train.tensorboard": "true"}))
    rows = read_metrics(out)
    logged = [r["step"] for r in rows if "health/rankme" in r]
    assert logged == [6, 8, 10]  # every 2nd step once the queue holds embeddings
    # The value at the last step is RankMe of the queue the checkpoint saved after it.
    queue = load_checkpoint(out / "last.pt")["method"]
    count = int(queue["objective.queue.count"])
    expected = rankme(queue["objective.queue.embeddings"][0, :count])
    assert rows[-1]["health/rankme"] == pytest.approx(expected, rel=1e-6)
    assert 1.0 <= expected <= min(count, queue["objective.queue.embeddings"].shape[2])
    events = list((out / "tensorboard").glob("events.*"))
    assert events and b"health/rankme" in b"".join(p.read_bytes() for p in events)
    assert plot_run(out).is_file()


def test_health_every_zero_logs_nothing(tiny_data, tmp_path):
    pretrain(tiny_config(tiny_data, tmp_path / "off", **{"train.health_every": 0, "train.max_steps": 7}))
    assert not any("health/rankme" in r for r in read_metrics(tmp_path / "off"))


def test_a_negative_health_every_is_refused(tiny_data, tmp_path):
    from mlfo.errors import MLFOError

    with pytest.raises(MLFOError, match="train.health_every"):
        tiny_config(tiny_data, tmp_path, **{"train.health_every": -1})
