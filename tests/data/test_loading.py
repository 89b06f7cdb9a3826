"""The loader's one rule for failing items: a video that fails to decode is named and,
in training, replaced by another video of the same rank's shard (constant shapes,
deterministic); any other error stops the run; too many failures stop it in one line."""

from __future__ import annotations

import pytest
import torch

from mlfo.data.loading import (REPLACE_ATTEMPTS, ResumableDistributedSampler, ShardReplacement, SkipBound,
                               SkipLog, SkippingDataset, build_loader, epoch_order)
from mlfo.errors import MLFOError, VideoDecodeError


class Items(torch.utils.data.Dataset):
    """``[(epoch, i)] -> {"x": (2,) tensor of (epoch, i), "index": i}``; ``bad`` indices
    raise ``error`` (a bad file by default)."""

    def __init__(self, n, bad=(), error=None):
        self.n, self.bad, self.error = n, set(bad), error
        self.records = None

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        if i in self.bad:
            raise (self.error or VideoDecodeError(f"v{i}.mp4: cannot decode"))
        return {"x": torch.tensor([epoch, i]), "index": i}


def _shard(seed, n, world, rank, epoch):
    sampler = ResumableDistributedSampler(list(range(n)), world, rank, seed)
    sampler.set_epoch(epoch)
    return [i for _, i in sampler]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_replacement_comes_from_the_failed_videos_shard_and_is_deterministic(world):
    n, seed = 23, 4
    replace = ShardReplacement(seed, n, world)
    for epoch in (0, 1):
        for rank in range(world):
            shard = _shard(seed, n, world, rank, epoch)
            for index in shard:
                picks = {replace(epoch, index, attempt) for attempt in range(4)}
                assert picks <= set(shard) - {index}
                assert [replace(epoch, index, a) for a in range(4)] == \
                    [ShardReplacement(seed, n, world)(epoch, index, a) for a in range(4)]  # a fresh worker
    # another epoch (another order) gives other picks
    assert [replace(0, i, 0) for i in range(n)] != [replace(1, i, 0) for i in range(n)]
    assert epoch_order(seed, 0, n) != epoch_order(seed, 1, n)


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_keep_their_size_and_name_the_failed_videos(workers):
    n, world, batch = 20, 2, 3
    bad = {2, 7, 11}
    seen_skipped, sizes = [], []
    for rank in range(world):
        sampler = ResumableDistributedSampler(list(range(n)), world, rank, seed=1)
        loader = build_loader(Items(n, bad), batch_size=batch, sampler=sampler, num_workers=workers,
                              drop_last=True, replace=sampler.replacement())
        shard = set(_shard(1, n, world, rank, 0))
        for b in loader:
            sizes.append(b["x"].shape[0])
            seen_skipped += [i for i, _ in b["skipped"]]
            assert not bad & set(b["index"].tolist()) and set(b["index"].tolist()) <= shard
            assert b["x"][:, 1].tolist() == b["index"].tolist()  # the replacement's own item
    assert sizes == [batch] * (2 * (n // world // batch))
    in_batches = {i for rank in range(world) for i in _shard(1, n, world, rank, 0)[: n // world // batch * batch]}
    assert set(seen_skipped) <= bad and bad & in_batches <= set(seen_skipped)  # a replacement may fail too
    lines = []
    log = SkipLog(None, write=lines.append)
    assert log.add([(7, "VideoDecodeError: cannot decode")]) == 1
    assert lines == ["mlfo: skipped unreadable video: item 7 (VideoDecodeError: cannot decode)"]


def test_evaluation_drops_a_failed_video_instead():
    batch = next(iter(build_loader(Items(5, {1}), batch_size=5)))
    assert batch["index"].tolist() == [0, 2, 3, 4] and [i for i, _ in batch["skipped"]] == [1]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_programming_error_is_not_a_skipped_video(workers):
    sampler = ResumableDistributedSampler(list(range(6)), 1, 0, seed=0)
    loader = build_loader(Items(6, {0, 1, 2, 3, 4, 5}, error=KeyError("clips")), batch_size=2,
                          sampler=sampler, num_workers=workers, replace=sampler.replacement())
    with pytest.raises(KeyError, match="clips"):
        next(iter(loader))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_misconfiguration_in_a_worker_stops_in_one_line(workers):
    """E.g. data.backend=torchcodec without torchcodec: the reader raises MLFOError (not a
    decode error); the main process raises it as the one line it was, not a worker traceback."""
    error = MLFOError("backend: torchcodec is not usable here (no module); use backend 'pyav'")
    sampler = ResumableDistributedSampler(list(range(6)), 1, 0, seed=0)
    loader = build_loader(Items(6, {0, 1, 2, 3, 4, 5}, error=error), batch_size=2, sampler=sampler,
                          num_workers=workers, replace=sampler.replacement())
    batch = next(iter(loader))
    with pytest.raises(MLFOError) as raised:
        SkipLog(None, write=lambda line: None).add(batch["skipped"])
    assert str(raised.value) == str(error) and "\n" not in str(raised.value)


def test_a_shard_of_unreadable_videos_stops_the_run():
    item = SkippingDataset(Items(10, range(10)), ShardReplacement(0, 10, 1))[(0, 3)]
    assert set(item) == {"skipped"} and len(item["skipped"]) == REPLACE_ATTEMPTS + 2
    index, stop = item["skipped"][-1]
    assert isinstance(stop, MLFOError) and "replacement videos of its shard failed to decode" in str(stop)
    lines = []
    with pytest.raises(MLFOError, match="item 3: it and 8 replacement"):
        SkipLog(None, write=lines.append).add(item["skipped"])
    assert len(lines) == REPLACE_ATTEMPTS + 1  # every failed video named before the stop


def test_a_shard_of_one_failing_video_stops_in_one_line():
    item = SkippingDataset(Items(2, {0}), ShardReplacement(0, 2, 2))[(0, 0)]
    assert [i for i, _ in item["skipped"]] == [0] * (REPLACE_ATTEMPTS + 2)  # 9 tries, then the stop
    assert isinstance(item["skipped"][-1][1], MLFOError)


def test_skip_bound_counts_per_epoch():
    bound = SkipBound(0.05, 100, "train.csv")
    bound.add(0, 3)
    bound.add(0, 2)  # 5 of 100: allowed
    bound.add(1, 5)  # a new epoch starts from 0
    with pytest.raises(MLFOError, match=r"data.max_skipped_share: 6 videos of train.csv failed to decode in "
                                        r"epoch 1, more than 0.05 of its 100"):
        bound.add(1, 1)
    SkipBound(0.0, 100).add(0, 0)
    with pytest.raises(MLFOError):
        SkipBound(0.0, 100).add(0, 1)
