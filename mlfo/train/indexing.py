"""The training data's index across processes: built once per node, before any process
group exists, and shared with the node's other processes through the scan cache.

Probing a large dataset for the first time takes minutes (every video is opened). Were
it done while the other ranks wait in a collective, NCCL's watchdog (10 minutes by
default) would kill the run, and a probing pool forked from a process that holds
communicators is fragile. So each node's first process indexes before joining the
group; the others join at once and wait in the group's rendezvous, whose timeout is
``train.dist_timeout_min``, then read the cache it wrote.
"""

from __future__ import annotations

import os
import sys

from mlfo.config import Config, DataConfig
from mlfo.distributed import leads_its_node
from mlfo.errors import MLFOError


def load_training_index(d: DataConfig, *, progress: bool, workers: int | None = None):
    """``load_index`` of ``data.train`` (cached; ``workers`` probing processes, default
    ``load_index``'s)."""
    from mlfo.data.sources import load_index

    if not d.train:
        raise MLFOError("data.train: no training data given (a CSV, a folder of videos or a dataset root)")
    if d.backend == "torchcodec":  # before probing, which would call every video unreadable
        from mlfo.data.readers.torchcodec import require_torchcodec

        try:
            require_torchcodec()
        except MLFOError as err:
            raise MLFOError(f"data.{err}") from None
    options = {} if workers is None else {"workers": workers}
    return load_index(d.train, fmt=d.fmt, split=d.split, subset="train", split_dir=d.split_dir,
                      backend=d.backend, progress=progress, **options)


def index_training_data(cfg: Config):
    """This node's index, in the node's first process (call it before the process group
    exists); None in the node's other processes, which read the cache once in the group.
    Missing demo data (``data.generate_demo``) is written by rank 0 alone, and every
    other rank reads it (and its index) once in the group."""
    from mlfo.data.demo import ensure_demo_source

    d = cfg.data
    first = int(os.environ.get("RANK", "0")) == 0
    if d.train and not os.path.exists(d.train):
        if not first:
            return None
        ensure_demo_source(d.train, generate=d.generate_demo)  # writes the demo data, or one line
    if not leads_its_node():
        return None
    index = load_training_index(d, progress=first)
    if index.cache_path is None and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        print(f"mlfo: could not write the scan cache of {d.train}: the node's other processes "
              "probe every video again, one by one", file=sys.stderr)
    return index
