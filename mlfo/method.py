"""MLFO as a training method: the model, the objective, the colour augmentation and MLFO's
rules around the optimizer step, behind the small interface the generic engine
(``mlfo.train.engine``) runs. The engine knows data loaders, optimizers, precision, DDP,
checkpoints and logs; everything that makes the run *MLFO* is here.

The interface it implements is ``mlfo.train.interface.Method``; here ``extra_state`` is
the resolved config, the encoder's architecture and the digests of the training videos'
names (``trained_on``, carried into the exported encoder), and a resume with changed
settings is named. ``encoder`` / ``encoder_state(state)``: the backbone to export, from a
live method or a checkpoint's ``method`` state dict.

Where each paper component lives: docs/design.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from mlfo.config import Config, DataConfig, diff_configs, to_dict
from mlfo.data.provenance import video_digests
from mlfo.data.datasets import ThreeClipDataset
from mlfo.data.sampling import mlfo_min_frames
from mlfo.data.transforms import ColorAugment, normalize_clips
from mlfo.inspect.health import queue_rankme
from mlfo.losses.objective import MLFOObjective
from mlfo.models import MLFOModel, MLFOOutput, build_backbone
from mlfo.train.seeding import derive_seed

# Keys the colour stream is derived from, so it never collides with the dataset's own.
_COLOR_STREAM = "colour"
_BACKBONE = "model.backbone."  # where the encoder's tensors sit in the method's state dict
# Settings a resume may change without a word (where the run goes and how long it lasts).
_RESUME_MAY_CHANGE = ("train.out_dir", "train.max_steps", "train.epochs", "train.progress", "train.dist_timeout_min",
                      "checkpoint.finite_check_steps")


def _float32(out: MLFOOutput) -> MLFOOutput:
    """The model output with half-precision tensors (autocast) as float32, others as they are."""
    def up(v):
        if isinstance(v, dict):
            return {k: up(t) for k, t in v.items()}
        return v.float() if isinstance(v, torch.Tensor) and v.dtype in (torch.float16, torch.bfloat16) else v

    return dataclasses.replace(out, **{f.name: up(getattr(out, f.name)) for f in dataclasses.fields(out)})


def build_color_augment(d: DataConfig, step: int | None = None) -> ColorAugment | None:
    """The colour augmentation a DataConfig asks for at optimizer step ``step`` (0-based;
    None: full strength), or None when switched off. With ``data.color_ramp_steps`` the
    grayscale probability and the jitter strengths grow linearly to their values over that
    many steps (a pure function of the step, so a resumed run draws the same colours)."""
    if not d.color_augment:
        return None
    scale = 1.0
    if d.color_ramp_steps > 0 and step is not None:
        scale = min(1.0, (step + 1) / d.color_ramp_steps)
    strength = d.color_strength * scale
    return ColorAugment(per_frame_color=d.per_frame_color, p_gray=d.color_p_gray * scale, brightness=strength,
                        contrast=strength, saturation=strength, hue=d.color_hue * scale)


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
        self.trained_on = np.zeros(0, dtype=np.int64)  # identity digests of the training videos
        self._step = 0  # optimizer steps done (before_forward): when to log queue health

    # -- data ------------------------------------------------------------------------------

    @property
    def min_frames(self) -> int:
        return mlfo_min_frames(self.cfg.data.clip_len)

    def train_dataset(self, records) -> ThreeClipDataset:
        d = self.cfg.data
        self.trained_on = video_digests(records)  # (N + 1,) int64, mlfo.data.provenance
        return ThreeClipDataset(records, clip_len=d.clip_len, r_max=d.r_max, crop_size=d.crop_size,
                                crop_scale=tuple(d.crop_scale), backend=d.backend, seed=self.cfg.train.seed,
                                decode_size=d.decode_size, decode_device=d.decode_device)

    def prepare(self, batch: dict, epoch: int, device: torch.device) -> torch.Tensor:
        """uint8 clips (B, 3, T, S, S, 3) -> float (3, B, 3, T, S, S): colour (keyed per video)
        and normalisation, on ``device``, batched over the whole batch."""
        clips = batch["clips"].to(device, non_blocking=True)
        flat = clips.flatten(0, 1)  # (3B, T, S, S, 3): the clips of video i are rows 3i..3i+2
        if self.color is None:
            out = normalize_clips(flat)
        else:
            seed = self.cfg.train.seed
            generators = [torch.Generator().manual_seed(derive_seed(seed, _COLOR_STREAM, epoch, index))
                          for index in batch["index"].tolist()]  # CPU: no device synchronisation
            out = self.color(flat, generators)  # (3B, 3, T, S, S)
        return out.unflatten(0, clips.shape[:2]).transpose(0, 1).contiguous()  # (3 clips, B, 3, T, S, S)

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.parameters()), "lr": self.cfg.optim.lr}]

    # -- the step ----------------------------------------------------------------------------

    def forward(self, inputs: torch.Tensor, epoch: int) -> tuple[torch.Tensor, dict]:
        out = self.model(inputs, with_graph=self.objective.graph_active(epoch))
        # The losses divide cosine similarities by temperatures down to 0.05: under bf16 /
        # fp16 autocast their matmuls would round the logits (bf16: steps of 1/16 at
        # 1/0.07). So the objective runs in float32 on float32 embeddings, autocast off.
        with torch.autocast(inputs.device.type, enabled=False):
            total, logs = self.objective(_float32(out), epoch)
        return total, {**logs, **queue_rankme(self.objective.queue, self._step, self.cfg.train.health_every)}

    def before_forward(self, epoch: int, step: int = 0) -> None:
        """``step``: optimizer steps done so far in the run (for ``data.color_ramp_steps``)."""
        self.model.normalize_prototypes()
        self._step = step
        if self.cfg.data.color_ramp_steps > 0:
            self.color = build_color_augment(self.cfg.data, step)

    def before_optimizer_step(self, epoch: int) -> None:
        if self.objective.prototypes_frozen(epoch):
            self.model.prototypes.weight.grad = None

    def gradient_phase(self, epoch: int) -> bool:
        """Epochs with equal phases give gradients to the same parameters: only the graph
        heads join late (the queue and the frozen prototypes change no parameter's
        reachability)."""
        return self.objective.graph_active(epoch)

    def compile(self, *args, **kwargs) -> None:
        """``torch.compile`` the model alone. The objective stays eager: its logs leave the
        device in one sync, the gathers are collectives inside autograd Functions, the
        queue's fill is a host number (a new value each step), and the prototype queue
        replaces its buffer: all graph breaks or recompiles inside a compiled region."""
        self.model.compile(*args, **kwargs)

    # -- checkpoints ------------------------------------------------------------------------

    def extra_state(self) -> dict:
        return {"config": to_dict(self.cfg), "encoder_arch": self.encoder.arch,
                "trained_on": torch.from_numpy(self.trained_on)}

    def load_extra_state(self, state: dict, path) -> list[str]:
        """Names the changed settings; a resume may bring new videos (``trained_on`` grows)."""
        changed = [k for k in diff_configs(state.get("config", {}), to_dict(self.cfg)) if k not in _RESUME_MAY_CHANGE]
        if isinstance(state.get("trained_on"), torch.Tensor):
            self.trained_on = np.union1d(self.trained_on, state["trained_on"].numpy()).astype(np.int64)
        return [f"mlfo: resuming with changed settings: {', '.join(changed)}"] if changed else []

    # -- export --------------------------------------------------------------------------------

    @property
    def encoder(self) -> nn.Module:
        return self.model.backbone

    @staticmethod
    def encoder_state(state: dict) -> dict[str, torch.Tensor]:
        """The backbone's tensors of a method state dict (prefix stripped)."""
        return {k[len(_BACKBONE):]: v for k, v in state.items() if k.startswith(_BACKBONE)}
