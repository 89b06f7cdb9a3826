"""Seeds and random-number-generator states.

Every random choice of a training step is keyed, not streamed: the data order is a pure
function of (seed, epoch) and each video's augmentation of (seed, epoch, video index).
So a resumed run, a run with more workers and a run on more processes all see the same
clips, and no two videos (hence no two ranks or workers) share a random stream.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (order matters), via numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices): used once, before building the model,
    with the same seed on every rank so that every rank starts from the same weights."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a distinct global stream per (rank, worker).

    torch already gives each worker ``base_seed + worker_id`` (and base_seed differs per
    rank and epoch); python and numpy are derived from it so that any code relying on the
    global generators is not identical across workers.
    """
    base = torch.initial_seed()
    random.seed(base)
    np.random.seed(derive_seed(base, worker_id) % 2**32)


def get_rng_state() -> dict:
    """Python, numpy, torch CPU and (when present) CUDA generator states of this process, as
    plain containers and CPU tensors: a checkpoint holding them loads with
    ``torch.load(weights_only=True)``."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                  "pos": int(numpy_state["state"]["pos"]),
                  "has_gauss": int(numpy_state["has_gauss"]), "gauss": float(numpy_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict) -> None:
    """Restore ``get_rng_state()``; tensors loaded onto another device come back to the CPU
    first (``torch.set_rng_state`` takes only a CPU ByteTensor)."""
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].cpu().numpy().astype(np.uint32), "pos": int(n["pos"])},
                         "has_gauss": int(n["has_gauss"]), "gauss": float(n["gauss"])})
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuples(value):
    """random.setstate needs tuples; a state that went through lists is turned back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
