"""Cached per-video features on disk, and how feature folders are laid out.

One *feature set* is a folder with::

    features.npy         float32 (N, D)   pooled layer4 ("high"), averaged over the views
    features_low.npy ... float32 (N, C)   optional, one per extra level
    index.csv            path,label,label_name   one row per feature row
    protocol.json        views, crops, clip length, checkpoint + sha256, code version, skipped videos

``mlfo extract`` writes one *feature root* per encoder: ``train/`` and ``test/`` sets
(``split1/train`` ... for UCF101 / HMDB51), or a single set directly in the root; the
baselines it is asked for go to ``<root>/baselines/<name>/`` with the same layout, so
``mlfo eval ... ROOT`` evaluates an encoder and its baselines by the same protocol.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlfo.errors import MLFOError

FEATURES_FILE = "features.npy"
INDEX_FILE = "index.csv"
PROTOCOL_FILE = "protocol.json"
BASELINES_DIR = "baselines"
LEVELS = ("low", "mid", "high")


@dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64, -1 = unlabelled
    paths: list[str]
    label_names: list[str]
    protocol: dict = field(default_factory=dict)
    levels: dict[str, np.ndarray] = field(default_factory=dict)  # extra levels, (N, C) each
    directory: Path | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.protocol.get("classes") or [])

    @property
    def groups(self) -> dict[str, str]:
        """class name -> group ("motion" / "appearance" in the demo data), or {}."""
        return dict(self.protocol.get("groups") or {})


def level_file(level: str) -> str:
    return FEATURES_FILE if level == "high" else f"features_{level}.npy"


def save_feature_set(fs: FeatureSet, out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / FEATURES_FILE, fs.features.astype(np.float32))
    for level, values in fs.levels.items():
        if level != "high":
            np.save(out_dir / level_file(level), values.astype(np.float32))
    with open(out_dir / INDEX_FILE, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "label_name"])
        for path, label, name in zip(fs.paths, fs.labels.tolist(), fs.label_names):
            writer.writerow([path, int(label), name])
    (out_dir / PROTOCOL_FILE).write_text(json.dumps(fs.protocol, indent=2) + "\n")
    fs.directory = out_dir
    return out_dir


def load_feature_set(directory: str | os.PathLike, level: str = "high") -> FeatureSet:
    directory = Path(directory)
    if not (directory / FEATURES_FILE).is_file():
        raise MLFOError(f"{directory}: not a feature folder (no {FEATURES_FILE}; run `mlfo extract` first)")
    feat_path = directory / level_file(level)
    if not feat_path.is_file():
        raise MLFOError(f"{feat_path}: level {level!r} was not extracted (use `mlfo extract --levels`)")
    features = np.load(feat_path)
    paths, labels, names = [], [], []
    with open(directory / INDEX_FILE, newline="") as fh:
        for row in csv.DictReader(fh):
            paths.append(row["path"])
            labels.append(int(row["label"]))
            names.append(row.get("label_name", ""))
    if len(paths) != len(features):
        raise MLFOError(f"{directory / INDEX_FILE}: {len(paths)} rows but {len(features)} feature rows")
    protocol = {}
    if (directory / PROTOCOL_FILE).is_file():
        protocol = json.loads((directory / PROTOCOL_FILE).read_text())
    return FeatureSet(features, np.asarray(labels, dtype=np.int64), paths, names, protocol, {}, directory)


def is_feature_set(directory: Path) -> bool:
    return (directory / FEATURES_FILE).is_file()


@dataclass
class FeatureRoot:
    """The feature sets of one encoder: split name ("" when there are no splits) -> (train, test)."""

    root: Path
    splits: dict[str, tuple[Path, Path]]


def _split_order(name: str):
    m = re.fullmatch(r"split(\d+)", name)
    return (0, int(m.group(1))) if m else (1, name)


def find_train_test(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{"": (root/train, root/test)}`` or ``{"split1": (...), ...}``; {} when neither."""
    if is_feature_set(root / "train") and is_feature_set(root / "test"):
        return {"": (root / "train", root / "test")}
    splits = {}
    for sub in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _split_order(p.name)):
        if sub.name.startswith("split") and is_feature_set(sub / "train") and is_feature_set(sub / "test"):
            splits[sub.name] = (sub / "train", sub / "test")
    return splits


def discover_roots(root: str | os.PathLike, splits: list[str] | None = None,
                   include_baselines: bool = True) -> list[FeatureRoot]:
    """The encoder's feature root and, after it, each baseline under ``root/baselines``."""
    root = Path(root)
    if not root.is_dir():
        raise MLFOError(f"{root}: no such feature folder")
    candidates = [root]
    if include_baselines and (root / BASELINES_DIR).is_dir():
        candidates += sorted(p for p in (root / BASELINES_DIR).iterdir() if p.is_dir())
    found = []
    for cand in candidates:
        pairs = find_train_test(cand)
        if splits:
            missing = [s for s in splits if s not in pairs]
            if missing and cand == root:
                raise MLFOError(f"{root}: no features for {', '.join(missing)} (have: {', '.join(pairs) or 'none'})")
            pairs = {s: pairs[s] for s in splits if s in pairs}
        if pairs:
            found.append(FeatureRoot(cand, pairs))
    if not found:
        raise MLFOError(
            f"{root}: no train/ and test/ feature sets (nor split*/train, split*/test) found; "
            "extract both subsets, or pass --train DIR --test DIR"
        )
    return found


def split_names(split: str | None) -> list[str] | None:
    """CLI ``--split`` (1, 2, 3, all or None) -> the split folder names to evaluate (None = all present)."""
    if split in (None, "all"):
        return None
    if str(split).isdigit():
        return [f"split{int(split)}"]
    raise MLFOError(f"--split: expected 1, 2, 3 or all, got {split!r}")
