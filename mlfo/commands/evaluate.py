"""``mlfo extract``, ``mlfo eval {retrieval,knn,linear,finetune}`` and ``mlfo report``.

Thin: each command turns its flags into the config dataclasses of ``mlfo.eval`` (flags
generated from their fields, ``mlfo.config.flags``) and calls the eval API.
"""

from __future__ import annotations

import argparse
import os

COMMANDS = {
    "extract": "per-video features of an encoder (and baselines), averaged over views",
    "eval": "evaluate features or fine-tune: retrieval, knn, linear, finetune",
    "report": "collect every eval card under DIR into one Markdown table",
}

EPILOG_EXTRACT = """\
examples:
  mlfo extract runs/demo/encoder.safetensors mlfo-demo-data feats/demo --baseline random
      # demo data (train.csv + test.csv): feats/demo/{train,test}, feats/demo/baselines/random/...
  mlfo extract encoder.safetensors /data/UCF-101 feats/ucf --fmt ucf101 --split-dir /data/ucfTrainTestlist --split all
      # feats/ucf/split{1,2,3}/{train,test}
  mlfo extract random my_videos.csv feats/rand --arch r3d_18 --seed 0 --clips 10 --crops three
  torchrun --nproc_per_node 8 -m mlfo.cli extract encoder.safetensors /data/k400/val feats/k400
      # the processes share the videos; run it again after an interruption to resume
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
  mlfo eval finetune runs/demo/encoder.safetensors mlfo-demo-data ft/demo --epochs 10 --baseline random
  mlfo eval finetune encoder.safetensors /data/UCF-101 ft/ucf --fmt ucf101 --split-dir /data/ucfTrainTestlist --split 1
  mlfo eval finetune encoder.safetensors mlfo-demo-data ft/frozen --freeze-backbone   # linear probe, end to end
  mlfo eval finetune encoder.safetensors mlfo-demo-data ft/demo --resume auto         # continue a killed run
  torchrun --nproc_per_node 8 -m mlfo.cli eval finetune encoder.safetensors /data/UCF-101 ft/ucf8 --fmt ucf101 --split-dir /data/ucfTrainTestlist --split 1 --batch-size 8 --amp bf16
      # 8 GPUs x 8 clips per step; each GPU scores its eighth of the test videos
"""


# ------------------------------------------------------------------------------ parsers


def _add_encoder_args(p) -> None:
    from mlfo.config.flags import add_flags
    from mlfo.data.splits import EvalData

    p.add_argument("checkpoint", metavar="CKPT",
                   help="pretraining checkpoint, exported encoder (.safetensors), torchvision:PATH "
                   "(.safetensors or plain tensor .pt), or 'random'")
    p.add_argument("data", metavar="DATA",
                   help="video folder, CSV, the demo dataset folder, or the UCF101 / HMDB51 video folder")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--arch", default=None, help="architecture of a 'random' encoder (r3d_18, r2plus1d_18, r3d_small)")
    p.add_argument("--seed", type=int, default=0, help="seed of random-init encoders (and of fine-tuning) (default 0)")
    p.add_argument("--name", default=None, help="name of the encoder in tables (default: from the file name)")
    p.add_argument("--baseline", action="append", default=[], metavar="random|torchvision:PATH",
                   help="also evaluate this baseline by the same protocol (repeatable): a randomly "
                   "initialised encoder of the same architecture, or a local torchvision checkpoint")
    add_flags(p, EvalData, title="data")
    add_runtime_args(p)


def add_runtime_args(p):
    """--workers, --device, --quiet (every command that reads videos); -> the group."""
    from mlfo.data.loading import default_workers

    r = p.add_argument_group("runtime")
    r.add_argument("--workers", type=int, default=default_workers(), help="DataLoader worker processes")
    r.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available; under torchrun "
                   "each process its LOCAL_RANK's GPU)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    return r


def add_extraction_args(p) -> None:
    """How features are extracted (``mlfo extract`` and ``mlfo inspect``)."""
    p.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (default 32)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto (default): bf16 autocast on a GPU, fp32 on the CPU")
    p.add_argument("--shard-videos", type=int, default=256, metavar="N",
                   help="videos per shard: the unit torchrun processes share and an interrupted run resumes from")


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


def _views_title() -> str:
    return "views (averaged into one prediction / feature per video)"


