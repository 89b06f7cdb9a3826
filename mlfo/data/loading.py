"""Batches from keyed datasets: the one loader of pretraining, fine-tuning and extraction.

One rule for a failing item, everywhere: only a video that fails to decode
(``SKIPPABLE``: ``VideoDecodeError``, what the readers raise for a bad file) is skipped,
named and counted; anything else stops the run (a programming error with its traceback;
a misconfiguration met in a DataLoader worker, e.g. ``data.backend: torchcodec`` without
torchcodec, as its one-line ``MLFOError``, carried in ``skipped`` as the reason of its item
and raised in the main process by ``SkipLog.add``).

Training keeps constant shapes: ``SkippingDataset(replace=...)`` swaps a failed video for
another video of the same rank's shard (``ShardReplacement``, a pure function of the
epoch, the failed index and the attempt, so a resumed run draws the same one), so every
step has the same local batch on every rank and the losses' gathers exchange no row
counts. Extraction and evaluation (no ``replace``) drop the item from its batch instead:
``collate`` puts ``skipped = [(index, reason), ...]`` beside the stacked good items.
Either way ``SkipLog`` prints one line per failed video, keeps the list for the run's
summary and counts it; ``SkipBound`` stops a run whose failures pass a share of an epoch.

``ResumableDistributedSampler`` gives each rank its share of one permutation per epoch
and can start mid-epoch after any number of consumed samples, so a resumed run (even with
another world size or batch size) continues at the exact next sample.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mlfo.data.datasets import item_key
from mlfo.errors import MLFOError, VideoDecodeError
from mlfo.train.seeding import derive_seed

# What a bad video file raises (the readers wrap FFmpeg's errors; one may still escape).
SKIPPABLE = (VideoDecodeError, av.FFmpegError)
REPLACE_ATTEMPTS = 8  # replacements tried for one item before the run stops


def describe(err: BaseException, path: str = "") -> str:
    """One line for an exception, without the file name the message may start with."""
    text = str(err).splitlines()[0] if str(err) else ""
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The one permutation of ``n`` items for (seed, epoch) that every rank deals from."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, "order", epoch))
    return torch.randperm(n, generator=g).tolist()


class ShardReplacement:
    """``(epoch, failed index, attempt) -> index``: another video of the failed one's shard.

    The shard is the failed video's lane of the epoch's permutation (positions equal to
    its own modulo the number of ranks, as ``ResumableDistributedSampler`` deals them),
    so a rank only ever decodes videos of its own share. The pick is drawn from
    (seed, epoch, failed index, attempt): the same in a resumed run, in any worker.
    """

    def __init__(self, seed: int, num_items: int, num_replicas: int):
        self.seed, self.num_items, self.num_replicas = seed, num_items, num_replicas
        self.total = num_items // num_replicas * num_replicas  # the sampler's drop_last size
        self._cached: tuple[int, np.ndarray, np.ndarray] | None = None  # (epoch, order, position)

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cached is None or self._cached[0] != epoch:
            order = np.asarray(epoch_order(self.seed, epoch, self.num_items))
            position = np.empty_like(order)
            position[order] = np.arange(len(order))
            self._cached = (epoch, order, position)
        return self._cached[1], self._cached[2]

    def __call__(self, epoch: int, index: int, attempt: int) -> int:
        order, position = self._order(epoch)
        lane = int(position[index]) % self.num_replicas
        shard = order[lane : self.total : self.num_replicas]
        others = shard[shard != index]
        if len(others) == 0:  # a shard of one video: it fails again, and the run stops
            others = shard
        rng = np.random.default_rng(derive_seed(self.seed, "replace", epoch, index, attempt))
        return int(others[rng.integers(len(others))])


class SkippingDataset(Dataset):
    """``dataset[key]`` with the failures it met in ``"skipped"``: ``[(index, reason)]``.

    Without ``replace`` a failed item is only ``{"skipped": [...]}`` (``collate`` drops
    it). With ``replace`` (training) a failed video is swapped for ``replace(epoch,
    index, attempt)``; after ``REPLACE_ATTEMPTS`` failed replacements the run stops. A
    non-decode ``MLFOError`` travels as the reason ``(index, err)`` so that ``SkipLog.add``
    raises it in the main process as one line (a DataLoader worker would add its
    traceback); any other exception propagates with its traceback.
    """

    def __init__(self, dataset, replace: Callable[[int, int, int], int] | None = None):
        self.dataset, self.replace = dataset, replace

    def __len__(self) -> int:
        return len(self.dataset)

    def _path(self, index: int) -> str:
        records = getattr(self.dataset, "records", None)
        return records[index].path if records is not None else ""

    def __getitem__(self, key):
        epoch, index = item_key(key)
        keyed = isinstance(key, (tuple, list))
        skipped: list[tuple[int, str]] = []
        for attempt in range(REPLACE_ATTEMPTS + 1 if self.replace is not None else 1):
            try:
                item = self.dataset[(epoch, index) if keyed else index]
            except SKIPPABLE as err:
                skipped.append((index, describe(err, self._path(index))))
                if self.replace is not None:
                    index = self.replace(epoch, item_key(key)[1], attempt)
                continue
            except MLFOError as err:
                return {"skipped": [*skipped, (index, err)]}
            return {**item, "skipped": skipped} if skipped else item
        if self.replace is None:
            return {"skipped": skipped}
        first = self._path(skipped[0][0]) or f"item {skipped[0][0]}"
        stop = MLFOError(f"{first}: it and {REPLACE_ATTEMPTS} replacement videos of its shard failed "
                         "to decode; is the data readable at all?")
        return {"skipped": [*skipped, (index, stop)]}


def collate(batch: list[dict]) -> dict:
    """Stack the good items; ``skipped`` lists ``(index, reason)`` of every failure.

    Tensors whose first dimension differs between items (sliding-window views) are
    concatenated along it instead, and ``<key>_counts`` gives each item's share. Ints and
    floats become tensors; anything else stays a list.
    """
    skipped = [entry for item in batch for entry in item.get("skipped", ())]
    items = [item for item in batch if set(item) != {"skipped"}]
    out: dict = {"skipped": skipped}
    for key in items[0] if items else ():
        if key == "skipped":
            continue
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            if all(v.shape == first.shape for v in values):
                out[key] = torch.stack(values)
            else:
                out[key] = torch.cat(values)
                out[f"{key}_counts"] = torch.tensor([v.shape[0] for v in values])
        elif isinstance(first, (bool, int, float)):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


def batch_size_of(batch: dict) -> int:
    """Number of good items in a collated batch."""
    index = batch.get("index")
    return 0 if index is None else int(index.shape[0])


def build_loader(
    dataset,
    *,
    batch_size: int,
    sampler=None,
    num_workers: int = 0,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int = 2,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    worker_init_fn: Callable | None = None,
    replace: Callable[[int, int, int], int] | None = None,
) -> DataLoader:
    """A DataLoader over ``SkippingDataset(dataset, replace)`` with ``collate`` (in order
    unless a sampler is given)."""
    return DataLoader(
        SkippingDataset(dataset, replace),
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        worker_init_fn=worker_init_fn,
        generator=generator,
    )


class ResumableDistributedSampler(DistributedSampler):
    """Yields ``(epoch, index)``: rank r's share of one permutation seeded by (seed, epoch).

    The permutation's positions ``start, start + 1, ...`` are dealt out round robin, so W
    ranks with local batch b together cover exactly the global batch of one process with
    batch W x b, and ``set_start(consumed)`` resumes after ``consumed`` samples of the
    global order whatever the layout that consumed them. Every rank gets the same number
    of samples. The epoch travels with every index, so persistent DataLoader workers need
    no state update.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, consumed: int) -> None:
        self.start = int(consumed)

    def replacement(self) -> ShardReplacement:
        """Where a failed video of this sampler's keys is replaced from (its own shard)."""
        return ShardReplacement(self.seed, len(self.dataset), self.num_replicas)

    def _mine(self) -> list[int]:
        order = epoch_order(self.seed, self.epoch, len(self.dataset))[self.start : self.total_size]
        usable = len(order) // self.num_replicas * self.num_replicas
        return order[:usable][self.rank :: self.num_replicas]

    def __iter__(self):
        return iter([(self.epoch, i) for i in self._mine()])

    def __len__(self) -> int:
        return max(0, self.total_size - self.start) // self.num_replicas


