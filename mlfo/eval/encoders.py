"""The encoders an evaluation compares: a pretrained one and its baselines.

``resolve_encoder("random" | "torchvision:PATH" | PATH)`` and ``resolve_baselines`` give
frozen backbones with what identifies them in cards and reports (name, kind, checkpoint
path and sha256, architecture, seed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlfo.errors import MLFOError
from mlfo.eval.cards import sha256_file


@dataclass
class Encoder:
    """A frozen backbone plus what identifies it in cards and reports."""

    module: nn.Module
    info: dict  # name, kind, checkpoint, sha256, arch, seed
    key: str = "main"  # "main" or the baseline folder name
    trained_on: np.ndarray | None = None  # identity digests of its pretraining videos (mlfo.data.provenance)


def random_encoder(arch: dict | str, seed: int = 0) -> Encoder:
    """A randomly initialised backbone (seeded): the floor every pretrained encoder must beat."""
    from mlfo.models.backbones import arch_kwargs, build_backbone

    kwargs = arch_kwargs(arch, classifier=False, source="--arch")  # features never use a classifier
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_backbone(**kwargs)
    info = {"name": f"random-init {module.arch['name']}", "kind": "random", "checkpoint": None,
            "sha256": None, "seed": seed, "arch": module.arch}
    return Encoder(module.eval(), info, "random")


def checkpoint_encoder(path: str | os.PathLike, kind: str = "checkpoint", name: str | None = None) -> Encoder:
    """A pretraining checkpoint, an exported encoder (.safetensors) or a plain tensor .pt
    state dict (``kind`` "torchvision" only changes the name shown in tables)."""
    from mlfo.train.export import build_encoder, read_encoder_file

    path = Path(path)
    if not path.is_file():
        raise MLFOError(f"{path}: no such checkpoint file")
    found = read_encoder_file(path)
    module = build_encoder(found, str(path))
    if name is None:
        name = (f"torchvision {module.arch['name']} ({path.stem})" if kind == "torchvision"
                else f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem)
    info = {"name": name, "kind": kind, "checkpoint": str(path.resolve()), "sha256": sha256_file(path),
            "arch": module.arch}
    return Encoder(module, info, "torchvision-" + path.stem if kind == "torchvision" else "main", found.trained_on)


def resolve_encoder(spec: str, arch: str | None = None, seed: int = 0, name: str | None = None) -> Encoder:
    """``random`` | ``torchvision:PATH`` | a checkpoint / exported encoder path."""
    if spec == "random":
        enc = random_encoder(arch or "r3d_18", seed)
    elif spec.startswith("torchvision:"):
        enc = checkpoint_encoder(spec.split(":", 1)[1], kind="torchvision")
    else:
        enc = checkpoint_encoder(spec)
    if name:
        enc.info["name"] = name
    enc.key = "main"
    return enc


def resolve_baselines(specs: Sequence[str], main: Encoder, seed: int = 0) -> list[Encoder]:
    """``--baseline random`` (same architecture as the main encoder) and/or ``torchvision:PATH``."""
    out = []
    for spec in specs:
        if spec == "random":
            enc = random_encoder(main.info["arch"], seed)
        elif spec.startswith("torchvision:"):
            enc = checkpoint_encoder(spec.split(":", 1)[1], kind="torchvision")
        else:
            raise MLFOError(f"--baseline: expected 'random' or 'torchvision:PATH', got {spec!r}")
        if enc.key in [e.key for e in out]:
            raise MLFOError(f"--baseline: {spec!r} given twice")
        out.append(enc)
    return out
