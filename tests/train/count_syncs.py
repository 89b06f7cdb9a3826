"""``mlfo`` CLI (argv) in this process, counting the host synchronisations of every
training step as the engine runs it (``Trainer.train_step``); run under torchrun by
test_host_syncs.py. Writes ``out_dir/syncs-rank<R>.json``: per step, each counted call
with the mlfo (or test) line it came from.

Counted, because each makes the host wait for the device on a GPU:
- host reads of a tensor: ``item``, ``tolist``, ``cpu``, ``numpy``, ``bool()``, ``int()``,
  ``float()``;
- tensors created on the device from host values (``torch.tensor`` / ``torch.as_tensor``
  with a ``device``, ``Tensor.new_tensor``): a pageable copy synchronises the stream;
- collectives that block the host on any backend: ``barrier`` and the object collectives.
Tensor collectives (``all_gather``, ``all_reduce``, ...) are queued on the device by NCCL
and only block when a host read waits for them; they are listed apart ("collectives").
A read of a tensor that a GPU run keeps on the host is no sync and is not counted: the
batch from the loader, the optimizer's step counters (torch keeps them on the CPU unless
``capturable``/``fused``) and what ``cpu()`` / ``numpy()`` returned.
``MLFO_FAIL_VIDEO``: video file names (comma-separated) that fail to decode (replaced by the loader).
"""

import json
import os
import sys
import traceback
import weakref
from pathlib import Path

import torch
import torch.distributed as dist

import mlfo.data.datasets as datasets
from mlfo.cli import main
from mlfo.errors import VideoDecodeError
from mlfo.train.engine import Trainer

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__")
BLOCKING = ("barrier", "monitored_barrier", "all_gather_object", "broadcast_object_list", "gather_object",
            "scatter_object_list")
COLLECTIVES = ("all_gather", "all_gather_into_tensor", "all_reduce", "broadcast", "reduce", "gather", "scatter",
               "reduce_scatter", "reduce_scatter_tensor", "all_to_all", "all_to_all_single")
_state = {"on": False, "calls": None}
_host: dict[int, weakref.ref] = {}  # id -> tensor that lives on the host in a GPU run too


def mark_host(t) -> None:
    if isinstance(t, torch.Tensor):
        _host[id(t)] = weakref.ref(t)


def on_device(t, *args, **kwargs) -> bool:
    ref = _host.get(id(t))
    return ref is None or ref() is not t


def _site() -> str:
    """The innermost frame of mlfo or of this test: where the sync was asked for."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        if "/mlfo/" in frame.filename or "/tests/" in frame.filename:
            return f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
    return "?"


def _counting(kind: str, name: str, real, when=lambda *a, **k: True):
    def hooked(*args, **kwargs):
        if _state["on"] and when(*args, **kwargs):
            _state["on"] = False  # the hook's own work is not counted
            try:
                _state["calls"].append([kind, name, _site()])
            finally:
                _state["on"] = True
        out = real(*args, **kwargs)
        if name in ("cpu", "numpy"):
            mark_host(out)
        return out
    return hooked


def install() -> None:
    for name in READS:
        setattr(torch.Tensor, name, _counting("read", name, getattr(torch.Tensor, name), on_device))
    with_device = lambda *a, **k: k.get("device") is not None  # noqa: E731
    torch.tensor = _counting("creation", "torch.tensor", torch.tensor, with_device)
    torch.as_tensor = _counting("creation", "torch.as_tensor", torch.as_tensor, with_device)
    torch.Tensor.new_tensor = _counting("creation", "new_tensor", torch.Tensor.new_tensor)
    for names, kind in ((BLOCKING, "blocking"), (COLLECTIVES, "collective")):
        for name in names:
            if hasattr(dist, name):
                setattr(dist, name, _counting(kind, name, getattr(dist, name)))


def counted_train_step(real_step):
    steps = []

    def train_step(self, batch, epoch, progress):
        for t in batch.values():
            mark_host(t)
        for state in self.optimizer.state.values():
            mark_host(state.get("step"))
        _state["calls"], _state["on"] = [], True
        try:
            return real_step(self, batch, epoch, progress)
        finally:
            _state["on"] = False
            steps.append(_state["calls"])
            (self.out_dir / f"syncs-rank{self.ctx.rank}.json").write_text(json.dumps(steps))

    return train_step


def failing_open(real_open, names: str):
    def open_video(path, *args, **kwargs):
        if Path(path).name in names.split(","):
            raise VideoDecodeError(f"{path}: decoding failed (Invalid data found when processing input)")
        return real_open(path, *args, **kwargs)
    return open_video


if __name__ == "__main__":
    install()
    Trainer.train_step = counted_train_step(Trainer.train_step)
    if os.environ.get("MLFO_FAIL_VIDEO"):
        datasets.open_video = failing_open(datasets.open_video, os.environ["MLFO_FAIL_VIDEO"])
    sys.exit(main(sys.argv[1:]))
