"""``mlfo inspect ENCODER DATA --out DIR``: an offline HTML page of what an encoder learned,
without labels (galleries, map, near-duplicates, embedding health against random init)."""

from __future__ import annotations

import argparse
import os

COMMANDS = {"inspect": "HTML page of an encoder's neighbours, map, duplicates and embedding health"}

EPILOG = """\
examples:
  mlfo inspect runs/demo/last.pt mlfo-demo/data --out inspect/demo --clip-len 16 --clips 4 --resize 55 --crop-size 48
  mlfo inspect encoder.safetensors /data/my_videos --out inspect/mine --query /tmp/new_clip.mp4
  mlfo inspect random /data/my_videos --out inspect/random --arch r3d_18
Open DIR/index.html in a browser (works offline); DIR/inspect.json holds every number.
"""


def register(subparsers) -> None:
    from mlfo.config.flags import add_flags
    from mlfo.data.loading import default_workers
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
    r = p.add_argument_group("runtime")
    r.add_argument("--batch-size", type=int, default=32, help="clips per forward pass (default 32)")
    r.add_argument("--workers", type=int, default=default_workers(), help="DataLoader worker processes")
    r.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_inspect)


def run_inspect(args) -> int:
    from mlfo.config.flags import from_flags
    from mlfo.data.splits import EvalData
    from mlfo.eval.views import ViewConfig
    from mlfo.distributed import launched_by_torchrun
    from mlfo.errors import MLFOError
    from mlfo.inspect.api import InspectConfig, inspect_encoder

    if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:  # every rank would write the page
        raise MLFOError("mlfo inspect runs in one process (it reads at most a few thousand videos' "
                        "thumbnails); run it without torchrun, or extract under torchrun with mlfo extract")
    page = inspect_encoder(args.encoder, args.data, args.out, from_flags(ViewConfig, args),
                           from_flags(EvalData, args), from_flags(InspectConfig, args), queries=args.query,
                           arch=args.arch, batch_size=args.batch_size, workers=args.workers, device=args.device,
                           progress=not args.quiet)
    print(f"mlfo: inspect page: {page}")
    return 0
