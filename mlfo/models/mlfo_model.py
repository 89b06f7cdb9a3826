"""MLFOModel: one backbone pass over the stacked clips, every embedding the losses need.

Follows the authors' reference implementation (method.md §2):
- low / mid (layer2 / layer3) features are concatenated along the batch with their
  time-reversed copy, passed through a motion-excitation block and pooled to
  (8, 1, 1) / (4, 1, 1); high (layer4) is pooled to (2, 1, 1);
- each head projects every pooled time step (1x1 Conv1d); the clip and graph
  embeddings are the projections averaged over time, the fine embeddings keep the steps;
- the global head sees the time-averaged high feature and feeds the K prototypes.
All embeddings are L2-normalised along channels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mlfo.errors import MLFOError
from mlfo.models.backbones import LEVELS, VideoResNet
from mlfo.models.heads import GlobalHead, ProjectionHead, make_prototypes, normalize_rows_
from mlfo.models.motion_excitation import MotionExcitation

MOTION_LEVELS = ("low", "mid")  # levels with reversed copies and motion excitation


@dataclass
class ModelConfig:
    embed_dim: int = 128               # C, width of every embedding
    num_prototypes: int = 200          # K: 1000 for Kinetics, 200 for UCF101
    motion_excitation: bool = True     # ME block on low / mid (off: identity)
    me_reduction: int = 16
    # timestamp-matching steps per level; a partial mapping keeps the other levels' defaults
    fine_steps: dict[str, int] = field(default_factory=lambda: {"low": 8, "mid": 4, "high": 2})
    head_batchnorm: bool = False       # BN inside the per-level heads (the reference has none)
    global_hidden: int | None = None   # global head hidden width; None = backbone high width

    def __post_init__(self):
        steps = {**{"low": 8, "mid": 4, "high": 2}, **dict(self.fine_steps)}
        if set(steps) != set(LEVELS) or any(int(s) < 1 for s in steps.values()):
            raise MLFOError(f"model.fine_steps: need positive steps for {', '.join(LEVELS)}, got {steps}")
        self.fine_steps = {level: int(steps[level]) for level in LEVELS}


@dataclass
class MLFOOutput:
    """Embeddings of n clips (A, B, G) of B videos; all L2-normalised along the last dim."""

    clip: dict[str, torch.Tensor]           # level -> (n, B, C)
    clip_reversed: dict[str, torch.Tensor]  # low / mid -> (n, B, C); {} without reversed negatives
    fine: dict[str, torch.Tensor]           # level -> (n, B, t, C), t = fine_steps[level]
    graph: dict[str, torch.Tensor]          # level -> (n, B, C); {} when with_graph=False
    proto_scores: torch.Tensor              # (n, B, K) float32 cosine scores against the prototypes
    # For the prototype queue: past embeddings are re-scored against the current prototypes.
    global_embedding: torch.Tensor | None = None  # (n, B, C) global-head embedding
    prototypes: torch.Tensor | None = None        # (K, C) unit-norm rows, detached


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


class MLFOModel(nn.Module):
    """``reversed_copies``: also embed the time-reversed low / mid features (the hard
    negatives of the motion contrast). The objective's switch decides it
    (``ObjectiveConfig.uses_reversed_clips``), so that the copies pass through the ME
    block's BatchNorm exactly when they are used."""

    def __init__(self, backbone: VideoResNet, cfg: ModelConfig | None = None, reversed_copies: bool = True):
        super().__init__()
        cfg = cfg or ModelConfig()
        self.cfg = cfg
        self.reversed_copies = reversed_copies
        self.backbone = backbone
        if reversed_copies and not cfg.motion_excitation:
            # Pooling and the step-averaged clip heads ignore temporal order, so without
            # ME a reversed copy embeds exactly like its own clip.
            warnings.warn("objective.reversed_negatives without model.motion_excitation gives reversed "
                          "copies identical to their clips (hard negatives = the anchor itself)",
                          stacklevel=2)
        channels = backbone.level_channels
        self.motion_excitation = nn.ModuleDict({
            level: MotionExcitation(channels[level], cfg.me_reduction) if cfg.motion_excitation
            else nn.Identity()
            for level in MOTION_LEVELS
        })

        def heads() -> nn.ModuleDict:
            return nn.ModuleDict({
                level: ProjectionHead(channels[level], cfg.embed_dim, cfg.head_batchnorm)
                for level in LEVELS
            })

        self.proj, self.proj_fine, self.proj_graph = heads(), heads(), heads()
        self.global_head = GlobalHead(channels["high"], cfg.embed_dim, cfg.global_hidden)
        self.prototypes = make_prototypes(cfg.embed_dim, cfg.num_prototypes)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Re-normalise prototype rows to unit length; call before every training step."""
        normalize_rows_(self.prototypes.weight)

    def pooled_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (N, 3, T, H, W) -> level -> (N or 2N, C_level, t_level) pooled features.

        For low / mid with reversed negatives, rows N.. are the time-reversed copies.
        """
        features = self.backbone.forward_levels(x)
        pooled = {}
        for level in LEVELS:
            feature = features[level]                                  # (N, C, T', H', W')
            if level in MOTION_LEVELS:
                if self.reversed_copies:
                    feature = torch.cat([feature, feature.flip(2)], dim=0)  # (2N, C, T', H', W')
                feature = self.motion_excitation[level](feature)
            steps = self.cfg.fine_steps[level]
            if feature.shape[2] < steps:
                # Adaptive pooling would silently repeat steps, and timestamp matching
                # between identical steps cannot learn anything.
                raise MLFOError(
                    f"model.fine_steps.{level}: {steps} steps asked for, but the {level} "
                    f"feature of {x.shape[2]}-frame clips has only {feature.shape[2]}; "
                    "use longer clips (data.clip_len) or fewer fine steps")
            pooled[level] = F.adaptive_avg_pool3d(feature, (steps, 1, 1)).flatten(2)
        return pooled

    def forward(self, clips: torch.Tensor, with_graph: bool = True) -> MLFOOutput:
        """clips float (n, B, 3, T, H, W), n = 3 for A, B, G -> MLFOOutput.

        ``with_graph=False`` skips the graph heads (their loss starts late in training).
        """
        if clips.dim() != 6:
            raise ValueError(f"clips must be (n, B, 3, T, H, W), got shape {tuple(clips.shape)}")
        num_clips, batch = clips.shape[:2]
        n = num_clips * batch

        def split(t: torch.Tensor) -> torch.Tensor:            # (n*B, ...) -> (n, B, ...)
            return t.unflatten(0, (num_clips, batch))

        pooled = self.pooled_levels(clips.flatten(0, 1))
        out = MLFOOutput(clip={}, clip_reversed={}, fine={}, graph={}, proto_scores=None)
        for level, feature in pooled.items():                  # feature (n or 2n, C_l, t)
            clip = _normalize(self.proj[level](feature).mean(dim=2))   # (n or 2n, C)
            out.clip[level] = split(clip[:n])
            if clip.shape[0] > n:
                out.clip_reversed[level] = split(clip[n:])
            forward_order = feature[:n]
            fine = self.proj_fine[level](forward_order).transpose(1, 2)  # (n, t, C)
            out.fine[level] = split(_normalize(fine))
            if with_graph:
                graph = self.proj_graph[level](forward_order).mean(dim=2)
                out.graph[level] = split(_normalize(graph))

        global_embedding, out.proto_scores = self._prototype_scores(pooled["high"])  # (n, C), (n, K)
        out.proto_scores = split(out.proto_scores)
        out.global_embedding = split(global_embedding)
        out.prototypes = self.prototypes.weight.detach()
        return out

    def _prototype_scores(self, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """high (n, C_high, t) -> float32 global embedding (n, C) and prototype scores (n, K).

        The scores are Sinkhorn's input, and the objective runs in float32: under bf16
        autocast they would be rounded to 8 bits of mantissa (codes 0.5 % off). So the
        embedding is normalised and scored in (at least) float32 with autocast off."""
        embedding = self.global_head(high.mean(dim=2))
        dtype = torch.promote_types(embedding.dtype, torch.float32)  # float64 stays float64
        embedding = _normalize(embedding.to(dtype))
        with torch.autocast(high.device.type, enabled=False):
            return embedding, F.linear(embedding, self.prototypes.weight.to(dtype))
