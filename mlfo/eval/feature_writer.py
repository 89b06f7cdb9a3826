"""``write_features``: every data part through the encoder and its baselines, into an output
folder, by one process or by all of torchrun's processes together.

Per part, the ranks share its shards (``mlfo.eval.shards``) and rank 0 merges them and
writes one feature set per encoder (the encoder's in ``out/<part>``, baseline ``b``'s in
``out/baselines/<b>/<part>``). Rank 0 alone claims and records the output folder
(``mlfo.eval.output_folder``) before anything is written; a refusal there, or a failure
on any rank, stops every rank. Run again, the same command resumes: finished parts are
kept, and a part under way restarts from its finished shards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mlfo.data import provenance
from mlfo.data.splits import DataPart
from mlfo.distributed import DistContext, all_gather_objects, all_reduce_min, on_rank_0
from mlfo.errors import MLFOError
from mlfo.eval.cards import code_version
from mlfo.eval.encoders import Encoder
from mlfo.eval.extract import ExtractionResult, resolve_precision
from mlfo.eval.features import BASELINES_DIR, FeatureSet, encoder_identity, feature_set_files, save_feature_set
from mlfo.eval.output_folder import OutputFolder, claim, fingerprint
from mlfo.eval.shards import extract_sharded
from mlfo.eval.views import ViewConfig


def _encoder_info(enc: Encoder) -> dict:
    return dict(enc.info, identity=encoder_identity(enc.info))


def _description(encoders: list[Encoder], parts: list[DataPart], classes, views: ViewConfig, levels, precision) -> dict:
    """What makes two extractions the same one (the output folder's fingerprint)."""
    records = {p.subdir: fingerprint([(r.path, r.label) for r in p.records]) for p in parts}
    names = [e.info["name"] for e in encoders]
    return {"encoders": {e.key: encoder_identity(e.info) or e.info for e in encoders}, "views": views.to_dict(),
            "levels": list(levels), "precision": precision, "parts": records, "classes": list(classes),
            "summary": f"{names[0]}{' + ' + ', '.join(names[1:]) if names[1:] else ''}; {views.describe()}"}


def _claim(ctx: DistContext, out: Path, planned, inputs, description, overwrite) -> OutputFolder:
    """Rank 0 claims the folder; every rank stops when it refuses."""
    claimed = on_rank_0(ctx, lambda: claim(out, planned, [Path(i) for i in inputs], description, overwrite), str(out))
    return claimed or OutputFolder(out)


def _protocol(enc: Encoder, part: DataPart, res: ExtractionResult, kept, skipped, views: ViewConfig,
              levels, classes, groups, processes: int = 1) -> dict:
    protocol = {
        "encoder": _encoder_info(enc), "views": views.to_dict(), "levels": list(levels), "data": part.info,
        "classes": classes, "groups": groups, "n_videos": len(kept), "n_skipped": len(skipped),
        "skipped": skipped, "feature_dim": int(res.features[enc.key]["high"].shape[1]),
        "device": res.device, "processes": processes, "precision": res.precision, "seconds": round(res.seconds, 2),
        "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    overlap = provenance.overlap_summary(enc.trained_on, kept)
    if overlap is not None:  # the encoder records its pretraining videos
        protocol["pretraining_overlap"] = overlap
        if overlap["videos"] and part.info.get("subset") != "train":
            print(f"mlfo: {part.subdir or 'videos'}: {overlap['videos']} of {overlap['of']} videos were "
                  f"among {enc.info['name']}'s pretraining videos (matched by {overlap['matched']})")
    return protocol


def _write_part(folder: OutputFolder, targets: dict[str, Path], encoders: list[Encoder], part: DataPart,
                res: ExtractionResult, part_dropped: list[dict], **meta) -> None:
    """Rank 0: the part's feature set for every encoder, recorded before it is written."""
    skipped = part_dropped + res.skipped
    kept = [part.records[i] for i in res.kept]
    if not kept:
        raise MLFOError(f"{part.info.get('source')}: every video failed to decode")
    levels = meta["levels"]
    folder.will_write([f for e in encoders for f in feature_set_files(targets[e.key], levels)])
    for enc in encoders:
        feats = res.features[enc.key]
        fs = FeatureSet(
            features=feats["high"], labels=np.array([r.label for r in kept], dtype=np.int64),
            paths=[r.path for r in kept], label_names=[r.label_name for r in kept],
            protocol=_protocol(enc, part, res, kept, skipped, **meta),
            levels={lv: feats[lv] for lv in levels if lv != "high"},
        )
        save_feature_set(fs, targets[enc.key])
    folder.part_done(part.subdir)
    msg = f"{part.subdir or 'videos'}: {len(kept)} videos, {meta['views'].describe()}"
    print(msg + (f"; skipped {len(skipped)} (see protocol.json 'skipped')" if skipped else ""))


def _targets(out: Path, encoders: list[Encoder], part: DataPart) -> dict[str, Path]:
    return {e.key: (out if e.key == "main" else out / BASELINES_DIR / e.key) / part.subdir for e in encoders}


def _check_arguments(parts: list[DataPart], batch_size: int, shard_videos: int) -> None:
    """Before anything is written."""
    for flag, value in (("--batch-size", batch_size), ("--shard-videos", shard_videos)):
        if value < 1:
            raise MLFOError(f"{flag}: must be at least 1, got {value}")
    empty = next((p for p in parts if not p.records), None)
    if empty is not None:
        raise MLFOError(f"{empty.info.get('source')}: no readable videos to extract")


def write_features(
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
    overwrite: bool = False,
    precision: str = "auto",
    shard_videos: int = 256,
    inputs: Sequence[str | os.PathLike] = (),
    ctx: DistContext | None = None,
) -> dict[str, list[Path]]:
    """Extract every part with the encoder and its baselines; write feature sets.

    Returns encoder key -> written feature folders. ``inputs``: the files the data came
    from (never written over); ``ctx``: torchrun's processes (default: this one alone).
    """
    out, encoders = Path(out), [encoder] + baselines
    ctx = ctx or DistContext(device=torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    level_names = ["low", "mid", "high"] if levels else ["high"]
    precision = resolve_precision(precision, ctx.device)
    _check_arguments(parts, batch_size, shard_videos)
    targets = {p.subdir: _targets(out, encoders, p) for p in parts}
    planned = [f for t in targets.values() for d in t.values() for f in feature_set_files(d, level_names)]
    description = _description(encoders, parts, classes, views, level_names, precision)
    folder = _claim(ctx, out, planned, inputs, description, overwrite)
    done = all_gather_objects(ctx, folder.done_parts)[0]
    modules = {e.key: e.module for e in encoders}
    meta = {"views": views, "levels": level_names, "classes": classes, "groups": groups, "processes": ctx.world_size}
    for part in parts:
        if part.subdir in done:
            if ctx.is_main:
                print(f"{part.subdir or 'videos'}: written earlier by the same extraction; kept")
            continue
        same_work = {k: v for k, v in description.items() if k != "parts"}, description["parts"][part.subdir]
        shards = folder.shard_folder(part.subdir, fingerprint([same_work, part.subdir]))
        res = extract_sharded(modules, views.dataset(part.records, backend=backend), shards, ctx,
                              shard_videos=shard_videos, levels=level_names, device=ctx.device,
                              precision=precision, progress=progress, desc=f"extract {part.subdir or 'videos'}",
                              batch_size=batch_size, views_per_video=views.views_per_video,
                              num_workers=num_workers)
        _finish_part(ctx, folder, targets[part.subdir], encoders, part, res,
                     [d for d in dropped if d["part"] == part.subdir], shards, meta)
    if ctx.is_main:
        folder.complete()
    return {e.key: [targets[p.subdir][e.key] for p in parts] for e in encoders}


def _finish_part(ctx, folder, targets, encoders, part, res, part_dropped, shards, meta) -> None:
    """Rank 0 writes the part; every rank stops when that fails."""
    ok = not ctx.is_main
    try:
        if ctx.is_main:
            _write_part(folder, targets, encoders, part, res, part_dropped, **meta)
            folder.remove_shards(shards)
            ok = True
    finally:
        if all_reduce_min(ctx, int(ok)) == 0 and ok:
            raise MLFOError(f"{folder.root}: rank 0 could not write {part.subdir or 'the features'} "
                            "(see its message)")
