"""Weighted k-nearest-neighbour classification (InstDisc, Wu et al. 2018).

Each of the k most similar train videos votes for its class with weight exp(sim / T);
the class with the largest summed weight wins (ties: the lower class index). It needs no
training, so it is the cheapest honest read-out of a frozen encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlfo.errors import MLFOError
from mlfo.eval.retrieval import nearest_neighbours


@dataclass
class KnnConfig:
    k: int = field(default=200, metadata={"help": "neighbours"})
    temperature: float = field(default=0.07, metadata={"help": "vote temperature T"})
    center: bool = field(default=False, metadata={"help": "subtract each set's mean before L2-normalising"})

    def __post_init__(self):
        if self.k < 1 or not self.temperature > 0:
            raise MLFOError(f"k: need k >= 1 and temperature > 0, got k={self.k}, T={self.temperature}")

    def protocol(self) -> dict:
        return {"k": self.k, "temperature": self.temperature, "center": self.center,
                "votes": "sum of exp(cosine / T) over the k nearest train videos (InstDisc)"}


def knn_scores(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    center: bool = False,
) -> np.ndarray:
    """Class scores (Q, num_classes): summed exp(sim / T) of the k nearest train videos."""
    train_labels = np.asarray(train_labels, dtype=np.int64)
    indices, sims = nearest_neighbours(train, test, k, center)  # (Q, k)
    weights = np.exp(sims / temperature)
    scores = np.zeros((len(indices), num_classes), dtype=np.float64)
    rows = np.repeat(np.arange(len(indices)), indices.shape[1])
    np.add.at(scores, (rows, train_labels[indices].ravel()), weights.ravel())
    return scores


def knn_predict(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.07,
    center: bool = False,
) -> np.ndarray:
    scores = knn_scores(train, train_labels, test, num_classes, k, temperature, center)
    return scores.argmax(axis=1)  # first maximum = lower class index on ties


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[str, float]:
    """``{"top1": %, "top5": %}`` from class scores (ties: lower class index first)."""
    labels = np.asarray(labels)
    order = np.argsort(-np.asarray(scores), axis=1, kind="stable")
    out = {}
    for k in ks:
        if k > scores.shape[1]:
            continue
        out[f"top{k}"] = float(100.0 * np.mean((order[:, :k] == labels[:, None]).any(axis=1)))
    return out