def register(subparsers) -> None:
    from mlfo.config.flags import add_flags
    from mlfo.eval.finetune import FinetuneConfig
    from mlfo.eval.knn import KnnConfig
    from mlfo.eval.linear import LinearProbeConfig
    from mlfo.eval.retrieval import RetrievalConfig
    from mlfo.eval.views import ViewConfig

    x = subparsers.add_parser(
        "extract", help=COMMANDS["extract"],
        description="Extract features.npy + index.csv + protocol.json per subset.",
        epilog=EPILOG_EXTRACT, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_encoder_args(x)
    add_flags(x, ViewConfig, title=_views_title())
    add_extraction_args(x)
    x.add_argument("--levels", action="store_true", help="also save pooled low and mid features")
    x.add_argument("--overwrite", action="store_true",
                   help="replace the features of another extraction in OUT (only files mlfo extract wrote)")
    x.set_defaults(func=run_extract)

    ev = subparsers.add_parser("eval", help=COMMANDS["eval"],
                               description="Evaluate an encoder; every run writes an eval card.")
    evsub = ev.add_subparsers(dest="eval_command", metavar="EVAL", required=True)
    on_features = [
        ("retrieval", "nearest-neighbour retrieval R@k (test queries train)", RetrievalConfig, run_retrieval, ""),
        ("knn", "weighted kNN classification (InstDisc votes exp(sim/T))", KnnConfig, run_knn, ""),
        ("linear", "linear probe on cached features (hyper-parameters chosen on held-out train)",
         LinearProbeConfig, run_linear,
         "  (frozen end-to-end probe with augmentation: `mlfo eval finetune --freeze-backbone`)"),
    ]
    for name, help_text, cls, func, extra in on_features:
        p = evsub.add_parser(name, help=help_text, epilog=EPILOG_EVAL + extra,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_feature_args(p)
        add_flags(p, cls, title=f"{name} settings")
        p.set_defaults(func=func)

    ft = evsub.add_parser("finetune", help="full fine-tuning with multi-view testing (resumable)",
                          epilog=EPILOG_FINETUNE, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_encoder_args(ft)
    add_flags(ft, ViewConfig, defaults={"crop_mode": "three"}, title=_views_title())
    add_flags(ft, FinetuneConfig, exclude=("seed", "num_workers", "device"), title="training")
    ft.add_argument("--resume", default="auto", help="auto (default): continue OUT/last.pt; never; or a path")
    ft.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a fine-tune")
    ft.add_argument("--no-plots", action="store_true", help="skip the confusion-matrix PNG")
    ft.set_defaults(func=run_finetune)

    rep = subparsers.add_parser("report", help=COMMANDS["report"],
                                description="Write DIR/report.md: rows = encoders, columns = metrics.")
    rep.add_argument("directory", metavar="DIR")
    rep.set_defaults(func=run_report)


# ------------------------------------------------------------------------------ commands


def _where(args) -> dict:
    return {"train": args.train, "test": args.test, "split": args.split, "level": args.level,
            "baselines": not args.no_baselines, "out": args.out, "plots": not args.no_plots}


def _encoder(args) -> dict:
    return {"baselines": args.baseline, "arch": args.arch, "name": args.name}


def run_extract(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.data.splits import EvalData
    from mlfo.eval.api import extract_features
    from mlfo.eval.views import ViewConfig

    written = extract_features(args.checkpoint, args.data, args.out, from_flags(ViewConfig, args),
                               from_flags(EvalData, args), seed=args.seed, levels=args.levels,
                               batch_size=args.batch_size, workers=args.workers, device=args.device,
                               progress=not args.quiet, overwrite=args.overwrite, precision=args.precision,
                               shard_videos=args.shard_videos, **_encoder(args))
    if int(os.environ.get("RANK", "0")) == 0:
        for key, dirs in written.items():
            print(f"mlfo: {key}: " + ", ".join(str(d) for d in dirs))
    return 0


def run_retrieval(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.eval.api import evaluate_retrieval
    from mlfo.eval.retrieval import RetrievalConfig

    evaluate_retrieval(args.features, from_flags(RetrievalConfig, args), **_where(args))
    return 0


def run_knn(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.eval.api import evaluate_knn
    from mlfo.eval.knn import KnnConfig

    evaluate_knn(args.features, from_flags(KnnConfig, args), **_where(args))
    return 0


def run_linear(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.eval.api import evaluate_linear
    from mlfo.eval.linear import LinearProbeConfig

    evaluate_linear(args.features, from_flags(LinearProbeConfig, args), **_where(args))
    return 0


def run_finetune(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.data.splits import EvalData
    from mlfo.eval.api import evaluate_finetune
    from mlfo.eval.finetune import FinetuneConfig
    from mlfo.eval.views import ViewConfig

    cfg = from_flags(FinetuneConfig, args, seed=args.seed, num_workers=args.workers, device=args.device)
    evaluate_finetune(args.checkpoint, args.data, args.out, cfg, from_flags(ViewConfig, args),
                      from_flags(EvalData, args), resume=args.resume, overwrite=args.overwrite,
                      progress=not args.quiet,
                      plots=not args.no_plots, **_encoder(args))
    return 0


def run_report(args) -> int:
    from mlfo.eval.api import report

    report(args.directory)
    return 0
