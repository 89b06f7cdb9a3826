"""``mlfo extract``, ``mlfo eval {retrieval,knn,linear,finetune}`` and ``mlfo report``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

EPILOG_EXTRACT = """\
examples:
  mlfo extract runs/demo/encoder.pt mlfo-demo-data feats/demo --baseline random
      # demo data (train.csv + test.csv): feats/demo/{train,test}, feats/demo/baselines/random/...
  mlfo extract encoder.pt /data/UCF-101 feats/ucf --fmt ucf101 --split-dir /data/ucfTrainTestlist --split all
      # feats/ucf/split{1,2,3}/{train,test}
  mlfo extract random my_videos.csv feats/rand --arch r3d_18 --seed 0 --clips 10 --crops three
"""

EPILOG_EVAL = """\
FEATURES is what `mlfo extract` wrote: train/ + test/ (or split*/train + split*/test); the
baselines under FEATURES/baselines/ are evaluated by the same protocol. A card
(<eval>.card.json) and figures are written beside the features.
examples:
  mlfo eval retrieval feats/demo            # R@1/5/10/20/50, no centring
  mlfo eval retrieval feats/demo --center   # CoCLR-style: subtract each set's mean first
  mlfo eval knn feats/demo --k 20 --temperature 0.07
  mlfo eval linear feats/demo --epochs 100
  mlfo eval retrieval --train feats/demo/train --test feats/demo/test
"""

EPILOG_FINETUNE = """\
examples:
  mlfo eval finetune runs/demo/encoder.pt mlfo-demo-data ft/demo --epochs 10 --baseline random
  mlfo eval finetune encoder.pt /data/UCF-101 ft/ucf --fmt ucf101 --split-dir /data/ucfTrainTestlist --split 1
  mlfo eval finetune encoder.pt mlfo-demo-data ft/frozen --freeze-backbone   # linear probe, end to end
  mlfo eval finetune encoder.pt mlfo-demo-data ft/demo --resume auto         # continue a killed run
