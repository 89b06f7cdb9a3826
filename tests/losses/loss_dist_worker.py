"""Shared problems for the loss tests, and the worker of the two-process (gloo) test.

Every problem is built from a seed on every process, so the single-process reference
(in the pytest process) and each rank see the same global batch; a rank keeps its rows.
Everything is float64, so the distributed and single-process results must agree to
round-off.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlfo.losses import (
    MLFOObjective,
    ObjectiveConfig,
    graph_loss,
    infer_graph,
    instance_contrast,
    motion_contrast,
    prototype_codes,
    swapped_prediction,
    timestamp_matching,
)

DTYPE = torch.float64
STEPS = {"low": 8, "mid": 4, "high": 2}


def unit(*shape, generator) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=generator, dtype=DTYPE), dim=-1)


# ---------------------------------------------------------------------------------------
# Problem 1: the pure losses on random leaf features
# ---------------------------------------------------------------------------------------

def loss_features(n_videos: int, seed: int = 0, dim: int = 8, k: int = 6) -> dict[str, torch.Tensor]:
    """Global-batch features: (n_videos, ...) each; fine features (n_videos, t, C)."""
    g = torch.Generator().manual_seed(seed)
    feats = {name: unit(n_videos, dim, generator=g) for name in
             ("z_a", "z_b", "m_a", "m_b", "rev_a", "rev_b", "g_a", "g_b")}
    for name in ("fine_a", "fine_b", "fine_g"):
        feats[name] = unit(n_videos, 4, dim, generator=g)
    feats["s_a"] = unit(n_videos, dim, generator=g) @ unit(k, dim, generator=g).t()
    feats["s_b"] = unit(n_videos, dim, generator=g) @ unit(k, dim, generator=g).t()
    feats["queue"] = unit(10, k, generator=g)  # queue scores (same on every process)
    return feats


def loss_terms(feats: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Every pure loss on (local) features, default gathers. Returns (losses, targets)."""
    loss, acc, p_ins = instance_contrast(feats["z_a"], feats["z_b"], tau=0.1)
    motion, _ = motion_contrast(feats["m_a"], feats["m_b"], feats["rev_a"], feats["rev_b"], tau=0.1)
    fine, _ = timestamp_matching(feats["fine_a"], feats["fine_b"], feats["fine_g"], tau=0.1)
    codes_a = prototype_codes(feats["s_a"].detach(), eps=0.05, iters=3)
    codes_b = prototype_codes(feats["s_b"].detach(), eps=0.05, iters=3)
    queued_a = prototype_codes(feats["s_a"].detach(), feats["queue"], eps=0.05, iters=3)
    proto = swapped_prediction(feats["s_a"], feats["s_b"], codes_a, codes_b, 0.1)
    target = infer_graph(p_ins, codes_a, codes_b, threshold=0.05)
    losses = {
        "instance": loss,
        "motion": motion,
        "timestamp": fine,
        "proto": proto,
        "graph_reference": graph_loss(feats["g_a"], feats["g_b"], target, 0.1, "reference"),
        "graph_per_anchor": graph_loss(feats["g_a"], feats["g_b"], target, 0.1, "per_anchor"),
    }
    targets = {"p_ins": p_ins, "codes_a": codes_a, "codes_queue": queued_a, "graph": target,
               "acc": acc}
    return losses, targets


# ---------------------------------------------------------------------------------------
# Problem 2: the full objective on a synthetic, row-wise "model" (no cross-video mixing)
# ---------------------------------------------------------------------------------------

