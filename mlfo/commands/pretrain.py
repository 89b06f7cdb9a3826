"""``mlfo pretrain``, ``mlfo export`` and ``mlfo plot``."""

from __future__ import annotations

import argparse

EPILOG_PRETRAIN = """\
examples:
  mlfo pretrain demo_cpu                                  # a shipped preset, by name
  mlfo pretrain configs/ucf101_r3d18.yaml data.train=/data/UCF-101 data.split_dir=/data/ucfTrainTestlist
  mlfo pretrain demo_cpu --out runs/demo optim.lr=5e-4 train.epochs=2
  mlfo pretrain demo_cpu --out runs/demo --resume auto   # continue a killed run
  mlfo pretrain demo_cpu --out runs/demo --overwrite     # start runs/demo again from scratch
  torchrun --nproc_per_node 4 -m mlfo.cli pretrain configs/kinetics400_r3d18.yaml data.train=/data/k400/train
"""


COMMANDS = {
    "pretrain": "self-supervised MLFO pretraining (one process, or many under torchrun)",
    "export": "write the bare encoder of a pretraining checkpoint (torchvision names)",
    "plot": "draw a run's loss terms and accuracies to PNG",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help=COMMANDS["pretrain"],
        description="Pretrain a video encoder with MLFO. CONFIG is a YAML file or a preset name "
        "(demo_cpu, ucf101_r3d18, kinetics400_r3d18); key=value pairs override any setting.",
        epilog=EPILOG_PRETRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG", help="YAML config file or preset name")
    # Overrides and options mix in any order (mlfo.cli.parse).
    p.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="e.g. optim.lr=5e-4 data.batch_size=32")
    p.add_argument("--out", metavar="DIR", help="run folder, taken as typed (default: train.out_dir of the config)")
    p.add_argument("--resume", metavar="auto|PATH",
                   help="'auto': continue from DIR/last.pt when it exists; or a checkpoint path")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in a run folder that holds checkpoints (deletes them)")
    p.set_defaults(func=run_pretrain)

    e = subparsers.add_parser(
        "export",
        help=COMMANDS["export"],
        description="Export the backbone of a pretraining checkpoint as a safetensors file "
        "(torchvision parameter names; architecture, source and pretraining videos in the header); "
        "load it with mlfo.load_encoder(OUT).",
    )
    e.add_argument("checkpoint", metavar="CKPT")
    e.add_argument("out", metavar="OUT", help="encoder file, e.g. encoder.safetensors (.safetensors is added "
                   "when OUT has no suffix)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace OUT even when it is not an encoder mlfo exported")
    e.set_defaults(func=run_export)

    pl = subparsers.add_parser(
        "plot", help=COMMANDS["plot"],
        description="Read RUN/metrics.jsonl and write RUN/metrics.png (or --out).",
    )
    pl.add_argument("run", metavar="RUN", help="run folder (or its metrics.jsonl)")
    pl.add_argument("--out", metavar="PNG")
    pl.add_argument("--smooth", type=int, default=0, metavar="N", help="moving-average window (default: auto)")
    pl.set_defaults(func=run_plot)


def run_pretrain(args) -> int:
    from mlfo.config import load_config
    from mlfo.train.pretrain import pretrain

    cfg = load_config(args.config, args.overrides)
    if args.out is not None:
        if not args.out.strip():
            from mlfo.errors import MLFOError

            raise MLFOError("--out: an empty path; name the run folder")
        cfg.train.out_dir = args.out  # a path is the text typed, never parsed as a value
    result = pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    if result.last_checkpoint is not None and _is_main():
        print(f"mlfo: {result.global_step} steps, last checkpoint {result.last_checkpoint}")
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def run_export(args) -> int:
    from mlfo.train.export import export_encoder

    out = export_encoder(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"mlfo: encoder written to {out}")
    return 0


def _check_plot_target(out: str | None, run: str) -> None:
    """``--out`` of ``mlfo plot`` may replace a figure it wrote earlier, never the metrics
    it reads, a PNG of the user's or another kind of file (a ``.jsonl``, a CSV, notes)."""
    import os
    from pathlib import Path

    from mlfo.errors import MLFOError
    from mlfo.train.metrics_log import METRICS_FILE
    from mlfo.train.plot import written_by_plot

    if out is None or not os.path.lexists(out):
        return
    target, source = Path(out), Path(run)
    metrics = source / METRICS_FILE if source.is_dir() else source
    if not target.is_file():
        raise MLFOError(f"{target}: --out is not a regular file; give the PNG's file name")
    if metrics.exists() and os.path.samefile(target, metrics):
        raise MLFOError(f"{target}: --out is the metrics file being plotted; give the PNG's file name")
    if not written_by_plot(target):
        raise MLFOError(f"{target}: exists and is not a figure mlfo plot wrote; give another --out")


def run_plot(args) -> int:
    from mlfo.train.plot import plot_run

    _check_plot_target(args.out, args.run)
    out = plot_run(args.run, args.out, smooth=args.smooth)
    print(f"mlfo: plot written to {out}")
    return 0
