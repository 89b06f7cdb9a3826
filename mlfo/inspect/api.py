"""``mlfo inspect ENCODER DATA --out DIR``: what an encoder learned, without labels.

Features of every video (``mlfo extract``'s views and code), then per encoder (the given
one and a random-init one of the same architecture): embedding health per level, a t-SNE
map, nearest-neighbour galleries and near-duplicate groups, written as one offline HTML
page (``index.html``), its ``assets/`` and ``inspect.json`` with every number.
Extraction is ``mlfo extract``'s sharded path, so it runs under torchrun (every process
extracts a share, rank 0 writes the page) and an interrupted run resumes from its shards.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlfo.data.splits import EvalData
from mlfo.distributed import leads_its_node, leaving_group, on_rank_0, process_context
from mlfo.errors import MLFOError, make_folder
from mlfo.eval.features import SHARDS_DIR
from mlfo.eval.output_folder import fingerprint
from mlfo.eval.views import ViewConfig
from mlfo.inspect import collection as col
from mlfo.inspect.health import embedding_health
from mlfo.inspect.mapping import MAX_POINTS, map_2d, subsample
from mlfo.inspect.neighbours import duplicate_groups, gallery

SUMMARY = "inspect.json"
PAGE = "index.html"
ASSETS = "assets"


@dataclass
class InspectConfig:
    """What the page shows and how much of a large collection it draws."""

    queries: int = field(default=8, metadata={"help": "random query videos in the galleries"})
    k: int = field(default=8, metadata={"help": "neighbours shown per query"})
    duplicate_threshold: float = field(default=0.99, metadata={
        "help": "cosine similarity from which two videos count as near-duplicates"})
    map_points: int = field(default=MAX_POINTS, metadata={"help": "videos on the map (a seeded subsample beyond)"})
    thumb_size: int = field(default=64, metadata={"help": "thumbnail side in pixels"})
    thumb_frames: int = field(default=32, metadata={"help": "frames per thumbnail (thinned evenly over the views)"})
    seed: int = field(default=0, metadata={"help": "seed of the random-init encoder and of every subsample"})

    def __post_init__(self):
        for key in ("k", "map_points", "thumb_size", "thumb_frames"):
            if getattr(self, key) < 1:
                raise MLFOError(f"--{key.replace('_', '-')}: must be at least 1, got {getattr(self, key)}")
        if self.queries < 0:
            raise MLFOError(f"--queries: must not be negative, got {self.queries}")
        if not -1 <= self.duplicate_threshold <= 1:
            raise MLFOError(f"--duplicate-threshold: a cosine similarity in [-1, 1], got {self.duplicate_threshold}")


def prepare_out(out: Path, work: str) -> Path:
    """``out`` must be new, empty, an earlier page (replaced) or an interrupted one (its
    finished feature shards of the same ``work`` are kept); nothing else of the user's is
    touched. -> the folder of ``work``'s shards."""
    make_folder(out, "page folder (--out)", writable=True)
    if any(out.iterdir()):
        names = {p.name for p in out.iterdir()}
        if not (names <= {SUMMARY, PAGE, ASSETS, SHARDS_DIR} and names & {SUMMARY, SHARDS_DIR}):
            raise MLFOError(f"--out {out}: holds other files; give a new or empty folder "
                            f"(an earlier `mlfo inspect` page there would be replaced)")
        shutil.rmtree(out / ASSETS, ignore_errors=True)
        for other in (out / SHARDS_DIR).glob("*"):  # shards of other encoders, views or data
            if other.name != work:
                shutil.rmtree(other, ignore_errors=True)
    make_folder(out / ASSETS / "thumbs", "page folder (--out)")
    make_folder(out / SHARDS_DIR / work, "page folder (--out)")
    return out / SHARDS_DIR / work


def _query_rows(coll: col.Collection, cfg: InspectConfig) -> list[int]:
    """Every ``--query`` video, then random collection videos (seeded)."""
    picked = subsample(coll.n_collection, min(cfg.queries, coll.n_collection), cfg.seed + 1).tolist()
    return coll.query_rows + [r for r in picked if r not in coll.query_rows]


