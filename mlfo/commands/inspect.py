"""``mlfo inspect ENCODER DATA --out DIR``: an offline HTML page of what an encoder learned,
without labels (galleries, map, near-duplicates, embedding health against random init)."""

from __future__ import annotations

import argparse

COMMANDS = {"inspect": "HTML page of an encoder's neighbours, map, duplicates and embedding health"}

EPILOG = """\
examples:
  mlfo inspect runs/demo/last.pt mlfo-demo/data --out inspect/demo --clip-len 16 --clips 4 --resize 55 --crop-size 48
  mlfo inspect encoder.safetensors /data/my_videos --out inspect/mine --query /tmp/new_clip.mp4
  mlfo inspect random /data/my_videos --out inspect/random --arch r3d_18
  torchrun --nproc_per_node 8 -m mlfo.cli inspect encoder.safetensors /data/k400 --out inspect/k400
Open DIR/index.html in a browser (works offline); DIR/inspect.json holds every number.
"""


def register(subparsers) -> None:
    from mlfo.commands.evaluate import add_extraction_args, add_runtime_args
    from mlfo.config.flags import add_flags
    from mlfo.data.splits import EvalData
    from mlfo.eval.views import ViewConfig
    from mlfo.inspect.api import InspectConfig

    p = subparsers.add_parser("inspect", help=COMMANDS["inspect"], epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Extract features of every video with ENCODER and a random-init encoder "
                              "of the same architecture, and write DIR/index.html: nearest-neighbour galleries, a "
                              "t-SNE map, near-duplicate groups and embedding health (RankMe, alignment, uniformity).")
    p.add_argument("encoder", metavar="ENCODER",
                   help="pretraining checkpoint, exported encoder (.safetensors), or 'random'")
    p.add_argument("data", metavar="DATA", help="anything `mlfo data scan` reads (labels optional)")
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder for the page")
    p.add_argument("--query", action="append", default=[], metavar="VIDEO",
                   help="also show the neighbours of this video file (repeatable; inside the data or not)")
    p.add_argument("--arch", default=None, help="architecture of a 'random' ENCODER (default r3d_18)")
    add_flags(p, InspectConfig, title="page")
    add_flags(p, ViewConfig, defaults={"num_clips": 4}, exclude=("stride",),
              title="views (as `mlfo extract`; the even and the odd clips are the two views of alignment)")
    add_flags(p, EvalData, title="data")
    add_extraction_args(add_runtime_args(p))
    p.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.data.splits import EvalData
    from mlfo.eval.views import ViewConfig
    from mlfo.inspect.api import InspectConfig, inspect_encoder

    page = inspect_encoder(args.encoder, args.data, args.out, from_flags(ViewConfig, args),
                           from_flags(EvalData, args), from_flags(InspectConfig, args), queries=args.query,
                           arch=args.arch, batch_size=args.batch_size, workers=args.workers, device=args.device,
                           precision=args.precision, shard_videos=args.shard_videos, progress=not args.quiet)
    if page is None:  # another torchrun process: rank 0 writes the page
        return 0
    print(f"mlfo: inspect page: {page}")
    return 0
