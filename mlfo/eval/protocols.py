"""Run one evaluation on cached features of an encoder (and its baselines), write cards.

Every evaluation on features has the same shape: for each encoder root, for each split,
load train and test, compute metrics (overall and per class group), average over splits,
write a card and figures beside the features, print one table comparing the encoders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlfo.errors import MLFOError
from mlfo.eval import plots
from mlfo.eval.cards import assemble_card, print_cards, write_card
from mlfo.eval.aggregate import group_masks, num_classes, per_group
from mlfo.eval.features import FeatureRoot, FeatureSet, encoder_identity, load_feature_set
from mlfo.eval.knn import knn_scores, topk_accuracy
from mlfo.eval.labels import align, notes_line
from mlfo.eval.linear import LinearProbeConfig, linear_probe
from mlfo.eval.retrieval import DEFAULT_KS, first_hit_ranks, recall_from_ranks


@dataclass
class SplitResult:
    metrics: dict[str, float]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # extra card fields (e.g. linear model selection)
    predictions: np.ndarray | None = None  # test predictions, for the confusion matrix
    ranks: np.ndarray | None = None  # retrieval first-hit ranks, for the R@k curve


def _labelled(fs: FeatureSet, role: str) -> FeatureSet:
    if len(fs.features) == 0:
        raise MLFOError(f"{fs.directory}: no videos in the {role} features")
    if (fs.labels < 0).any():
        raise MLFOError(f"{fs.directory}: {int((fs.labels < 0).sum())} {role} videos have no label")
    return fs


def num_classes_of(train: FeatureSet, test: FeatureSet) -> int:
    return num_classes(train.classes, train.labels, test.labels)


def _masks(test: FeatureSet) -> dict[str, np.ndarray]:
    return group_masks(test.labels, test.classes, test.groups)


# ---------------------------------------------------------------- per-split evaluations


def retrieval_split(train: FeatureSet, test: FeatureSet, ks=DEFAULT_KS, center=False) -> SplitResult:
    ranks = first_hit_ranks(train.features, train.labels, test.features, test.labels, max(ks), center)
    groups = per_group(_masks(test), lambda m: recall_from_ranks(ranks[m], ks))
    return SplitResult(recall_from_ranks(ranks, ks), groups, ranks=ranks)


def knn_split(train: FeatureSet, test: FeatureSet, k=200, temperature=0.07, center=False) -> SplitResult:
    scores = knn_scores(train.features, train.labels, test.features, num_classes_of(train, test),
                        k, temperature, center)
    groups = per_group(_masks(test), lambda m: topk_accuracy(scores[m], test.labels[m]))
    return SplitResult(topk_accuracy(scores, test.labels), groups, predictions=scores.argmax(1))


def linear_split(train: FeatureSet, test: FeatureSet, cfg: LinearProbeConfig) -> SplitResult:
    res = linear_probe(train.features, train.labels, test.features, test.labels, num_classes_of(train, test), cfg)
    groups = per_group(_masks(test), lambda m: topk_accuracy(res.scores[m], test.labels[m]))
    details = {"selection": res.chosen, "search": res.search}
    return SplitResult(res.metrics, groups, details, predictions=res.predictions)


# ---------------------------------------------------------------- driver


@dataclass
class RootResults:
    """One encoder root evaluated on each of its splits (split "default" without official splits)."""

    per_split: dict[str, SplitResult] = field(default_factory=dict)
    features: dict[str, dict] = field(default_factory=dict)  # split -> feature folders and counts
    feature_views: dict = field(default_factory=dict)
    encoder: dict = field(default_factory=dict)
    dataset: dict = field(default_factory=dict)
    caveats: dict[str, dict] = field(default_factory=dict)  # split -> label notes
    last: tuple[FeatureSet, FeatureSet] | None = None  # the last split's (train, test), for figures


def evaluate_root(root: FeatureRoot, split_fn: Callable[[FeatureSet, FeatureSet], SplitResult],
                  level: str) -> RootResults:
    """Load, align and score every split of one encoder root."""
    res = RootResults()
    for split, (train_dir, test_dir) in root.splits.items():
        key = split or "default"
        train = _labelled(load_feature_set(train_dir, level), "train")
        test = _labelled(load_feature_set(test_dir, level), "test")
        _check_compatible(train, test)
        train, test, notes = align(train, test)  # labels matched by class name
        if notes.card():
            res.caveats[key] = notes.card()
            print(notes_line(f"{root.root}{' ' + split if split else ''}", notes))
        res.per_split[key] = split_fn(train, test)
        res.features[key] = {"train": str(train_dir), "test": str(test_dir),
                             "n_train": len(train.labels), "n_test": len(test.labels)}
        res.feature_views = {"train": train.protocol.get("views"), "test": test.protocol.get("views")}
        res.encoder = train.protocol.get("encoder") or {"name": root.root.name}
        res.dataset = dict(train.protocol.get("data") or {})
        res.last = (train, test)
    return res


def root_card(task: str, label: str, res: RootResults, protocol: dict, level: str) -> dict:
    """The card of one root: ``assemble_card`` plus the feature protocol and the details."""
    results = list(res.per_split.values())
    extra = {}
    if len(results) == 1 and results[0].details:
        extra.update(results[0].details)
    elif any(r.details for r in results):
        extra["per_split_details"] = {s: r.details for s, r in res.per_split.items()}
    if any(r.groups for r in results) and len(results) > 1:
        extra["split_groups"] = {s: r.groups for s, r in res.per_split.items()}
    full_protocol = dict(protocol, level=level, feature_views=res.feature_views, features=res.features)
    return assemble_card(task, label, res.encoder, {s: r.metrics for s, r in res.per_split.items()},
                         full_protocol, res.dataset, groups={s: r.groups for s, r in res.per_split.items()},
                         caveats=res.caveats, extra=extra)


def evaluate_roots(
    task: str,
    label: str,
    roots: list[FeatureRoot],
    split_fn: Callable[[FeatureSet, FeatureSet], SplitResult],
    protocol: dict,
    level: str = "high",
    out_dir: Path | None = None,
    plot: bool = True,
) -> list[dict]:
    """Evaluate each encoder root by ``split_fn``; write ``<label>.card.json`` (+ PNGs) per root.

    ``out_dir`` (only for a single root) overrides where the card goes.
    """
    cards, paths, curves = [], [], {}
    for root in roots:
        res = evaluate_root(root, split_fn, level)
        card = root_card(task, label, res, protocol, level)
        target = out_dir if (out_dir is not None and len(roots) == 1) else root.root
        paths.append(write_card(card, target, label))
        cards.append(card)
        if plot:
            _plots(task, label, target, res.per_split, *res.last, res.encoder.get("name", root.root.name),
                   curves, level)
    if plot and curves:
        # One R@k figure comparing the encoder and its baselines, beside the first card.
        plots.recall_curve(curves, paths[0].parent / f"{label}_recall_curve.png")
    print_cards(cards)
    for path in paths:
        print(f"card: {path}")
    return cards


def _check_compatible(train: FeatureSet, test: FeatureSet) -> None:
    if train.features.shape[1] != test.features.shape[1]:
        raise MLFOError(
            f"{test.directory}: feature size {test.features.shape[1]} differs from train's "
            f"{train.features.shape[1]} ({train.directory}); extract both with the same encoder"
        )
    a, b = encoder_identity(train.protocol.get("encoder")), encoder_identity(test.protocol.get("encoder"))
    if a and b and a != b:  # random-init encoders are identified by architecture, seed and init
        raise MLFOError(f"{test.directory}: extracted with another encoder than {train.directory}")


def _plots(task, label, target, per_split, train, test, name, curves, level) -> None:
    last = list(per_split.values())[-1]
    classes = test.classes or [str(i) for i in range(num_classes_of(train, test))]
    if last.ranks is not None:
        curves[name] = last.ranks
    if last.predictions is not None and task in ("linear", "knn"):
        plots.confusion_matrix_plot(test.labels, last.predictions, classes,
                                    Path(target) / f"{label}_confusion.png",
                                    title=f"{name}: {label} confusion (rows: true class)")
    if task == "retrieval" and len(test.features) + len(train.features) >= 5:
        plots.embedding_map(np.concatenate([train.features, test.features]),
                            np.concatenate([train.labels, test.labels]), classes,
                            Path(target) / f"tsne_{level}.png",
                            title=f"{name}: t-SNE of train + test features ({level})")