def analyse(feats: col.VideoFeatures, coll: col.Collection, cfg: InspectConfig) -> dict:
    """Health, map, galleries and duplicates of one encoder's features (rows: ``videos``)."""
    n_collection = coll.n_collection
    in_coll = feats.videos < n_collection
    videos = feats.videos[in_coll]  # collection videos with features
    if len(videos) < 2:
        raise MLFOError("inspect: fewer than 2 videos of the collection decoded; nothing to compare")
    health = {lv: embedding_health(x[in_coll], a[in_coll], b[in_coll], seed=cfg.seed)
              for (lv, x), (a, b) in zip(feats.levels.items(), feats.halves.values())}
    high = feats.levels["high"]
    m2 = map_2d(high[in_coll], cfg.map_points, cfg.seed)
    position = {int(v): i for i, v in enumerate(feats.videos)}
    queries = [r for r in _query_rows(coll, cfg) if r in position]  # those that decoded
    q_rows = np.array([position[r] if r < n_collection else -1 for r in queries], dtype=np.int64)
    found = gallery(high[in_coll], q_rows, high[[position[r] for r in queries]], cfg.k)
    galleries = [{"video": v, "in_collection": v < n_collection,
                  "neighbours": [(int(videos[i]), s) for i, s in g["neighbours"]]} for v, g in zip(queries, found)]
    dups = [{"rows": [int(videos[i]) for i in g["rows"]], "min_similarity": g["min_similarity"]}
            for g in duplicate_groups(high[in_coll], cfg.duplicate_threshold)]
    return {"health": health, "map": {"rows": videos[m2.indices].tolist(), "xy": m2.xy.round(4).tolist()},
            "galleries": galleries, "duplicates": dups, "k": cfg.k}


def _thumb_rows(results: list[dict]) -> list[int]:
    """Every video the page shows: map points, queries, neighbours, duplicates (first 12 of
    the first 20 groups, as the page draws them)."""
    rows = set()
    for r in results:
        rows.update(r["map"]["rows"])
        for g in r["galleries"]:
            rows.add(g["video"])
            rows.update(i for i, _ in g["neighbours"])
        for d in r["duplicates"][:20]:
            rows.update(d["rows"][:12])
    return sorted(rows)


def _video_entries(coll: col.Collection, thumbs: dict[int, str]) -> list[dict]:
    out = []
    for row, rec in enumerate(coll.records):
        label = coll.classes[rec.label] if 0 <= rec.label < len(coll.classes) else (rec.label_name or "")
        out.append({"name": Path(rec.path).name, "path": rec.path, "label": label,
                    "label_id": int(rec.label) if row < coll.n_collection else -1,
                    "thumb": f"{ASSETS}/thumbs/{thumbs[row]}" if row in thumbs else None})
    return out


def _page_dict(coll, encoders, results, thumbs, cfg, views: ViewConfig, facts: list[str]) -> dict:
    entries = [dict(e, **r) for e, r in zip(encoders, results)]  # name, info + health, map, galleries, ...
    return {"mlfo_inspect": 1, "title": f"mlfo inspect: {encoders[0]['name']}", "facts": facts,
            "encoders": entries, "videos": _video_entries(coll, thumbs), "classes": coll.classes,
            "groups": coll.groups, "labelled": coll.labelled, "n_videos": coll.n_collection,
            "threshold": cfg.duplicate_threshold, "views": views.to_dict(), "spectrum": f"{ASSETS}/spectrum.png",
            "dropped": coll.dropped, "settings": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}


@dataclass
class _Extracted:
    """What rank 0 holds once every rank has extracted its shards."""

    collection: col.Collection
    features: dict  # encoder key -> col.VideoFeatures
    skipped: list[dict]
    seconds: float
    processes: int
    precision: str


