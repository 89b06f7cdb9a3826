"""Eval figures written beside the cards: t-SNE map, confusion matrix, R@k curve (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def embedding_map(
    features: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "t-SNE of video features",
    seed: int = 0,
    max_points: int | None = None,
) -> Path:
    """2-D t-SNE of L2-normalised features (mlfo.inspect.mapping: a seeded subsample of at
    most ``max_points`` videos), one colour per class."""
    from mlfo.inspect.mapping import MAX_POINTS, map_2d

    plt = _pyplot()
    m2 = map_2d(features, max_points or MAX_POINTS, seed)
    xy, labels = m2.xy, np.asarray(labels)[m2.indices]
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab20" if len(class_names) > 10 else "tab10")
    for c in np.unique(labels):
        m = labels == c
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=12, color=cmap(int(c) % cmap.N), label=name)
    if len(class_names) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="best")
    if len(m2.indices) < len(features):
        title += f" ({len(m2.indices)} of {len(features)} videos)"
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return _save(fig, path)


def confusion_matrix_plot(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix (rows: true class)",
) -> Path:
    """Row-normalised confusion matrix."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(n)).astype(np.float64)
    cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.3 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def recall_curve(
    curves: dict[str, np.ndarray], path: str | os.PathLike, max_k: int = 50, title: str = "Retrieval R@k"
) -> Path:
    """R@k for k = 1..max_k, one line per encoder; ``curves`` maps name -> first-hit ranks."""
    plt = _pyplot()
    ks = np.arange(1, max_k + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ranks in curves.items():
        ranks = np.asarray(ranks)
        ax.plot(ks, [100 * np.mean((ranks > 0) & (ranks <= k)) for k in ks], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("R@k (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def spectrum_plot(spectra: dict[str, dict[str, Sequence[float]]], path: str | os.PathLike,
                  title: str = "Singular values of the video features (normalised to the largest)") -> Path:
    """One panel per level, one line per encoder: sigma_i / sigma_1 against i (log scale).
    A collapsed embedding falls off a cliff after a few values."""
    plt = _pyplot()
    levels = list(next(iter(spectra.values())))
    fig, axes = plt.subplots(1, len(levels), figsize=(3.6 * len(levels), 3.0), squeeze=False)
    for ax, level in zip(axes[0], levels):
        for name, per_level in spectra.items():
            s = np.asarray(per_level[level], dtype=np.float64)
            if s.size and s[0] > 0:
                ax.plot(np.arange(1, len(s) + 1), s / s[0], label=name, linewidth=1.4)
        ax.set_yscale("log")
        ax.set_xlabel("index i")
        ax.set_title(level)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("sigma_i / sigma_1")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
