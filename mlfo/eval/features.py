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
``<root>/mlfo-extract.json`` records what ``mlfo extract`` wrote (``mlfo.eval.output_folder``);
a root whose extraction is still running (or was interrupted) is refused here, and so is
a baseline whose views differ from the encoder's.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlfo.errors import MLFOError, make_folder

FEATURES_FILE = "features.npy"
INDEX_FILE = "index.csv"
PROTOCOL_FILE = "protocol.json"
BASELINES_DIR = "baselines"
LEVELS = ("low", "mid", "high")
RECORD_FILE = "mlfo-extract.json"  # what mlfo extract wrote here (mlfo.eval.output_folder)
SHARDS_DIR = ".mlfo-shards"  # finished shards of an extraction under way
_SETS = ("", "train/", "test/", "split*/train/", "split*/test/")
FEATURE_SET_GLOBS = tuple(f"{b}{s}{f}" for b in ("", f"{BASELINES_DIR}/*/") for s in _SETS
                          for f in ("features*.npy", INDEX_FILE, PROTOCOL_FILE))
RANDOM_INIT = "mlfo.models.backbones.build_backbone under torch.manual_seed(seed)"


def encoder_identity(info: dict | None) -> str | None:
    """What identifies an encoder's weights: its file's sha256, or for a random-init encoder
    its architecture, seed and initialisation; None when nothing does."""
    info = info or {}
    if info.get("identity"):
        return str(info["identity"])
    if info.get("sha256"):
        return f"sha256:{info['sha256']}"
    if info.get("kind") == "random" and info.get("arch") is not None:
        text = json.dumps({"arch": info["arch"], "seed": info.get("seed"), "init": RANDOM_INIT}, sort_keys=True)
        return f"random:{hashlib.sha256(text.encode()).hexdigest()[:20]}"
    return None


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


def feature_set_files(out_dir: Path, levels=("high",)) -> list[Path]:
    """The files ``save_feature_set`` writes into ``out_dir``."""
    return [out_dir / level_file(lv) for lv in levels] + [out_dir / INDEX_FILE, out_dir / PROTOCOL_FILE]


