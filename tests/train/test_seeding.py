"""Random streams keyed by tuples (``derive_seed``), and RNG states restored on fewer GPUs."""

import pytest
import torch

from mlfo.data.loading import ResumableDistributedSampler
from mlfo.train.seeding import derive_seed, get_rng_state, set_rng_state


def _order(seed: int, epoch: int, n: int = 64) -> list[int]:
    sampler = ResumableDistributedSampler(list(range(n)), num_replicas=1, rank=0, seed=seed)
    sampler.set_epoch(epoch)
    return [i for _, i in sampler]


def test_seed_0_epoch_1_is_not_seed_1_epoch_0():
    """Independent seeds share no data order (``seed + epoch`` made these equal)."""
    assert _order(0, 1) != _order(1, 0)
    assert _order(0, 2) != _order(1, 1) != _order(2, 0)
    assert _order(3, 1) == _order(3, 1)  # the same key: the same order, every time


def test_derive_seed_keys_are_a_tuple():
    assert derive_seed(0, "order", 1) == derive_seed(0, "order", 1)
    distinct = [derive_seed(0, "order", 1), derive_seed(1, "order", 0), derive_seed(0, "clips", 1),
                derive_seed(0, "order", 1, 0), derive_seed(0, "order"), derive_seed(0, 1, "order"),
                derive_seed(2**32, "order", 1), derive_seed(0, "order", 2**32 + 1)]
    assert len(set(distinct)) == len(distinct)  # order, length, type and width of the keys count
    assert all(0 <= s < 2**63 for s in distinct)
    a = torch.Generator().manual_seed(derive_seed(0, "colour", 0, 5))
    b = torch.Generator().manual_seed(derive_seed(0, "clips", 0, 5))
    assert not torch.equal(torch.rand(8, generator=a), torch.rand(8, generator=b))


def _fake_devices(monkeypatch, count: int) -> list[int]:
    """Pretend CUDA is there with ``count`` devices; setting a generator state of a device
    that does not exist raises IndexError, as torch does."""
    restored = []

    def set_state(state, device=0):
        if int(device) >= count:
            raise IndexError("list index out of range")
        restored.append(int(device))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_state)
    monkeypatch.setattr(torch.cuda, "_lazy_call", lambda fn, **kw: fn(), raising=False)
    return restored


@pytest.mark.parametrize("visible", [0, 1, 4])
def test_rng_states_of_more_gpus_than_visible_restore_what_exists(monkeypatch, capsys, visible):
    state = get_rng_state()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8) for _ in range(8)]  # saved on 8 GPUs
    a = torch.rand(3)
    restored = _fake_devices(monkeypatch, visible)
    set_rng_state(state)
    assert restored == list(range(visible))
    assert torch.equal(torch.rand(3), a)  # the CPU generators came back
    assert "CUDA generator states of 8 device(s), this process sees " f"{visible}" in capsys.readouterr().err


def test_rng_states_of_as_many_gpus_restore_silently(monkeypatch, capsys):
    restored = _fake_devices(monkeypatch, 2)
    set_rng_state({**get_rng_state(), "cuda": [torch.zeros(16, dtype=torch.uint8)] * 2})
    assert restored == [0, 1] and capsys.readouterr().err == ""


def test_the_linear_probe_draws_its_init_and_its_order_from_different_streams(monkeypatch):
    """Seeding a generator and the global generator with one seed gives one stream twice."""
    from mlfo.eval import linear

    seeds = []
    real_perm, real_seed = torch.randperm, torch.manual_seed
    monkeypatch.setattr(torch, "randperm", lambda n, generator: seeds.append(("order", generator.initial_seed()))
                        or real_perm(n, generator=generator))
    monkeypatch.setattr(torch, "manual_seed", lambda s: seeds.append(("init", s)) or real_seed(s))
    x, y = torch.randn(12, 4), torch.arange(12) % 3
    linear._train(x, y, 3, 0.1, 0.0, linear.LinearProbeConfig(epochs=1, seed=7, batch_size=4), 1)
    assert dict(seeds) == {"order": derive_seed(7, "probe order"), "init": derive_seed(7, "probe init")}
