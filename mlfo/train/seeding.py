"""Seeds and random-number-generator states.

Every random choice of a training step is keyed, not streamed. ``derive_seed(seed, name,
*keys)`` is the one way a random stream gets its seed: the run's seed, the stream's name
and its keys, e.g.

    derive_seed(seed, "order", epoch)            the data order of an epoch (the sampler)
    derive_seed(seed, "clips", epoch, index)     a video's frames, crop and flip (the dataset)
    derive_seed(seed, "colour", epoch, index)    a video's colour augmentation (the method)
    derive_seed(seed, "loader", rank)            the DataLoader's base seed of a rank
    derive_seed(base, "worker", worker_id)       numpy's global generator in a worker
    derive_seed(seed, "holdout" | "probe order" | "probe init")   the linear probe

Keys are hashed as a tuple, never added: seed 0's epoch 1 is not seed 1's epoch 0, two
streams of one key never share a seed, and a stream is the same wherever it is drawn.
So a resumed run, a run with more workers and a run on more processes see the same clips.
"""

from __future__ import annotations

import hashlib
import random
import sys

import numpy as np
import torch

_INT, _STR = 0, 1  # type tags: an int key and a name never encode alike


def _words(key: int | str) -> list[int]:
    """A key as three 32-bit words: its type tag, then 64 bits (an int modulo 2**64, a
    name's sha256)."""
    if isinstance(key, str):
        tag, value = _STR, int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    else:
        tag, value = _INT, int(key) % 2**64
    return [tag, value & 0xFFFFFFFF, value >> 32]


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed that depends on ``seed`` and every key, in order (numpy's SeedSequence
    over the keys' words, led by their count, so a shorter tuple is no prefix of a longer)."""
    words = [1 + len(keys)]
    for key in (seed, *keys):
        words += _words(key)
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> 1)


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
    np.random.seed(derive_seed(base, "worker", worker_id) % 2**32)


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
    _set_cuda_states(state.get("cuda") or [])


def _set_cuda_states(saved: list) -> None:
    """Restore the CUDA generators of the devices this process sees, one per saved state.

    A process may see fewer devices than the one that saved (8 GPUs resumed with
    ``CUDA_VISIBLE_DEVICES=0``, or 1 x 8 resumed as 2 x 4): the extra states are left
    out with a note (pretraining never draws from the CUDA generators)."""
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for device, cuda_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(cuda_state.cpu(), device)
    if len(saved) > visible:
        print(f"mlfo: the checkpoint holds the CUDA generator states of {len(saved)} device(s), this process "
              f"sees {visible}: restored {min(visible, len(saved))}, the rest left out", file=sys.stderr)


def _tuples(value):
    """random.setstate needs tuples; a state that went through lists is turned back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
