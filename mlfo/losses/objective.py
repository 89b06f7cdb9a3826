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
from mlfo.losses._numerics import at_least_float32
from mlfo.losses.graph import GRAPH_REDUCTIONS, graph_loss, infer_graph
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


class MLFOObjective(nn.Module):
    """All MLFO losses for one local batch; contrasts run over the global batch.

    Args:
        cfg: ObjectiveConfig.
        num_prototypes: K (checked against the model output).
        gather: (n_local, ...) -> (n_global, ...) with gradients to the local rows;
            ``mlfo.distributed.local_only`` restricts everything to the local batch.

    The prototype queue (``queue.embeddings``, ``queue.count``) is a buffer, so it is in
    the state dict. It holds global-head embeddings when the model output carries
    ``global_embedding`` (n, B, C) and ``prototypes`` (K, C) (scores are then recomputed
    against the current prototypes, SwAV style); otherwise it holds the scores
    themselves (the method's literal "queue of scores").
    """

    def __init__(self, cfg: ObjectiveConfig | None = None, num_prototypes: int = 200,
                 gather=all_gather_with_grad):
        super().__init__()
        self.cfg = cfg or ObjectiveConfig()
        self.num_prototypes = num_prototypes
        self.gather = gather
        self.queue = EmbeddingQueue(self.cfg.queue_length, dim=0, views=2)
        if self.cfg.graph_memory > 0:  # only then: reference checkpoints keep their keys
            self.graph_memory = EmbeddingQueue(self.cfg.graph_memory, dim=0, views=1)

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
        cfg = self.cfg
        terms: dict[str, torch.Tensor] = {}  # log name -> unweighted value
        weighted: list[torch.Tensor] = []

        # (a) high-level instance contrast; its instance graph feeds the graph target
        graph_on = self.graph_active(epoch)
        p_ins = None
        if cfg.instance or graph_on:
            z = out.clip["high"]  # (3, b, C)
            if cfg.instance:
                loss, acc, p_ins = contrast_with_negatives(z[A], z[B], cfg.tau, self.gather)
                terms["loss/high"], terms["acc/high"] = loss, acc
                weighted.append(cfg.weight_high * loss)
            else:
                with torch.no_grad():
                    _, _, p_ins = contrast_with_negatives(z[A], z[B], cfg.tau, self._no_grad_gather)

        # (b) motion contrast on low / mid, with the reversed clips as hard negatives
        hard_negatives = cfg.reversed_negatives and epoch >= cfg.reversed_negatives_start
        for level in ("low", "mid"):
            if not getattr(cfg, f"motion_{level}"):
                continue
            z = out.clip[level]
            reversed_clips = out.clip_reversed.get(level) if cfg.reversed_negatives else None
            if cfg.reversed_negatives and reversed_clips is None:
                raise MLFOError("objective.reversed_negatives: on, but the model output has no reversed "
                                f"{level} clips (build MLFOModel with reversed_copies=cfg.uses_reversed_clips())")
            if not hard_negatives:
                reversed_clips = None  # before reversed_negatives_start: plain instance contrast
            rev_a, rev_b = (None, None) if reversed_clips is None else (reversed_clips[A], reversed_clips[B])
            loss, acc = motion_contrast(z[A], z[B], rev_a, rev_b, cfg.tau, self.gather,
                                        source=cfg.reversed_negative_source)
            terms[f"loss/{level}"], terms[f"acc/{level}"] = loss, acc
            weighted.append(cfg.weight(level) * loss)

        # (c) local-to-global timestamp matching, per video (no communication)
        for level in LEVELS:
            if not getattr(cfg, f"timestamp_{level}"):
                continue
            fine = out.fine[level]  # (3, b, t, C)
            loss, acc = timestamp_matching(fine[A], fine[B], fine[G], cfg.tau)
            terms[f"loss/fine_{level}"], terms[f"acc/fine_{level}"] = loss, acc
            weighted.append(cfg.weight(level) * loss)

        # (d) prototypes: Sinkhorn codes (also the graph's semantic mask), swapped prediction
        codes = None
        if cfg.prototypes or graph_on:
            scores = out.proto_scores  # (3, b, K)
            if scores.shape[-1] != self.num_prototypes:
                raise MLFOError(f"objective: the model has {scores.shape[-1]} prototypes, "
                                f"the objective expects {self.num_prototypes}")
            codes = self._codes(out, epoch)  # (2, b, K)
            if cfg.prototypes:
                loss = swapped_prediction(scores[A], scores[B], codes[A], codes[B], cfg.proto_tau)
                terms["loss/proto"] = loss
                weighted.append(cfg.proto_weight * loss)

        # (e) graph constraint on every enabled level
        if graph_on:
            if not out.graph:
                raise MLFOError(f"objective.graph_start: the graph loss is on from epoch "
                                f"{cfg.graph_start} but the model output has no graph embeddings "
                                "(call the model with with_graph=objective.graph_active(epoch))")
            memory = self._graph_memory_parts(out) if cfg.graph_memory > 0 else None
            labels = None
            if memory is not None:
                p_ins, labels = self._instance_graph_with_memory(out, memory), memory["labels"]
            target = infer_graph(p_ins, codes[A], codes[B], cfg.graph_threshold, self._no_grad_gather,
                                 memory_labels=labels)
            for level in cfg.graph_levels():
                g = out.graph[level]  # (3, b, C)
                loss = graph_loss(g[A], g[B], target, cfg.tau, cfg.graph_reduction, self.gather,
                                  memory_keys=None if memory is None else memory[level])
                terms[f"loss/graph_{level}"] = loss
                weighted.append(cfg.graph_weight(level) * loss)
            terms["graph/neighbours"] = (target > 0).sum(dim=1).float().mean()
            if memory is not None:
                n_memory = memory["labels"].shape[0]
                terms["graph/neighbours_memory"] = (target[:, target.shape[1] - n_memory:] > 0).sum(dim=1).float().mean()
                terms["graph/memory_size"] = target.new_full((), float(n_memory))  # a fill: no host copy
                self._push_graph_memory(out, codes)

        if not weighted:
            raise MLFOError("objective: every loss component is switched off")
        total = torch.stack(weighted).sum()
        terms["loss/total"] = total
        if self.queue_active(epoch):
            terms["queue/size"] = self.queue.count.float()
        names = list(terms)
        dtype = torch.promote_types(total.dtype, torch.float32)
        values = torch.stack([terms[name].detach().to(dtype).reshape(()) for name in names]).tolist()
        return total, dict(zip(names, values))  # one device sync for all logs

    # ---- graph memory (objective.graph_memory > 0) ----
    def _graph_memory_parts(self, out) -> dict[str, torch.Tensor]:
        """The memory split into its parts: "high_b" (M, C) high clip embeddings of clip B,
        one (M, C) graph embedding per graph level, "labels" (M,) clusters."""
        rows = self.graph_memory.valid()[0]  # (M, D)
        c = out.clip["high"].shape[-1]
        names = ["high_b", *self.cfg.graph_levels()]
        if rows.shape[0] == 0 or rows.shape[1] != c * len(names) + 1:
            empty = out.clip["high"].new_zeros(0, c)
            return {**{n: empty for n in names}, "labels": empty.new_zeros(0, dtype=torch.long)}
        parts = {n: rows[:, i * c:(i + 1) * c] for i, n in enumerate(names)}
        parts["labels"] = rows[:, -1].round().long()
        return parts

    @torch.no_grad()
    def _instance_graph_with_memory(self, out, memory: dict) -> torch.Tensor:
        """(b, B + M) softmax_j(z_A(i) . [z_B of the global batch; memory] / tau)."""
        z = out.clip["high"]
        keys = torch.cat([self._no_grad_gather(z[B]), memory["high_b"].to(z)])
        return torch.softmax(at_least_float32(z[A].detach()) @ at_least_float32(keys).t() / self.cfg.tau, dim=1)

    @torch.no_grad()
    def _push_graph_memory(self, out, codes: torch.Tensor) -> None:
        """Store this global batch: z_B (high), g_B of every graph level, cluster label."""
        labels = (codes[A] + codes[B]).argmax(dim=1).to(out.clip["high"].dtype)
        parts = [out.clip["high"][B], *(out.graph[level][B] for level in self.cfg.graph_levels()),
                 labels[:, None]]
        rows = self._no_grad_gather(torch.cat([p.detach() for p in parts], dim=1))
        self.graph_memory.push(rows.unsqueeze(0))

    @torch.no_grad()
    def _codes(self, out, epoch: int) -> torch.Tensor:
        """(2, b, K) Sinkhorn codes of clips A and B; pushes the batch into the queue."""
        cfg = self.cfg
        scores = out.proto_scores.detach()
        embedding = getattr(out, "global_embedding", None)
        prototypes = getattr(out, "prototypes", None)
        store_embeddings = embedding is not None and prototypes is not None
        entries = embedding[:2] if store_embeddings else scores[:2]  # (2, b, D)

        use_queue = self.queue_active(epoch)
        if use_queue and self.queue.filled > 0 and self.queue.embeddings.shape[-1] != entries.shape[-1]:
            self.queue.reset()  # the queue held the other kind of entry (scores vs embeddings)
        queued = self.queue.valid() if use_queue else None  # (2, Q, D)
        codes = []
        for view in (A, B):
            queue_scores = None
            if queued is not None and queued.shape[1] > 0:
                queue_scores = queued[view] @ prototypes.t() if store_embeddings else queued[view]
            codes.append(prototype_codes(scores[view], queue_scores, cfg.sinkhorn_eps,
                                         cfg.sinkhorn_iters, self._no_grad_gather))
        if use_queue:  # every process pushes the same global batch
            batch = torch.stack([self._no_grad_gather(entries[view]) for view in (A, B)])
            self.queue.push(batch)
        return torch.stack(codes)
