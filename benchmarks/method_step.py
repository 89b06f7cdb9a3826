"""The MLFO training step as the benchmarks run it, from ``mlfo.method.MLFOMethod`` itself.

``StepPair(cfg, device)`` builds the method from a Config (the Kinetics preset by
default) and a uint8 batch as the loader yields it, and offers two steps:
- ``mlfo()``: the engine's step (``mlfo.train.engine.Trainer.train_step``) without its
  logging and collectives: prototype re-normalisation, ``prepare`` (colour on the
  device), the forward of model + objective under autocast, the (scaled) backward,
  the method's gradient rule, the optimizer step;
- ``backbone()``: the bare backbone's forward + backward on the same prepared clips
  (3B of them), with a trivial loss (mean square of the pooled feature).
Both use the same module, weights, precision and memory format.
"""

from __future__ import annotations

import contextlib
import json

import torch

from mlfo.config import Config, load_config
from mlfo.method import MLFOMethod
from mlfo.train.optim import build_optimizer
from mlfo.train.parallel import to_channels_last

EPOCH = 1  # with queue_start = graph_start = 0: every loss term on, prototypes not frozen


def mlfo_config(name: str, frames: int, size: int, videos: int, prototypes: int = 200,
                preset: str = "kinetics400_r3d18", **overrides) -> Config:
    """The preset at another backbone / clip size, every loss term and the queue on from
    epoch 0 (the most expensive schedule). Clips shorter than 16 frames get the fine
    steps their features have (8 frames: 4 / 2 / 1), and no timestamp matching on a level
    left with one step."""
    steps = {"low": min(8, frames // 2), "mid": min(4, frames // 4), "high": min(2, max(1, frames // 8))}
    settings = {
        "backbone.name": name, "data.clip_len": frames, "data.crop_size": size, "data.batch_size": videos,
        "model.num_prototypes": prototypes, "model.fine_steps": json.dumps(steps),
        **{f"objective.timestamp_{level}": str(n >= 2).lower() for level, n in steps.items()},
        "objective.queue_start": 0,
        "objective.graph_start": 0, "objective.queue_length": 64 * videos, "train.sync_bn": "false",
        **overrides,
    }
    return load_config(preset, [f"{k}={v}" for k, v in settings.items()])


def random_batch(cfg: Config, seed: int = 0) -> dict:
    """A collated training batch: uint8 clips (B, 3, T, S, S, 3) and the videos' indices."""
    d = cfg.data
    g = torch.Generator().manual_seed(seed)
    clips = torch.randint(0, 256, (d.batch_size, 3, d.clip_len, d.crop_size, d.crop_size, 3), dtype=torch.uint8,
                          generator=g)
    return {"clips": clips, "index": torch.arange(d.batch_size), "skipped": []}


class StepPair:
    def __init__(self, cfg: Config, device: torch.device | str, seed: int = 0):
        self.cfg, self.device = cfg, torch.device(device)
        torch.manual_seed(seed)
        method = MLFOMethod(cfg).to(self.device)
        if cfg.train.channels_last:
            method.to(memory_format=torch.channels_last_3d)
        self.method = method.train()
        o = cfg.optim
        self.optimizer = build_optimizer(o.name, list(method.parameters()), lr=o.lr, weight_decay=o.weight_decay,
                                         momentum=o.momentum)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.train.amp == "fp16")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype else contextlib.nullcontext
        self.batch = random_batch(cfg, seed)
        if self.device.type == "cuda":
            self.batch["clips"] = self.batch["clips"].pin_memory()
        self.inputs = self._prepare().flatten(0, 1)  # (3B, 3, T, S, S): the backbone's input

    def _prepare(self) -> torch.Tensor:
        x = self.method.prepare(self.batch, EPOCH, self.device)  # (3, B, 3, T, S, S)
        return to_channels_last(x) if self.cfg.train.channels_last else x

    def mlfo(self) -> float:
        """One full MLFO training step; returns the loss (one host sync, as the engine's)."""
        m = self.method
        m.before_forward(EPOCH)
        x = self._prepare()
        with self.autocast():
            total, _ = m(x, EPOCH)
        loss = float(total.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        m.before_optimizer_step(EPOCH)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss

    def backbone(self, optimizer_step: bool = False) -> None:
        """The bare backbone's forward + backward on the prepared clips (and, for a memory
        comparison of whole training steps, the optimizer step over its parameters)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            feature = self.method.encoder(self.inputs)  # (3B, C) pooled high-level feature
        self.scaler.scale(feature.float().pow(2).mean()).backward()
        if optimizer_step:
            self.scaler.step(self.optimizer)
            self.scaler.update()
