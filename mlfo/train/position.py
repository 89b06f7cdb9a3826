"""Where a run stands in its data order: the checkpoint's ``sampler`` block, written and
checked on resume, so that a resumed run continues at exactly the next sample or refuses.

The order is one permutation of the usable videos per (seed, epoch)
(``mlfo.data.loading.ResumableDistributedSampler``) and a position is (epoch, global
samples consumed), so any world size or batch size can continue from it, provided the
permutation is the same: the same seed over the same number of videos.
"""

from __future__ import annotations

from pathlib import Path

from mlfo.errors import MLFOError

_KEYS = ("seed", "epoch", "samples", "batch_size", "world_size")


def sampler_block(*, seed: int, epoch: int, samples: int, batch_size: int, world_size: int,
                  dataset_size: int) -> dict:
    return {"seed": seed, "epoch": epoch, "samples": samples, "batch_size": batch_size,
            "world_size": world_size, "dataset_size": dataset_size}


def restore_position(state: dict, path: Path, *, seed: int, dataset_size: int) -> tuple[int, int]:
    """(epoch, samples consumed in it) of a checkpoint, after checking that this run's data
    order is the one the checkpoint was written in; an ``MLFOError`` naming the file otherwise."""
    block = state.get("sampler")
    if not isinstance(block, dict) or any(not isinstance(block.get(k), int) for k in _KEYS):
        raise MLFOError(f"{path}: the checkpoint's sampler block is missing or incomplete "
                        f"(needs integer {', '.join(_KEYS)})")
    if block["seed"] != seed:
        raise MLFOError(f"{path}: written with train.seed={block['seed']}, this run has train.seed={seed}: "
                        f"the data order would differ, so it cannot continue exactly (resume with "
                        f"train.seed={block['seed']})")
    saved_size = block.get("dataset_size")  # absent in checkpoints written before it was recorded
    if saved_size is not None and saved_size != dataset_size:
        raise MLFOError(f"{path}: written for {saved_size} usable training videos, this run has "
                        f"{dataset_size}: the data order would differ, so it cannot continue exactly "
                        "(restore the data, or start a new run with another --out)")
    epoch, samples = block["epoch"], block["samples"]
    if epoch != state.get("epoch") or not 0 <= samples <= dataset_size:
        raise MLFOError(f"{path}: inconsistent position (epoch {state.get('epoch')}, sampler at epoch "
                        f"{epoch}, sample {samples} of {dataset_size}): a damaged checkpoint")
    return epoch, samples


def layout_note(state: dict, path: Path, batch_size: int, world_size: int) -> str | None:
    """One line when the run continues with another batch layout than the checkpoint's."""
    block = state["sampler"]
    old = (block["batch_size"], block["world_size"])
    if old == (batch_size, world_size):
        return None
    return (f"mlfo: {path} was written with {old[0]} videos x {old[1]} process(es) per step, this run "
            f"takes {batch_size} x {world_size}: it continues at sample {block['samples']} of epoch "
            f"{block['epoch']}")
