"""Numbers over parts of a test set and over splits, the same way for every evaluation:
class groups (motion / appearance on the demo data), means over official splits, and the
number of classes a classifier must have."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def group_masks(labels: np.ndarray, classes: Sequence[str], groups: dict[str, str]) -> dict[str, np.ndarray]:
    """Per group ("motion", "appearance"), a boolean mask over the videos of its classes."""
    if not groups or not classes:
        return {}
    labels = np.asarray(labels)
    class_group = np.array([groups.get(name, "") for name in classes] + [""])
    per_video = class_group[np.where((labels >= 0) & (labels < len(classes)), labels, len(classes))]
    return {g: per_video == g for g in sorted(set(groups.values())) if g}


def per_group(masks: dict[str, np.ndarray], score: Callable[[np.ndarray], dict]) -> dict[str, dict]:
    """``score(mask)`` for every group that has test videos."""
    return {g: score(m) for g, m in masks.items() if m.any()}


def mean_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Metric-wise mean over splits (metrics every split has)."""
    keys = [k for k in dicts[0] if all(k in d for d in dicts)]
    return {k: float(np.mean([d[k] for d in dicts])) for k in keys}


def mean_groups(per_split: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Group-wise ``mean_dicts`` over splits (groups every split has)."""
    names = [g for g in per_split[0] if all(g in groups for groups in per_split)]
    return {g: mean_dicts([groups[g] for groups in per_split]) for g in names}


def num_classes(classes: Sequence[str], *labels: np.ndarray) -> int:
    """Outputs a classifier needs: the class list, or more when a label lies beyond it."""
    return max(len(classes), *(int(np.max(lab)) + 1 for lab in labels if len(lab)))