class SkipLog:
    """The videos a run could not use: one printed line each, a list for the summary."""

    def __init__(self, records, write: Callable[[str], None] = print, where: str = ""):
        self.records, self.write, self.where = records, write, where
        self.entries: list[dict] = []  # {"path", "reason"}

    def add(self, skipped: list[tuple[int, str | BaseException]]) -> int:
        """Record a batch's ``skipped`` list; returns how many it held. A reason that is an
        exception (a configuration error met in a worker) stops the run here."""
        for index, reason in skipped:
            if isinstance(reason, BaseException):
                raise reason
            path = self.records[index].path if self.records is not None else f"item {index}"
            self.entries.append({"path": path, "reason": reason})
            self.write(f"mlfo: skipped unreadable video{self.where}: {path} ({reason})")
        return len(skipped)

    @property
    def paths(self) -> list[str]:
        return [e["path"] for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)


class SkipBound:
    """Stops a run in one line once more than ``share`` of an epoch's videos failed to
    decode: a few bad files are skipped, a broken dataset or a wrong setting is not
    trained on (``data.max_skipped_share``). Counts are global (summed over ranks), so
    every rank stops at the same step."""

    def __init__(self, share: float, videos_per_epoch: int, source: str = "the data"):
        self.share, self.videos_per_epoch, self.source = share, videos_per_epoch, source
        self.allowed = math.floor(share * videos_per_epoch)
        self.epoch, self.failed = None, 0

    def add(self, epoch: int, failed: int) -> None:
        """``failed``: videos that failed to decode in one step, over all ranks."""
        if epoch != self.epoch:
            self.epoch, self.failed = epoch, 0
        self.failed += int(failed)
        if self.failed > self.allowed:
            raise MLFOError(
                f"data.max_skipped_share: {self.failed} videos of {self.source} failed to decode in "
                f"epoch {epoch}, more than {self.share:g} of its {self.videos_per_epoch} (see the lines "
                "above); fix or remove them (mlfo data scan), or raise data.max_skipped_share")


def default_workers() -> int:
    """DataLoader workers when the user does not say: up to 4, never more than the cores."""
    return min(4, os.cpu_count() or 1)
