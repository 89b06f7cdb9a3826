"""MLFO as a training method: the model, the objective, the colour augmentation and MLFO's
rules around the optimizer step, behind the small interface the generic engine
(``mlfo.train.engine``) runs. The engine knows data loaders, optimizers, precision, DDP,
checkpoints and logs; everything that makes the run *MLFO* is here.

The interface (a ``torch.nn.Module``, so DDP wraps it and its state dict is the model's
plus the prototype queue's):

- ``min_frames``: a training video needs more frames than this (the three-clip span 2T);
- ``train_dataset(records)``: the keyed dataset of uint8 training items;
- ``prepare(batch, epoch, device)``: a collated batch -> the model input on the device
  (colour augmentation keyed per video, normalisation);
- ``forward(inputs, epoch) -> (total loss, {name: float})``: one training step's loss;
- ``before_forward(epoch)`` / ``before_optimizer_step(epoch)``: prototype rows are
  re-normalised before every step, and their gradient is dropped while they are frozen;
- ``encoder`` / ``encoder_state(state)``: the backbone to export, from a live method or
  a checkpoint's ``method`` state dict.

Where each paper component lives: docs/design.md.
"""

from __future__ import annotations

import torch
from torch import nn

from mlfo.config import Config, DataConfig
from mlfo.data.datasets import ThreeClipDataset
from mlfo.data.transforms import ColorAugment, normalize_clips
from mlfo.losses.objective import MLFOObjective
from mlfo.models import MLFOModel, build_backbone
from mlfo.train.seeding import derive_seed

# Keys the colour stream is derived from, so it never collides with the dataset's own.
_COLOR_STREAM = 0xC0102
_BACKBONE = "model.backbone."  # where the encoder's tensors sit in the method's state dict


def build_color_augment(d: DataConfig) -> ColorAugment | None:
    """The colour augmentation a DataConfig asks for (None when switched off)."""
    if not d.color_augment:
        return None
    return ColorAugment(per_frame_color=d.per_frame_color, p_gray=d.color_p_gray, brightness=d.color_strength,
                        contrast=d.color_strength, saturation=d.color_strength, hue=d.color_hue)


class MLFOMethod(nn.Module):
    """Model and objective as one module, so that DDP sees the loss as the output.

    With a loss switched off (say timestamp matching at one level), the model still
    returns that head's embeddings; DDP, wrapping the model alone, would find those heads
    "used" but never reached by the backward pass and stop. Tracing from the loss, it
    finds them unused instead.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        backbone = build_backbone(cfg.backbone.name, stem=cfg.backbone.stem, widths=cfg.backbone.widths)
        self.model = MLFOModel(backbone, cfg.model, reversed_copies=cfg.objective.uses_reversed_clips())
        self.objective = MLFOObjective(cfg.objective, cfg.model.num_prototypes)
        self.color = build_color_augment(cfg.data)

    # -- data ------------------------------------------------------------------------------

    @property
    def min_frames(self) -> int:
        return 2 * self.cfg.data.clip_len

    def train_dataset(self, records) -> ThreeClipDataset:
        d = self.cfg.data
        return ThreeClipDataset(records, clip_len=d.clip_len, r_max=d.r_max, crop_size=d.crop_size,
                                crop_scale=tuple(d.crop_scale), backend=d.backend, seed=self.cfg.train.seed,
                                decode_size=d.decode_size)

    def prepare(self, batch: dict, epoch: int, device: torch.device) -> torch.Tensor:
        """uint8 clips (B, 3, T, S, S, 3) -> float (3, B, 3, T, S, S): colour (keyed per video)
        and normalisation, on ``device``."""
        clips = batch["clips"].to(device, non_blocking=True)
        if self.color is None:
            out = normalize_clips(clips.flatten(0, 1))  # (3B, 3, T, S, S)
            out = out.unflatten(0, clips.shape[:2])
        else:
            per_video = []
            gen = torch.Generator(device=device)
            for video, index in zip(clips, batch["index"].tolist()):  # video (3, T, S, S, 3)
                gen.manual_seed(derive_seed(self.cfg.train.seed, _COLOR_STREAM, epoch, index))
                per_video.append(self.color(video, generator=gen))  # (3, 3, T, S, S)
            out = torch.stack(per_video)
        return out.transpose(0, 1).contiguous()  # (3 clips, B, 3, T, S, S)

    # -- the step ----------------------------------------------------------------------------

    def forward(self, inputs: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict]:
        out = self.model(inputs, with_graph=self.objective.graph_active(epoch))
        return self.objective(out, epoch)

    def before_forward(self, epoch: int) -> None:
        self.model.normalize_prototypes()

    def before_optimizer_step(self, epoch: int) -> None:
        if self.objective.prototypes_frozen(epoch):
            self.model.prototypes.weight.grad = None

    # -- export --------------------------------------------------------------------------------

    @property
    def encoder(self) -> nn.Module:
        return self.model.backbone

    @staticmethod
    def encoder_state(state: dict) -> dict[str, torch.Tensor]:
        """The backbone's tensors of a method state dict (prefix stripped)."""
        return {k[len(_BACKBONE):]: v for k, v in state.items() if k.startswith(_BACKBONE)}
