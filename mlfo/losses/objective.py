"""The MLFO training objective: every loss of method.md §3, weighted and scheduled.

``MLFOObjective(cfg, num_prototypes)(out, epoch) -> (total, logs)`` where ``out`` is the
model's ``MLFOOutput`` for the local batch. With the default weights

    total = L_high + L_fine_high + L_graph + 0.5 (L_mid + L_fine_mid)
            + 0.3 (L_low + L_fine_low) + 0.5 L_proto,
    L_graph = 1 L_graph_high + 0.5 L_graph_mid + 0.3 L_graph_low,

exactly as the reference implementation. Every component has a switch, so the paper's
ablations are configuration: a component switched off adds no term and does no work
(except that the graph target still needs the instance graph and the prototype codes,
which are then computed without a loss). Schedule: prototype codes use the queue from
epoch ``queue_start``; the graph terms start at epoch ``graph_start``; the engine drops
the prototypes' gradients while ``prototypes_frozen(epoch)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from mlfo.errors import MLFOError
from mlfo.losses.graph import GRAPH_REDUCTIONS, graph_loss, infer_graph
from mlfo.losses.graph_memory import GraphMemory
from mlfo.losses.instance import contrast_with_negatives
from mlfo.losses.motion import REVERSED_SOURCES, motion_contrast
from mlfo.losses.prototypes import EmbeddingQueue, prototype_codes, swapped_prediction
from mlfo.losses.timestamp import timestamp_matching
from mlfo.distributed import all_gather_no_grad, all_gather_with_grad

__all__ = ["ObjectiveConfig", "MLFOObjective"]

LEVELS = ("low", "mid", "high")
A, B, G = 0, 1, 2  # clip order in every MLFOOutput tensor


@dataclass
class ObjectiveConfig:
    """Loss weights, schedule and one switch per component (defaults: the reference)."""

    tau: float = 0.07  # contrast / timestamp / graph temperature
    proto_tau: float = 0.1  # softmax temperature of the swapped prediction
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 3
    queue_length: int = 3840  # past global-batch samples per view in the queue; 0 = no queue
    queue_start: int = 10  # epoch from which codes are computed over [queue; batch]
    graph_start: int = 50  # epoch from which the graph constraint is on (Kinetics: 20)
    graph_threshold: float = 0.05
    graph_reduction: Literal["reference", "per_anchor"] = "reference"
    # Past videos the graph target also covers (0 = the current global batch only, the
    # reference). At 16 videos per step the target is ~the identity (graph/neighbours ~1);
    # a memory of the last N videos' high clip embeddings, graph embeddings and clusters
    # gives each anchor candidates that can pass the threshold and the cluster mask.
    graph_memory: int = 0
    freeze_prototypes_epochs: int = 1  # the engine drops prototype gradients before this epoch
    # weights: a level's weight multiplies its contrast and its timestamp-matching term
    weight_high: float = 1.0
    weight_mid: float = 0.5
    weight_low: float = 0.3
    graph_weight_high: float = 1.0
    graph_weight_mid: float = 0.5
    graph_weight_low: float = 0.3
    proto_weight: float = 0.5
    # switches (the ME block is a model switch: ModelConfig.motion_excitation)
    instance: bool = True  # high-level instance contrast L_high
    prototypes: bool = True  # L_proto
    motion_low: bool = True  # L_low
    motion_mid: bool = True  # L_mid
    reversed_negatives: bool = True  # reversed clips as hard negatives in L_low / L_mid
    # Which reversed clips: "both" clips of the anchor's video (reference), or only the
    # reversed "positive" (same colours as the positive: only time order tells them apart).
    reversed_negative_source: Literal["both", "positive", "anchor"] = "both"
    # Epoch from which the reversed clips join L_low / L_mid (0 = from the start, the
    # reference); before it the motion contrast is plain instance contrast, so colour
    # invariance can be learned before the hard negatives ask for time order.
    reversed_negatives_start: int = 0
    timestamp_low: bool = True  # L_fine_low
    timestamp_mid: bool = True
    timestamp_high: bool = True
    graph_low: bool = True  # L_graph terms
    graph_mid: bool = True
    graph_high: bool = True

    def __post_init__(self):
        def check(key: str, ok: bool, need: str) -> None:
            if not ok:
                raise MLFOError(f"objective.{key}: {need}, got {getattr(self, key)!r}")

        for key in ("tau", "proto_tau", "sinkhorn_eps"):
            check(key, getattr(self, key) > 0, "must be > 0")
        check("sinkhorn_iters", self.sinkhorn_iters >= 1, "must be >= 1")
        for key in ("queue_length", "queue_start", "graph_start", "freeze_prototypes_epochs",
                    "reversed_negatives_start", "graph_memory"):
            check(key, getattr(self, key) >= 0, "must be >= 0")
        check("graph_threshold", 0 <= self.graph_threshold <= 1, "must be in [0, 1]")
        check("reversed_negative_source", self.reversed_negative_source in REVERSED_SOURCES,
              f"must be one of {', '.join(REVERSED_SOURCES)}")
        check("graph_reduction", self.graph_reduction in GRAPH_REDUCTIONS,
              f"must be one of {', '.join(GRAPH_REDUCTIONS)}")
        for field in dataclasses.fields(self):
            if "weight" in field.name:
                check(field.name, getattr(self, field.name) >= 0, "must be >= 0")

    def uses_reversed_clips(self) -> bool:
        """Whether the model must embed time-reversed copies: the one switch for both sides."""
        return self.reversed_negatives and (self.motion_low or self.motion_mid)

    def weight(self, level: str) -> float:
        return getattr(self, f"weight_{level}")

    def graph_weight(self, level: str) -> float:
        return getattr(self, f"graph_weight_{level}")

    def graph_levels(self) -> list[str]:
        return [level for level in LEVELS if getattr(self, f"graph_{level}")]


class _Terms:
    """The terms of one step: log values by name, weighted losses in the order added."""

    def __init__(self):
        self.logs: dict[str, torch.Tensor] = {}  # log name -> unweighted value
        self.weighted: list[torch.Tensor] = []

    def add(self, name: str, weight: float, loss: torch.Tensor, acc: torch.Tensor | None = None) -> None:
        self.logs[f"loss/{name}"] = loss
        if acc is not None:
            self.logs[f"acc/{name}"] = acc
        self.weighted.append(weight * loss)


class MLFOObjective(nn.Module):
    """All MLFO losses for one local batch; contrasts run over the global batch.

    Args:
        cfg: ObjectiveConfig.
        num_prototypes: K (checked against the model output).
        gather: (n_local, ...) -> (n_global, ...) with gradients to the local rows;
            ``mlfo.distributed.local_only`` restricts everything to the local batch.

    The prototype queue (``queue.embeddings``, ``queue.count``) is a buffer, so it is in
    the state dict. It holds global-head embeddings (the model output's
    ``global_embedding`` (n, B, C)), re-scored against the current ``prototypes`` (K, C)
    at every step, SwAV style. ``graph_memory`` (a ``GraphMemory``) exists only when
    ``cfg.graph_memory > 0``, so reference checkpoints keep their keys.
    """

    def __init__(self, cfg: ObjectiveConfig | None = None, num_prototypes: int = 200,
                 gather=all_gather_with_grad):
        super().__init__()
        self.cfg = cfg or ObjectiveConfig()
        self.num_prototypes = num_prototypes
        self.gather = gather
        self.queue = EmbeddingQueue(self.cfg.queue_length, dim=0, views=2)
        if self.cfg.graph_memory > 0:
            self.graph_memory = GraphMemory(self.cfg.graph_memory, self.cfg.graph_levels())

    # ---- schedule, for the engine ----
    def prototypes_frozen(self, epoch: int) -> bool:
        """True while the engine must drop the prototypes' gradients (epoch 0 by default)."""
        return epoch < self.cfg.freeze_prototypes_epochs

    def graph_active(self, epoch: int) -> bool:
        """True when the graph terms are on (the model must then compute graph embeddings)."""
        return epoch >= self.cfg.graph_start and bool(self.cfg.graph_levels())

    def queue_active(self, epoch: int) -> bool:
        return self.cfg.queue_length > 0 and epoch >= self.cfg.queue_start

    def _no_grad_gather(self, x: torch.Tensor) -> torch.Tensor:
        """The configured gather, detached (targets and codes carry no gradient)."""
        if self.gather is all_gather_with_grad:
            return all_gather_no_grad(x)
        with torch.no_grad():
            return self.gather(x.detach())

    # ---- the objective ----
    def forward(self, out, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        """(total, logs): the weighted sum of every switched-on term, in the order (a)-(e)."""
        terms = _Terms()
        graph_on = self.graph_active(epoch)
        p_ins = self._instance(out, graph_on, terms)
        self._motion(out, epoch, terms)
        self._timestamps(out, terms)
        codes = self._prototypes(out, epoch, graph_on, terms)
        if graph_on:
            self._graph(out, p_ins, codes, terms)
        if not terms.weighted:
            raise MLFOError("objective: every loss component is switched off")
        total = torch.stack(terms.weighted).sum()
        logs = terms.logs
        logs["loss/total"] = total
        if self.queue_active(epoch):
            logs["queue/size"] = self.queue.count.float()
        names = list(logs)
        dtype = torch.promote_types(total.dtype, torch.float32)
        values = torch.stack([logs[name].detach().to(dtype).reshape(()) for name in names]).tolist()
        return total, dict(zip(names, values))  # one device sync for all logs

    def _instance(self, out, graph_on: bool, terms: _Terms) -> torch.Tensor | None:
        """(a) high-level instance contrast; returns its instance graph p_ins (b, B), which
        the graph target needs even when the contrast itself is switched off."""
        cfg = self.cfg
        if not (cfg.instance or graph_on):
            return None
        z = out.clip["high"]  # (3, b, C)
        if not cfg.instance:
            with torch.no_grad():
                return contrast_with_negatives(z[A], z[B], cfg.tau, self._no_grad_gather)[2]
        loss, acc, p_ins = contrast_with_negatives(z[A], z[B], cfg.tau, self.gather)
        terms.add("high", cfg.weight_high, loss, acc)
        return p_ins

    def _motion(self, out, epoch: int, terms: _Terms) -> None:
        """(b) motion contrast on low / mid, with the reversed clips as hard negatives."""
        cfg = self.cfg
        hard_negatives = cfg.reversed_negatives and epoch >= cfg.reversed_negatives_start
        for level in ("low", "mid"):
            if not getattr(cfg, f"motion_{level}"):
                continue
            z = out.clip[level]  # (3, b, C)
            reversed_clips = out.clip_reversed.get(level) if cfg.reversed_negatives else None
            if cfg.reversed_negatives and reversed_clips is None:
                raise MLFOError("objective.reversed_negatives: on, but the model output has no reversed "
                                f"{level} clips (build MLFOModel with reversed_copies=cfg.uses_reversed_clips())")
            if not hard_negatives:
                reversed_clips = None  # before reversed_negatives_start: plain instance contrast
            rev_a, rev_b = (None, None) if reversed_clips is None else (reversed_clips[A], reversed_clips[B])
            loss, acc = motion_contrast(z[A], z[B], rev_a, rev_b, cfg.tau, self.gather,
                                        source=cfg.reversed_negative_source)
            terms.add(level, cfg.weight(level), loss, acc)

    def _timestamps(self, out, terms: _Terms) -> None:
        """(c) local-to-global timestamp matching, per video (no communication)."""
        for level in LEVELS:
            if getattr(self.cfg, f"timestamp_{level}"):
                fine = out.fine[level]  # (3, b, t, C)
                loss, acc = timestamp_matching(fine[A], fine[B], fine[G], self.cfg.tau)
                terms.add(f"fine_{level}", self.cfg.weight(level), loss, acc)

    def _prototypes(self, out, epoch: int, graph_on: bool, terms: _Terms) -> torch.Tensor | None:
        """(d) Sinkhorn codes (2, b, K), also the graph's semantic mask, and the swapped
        prediction; None when neither needs them."""
        cfg = self.cfg
        if not (cfg.prototypes or graph_on):
            return None
        scores = out.proto_scores  # (3, b, K)
        if scores.shape[-1] != self.num_prototypes:
            raise MLFOError(f"objective: the model has {scores.shape[-1]} prototypes, "
                            f"the objective expects {self.num_prototypes}")
        codes = self._codes(out, epoch)  # (2, b, K)
        if cfg.prototypes:
            terms.add("proto", cfg.proto_weight,
                      swapped_prediction(scores[A], scores[B], codes[A], codes[B], cfg.proto_tau))
        return codes

    def _graph(self, out, p_ins: torch.Tensor, codes: torch.Tensor, terms: _Terms) -> None:
        """(e) the graph constraint on every enabled level, with the memory when configured."""
        cfg = self.cfg
        if not out.graph:
            raise MLFOError(f"objective.graph_start: the graph loss is on from epoch "
                            f"{cfg.graph_start} but the model output has no graph embeddings "
                            "(call the model with with_graph=objective.graph_active(epoch))")
        memory = self.graph_memory.parts(out.clip["high"]) if cfg.graph_memory > 0 else None
        labels = None
        if memory is not None:
            z = out.clip["high"]  # (3, b, C)
            p_ins = GraphMemory.instance_graph(z[A], self._no_grad_gather(z[B]), memory["high_b"], cfg.tau)
            labels = memory["labels"]
        target = infer_graph(p_ins, codes[A], codes[B], cfg.graph_threshold, self._no_grad_gather,
                             memory_labels=labels)  # (b, B [+ M])
        for level in cfg.graph_levels():
            g = out.graph[level]  # (3, b, C)
            loss = graph_loss(g[A], g[B], target, cfg.tau, cfg.graph_reduction, self.gather,
                              memory_keys=None if memory is None else memory[level])
            terms.add(f"graph_{level}", cfg.graph_weight(level), loss)
        terms.logs["graph/neighbours"] = (target > 0).sum(dim=1).float().mean()
        if memory is not None:
            n_memory = labels.shape[0]
            terms.logs["graph/neighbours_memory"] = (target[:, target.shape[1] - n_memory:] > 0).sum(dim=1).float().mean()
            terms.logs["graph/memory_size"] = target.new_full((), float(n_memory))  # a fill: no host copy
            self.graph_memory.remember(out, codes, self._no_grad_gather)

    @torch.no_grad()
    def _codes(self, out, epoch: int) -> torch.Tensor:
        """(2, b, K) Sinkhorn codes of clips A and B, over the queued embeddings (re-scored
        against the current prototypes) once the queue is on; pushes the global batch."""
        cfg = self.cfg
        scores = out.proto_scores.detach()  # (3, b, K)
        entries = out.global_embedding[:2].detach()  # (2, b, C)
        use_queue = self.queue_active(epoch)
        queued = self.queue.valid() if use_queue else None  # (2, Q, C)
        codes = []
        for view in (A, B):
            queue_scores = None
            if queued is not None and queued.shape[1] > 0:
                queue_scores = queued[view] @ out.prototypes.t()  # (Q, K)
            codes.append(prototype_codes(scores[view], queue_scores, cfg.sinkhorn_eps,
                                         cfg.sinkhorn_iters, self._no_grad_gather))
        if use_queue:  # every process pushes the same global batch
            self.queue.push(torch.stack([self._no_grad_gather(entries[view]) for view in (A, B)]))
        return torch.stack(codes)
