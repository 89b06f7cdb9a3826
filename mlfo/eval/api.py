"""The evaluation API: what ``mlfo extract`` / ``mlfo eval ...`` / ``mlfo report`` run, as
functions (``mlfo.eval.extract_features``, ``evaluate_knn``, ...). ``mlfo demo`` and the
benchmarks call these too. Every evaluation writes an eval card and returns the cards.

    import mlfo.eval as ev
    ev.extract_features("runs/demo/last.pt", "demo_data", "feats/demo", baselines=["random"])
    ev.evaluate_knn("feats/demo", ev.KnnConfig(k=10))
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlfo.data import provenance
from mlfo.data.splits import EvalData
from mlfo.distributed import barrier, init_distributed, leads_its_node, leaving_group, process_context
from mlfo.errors import MLFOError
from mlfo.eval.aggregate import group_masks, num_classes, per_group
from mlfo.eval.cards import assemble_card, print_cards, write_card
from mlfo.eval.encoders import resolve_baselines, resolve_encoder
from mlfo.eval.feature_writer import write_features
from mlfo.eval.features import BASELINES_DIR, FeatureRoot, discover_roots, split_names
from mlfo.eval.finetune import FinetuneConfig, finetune
from mlfo.eval.knn import KnnConfig, topk_accuracy
from mlfo.eval.labels import LabelNotes, absent_classes, notes_line
from mlfo.eval.plots import confusion_matrix_plot
from mlfo.eval.linear import LinearProbeConfig
from mlfo.eval.protocols import evaluate_roots, knn_split, linear_split, retrieval_split
from mlfo.eval.report import write_report
from mlfo.eval.retrieval import RetrievalConfig
from mlfo.eval.views import ViewConfig


def _encoders(checkpoint: str, baselines: Sequence[str], arch: str | None, seed: int, name: str | None):
    main = resolve_encoder(checkpoint, arch=arch, seed=seed, name=name)
    return main, resolve_baselines(baselines, main, seed=seed)


def extract_features(
    checkpoint: str,
    data: str,
    out: str | os.PathLike,
    views: ViewConfig | None = None,
    data_cfg: EvalData | None = None,
    *,
    baselines: Sequence[str] = (),
    arch: str | None = None,
    seed: int = 0,
    name: str | None = None,
    levels: bool = False,
    batch_size: int = 32,
    workers: int = 0,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    precision: str = "auto",
    shard_videos: int = 256,
) -> dict[str, list[Path]]:
    """Features of ``checkpoint`` (a checkpoint or encoder file, ``torchvision:PATH`` or
    ``random``) and of each baseline (``random``, ``torchvision:PATH``) on ``data``, written
    under ``out``; returns encoder key -> feature folders. Under torchrun the processes
    share the videos (``mlfo.eval.feature_writer``)."""
    views, data_cfg = views or ViewConfig(), data_cfg or EvalData()
    main, others = _encoders(checkpoint, baselines, arch, seed, name)
    # The node's first process indexes the data before the process group exists (see
    # mlfo.train.indexing); the others read its cache once they have joined.
    resolved = data_cfg.resolve(data, progress=progress) if leads_its_node() else None
    ctx = process_context(device)
    with leaving_group(ctx):
        resolved = resolved or data_cfg.resolve(data, progress=False)
        inputs = [data] + ([data_cfg.split_dir] if data_cfg.split_dir else [])
        return write_features(main, others, *resolved, out, views, levels=levels, batch_size=batch_size,
                              num_workers=workers, backend=data_cfg.backend, progress=progress and ctx.is_main,
                              overwrite=overwrite, precision=precision, shard_videos=shard_videos,
                              inputs=inputs, ctx=ctx)


def feature_roots(features: str | os.PathLike | None = None, *, train: str | None = None,
                  test: str | None = None, split: str | None = None, baselines: bool = True,
                  out: str | os.PathLike | None = None) -> list[FeatureRoot]:
    """The encoder roots to evaluate: ``features`` (with its baselines), or one train/test pair."""
    if train or test:
        if not (train and test) or features:
            raise MLFOError("--train/--test: give both, and no FEATURES folder")
        root = Path(out) if out else Path(test).parent
        return [FeatureRoot(root, {"": (Path(train), Path(test))})]
    if not features:
        raise MLFOError("FEATURES: give the folder written by `mlfo extract` (or --train DIR --test DIR)")
    return discover_roots(features, split_names(split), include_baselines=baselines)


def _evaluate(task, label, split_fn, protocol, features, *, train=None, test=None, split=None, level="high",
              baselines=True, out=None, plots=True) -> list[dict]:
    roots = feature_roots(features, train=train, test=test, split=split, baselines=baselines, out=out)
    card_dir = Path(out) if out and len(roots) == 1 else None
    return evaluate_roots(task, label, roots, split_fn, protocol, level, card_dir, plot=plots)


def evaluate_retrieval(features=None, cfg: RetrievalConfig | None = None, **where) -> list[dict]:
    """R@k: test videos query train videos (cosine); ``where``: see ``feature_roots`` plus
    ``level``, ``out``, ``plots``."""
    cfg = cfg or RetrievalConfig()
    label = "retrieval-center" if cfg.center else "retrieval"
    return _evaluate("retrieval", label, lambda tr, te: retrieval_split(tr, te, cfg.ks, cfg.center),
                     cfg.protocol(), features, **where)


def evaluate_knn(features=None, cfg: KnnConfig | None = None, **where) -> list[dict]:
    """Weighted kNN top-1 / top-5 of test videos among train videos."""
    cfg = cfg or KnnConfig()
    return _evaluate("knn", "knn", lambda tr, te: knn_split(tr, te, cfg.k, cfg.temperature, cfg.center),
                     cfg.protocol(), features, **where)


def evaluate_linear(features=None, cfg: LinearProbeConfig | None = None, **where) -> list[dict]:
    """Linear probe on cached features, hyper-parameters chosen on a train hold-out."""
    cfg = cfg or LinearProbeConfig()
    return _evaluate("linear", "linear", lambda tr, te: linear_split(tr, te, cfg), cfg.protocol(), features, **where)


def evaluate_finetune(
    checkpoint: str,
    data: str,
    out: str | os.PathLike,
    cfg: FinetuneConfig | None = None,
    views: ViewConfig | None = None,
    data_cfg: EvalData | None = None,
    *,
    baselines: Sequence[str] = (),
    arch: str | None = None,
    name: str | None = None,
    resume: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    plots: bool = True,
) -> list[dict]:
    """Fine-tune the encoder and each baseline on every split's train part, test once on its
    test part; one card per encoder (``<out>/<label>.card.json``, baselines under
    ``<out>/baselines/<key>``). Under torchrun every rank trains and tests its shard; rank 0
    writes the cards (the other ranks return [])."""
    cfg, data_cfg = cfg or FinetuneConfig(), data_cfg or EvalData()
    views = views or ViewConfig(clip_len=cfg.clip_len, frame_step=cfg.frame_step, crop_size=cfg.crop_size,
                                resize=max(128, cfg.crop_size), crop_mode="three")
    ctx = init_distributed(cfg.device or "auto")
    with leaving_group(ctx):
        main, others = _encoders(checkpoint, baselines, arch, cfg.seed, name)
        parts, classes, groups, _ = in_turn(ctx, lambda: data_cfg.resolve(data, progress=progress and ctx.is_main))
        run = _FinetuneRun(cfg, views, data_cfg.backend, parts, classes, groups, ctx,
                           dict(resume=resume, overwrite=overwrite, progress=progress), plots)
        cards = [run.card(enc, Path(out) if enc.key == "main" else Path(out) / BASELINES_DIR / enc.key)
                 for enc in [main] + others]
        if ctx.is_main:
            print_cards(cards)
        return cards if ctx.is_main else []


def in_turn(ctx, fn):
    """``fn()`` in rank 0 first, then in the other ranks (which read what it cached)."""
    result = fn() if ctx.is_main else None
    barrier(ctx)
    return result if ctx.is_main else fn()


class _FinetuneRun:
    """One fine-tuning protocol over the splits of one dataset; ``card(enc, root)`` runs it
    for one encoder (every rank) and returns its card (rank 0; None elsewhere)."""

    def __init__(self, cfg, views, backend, parts, classes, groups, ctx, options: dict, plots: bool):
        self.cfg, self.views, self.backend, self.ctx = cfg, views, backend, ctx
        self.options, self.plots = options, plots
        self.parts, self.classes, self.groups = parts, classes, groups
        self.label = "linear-e2e" if cfg.freeze_backbone else "finetune"
        self.pairs = pair_parts(parts)
        self.n_classes = num_classes(classes, np.array([r.label for p in parts for r in p.records]))

    def _say(self, text: str) -> None:
        if self.ctx.is_main:
            print(text)

    def _split(self, enc, split: str, train_part, test_part, run_dir: Path):
        where = f"{enc.info['name']}{' ' + split if split else ''}"
        self._say(f"{self.label}: {where} -> {run_dir}")
        notes = _finetune_notes(enc, train_part.records, test_part.records)
        if notes.card():
            self._say(notes_line(where, notes))
        backbone = copy.deepcopy(enc.module)  # every split starts from the same weights
        res = finetune(backbone, train_part.records, test_part.records, self.n_classes, run_dir, self.cfg,
                       self.views, backend=self.backend, encoder_info=enc.info, ctx=self.ctx, **self.options)
        if res is not None and self.plots:
            confusion_matrix_plot(res.labels, res.probabilities.argmax(1),
                                  self.classes or [str(i) for i in range(self.n_classes)],
                                  run_dir / f"{self.label}_confusion.png",
                                  title=f"{enc.info['name']}: {self.label} confusion (rows: true class)")
        return res, notes.card()

    def card(self, enc, root: Path) -> dict | None:
        per_split, details, group_results, caveats = {}, {}, {}, {}
        for split, (train_part, test_part) in self.pairs.items():
            res, caveat = self._split(enc, split, train_part, test_part, root / split if split else root)
            key = split or "default"
            if caveat:
                caveats[key] = caveat
            if res is None:
                continue
            per_split[key] = res.metrics
            details[key] = {"history": res.history, "skipped_test": res.skipped_test,
                            "n_train": len(train_part.records), "n_test": len(res.labels)}
            masks = group_masks(res.labels, self.classes, self.groups)
            group_results[key] = per_group(masks, lambda m: topk_accuracy(res.probabilities[m], res.labels[m]))
        if not self.ctx.is_main:
            return None
        protocol = dict(self.cfg.to_dict(), test_views=self.views.to_dict(),
                        selection="none: the model after the last epoch is tested once",
                        test="mean softmax over every view (clips x crops) of each test video")
        card = assemble_card(self.label, self.label, enc.info, per_split, protocol,
                             dict(next(iter(self.pairs.values()))[0].info),
                             groups=group_results, caveats=caveats, extra={"training": details})
        print(f"card: {write_card(card, root, self.label)}")
        return card


def _finetune_notes(enc, train_records, test_records) -> LabelNotes:
    """Test classes without train videos and test videos the encoder was pretrained on."""
    def names(records):
        return [r.label_name or str(r.label) for r in records]

    overlap = provenance.overlap_summary(enc.trained_on, test_records)
    return LabelNotes(*absent_classes(names(train_records), names(test_records)), overlap)


def pair_parts(parts) -> dict[str, tuple]:
    """DataParts -> {split: (train part, test part)}; split "" when there are no official splits."""
    by_split: dict[str, dict] = {}
    for part in parts:
        split, _, subset = part.subdir.rpartition("/")
        by_split.setdefault(split, {})[subset] = part
    missing = [s or "data" for s, d in by_split.items() if not ("train" in d and "test" in d)]
    if missing:
        raise MLFOError("finetune: needs a train and a test subset (data with train.csv + test.csv, or "
                        f"--split-dir); missing for {', '.join(missing)}")
    return {s: (d["train"], d["test"]) for s, d in by_split.items()}


def report(directory: str | os.PathLike) -> Path:
    """Every eval card under ``directory`` in one Markdown table (``directory/report.md``)."""
    return write_report(directory)