def _atomic(path: Path, write) -> None:
    """``write(file)`` to a temporary name beside ``path``, then rename: whole files or none."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") if path.suffix == ".npy" else open(tmp, "w", newline="") as fh:
            write(fh)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise MLFOError(f"{path}: cannot write ({err.strerror or err})") from None


def save_feature_set(fs: FeatureSet, out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    make_folder(out_dir, "feature folder")
    _atomic(out_dir / FEATURES_FILE, lambda fh: np.save(fh, fs.features.astype(np.float32)))
    for level, values in fs.levels.items():
        if level != "high":
            _atomic(out_dir / level_file(level), lambda fh, v=values: np.save(fh, v.astype(np.float32)))

    def index(fh):
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "label_name"])
        for path, label, name in zip(fs.paths, fs.labels.tolist(), fs.label_names):
            writer.writerow([path, int(label), name])

    _atomic(out_dir / INDEX_FILE, index)
    _atomic(out_dir / PROTOCOL_FILE, lambda fh: fh.write(json.dumps(fs.protocol, indent=2) + "\n"))
    fs.directory = out_dir
    return out_dir


def _load_features(path: Path) -> np.ndarray:
    """A finite float (N, D) array from a .npy file, or one line naming the file."""
    try:
        arr = np.load(path, allow_pickle=False)  # a pickled object array could run code
    except Exception as err:  # truncated, garbage, pickled: numpy raises several kinds
        raise MLFOError(f"{path}: not a readable .npy array ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        what = f"{arr.dtype} array of shape {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise MLFOError(f"{path}: expected float features of shape (videos, dims), got a {what}")
    bad = int((~np.isfinite(arr).all(axis=1)).sum())
    if bad:
        raise MLFOError(f"{path}: {bad} of {len(arr)} feature rows hold NaN or inf; re-extract them")
    return arr


def _read_index(path: Path) -> tuple[list[str], list[int], list[str]]:
    if not path.is_file():
        raise MLFOError(f"{path}: missing (a feature set has features.npy, index.csv and protocol.json)")
    paths, labels, names = [], [], []
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise MLFOError(f"{path}: not a feature index (header must hold path,label[,label_name])")
            for line, row in enumerate(reader, start=2):
                if None in row or None in row.values():
                    raise MLFOError(f"{path}:{line}: expected {len(reader.fieldnames)} columns")
                try:
                    labels.append(int(row["label"]))
                except ValueError:
                    raise MLFOError(f"{path}:{line}: label {row['label']!r} is not an integer") from None
                paths.append(row["path"])
                names.append(row.get("label_name", ""))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MLFOError(f"{path}: not a readable CSV ({str(err).splitlines()[0]})") from None
    return paths, labels, names


def _read_protocol(path: Path) -> dict:
    if not path.is_file():
        raise MLFOError(f"{path}: missing (it says which encoder, views and classes the features are)")
    try:
        protocol = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise MLFOError(f"{path}: not readable JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(protocol, dict) or not isinstance(protocol.get("classes", []), list):
        raise MLFOError(f"{path}: not an mlfo protocol (a JSON object with a 'classes' list)")
    return protocol


def load_feature_set(directory: str | os.PathLike, level: str = "high") -> FeatureSet:
    """A feature set, checked: every file present and readable, integer labels, one index
    row per feature row, finite features. Anything else is one line naming the file."""
    directory = Path(directory)
    if not (directory / FEATURES_FILE).is_file():
        raise MLFOError(f"{directory}: not a feature folder (no {FEATURES_FILE}; run `mlfo extract` first)")
    feat_path = directory / level_file(level)
    if not feat_path.is_file():
        raise MLFOError(f"{feat_path}: level {level!r} was not extracted (use `mlfo extract --levels`)")
    features = _load_features(feat_path)
    paths, labels, names = _read_index(directory / INDEX_FILE)
    if len(paths) != len(features):
        raise MLFOError(f"{directory / INDEX_FILE}: {len(paths)} rows but {len(features)} feature rows")
    protocol = _read_protocol(directory / PROTOCOL_FILE)
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


def _pair(folder: Path) -> tuple[Path, Path]:
    """``(folder/train, folder/test)``; a missing half is an error, never a silent skip."""
    for sub in ("train", "test"):
        if not is_feature_set(folder / sub):
            raise MLFOError(f"{folder / sub / FEATURES_FILE}: missing (evaluation needs train and test "
                            "features; extract both subsets)")
    return folder / "train", folder / "test"


def find_train_test(root: Path) -> dict[str, tuple[Path, Path]]:
    """``{"": (root/train, root/test)}`` or ``{"split1": (...), ...}``; {} when neither is
    there. A train/ without test/ (or the reverse) is an error naming the missing file."""
    if (root / "train").is_dir() or (root / "test").is_dir():
        return {"": _pair(root)}
    subs = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"split\d+", p.name)]
    return {sub.name: _pair(sub) for sub in sorted(subs, key=lambda p: _split_order(p.name))}


def discover_roots(root: str | os.PathLike, splits: list[str] | None = None,
                   include_baselines: bool = True) -> list[FeatureRoot]:
    """The encoder's feature root and, after it, each baseline under ``root/baselines``.
    Every baseline must have the splits the encoder has: one left out of the table would
    read as a comparison that was made."""
    root = Path(root)
    if not root.is_dir():
        raise MLFOError(f"{root}: no such feature folder")
    _check_record(root)
    pairs = find_train_test(root)
    if not pairs:
        raise MLFOError(
            f"{root}: no train/ and test/ feature sets (nor split*/train, split*/test) found; "
            "extract both subsets, or pass --train DIR --test DIR"
        )
    if splits:
        missing = [s for s in splits if s not in pairs]
        if missing:
            raise MLFOError(f"{root}: no features for {', '.join(missing)} (have: {', '.join(pairs)})")
        pairs = {s: pairs[s] for s in splits}
    found = [FeatureRoot(root, pairs)]
    baselines = sorted(p for p in (root / BASELINES_DIR).iterdir() if p.is_dir()) \
        if include_baselines and (root / BASELINES_DIR).is_dir() else []
    views = _views_of(next(iter(pairs.values()))[0])
    for cand in baselines:
        theirs = find_train_test(cand)
        missing = [s or "train/test" for s in pairs if s not in theirs]
        if missing:
            raise MLFOError(f"{cand}: baseline has no features for {', '.join(missing)} (the encoder has); "
                            "extract them, or pass --no-baselines")
        first = next(iter(theirs[s] for s in pairs))[0]
        if _views_of(first) != views:
            raise MLFOError(f"{first}: baseline features of other views ({_views_text(first)}) than the "
                            f"encoder's ({_views_text(next(iter(pairs.values()))[0])}); re-extract them "
                            "together, or pass --no-baselines")
        found.append(FeatureRoot(cand, {s: theirs[s] for s in pairs}))
    return found


def _views_of(feature_dir: Path):
    return _read_protocol(feature_dir / PROTOCOL_FILE).get("views")


def _views_text(feature_dir: Path) -> str:
    views = _views_of(feature_dir)
    return views.get("text", "?") if isinstance(views, dict) else "not recorded"


def _check_record(root: Path) -> None:
    """Refuse a root whose ``mlfo extract`` has not finished (interrupted, or still running)."""
    path = root / RECORD_FILE
    if not path.is_file():
        return
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise MLFOError(f"{path}: not readable JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(record, dict) or record.get("state") != "complete":
        done = ", ".join(record.get("done_parts") or []) if isinstance(record, dict) else ""
        raise MLFOError(f"{root}: its extraction did not finish (parts done: {done or 'none'}); run the same "
                        "`mlfo extract` again to complete it")


def split_names(split: str | None) -> list[str] | None:
    """CLI ``--split`` (1, 2, 3, all or None) -> the split folder names to evaluate (None = all present)."""
    if split in (None, "all"):
        return None
    if str(split).isdigit():
        return [f"split{int(split)}"]
    raise MLFOError(f"--split: expected 1, 2, 3 or all, got {split!r}")
