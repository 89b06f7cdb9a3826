"""Per-video features of frozen encoders, averaged over an explicit set of views.

A video's feature is the mean of ``encoder(view)`` over its views: N uniformly spread
clips (or every sliding window at a stride) times 1 / 3 / 10 spatial crops. Which views
were used is written to ``protocol.json`` next to the features, because "the same
encoder" gives quite different numbers under different views.

Several encoders (the pretrained one and its baselines) are run on the same decoded
batches, so decoding -- the slow part on a CPU -- happens once.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlfo.errors import MLFOError
from mlfo.eval.cards import code_version, sha256_file
from mlfo.eval.features import BASELINES_DIR, FeatureSet, save_feature_set

CROPS = {"center": 1, "three": 3, "ten": 10}


# ---------------------------------------------------------------------------- views


@dataclass
class ViewConfig:
    """Which clips and crops of a video are averaged into its feature."""

    clip_len: int = 16
    num_clips: int = 10  # uniformly spread clips (ignored when ``stride`` is set)
    stride: int | None = None  # every window ``stride`` frames apart instead
    frame_step: int = 1  # temporal subsampling inside a clip
    resize: int = 128  # short side before cropping
    crop_size: int = 112
    crop_mode: str = "center"  # "center" | "three" | "ten"

    def __post_init__(self):
        if self.crop_mode not in CROPS:
            raise MLFOError(f"--crops: expected one of {', '.join(CROPS)}, got {self.crop_mode!r}")
        if self.stride is None and self.num_clips < 1:
            raise MLFOError(f"--clips: must be at least 1, got {self.num_clips}")
        if self.stride is not None and self.stride < 1:
            raise MLFOError(f"--stride: must be at least 1, got {self.stride}")

    @property
    def views_per_video(self) -> int | None:
        """Fixed number of views per video; None for sliding windows (depends on length)."""
        return None if self.stride else self.num_clips * CROPS[self.crop_mode]

    def describe(self) -> str:
        temporal = (f"sliding windows every {self.stride} frames" if self.stride
                    else f"{self.num_clips} uniform clip{'s' if self.num_clips > 1 else ''}")
        return (f"{temporal} x {CROPS[self.crop_mode]} crop{'s' if CROPS[self.crop_mode] > 1 else ''} "
                f"({self.crop_mode}); {self.clip_len} frames, step {self.frame_step}, "
                f"resize {self.resize}, crop {self.crop_size}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(sampling="sliding" if self.stride else "uniform", crops=CROPS[self.crop_mode],
                 views_per_video=self.views_per_video, text=self.describe())
        if self.stride:
            d["num_clips"] = None
        return d

    def dataset(self, records, backend: str = "auto"):
        from mlfo.data.datasets import EvalClipDataset

        temporal = {"stride": self.stride} if self.stride else {"num_clips": self.num_clips}
        return EvalClipDataset(records, self.clip_len, frame_step=self.frame_step, crop_size=self.crop_size,
                               resize=self.resize, crop_mode=self.crop_mode, backend=backend, **temporal)


# ---------------------------------------------------------------------------- encoders


@dataclass
class Encoder:
    """A frozen backbone plus what identifies it in cards and reports."""

    module: nn.Module
    info: dict  # name, kind, checkpoint, sha256, arch, seed
    key: str = "main"  # "main" or the baseline folder name


def _arch_kwargs(arch: dict) -> dict:
    """build_backbone kwargs of an encoder's ``arch``, without its (irrelevant) classifier."""
    return {k: arch[k] for k in ("name", "stem", "widths") if k in arch}