"""


# ------------------------------------------------------------------------------ parsers


def _add_encoder_args(p) -> None:
    p.add_argument("checkpoint", metavar="CKPT",
                   help="pretraining checkpoint, exported encoder, torchvision:PATH, or 'random'")
    p.add_argument("data", metavar="DATA",
                   help="video folder, CSV, the demo dataset folder, or the UCF101 / HMDB51 video folder")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--arch", default=None, help="architecture of a 'random' encoder (r3d_18, r2plus1d_18, r3d_small)")
    p.add_argument("--seed", type=int, default=0, help="seed of random-init encoders (and of fine-tuning) (default 0)")
    p.add_argument("--name", default=None, help="name of the encoder in tables (default: from the file name)")
    p.add_argument("--baseline", action="append", default=[], metavar="random|torchvision:PATH",
                   help="also evaluate this baseline by the same protocol (repeatable): a randomly "
                   "initialised encoder of the same architecture, or a local torchvision checkpoint")
    d = p.add_argument_group("data")
    d.add_argument("--fmt", default="auto", choices=["auto", "folder", "csv", "ucf101", "hmdb51"])
    d.add_argument("--split-dir", default=None, help="UCF101 / HMDB51 official split files")
    d.add_argument("--split", default=None, help="official split 1, 2, 3 or all (default 1)")
    d.add_argument("--subset", default=None, choices=["train", "test", "both"],
                   help="which subset (default: both when the data has train and test)")
    d.add_argument("--backend", default="auto", choices=["auto", "pyav", "frames", "torchcodec"])
    r = p.add_argument_group("runtime")
    r.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="DataLoader worker processes")
    r.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_view_args(p, clips: int, crops: str, batch: int, batch_help: str = "clips per forward pass") -> None:
    v = p.add_argument_group("views (averaged into one prediction / feature per video)")
    v.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16)")
    v.add_argument("--frame-step", type=int, default=1, help="temporal stride inside a clip (default 1)")
    v.add_argument("--clips", type=int, default=clips, help=f"uniformly spread clips per video (default {clips})")
    v.add_argument("--stride", type=int, default=None, help="use every sliding window STRIDE frames apart instead")
    v.add_argument("--crops", default=crops, choices=["center", "three", "ten"], help=f"spatial crops (default {crops})")
    v.add_argument("--resize", type=int, default=128, help="short side before cropping (default 128)")
    v.add_argument("--crop-size", type=int, default=112, help="crop size (default 112)")
    v.add_argument("--batch-size", type=int, default=batch, help=f"{batch_help} (default {batch})")


def _add_feature_args(p) -> None:
    p.add_argument("features", nargs="?", metavar="FEATURES", help="feature folder written by `mlfo extract`")
    p.add_argument("--train", metavar="DIR", help="train feature set (instead of FEATURES)")
    p.add_argument("--test", metavar="DIR", help="test feature set (instead of FEATURES)")
    p.add_argument("--split", default=None, help="evaluate split 1, 2, 3 or all present (default all)")
    p.add_argument("--level", default="high", choices=["low", "mid", "high"],
                   help="which level's features (low/mid need `mlfo extract --levels`)")
    p.add_argument("--no-baselines", action="store_true", help="skip FEATURES/baselines/*")
    p.add_argument("--out", metavar="DIR", help="where the card goes (default: beside the features)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")


def register(subparsers) -> None:
    x = subparsers.add_parser(
        "extract", help="per-video features of an encoder (and baselines), averaged over views",
        description="Extract features.npy + index.csv + protocol.json per subset.",
        epilog=EPILOG_EXTRACT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_encoder_args(x)
    _add_view_args(x, clips=10, crops="center", batch=32)
    x.add_argument("--levels", action="store_true", help="also save pooled low and mid features")
    x.set_defaults(func=run_extract)

    ev = subparsers.add_parser("eval", help="evaluate features or fine-tune: retrieval, knn, linear, finetune",
                               description="Evaluate an encoder; every run writes an eval card.")
    evsub = ev.add_subparsers(dest="eval_command", metavar="EVAL", required=True)

    r = evsub.add_parser("retrieval", help="nearest-neighbour retrieval R@k (test queries train)",
                         epilog=EPILOG_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_feature_args(r)
    r.add_argument("--center", action="store_true",
                   help="subtract each set's mean before L2-normalising (CoCLR does, RSPNet does not)")
    r.add_argument("--ks", default="1,5,10,20,50", help="comma-separated k (default 1,5,10,20,50)")
    r.set_defaults(func=run_retrieval)

    k = evsub.add_parser("knn", help="weighted kNN classification (InstDisc votes exp(sim/T))",
                         epilog=EPILOG_EVAL, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_feature_args(k)
    k.add_argument("--k", type=int, default=200, help="neighbours (default 200)")
    k.add_argument("--temperature", type=float, default=0.07, help="vote temperature T (default 0.07)")
    k.add_argument("--center", action="store_true", help="subtract each set's mean before L2-normalising")
    k.set_defaults(func=run_knn)

    lin = evsub.add_parser(
        "linear", help="linear probe on cached features (hyper-parameters chosen on held-out train)",
        epilog=EPILOG_EVAL + "  (frozen end-to-end probe with augmentation: `mlfo eval finetune --freeze-backbone`)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_feature_args(lin)
    lin.add_argument("--epochs", type=int, default=100)
    lin.add_argument("--lrs", default="1.0,0.1,0.01", help="learning rates tried (default 1.0,0.1,0.01)")
    lin.add_argument("--wds", default="0,1e-4,1e-3", help="weight decays tried (default 0,1e-4,1e-3)")
    lin.add_argument("--batch-size", type=int, default=None,
                     help="default: 256, smaller on small sets (at least 8 steps per epoch)")
    lin.add_argument("--holdout", type=float, default=0.15,
                     help="fraction of each train class held out to choose lr / wd / epoch (default 0.15)")
    lin.add_argument("--keep-best", action="store_true",
                     help="keep the model trained without the hold-out instead of refitting on all of train")
    lin.add_argument("--seed", type=int, default=0)
    lin.add_argument("--device", default=None)
    lin.set_defaults(func=run_linear)

    ft = evsub.add_parser("finetune", help="full fine-tuning with multi-view testing (resumable)",
                          epilog=EPILOG_FINETUNE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_encoder_args(ft)
    _add_view_args(ft, clips=10, crops="three", batch=16,
                   batch_help="training clips per step, and test clips per forward pass")
    o = ft.add_argument_group("training")
    o.add_argument("--epochs", type=int, default=30)
    o.add_argument("--lr", type=float, default=0.05, help="classifier learning rate (default 0.05)")
    o.add_argument("--backbone-lr-mult", type=float, default=0.1, help="backbone lr = lr x this (default 0.1)")
    o.add_argument("--wd", type=float, default=1e-4, help="weight decay (default 1e-4)")
    o.add_argument("--dropout", type=float, default=0.5)
    o.add_argument("--warmup-epochs", type=int, default=1)
    o.add_argument("--crop-scale", default="0.2,1.0", help="random resized crop area range (default 0.2,1.0)")
    o.add_argument("--freeze-backbone", action="store_true",
                   help="frozen end-to-end linear probe: train only BN + linear on augmented clips")
    o.add_argument("--resume", default="auto", help="auto (default): continue OUT/last.pt; never; or a path")
    o.add_argument("--no-plots", action="store_true", help="skip the confusion-matrix PNG")
    ft.set_defaults(func=run_finetune)

    rep = subparsers.add_parser("report", help="collect every eval card under DIR into one Markdown table",
                                description="Write DIR/report.md: rows = encoders, columns = metrics.")
    rep.add_argument("directory", metavar="DIR")
    rep.set_defaults(func=run_report)


# ------------------------------------------------------------------------------ helpers


def _floats(text: str, key: str) -> list[float]:
    from mlfo.errors import MLFOError

    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MLFOError(f"{key}: expected comma-separated numbers, got {text!r}") from None


def _views(args):
    from mlfo.eval.extract import ViewConfig

    return ViewConfig(clip_len=args.clip_len, num_clips=args.clips, stride=args.stride, frame_step=args.frame_step,
                      resize=args.resize, crop_size=args.crop_size, crop_mode=args.crops)


def _encoders(args):
    from mlfo.eval.extract import resolve_baselines, resolve_encoder

    main = resolve_encoder(args.checkpoint, arch=args.arch, seed=args.seed, name=args.name)
    return main, resolve_baselines(args.baseline, main, seed=args.seed)


def _data(args):
    from mlfo.eval.extract import resolve_data

    return resolve_data(args.data, fmt=args.fmt, split=args.split, subset=args.subset, split_dir=args.split_dir,
                        backend=args.backend, progress=not args.quiet)


def _roots(args):
    from mlfo.errors import MLFOError
    from mlfo.eval.features import FeatureRoot, discover_roots, split_names

    if args.train or args.test:
        if not (args.train and args.test) or args.features:
            raise MLFOError("--train/--test: give both, and no FEATURES folder")
        root = Path(args.out) if args.out else Path(args.test).parent
        return [FeatureRoot(root, {"": (Path(args.train), Path(args.test))})]
    if not args.features:
        raise MLFOError("FEATURES: give the folder written by `mlfo extract` (or --train DIR --test DIR)")
    return discover_roots(args.features, split_names(args.split), include_baselines=not args.no_baselines)


def _card_dir(args, roots):
    return Path(args.out) if args.out and len(roots) == 1 else None


# ------------------------------------------------------------------------------ commands


def run_extract(args) -> int:
    from mlfo.eval.extract import run_extract as extract

    main, baselines = _encoders(args)
    parts, classes, groups, dropped = _data(args)
    written = extract(main, baselines, parts, classes, groups, dropped, args.out, _views(args), levels=args.levels,
                      batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                      backend=args.backend, progress=not args.quiet)
    for key, dirs in written.items():
        print(f"mlfo: {key}: " + ", ".join(str(d) for d in dirs))
    return 0


def run_retrieval(args) -> int:
    from mlfo.eval.protocols import evaluate_roots, retrieval_split

    ks = tuple(int(k) for k in _floats(args.ks, "--ks"))
    roots = _roots(args)
    label = "retrieval-center" if args.center else "retrieval"
    protocol = {"ks": list(ks), "center": bool(args.center), "similarity": "cosine",
                "hit": "any of the top k train videos has the query's class; ties broken by train order",
                "queries": "test videos", "gallery": "train videos"}
    evaluate_roots("retrieval", label, roots, lambda tr, te: retrieval_split(tr, te, ks, args.center), protocol,
                   args.level, _card_dir(args, roots), plot=not args.no_plots)
    return 0


def run_knn(args) -> int:
    from mlfo.eval.protocols import evaluate_roots, knn_split

    roots = _roots(args)
    protocol = {"k": args.k, "temperature": args.temperature, "center": bool(args.center),
                "votes": "sum of exp(cosine / T) over the k nearest train videos (InstDisc)"}
    evaluate_roots("knn", "knn", roots, lambda tr, te: knn_split(tr, te, args.k, args.temperature, args.center),
                   protocol, args.level, _card_dir(args, roots), plot=not args.no_plots)
    return 0


def run_linear(args) -> int:
    import torch

    from mlfo.eval.linear import LinearProbeConfig
    from mlfo.eval.protocols import evaluate_roots, linear_split

    cfg = LinearProbeConfig(lrs=tuple(_floats(args.lrs, "--lrs")), weight_decays=tuple(_floats(args.wds, "--wds")),
                            epochs=args.epochs, batch_size=args.batch_size, holdout=args.holdout,
                            refit=not args.keep_best, seed=args.seed,
                            device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    roots = _roots(args)
    protocol = {"probe": "BatchNorm (no affine) + linear on frozen cached features, SGD momentum 0.9, cosine lr",
                "epochs": cfg.epochs, "lrs": list(cfg.lrs), "weight_decays": list(cfg.weight_decays),
                "batch_size": cfg.batch_size or "auto (see selection.batch_size)", "holdout": cfg.holdout, "seed": cfg.seed,
                "selection": (f"lr, weight decay and epoch chosen on a stratified {cfg.holdout:.0%} hold-out of "
                              "train; " + ("refitted on all of train" if cfg.refit else "held-out model kept")
                              + "; test evaluated once")}
    evaluate_roots("linear", "linear", roots, lambda tr, te: linear_split(tr, te, cfg), protocol, args.level,
                   _card_dir(args, roots), plot=not args.no_plots)
    return 0


def run_finetune(args) -> int:
    from mlfo.eval.finetune import FinetuneConfig, run_finetune_protocol

    scale = _floats(args.crop_scale, "--crop-scale")
    cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         backbone_lr_mult=args.backbone_lr_mult, weight_decay=args.wd, dropout=args.dropout,
                         warmup_epochs=args.warmup_epochs, clip_len=args.clip_len, frame_step=args.frame_step,
                         crop_size=args.crop_size, crop_scale=(scale[0], scale[-1]),
                         freeze_backbone=args.freeze_backbone, seed=args.seed, num_workers=args.workers,
                         device=args.device)
    main, baselines = _encoders(args)
    parts, classes, groups, _ = _data(args)
    run_finetune_protocol([main] + baselines, parts, classes, groups, args.out, cfg, _views(args),
                          resume=args.resume, backend=args.backend, progress=not args.quiet,
                          plot=not args.no_plots)
    return 0


def run_report(args) -> int:
    from mlfo.eval.report import write_report

    write_report(args.directory)
    return 0