def _extract(encs, data: str, data_cfg: EvalData, queries, out: Path, views: ViewConfig, *, precision: str,
             device: str | None, progress: bool, **loader) -> _Extracted | None:
    """Every video's features, as ``mlfo extract`` computes them: under torchrun the ranks
    share the shards (rank 0 gets the result, the others None); an interrupted run
    resumes from the shards in ``out``."""
    from mlfo.eval.extract import resolve_precision
    from mlfo.eval.features import encoder_identity

    started = time.time()
    # The node's first process indexes the data before the process group exists (as extract).
    coll = col.load_collection(data, data_cfg, queries, progress=progress) if leads_its_node() else None
    ctx = process_context(device)
    precision = resolve_precision(precision, ctx.device)
    with leaving_group(ctx):
        coll = coll or col.load_collection(data, data_cfg, queries, progress=False)
        work = fingerprint({"encoders": [encoder_identity(e.info) or e.info for e in encs], "views": views.to_dict(),
                            "videos": [r.path for r in coll.records], "precision": precision})
        on_rank_0(ctx, lambda: prepare_out(out, work), str(out))
        shards = out / SHARDS_DIR / work
        got = col.extract({e.key: e.module for e in encs}, coll, views, shards, ctx, precision=precision,
                          backend=data_cfg.backend, progress=progress and ctx.is_main, **loader)
    if got is None:
        return None
    return _Extracted(coll, got[0], got[1], time.time() - started, ctx.world_size, precision)


def inspect_encoder(encoder: str, data: str, out: str | os.PathLike, views: ViewConfig | None = None,
                    data_cfg: EvalData | None = None, cfg: InspectConfig | None = None, *, queries=(),
                    arch: str | None = None, batch_size: int = 32, workers: int = 0, device: str | None = None,
                    precision: str = "auto", shard_videos: int = 256, progress: bool = True) -> Path | None:
    """Write the page for ``encoder`` (checkpoint, export or ``random``) on ``data``; -> index.html.
    Under torchrun every process extracts its share of the videos and rank 0 writes the
    page (the others return None)."""
    from mlfo.eval.encoders import resolve_baselines, resolve_encoder
    from mlfo.eval.plots import spectrum_plot
    from mlfo.inspect.page import render
    from mlfo.inspect.thumbs import write_thumbnails

    views, data_cfg, cfg, out = views or ViewConfig(num_clips=4), data_cfg or EvalData(), cfg or InspectConfig(), Path(out)
    col.check_views(views)
    started = time.time()
    main = resolve_encoder(encoder, arch=arch, seed=cfg.seed)
    encs = [main] + (resolve_baselines(["random"], main, seed=cfg.seed) if main.info["kind"] != "random" else [])
    got = _extract(encs, data, data_cfg, queries, out, views, precision=precision, device=device, progress=progress,
                   shard_videos=shard_videos, batch_size=batch_size, workers=workers)
    if got is None:
        return None
    coll = got.collection
    results = [analyse(got.features[e.key], coll, cfg) for e in encs]
    thumbs = write_thumbnails(coll.records, _thumb_rows(results), views, out / ASSETS / "thumbs",
                              size=cfg.thumb_size, max_frames=cfg.thumb_frames, backend=data_cfg.backend,
                              workers=workers, progress=progress)
    names = [{"key": e.key, "name": e.info["name"], "info": e.info} for e in encs]
    spectrum_plot({n["name"]: {lv: h["singular_values"] for lv, h in r["health"].items()}
                   for n, r in zip(names, results)}, out / ASSETS / "spectrum.png")
    facts = [f"{coll.n_collection} videos of {data} ({len(got.skipped)} failed to decode, {len(coll.dropped)} "
             f"unreadable when indexed); views: {views.describe()}",
             f"features {got.seconds:.0f} s ({got.processes} process{'es' if got.processes > 1 else ''}, "
             f"{got.precision}), page {time.time() - started:.0f} s in all; {time.strftime('%Y-%m-%d %H:%M')}"]
    page = _page_dict(coll, names, results, thumbs, cfg, views, facts)
    page["skipped"] = got.skipped
    (out / SUMMARY).write_text(json.dumps(page, indent=1, default=float))
    (out / PAGE).write_text(render(page), encoding="utf-8")
    shutil.rmtree(out / SHARDS_DIR, ignore_errors=True)  # the page is whole: its features are in it
    return out / PAGE