class TinyMLFO(nn.Module):
    """Linear maps from per-clip inputs to every MLFOOutput field (plus the global
    embedding and prototypes, so the queue stores embeddings)."""

    def __init__(self, in_dim: int = 6, dim: int = 5, k: int = 7, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        levels = ("low", "mid", "high")
        self.clip = nn.ModuleDict({lv: nn.Linear(in_dim, dim) for lv in levels})
        self.fine = nn.ModuleDict({lv: nn.Linear(in_dim, STEPS[lv] * dim) for lv in levels})
        self.graph = nn.ModuleDict({lv: nn.Linear(in_dim, dim) for lv in levels})
        self.global_head = nn.Linear(in_dim, dim)
        self.prototypes = nn.Linear(dim, k, bias=False)
        self.to(DTYPE)

    def forward(self, x: torch.Tensor, reversed_negatives: bool = True) -> SimpleNamespace:
        """x (3, b, in_dim) -> MLFOOutput-like namespace."""
        def norm(t):
            return F.normalize(t, dim=-1)

        out = SimpleNamespace(clip={}, clip_reversed={}, fine={}, graph={})
        for level in ("low", "mid", "high"):
            out.clip[level] = norm(self.clip[level](x))
            if level != "high" and reversed_negatives:
                out.clip_reversed[level] = norm(self.clip[level](x.flip(-1)))  # stand-in reversal
            out.fine[level] = norm(self.fine[level](x).unflatten(-1, (STEPS[level], -1)))
            out.graph[level] = norm(self.graph[level](x))
        prototypes = norm(self.prototypes.weight)
        out.global_embedding = norm(self.global_head(x))  # (3, b, C)
        out.proto_scores = out.global_embedding @ prototypes.t()  # (3, b, K)
        out.prototypes = prototypes.detach()
        return out


def objective_inputs(n_videos: int, steps: int = 2, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, n_videos, 6, generator=g, dtype=DTYPE) for _ in range(steps)]


def objective_config(**overrides) -> ObjectiveConfig:
    values = dict(queue_length=12, queue_start=3, graph_start=4, graph_threshold=0.02)
    values.update(overrides)
    return ObjectiveConfig(**values)


def run_objective(rows: slice, epoch: int = 5, loss_scale: float = 1.0) -> dict:
    """Two steps of the objective on the given rows of every batch; totals and grads."""
    model = TinyMLFO()
    objective = MLFOObjective(objective_config(), num_prototypes=7)
    totals = []
    for x in objective_inputs(8):
        total, _ = objective(model(x[:, rows]), epoch)
        (total * loss_scale).backward()
        totals.append(total.detach())
    return {"totals": torch.stack(totals),
            "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
            "queue": objective.queue.valid().clone()}


# ---------------------------------------------------------------------------------------
# Problem 3: a tiny real MLFOModel (eval mode: BatchNorm is per-sample, like SyncBN's goal)
# ---------------------------------------------------------------------------------------

def run_model(rows: slice, loss_scale: float = 1.0) -> dict:
    from mlfo.models import MLFOModel, ModelConfig, build_backbone

    torch.manual_seed(0)
    model = MLFOModel(build_backbone("r3d_small"), ModelConfig(num_prototypes=6)).to(DTYPE).eval()
    g = torch.Generator().manual_seed(3)
    clips = torch.randn(3, 4, 3, 16, 16, 16, generator=g, dtype=DTYPE)
    objective = MLFOObjective(objective_config(queue_start=0, graph_start=0), num_prototypes=6)
    total, _ = objective(model(clips[:, rows]), epoch=1)
    (total * loss_scale).backward()
    return {"totals": total.detach().reshape(1),
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}}


# ---------------------------------------------------------------------------------------
# The worker
# ---------------------------------------------------------------------------------------

def split_rows(sizes: list[int], rank: int) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def worker(rank: int, world: int, init_file: str, out_dir: str, loss_sizes: list[int],
           with_model: bool) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = {}
        # pure losses, possibly unequal rows per rank: scale so that summed gradients are
        # those of the global mean (equal rows: scale 1, the DDP convention)
        rows = split_rows(loss_sizes, rank)
        n_global = sum(loss_sizes)
        scale = loss_sizes[rank] * world / n_global
        feats = {k: (v if k == "queue" else v[rows].clone().requires_grad_(True))
                 for k, v in loss_features(n_global).items()}
        losses, targets = loss_terms(feats)
        (scale * torch.stack(list(losses.values())).sum()).backward()
        result["losses"] = {k: v.detach() * scale for k, v in losses.items()}
        result["targets"] = {k: v.detach() for k, v in targets.items()}
        result["feature_grads"] = {k: v.grad for k, v in feats.items() if k != "queue"}

        result["objective"] = run_objective(split_rows([4, 4], rank))
        if with_model:
            result["model"] = run_model(split_rows([2, 2], rank))
        for part in [result["objective"]] + ([result["model"]] if with_model else []):
            for grad in part["grads"].values():  # what DDP does to parameter gradients
                dist.all_reduce(grad)
                grad /= world
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
