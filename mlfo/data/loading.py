"""Batches from keyed datasets: the one loader of pretraining, fine-tuning and extraction.

One rule for a video that fails to decode, everywhere: the item is dropped from its batch
and named. ``SkippingDataset`` turns the exception into a marker, ``collate`` puts
``skipped = [(index, reason), ...]`` beside the stacked good items, and ``SkipLog``
prints one line per video, keeps the list for the run's summary and counts it. A batch
can therefore hold fewer videos than asked; losses and metrics are means over what is
there, and distributed training skips a step only when some rank has nothing.

``ResumableDistributedSampler`` gives each rank its share of one permutation per epoch
and can start mid-epoch after any number of consumed samples, so a resumed run (even with
another world size or batch size) continues at the exact next sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from mlfo.data.datasets import item_key
from mlfo.train.seeding import derive_seed


def describe(err: BaseException, path: str = "") -> str:
    """One line for an exception, without the file name the message may start with."""
    text = str(err).splitlines()[0] if str(err) else ""
    if path and text.startswith(f"{path}: "):
        text = text[len(path) + 2:]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class SkippingDataset(Dataset):
    """``dataset[key]``, or ``{"skipped": (index, reason)}`` when the item raises."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except Exception as err:  # noqa: BLE001 - any bad file is skipped, never fatal
            index = item_key(key)[1]
            records = getattr(self.dataset, "records", None)
            path = records[index].path if records is not None else ""
            return {"skipped": (index, describe(err, path))}


def collate(batch: list[dict]) -> dict:
    """Stack the good items; ``skipped`` lists ``(index, reason)`` of the others.

    Tensors whose first dimension differs between items (sliding-window views) are
    concatenated along it instead, and ``<key>_counts`` gives each item's share. Ints and
    floats become tensors; anything else stays a list.
    """
    skipped = [item["skipped"] for item in batch if "skipped" in item]
    items = [item for item in batch if "skipped" not in item]
    out: dict = {"skipped": skipped}
    for key in items[0] if items else ():
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
) -> DataLoader:
    """A DataLoader over ``SkippingDataset(dataset)`` with ``collate`` (in order unless a
    sampler is given)."""
    return DataLoader(
        SkippingDataset(dataset),
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

    def _mine(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed(derive_seed(self.seed, "order", self.epoch))
        order = torch.randperm(len(self.dataset), generator=g).tolist()[self.start : self.total_size]
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

    def add(self, skipped: list[tuple[int, str]]) -> int:
        """Record a batch's ``skipped`` list; returns how many it held."""
        for index, reason in skipped:
            path = self.records[index].path if self.records is not None else f"item {index}"
            self.entries.append({"path": path, "reason": reason})
            self.write(f"mlfo: skipped unreadable video{self.where}: {path} ({reason})")
        return len(skipped)

    @property
    def paths(self) -> list[str]:
        return [e["path"] for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)


def default_workers() -> int:
    """DataLoader workers when the user does not say: up to 4, never more than the cores."""
    return min(4, os.cpu_count() or 1)
