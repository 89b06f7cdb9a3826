"""The training index is built before any process group exists, by each node's first
process alone; the others join the group (under an explicit, generous timeout) and read
its cache in-process, without forking a probing pool once communicators exist."""

from __future__ import annotations

from datetime import timedelta

from mlfo.train import indexing
import mlfo.train.pretrain as pretrain_module
from mlfo.distributed import DistContext
from train_helpers import tiny_config


def test_pretrain_indexes_before_joining_the_group_with_an_explicit_timeout(tiny_data, tmp_path, monkeypatch):
    events = []
    real_index, real_init = indexing.load_training_index, pretrain_module.init_distributed

    def index(d, **kwargs):
        events.append(("index", kwargs))
        return real_index(d, **kwargs)

    def init(device, timeout=None):
        events.append(("group", timeout))
        return real_init(device, timeout=timeout)

    monkeypatch.setattr(indexing, "load_training_index", index)
    monkeypatch.setattr(pretrain_module, "init_distributed", init)
    pretrain_module.pretrain(tiny_config(tiny_data, tmp_path, **{"train.max_steps": 1,
                                                                  "train.dist_timeout_min": 90}))
    assert [e[0] for e in events] == ["index", "group"]  # and the trainer did not index again
    assert events[1][1] == timedelta(minutes=90)


def test_only_each_nodes_first_process_indexes_early(tiny_data, tmp_path, monkeypatch):
    cfg = tiny_config(tiny_data, tmp_path)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert indexing.index_training_data(cfg) is None  # reads the cache once in the group
    monkeypatch.setenv("LOCAL_RANK", "0")  # the first process of the second node
    assert len(indexing.index_training_data(cfg).records) == 22
    missing_demo = tiny_config(tmp_path / "demo" / "train.csv", tmp_path, **{"data.generate_demo": "true"})
    assert indexing.index_training_data(missing_demo) is None  # demo data: written by rank 0 alone
    assert not (tmp_path / "demo").exists()


def test_the_other_processes_read_the_cache_without_a_pool(tiny_data, tmp_path, monkeypatch):
    calls = []
    real = pretrain_module.load_training_index

    def record(d, **kwargs):
        calls.append(kwargs)
        return real(d, **kwargs)

    monkeypatch.setattr(pretrain_module, "load_training_index", record)
    pretrain_module.build_trainer(tiny_config(tiny_data, tmp_path), DistContext(), index=None)
    assert calls == [{"progress": False, "workers": 1}]
