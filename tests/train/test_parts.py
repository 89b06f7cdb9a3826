"""The engine's building blocks: data order, schedule, checkpoint files, metrics files."""

from __future__ import annotations

import json

import pytest
import torch

from mlfo.config import load_config
from mlfo.errors import MLFOError
from mlfo.train.checkpoint import (
    atomic_torch_save,
    epoch_checkpoint_name,
    find_resume_path,
    load_checkpoint,
    prune_epoch_checkpoints,
)
from mlfo.data.loading import ResumableDistributedSampler
from mlfo.train.engine import learning_rate_factor
from mlfo.train.metrics_log import read_metrics, truncate_metrics
from mlfo.train.pretrain import trainer_config
from mlfo.train.seeding import derive_seed, get_rng_state, set_rng_state


def batches(sampler: ResumableDistributedSampler, batch_size: int) -> list[list[int]]:
    items = list(sampler)
    assert all(epoch == sampler.epoch for epoch, _ in items)
    indices = [i for _, i in items]
    return [indices[k : k + batch_size] for k in range(0, len(indices) - batch_size + 1, batch_size)]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_single_process_batches_exactly(world):
    data = list(range(23))
    local = 2
    single = ResumableDistributedSampler(data, num_replicas=1, rank=0, seed=5)
    ranks = [ResumableDistributedSampler(data, num_replicas=world, rank=r, seed=5) for r in range(world)]
    for epoch in (0, 1):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        global_batches = batches(single, local * world)
        per_rank = [batches(s, local) for s in ranks]
        steps = min(len(b) for b in per_rank)
        for step in range(steps):
            union = sorted(i for rank_batches in per_rank for i in rank_batches[step])
            assert union == sorted(global_batches[step])
    single.set_epoch(0)
    first = [i for _, i in single]
    single.set_epoch(1)
    assert [i for _, i in single] != first  # reshuffled every epoch


def test_start_skips_consumed_samples():
    sampler = ResumableDistributedSampler(list(range(20)), num_replicas=2, rank=1, seed=0)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_start(8)  # 8 samples of the global order consumed: 4 of this rank's
    assert list(sampler) == full[4:] and len(sampler) == len(full) - 4


@pytest.mark.parametrize("layout", [(1, 3), (3, 2), (2, 5)])
def test_a_new_layout_continues_at_the_exact_next_sample(layout):
    """Resume after 3 steps of 2 ranks x 2 videos with another world size / batch size:
    the new ranks' batches continue the one global order where the old run stopped."""
    data = list(range(29))
    single = ResumableDistributedSampler(data, num_replicas=1, rank=0, seed=7)
    single.set_epoch(2)
    order = [i for _, i in single]
    consumed = 3 * 2 * 2
    world, local = layout
    ranks = [ResumableDistributedSampler(data, num_replicas=world, rank=r, seed=7) for r in range(world)]
    for s in ranks:
        s.set_epoch(2)
        s.set_start(consumed)
    per_rank = [batches(s, local) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1  # every rank takes as many steps
    for step in range(len(per_rank[0])):
        begin = consumed + step * world * local
        assert sorted(i for b in per_rank for i in b[step]) == sorted(order[begin : begin + world * local])


def learning_rate(cfg, progress: float, steps_per_epoch: int) -> float:
    """The pretraining rate at ``progress`` epochs, as the engine sets it."""
    return cfg.optim.lr * learning_rate_factor(trainer_config(cfg), progress, steps_per_epoch)


def test_learning_rate_schedules():
    cfg = load_config("demo_cpu", ["optim.lr=1.0", "optim.lr_decay_epochs=[2, 4]", "train.epochs=6"])
    assert [learning_rate(cfg, e, 10) for e in (0, 1.99, 2, 3.5, 4, 5.9)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    cfg = load_config("demo_cpu", ["optim.lr=1.0", "optim.schedule=cosine", "optim.warmup_epochs=1", "train.epochs=5"])
    # Warmup: the step at progress p of an epoch of 4 steps gets (p + 1/4) / 1 of the rate,
    # so the first step already moves and the last warmup step reaches the full rate.
    assert learning_rate(cfg, 0.0, 4) == pytest.approx(0.25)
    assert learning_rate(cfg, 0.75, 4) == pytest.approx(1.0)
    assert learning_rate(cfg, 1.0, 4) == pytest.approx(1.0)
    assert learning_rate(cfg, 3.0, 4) == pytest.approx(0.5)
    assert learning_rate(cfg, 5.0, 4) == pytest.approx(0.0, abs=1e-12)


def test_atomic_save_keep_k_and_resume_lookup(tmp_path):
    for epoch in range(1, 6):
        atomic_torch_save({"epoch": epoch}, tmp_path / epoch_checkpoint_name(epoch))
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    prune_epoch_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_0004.pt", "epoch_0005.pt"]
    assert load_checkpoint(tmp_path / "epoch_0005.pt")["epoch"] == 5

    assert find_resume_path("auto", tmp_path) is None  # nothing to resume: a fresh start
    atomic_torch_save({"epoch": 9}, tmp_path / "last.pt")
    assert find_resume_path("auto", tmp_path) == tmp_path / "last.pt"
    assert find_resume_path(str(tmp_path), tmp_path / "elsewhere") == tmp_path / "last.pt"
    with pytest.raises(MLFOError, match="no checkpoint to resume from"):
        find_resume_path(str(tmp_path / "nope.pt"), tmp_path)
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04 half a file")
    with pytest.raises(MLFOError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "torn.pt")


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "last.pt"
    atomic_torch_save({"v": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"v": Unpicklable()}, target)
    assert load_checkpoint(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_metrics_truncation_drops_steps_after_the_checkpoint_and_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": float(s)}) + "\n" for s in range(1, 6)) + '{"step": 6, "lo')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]
    truncate_metrics(path, 3)
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_seeds_and_rng_states():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
    state = get_rng_state()
    a = torch.rand(3)
    set_rng_state(state)
    assert torch.equal(torch.rand(3), a)
