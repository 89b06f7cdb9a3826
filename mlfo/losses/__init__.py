"""MLFO losses (method.md §3): pure functions on local features plus a ``gather``, and
``MLFOObjective``, which weights, schedules and switches them."""

from mlfo.losses.graph import GRAPH_REDUCTIONS, graph_loss, infer_graph
from mlfo.losses.instance import contrast_with_negatives, instance_contrast
from mlfo.losses.motion import motion_contrast
from mlfo.losses.objective import MLFOObjective, ObjectiveConfig
from mlfo.losses.prototypes import EmbeddingQueue, prototype_codes, swapped_prediction
from mlfo.losses.sinkhorn import sinkhorn
from mlfo.losses.timestamp import local_steps, timestamp_matching

__all__ = [
    "GRAPH_REDUCTIONS",
    "EmbeddingQueue",
    "MLFOObjective",
    "ObjectiveConfig",
    "contrast_with_negatives",
    "graph_loss",
    "infer_graph",
    "instance_contrast",
    "local_steps",
    "motion_contrast",
    "prototype_codes",
    "sinkhorn",
    "swapped_prediction",
    "timestamp_matching",
]