def random_encoder(arch: dict | str, seed: int = 0) -> Encoder:
    """A randomly initialised backbone (seeded): the floor every pretrained encoder must beat."""
    from mlfo.models.backbones import build_backbone

    kwargs = {"name": arch} if isinstance(arch, str) else _arch_kwargs(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build_backbone(**kwargs)
    info = {"name": f"random-init {module.arch['name']}", "kind": "random", "checkpoint": None,
            "sha256": None, "seed": seed, "arch": module.arch}
    return Encoder(module.eval(), info, "random")


def checkpoint_encoder(path: str | os.PathLike, kind: str = "checkpoint", name: str | None = None) -> Encoder:
    """A pretraining checkpoint, an exported encoder or a torchvision state dict (``kind``
    "torchvision" only changes the name shown in tables)."""
    import mlfo

    path = Path(path)
    if not path.is_file():
        raise MLFOError(f"{path}: no such checkpoint file")
    module = mlfo.load_encoder(path)
    if name is None:
        name = (f"torchvision {module.arch['name']} ({path.stem})" if kind == "torchvision"
                else f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem)
    info = {"name": name, "kind": kind, "checkpoint": str(path.resolve()), "sha256": sha256_file(path),
            "arch": module.arch}
    return Encoder(module, info, "torchvision-" + path.stem if kind == "torchvision" else "main")


def resolve_encoder(spec: str, arch: str | None = None, seed: int = 0, name: str | None = None) -> Encoder:
    """``random`` | ``torchvision:PATH`` | a checkpoint / exported encoder path."""
    if spec == "random":
        enc = random_encoder(arch or "r3d_18", seed)
    elif spec.startswith("torchvision:"):
        enc = checkpoint_encoder(spec.split(":", 1)[1], kind="torchvision")
    else:
        enc = checkpoint_encoder(spec)
    if name:
        enc.info["name"] = name
    enc.key = "main"
    return enc


def resolve_baselines(specs: Sequence[str], main: Encoder, seed: int = 0) -> list[Encoder]:
    """``--baseline random`` (same architecture as the main encoder) and/or ``torchvision:PATH``."""
    out = []
    for spec in specs:
        if spec == "random":
            enc = random_encoder(main.info["arch"], seed)
        elif spec.startswith("torchvision:"):
            enc = checkpoint_encoder(spec.split(":", 1)[1], kind="torchvision")
        else:
            raise MLFOError(f"--baseline: expected 'random' or 'torchvision:PATH', got {spec!r}")
        if enc.key in [e.key for e in out]:
            raise MLFOError(f"--baseline: {spec!r} given twice")
        out.append(enc)
    return out


# ---------------------------------------------------------------------------- extraction


class _Indexed(torch.utils.data.Dataset):
    """Wraps a dataset so a failed item (None) still says which video it was."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return i, self.dataset[i]


def _collate_views(batch):
    """Concatenate the views of the good videos: (sum V_i, 3, T, S, S), plus per-video counts."""
    good = [(i, item) for i, item in batch if item is not None]
    return {
        "views": torch.cat([item["views"] for _, item in good]) if good else None,
        "counts": [int(item["views"].shape[0]) for _, item in good],
        "indices": [i for i, _ in good],
        "failed": [i for i, item in batch if item is None],
    }


def _pooled(module: nn.Module, clips: torch.Tensor, levels: Sequence[str]) -> dict[str, torch.Tensor]:
    """level -> (N, C) globally average-pooled features of a batch of clips."""
    if list(levels) == ["high"]:
        return {"high": module(clips)}
    maps = module.forward_levels(clips)
    return {lv: maps[lv].mean(dim=(2, 3, 4)) for lv in levels}


@dataclass
class ExtractionResult:
    features: dict[str, dict[str, np.ndarray]]  # encoder key -> level -> (N_ok, C)
    kept: list[int]  # dataset indices of the videos that have features, in order
    failed: list[int] = field(default_factory=list)  # dataset indices that failed to decode
    seconds: float = 0.0
    device: str = "cpu"


@torch.no_grad()
def extract_features(
    encoders: dict[str, nn.Module],
    dataset,
    *,
    levels: Sequence[str] = ("high",),
    batch_size: int = 32,
    views_per_video: int | None = None,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "extract",
) -> ExtractionResult:
    """Mean over each video's views of each encoder's pooled features.

    ``batch_size`` counts clips per forward pass; a loader batch holds
    ``batch_size // views_per_video`` videos (one when the view count varies).
    """
    from tqdm.auto import tqdm

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for m in encoders.values():
        m.to(device).eval()
    videos_per_batch = max(1, batch_size // views_per_video) if views_per_video else 1
    loader = torch.utils.data.DataLoader(
        _Indexed(dataset), batch_size=videos_per_batch, shuffle=False, num_workers=num_workers,
        collate_fn=_collate_views, pin_memory=device.type == "cuda",
        persistent_workers=False, prefetch_factor=2 if num_workers > 0 else None,
    )
    sums = {k: {lv: [] for lv in levels} for k in encoders}
    kept, failed = [], []
    start = time.perf_counter()
    bar = tqdm(total=len(dataset), unit="video", desc=desc, disable=not progress, dynamic_ncols=True)
    for batch in loader:
        failed += batch["failed"]
        if batch["views"] is not None:
            views, counts = batch["views"], batch["counts"]
            owner = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(device)
            for key, module in encoders.items():
                per_level = {lv: torch.zeros(len(counts), 0) for lv in levels}
                for c in range(0, len(views), batch_size):
                    clips = views[c : c + batch_size].to(device, non_blocking=True).float()
                    out = _pooled(module, clips, levels)
                    for lv in levels:
                        feats = out[lv].float()
                        if per_level[lv].shape[1] == 0:
                            per_level[lv] = torch.zeros(len(counts), feats.shape[1], device=device, dtype=torch.float64)
                        per_level[lv].index_add_(0, owner[c : c + len(clips)], feats.double())
                denom = torch.tensor(counts, device=device, dtype=torch.float64)[:, None]
                for lv in levels:
                    sums[key][lv].append((per_level[lv] / denom).float().cpu().numpy())
            kept += batch["indices"]
        bar.update(len(batch["indices"]) + len(batch["failed"]))
        if failed:
            bar.set_postfix(skipped=len(failed))
    bar.close()
    features = {
        k: {lv: (np.concatenate(v) if v else np.zeros((0, 0), np.float32)) for lv, v in per.items()}
        for k, per in sums.items()
    }
    return ExtractionResult(features, kept, sorted(failed), time.perf_counter() - start, str(device))


# ---------------------------------------------------------------------------- data sets


@dataclass
class DataPart:
    """One list of videos to extract (e.g. split 1 / test) and where its features go."""

    subdir: str  # "" | "train" | "test" | "split1/train" ...
    records: list  # VideoRecord
    info: dict  # source, fmt, split, subset, name


def _has_train_test_csv(path: Path) -> bool:
    return path.is_dir() and (path / "train.csv").is_file() and (path / "test.csv").is_file()


def find_groups(data: str | os.PathLike) -> tuple[list[str], dict[str, str]]:
    """Class names and class -> group from a ``classes.json`` beside the data (demo data), or empty."""
    p = Path(data)
    for cand in ([p / "classes.json"] if p.is_dir() else []) + [p.parent / "classes.json"]:
        if cand.is_file():
            try:
                meta = json.loads(cand.read_text())
                entries = meta["classes"]
                names = [e["name"] if isinstance(e, dict) else str(e) for e in entries]
                groups = {e["name"]: e["group"] for e in entries if isinstance(e, dict) and e.get("group")}
                return names, groups
            except (ValueError, KeyError, TypeError):
                raise MLFOError(f"{cand}: not a classes.json with a 'classes' list of {{name, group}}") from None
    return [], {}


def resolve_data(
    data: str,
    *,
    fmt: str = "auto",
    split: str | None = None,
    subset: str | None = None,
    split_dir: str | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> tuple[list[DataPart], list[str], dict[str, str], list[dict]]:
    """The parts to extract, the class list shared by all parts, class groups, and the videos
    dropped before extraction (unreadable when indexed).

    - UCF101 / HMDB51 (``--split-dir``): ``split{N}/{train,test}`` for N in --split (1-3 or all);
    - a folder with train.csv and test.csv (the demo data): ``train`` and ``test``;
    - anything else ``load_index`` reads: one part, in ``--subset``'s folder if given.
    ``--subset train|test`` restricts to one subset.
    """
    from mlfo.data.sources import detect_format, load_index

    if fmt == "auto" and split_dir is not None and Path(split_dir).is_dir() and Path(data).is_dir():
        fmt = detect_format(Path(data), Path(split_dir))
    if subset not in (None, "both", "train", "test"):
        raise MLFOError(f"--subset: expected train, test or both, got {subset!r}")
    subsets = ["train", "test"] if subset in (None, "both") else [subset]
    path = Path(data)
    jobs: list[tuple[str, dict, dict]] = []  # subdir, load_index kwargs, info
    if fmt in ("ucf101", "hmdb51") or split_dir is not None:
        if split in (None, "all"):
            splits = [1, 2, 3] if split == "all" else [1]
        elif str(split).isdigit() and 1 <= int(split) <= 3:
            splits = [int(split)]
        else:
            raise MLFOError(f"--split: expected 1, 2, 3 or all, got {split!r}")
        for s in splits:
            for sub in subsets:
                jobs.append((f"split{s}/{sub}", dict(source=data, fmt=fmt, split=s, subset=sub, split_dir=split_dir),
                             {"split": s, "subset": sub}))
    elif split is not None:
        raise MLFOError(f"--split: official splits need UCF101 / HMDB51 data with --split-dir (got {data})")
    elif _has_train_test_csv(path):
        for sub in subsets:
            jobs.append((sub, dict(source=str(path / f"{sub}.csv"), fmt="csv"), {"subset": sub}))
    else:
        sub = subset if subset in ("train", "test") else ""
        jobs.append((sub, dict(source=data, fmt=fmt), {"subset": sub or None}))

    indexes = []
    for subdir, kwargs, info in jobs:
        index = load_index(kwargs.pop("source"), backend=backend, progress=progress, **kwargs)
        indexes.append((subdir, index, dict(info, fmt=kwargs.get("fmt", fmt),
                                            source=str(Path(index.source)) if index.source else data)))

    names, groups = find_groups(data)
    classes = _shared_classes(names, [ix for _, ix, _ in indexes])
    parts, dropped = [], []
    dataset_name = _dataset_name(data, fmt, split_dir)
    for subdir, index, info in indexes:
        records = []
        dropped += [{"path": s, "reason": "not indexed", "part": subdir} for s in getattr(index, "skipped", [])]
        for rec in index.records:
            if rec.status != "ok" or rec.num_frames <= 0:
                dropped.append({"path": rec.path, "reason": rec.status if rec.status != "ok" else "no frames",
                                "part": subdir})
                continue
            records.append(_with_shared_label(rec, index.classes, classes))
        parts.append(DataPart(subdir, records, dict(info, name=dataset_name, split_dir=split_dir)))
    return parts, classes, groups, dropped


def _dataset_name(data: str, fmt: str, split_dir: str | None) -> str:
    if fmt in ("ucf101", "hmdb51"):
        return fmt
    p = Path(data).resolve()
    return p.name if p.is_dir() else f"{p.parent.name}/{p.name}"


def _shared_classes(preferred: list[str], indexes) -> list[str]:
    """One class list for every part, so label k means the same class in train and test."""
    seen = []
    for ix in indexes:
        for c in ix.classes:
            if c not in seen:
                seen.append(c)
    if preferred and all(c in preferred for c in seen):
        return list(preferred)
    if all(list(ix.classes) == list(indexes[0].classes) for ix in indexes):
        return list(indexes[0].classes)
    return sorted(seen)


def _with_shared_label(rec, own_classes: list[str], classes: list[str]):
    import dataclasses

    name = rec.label_name or (own_classes[rec.label] if 0 <= rec.label < len(own_classes) else "")
    label = classes.index(name) if name in classes else rec.label
    return dataclasses.replace(rec, label=label, label_name=name)


# ---------------------------------------------------------------------------- command body


def run_extract(
    encoder: Encoder,
    baselines: list[Encoder],
    parts: list[DataPart],
    classes: list[str],
    groups: dict[str, str],
    dropped: list[dict],
    out: str | os.PathLike,
    views: ViewConfig,
    *,
    levels: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | None = None,
    backend: str = "auto",
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Extract every part with the encoder and its baselines; write feature sets.

    Returns encoder key -> written feature folders. The encoder's sets go to ``out/<part>``,
    baseline ``b``'s to ``out/baselines/<b>/<part>``.
    """
    out = Path(out)
    level_names = ["low", "mid", "high"] if levels else ["high"]
    all_encoders = [encoder] + baselines
    modules = {e.key: e.module for e in all_encoders}
    written: dict[str, list[Path]] = {e.key: [] for e in all_encoders}
    for part in parts:
        if not part.records:
            raise MLFOError(f"{part.info.get('source')}: no readable videos to extract")
        dataset = views.dataset(part.records, backend=backend)
        res = extract_features(modules, dataset, levels=level_names, batch_size=batch_size,
                               views_per_video=views.views_per_video, num_workers=num_workers,
                               device=device, progress=progress, desc=f"extract {part.subdir or 'videos'}")
        part_dropped = [d for d in dropped if d["part"] == part.subdir]
        skipped = part_dropped + [{"path": part.records[i].path, "reason": "decode failed"} for i in res.failed]
        kept = [part.records[i] for i in res.kept]
        if not kept:
            raise MLFOError(f"{part.info.get('source')}: every video failed to decode")
        for enc in all_encoders:
            feats = res.features[enc.key]
            protocol = {
                "encoder": enc.info,
                "views": views.to_dict(),
                "levels": level_names,
                "data": part.info,
                "classes": classes,
                "groups": groups,
                "n_videos": len(kept),
                "n_skipped": len(skipped),
                "skipped": skipped,
                "feature_dim": int(feats["high"].shape[1]),
                "device": res.device,
                "seconds": round(res.seconds, 2),
                "code_version": code_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            fs = FeatureSet(
                features=feats["high"], labels=np.array([r.label for r in kept], dtype=np.int64),
                paths=[r.path for r in kept], label_names=[r.label_name for r in kept], protocol=protocol,
                levels={lv: feats[lv] for lv in level_names if lv != "high"},
            )
            base = out if enc.key == "main" else out / BASELINES_DIR / enc.key
            written[enc.key].append(save_feature_set(fs, base / part.subdir))
        msg = f"{part.subdir or 'videos'}: {len(kept)} videos, {views.describe()}"
        if skipped:
            msg += f"; skipped {len(skipped)} (see protocol.json 'skipped')"
        print(msg)
    return written

