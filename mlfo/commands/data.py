"""``mlfo data scan SRC``: index a dataset, cache the index, report every problem file."""

from __future__ import annotations

import sys

COMMANDS = {"data": "inspect and index video datasets"}


def register(subparsers) -> None:
    from mlfo.data.sampling import mlfo_min_frames

    data = subparsers.add_parser("data", help=COMMANDS["data"])
    commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    scan = commands.add_parser(
        "scan",
        help="index a dataset (cached) and list unreadable, empty or too-short videos",
        description="Probe every video of a dataset (frames, fps, size, decodability), write the "
        "index CSV (reused by later runs while files are unchanged) and print a summary that lists "
        "every unreadable, empty or too-short file.",
    )
    scan.add_argument("source", metavar="SRC", help="a folder of videos, a CSV, or a UCF101/HMDB51 video root")
    scan.add_argument("--format", dest="fmt", default="auto",
                      choices=["auto", "folder", "csv", "ucf101", "hmdb51"], help="dataset format (default: auto)")
    scan.add_argument("--split-dir", metavar="D", help="folder of the UCF101 / HMDB51 split files")
    scan.add_argument("--split", type=int, default=1, choices=[1, 2, 3], help="official split number (default 1)")
    scan.add_argument("--subset", default="train", choices=["train", "test"], help="split subset (default train)")
    scan.add_argument("--min-frames", type=int, default=mlfo_min_frames(16), metavar="N",
                      help=f"report videos with at most N frames as too short (default {mlfo_min_frames(16)}: "
                      "the three-clip span 2T for T=16)")
    scan.add_argument("--backend", default="auto", choices=["auto", "pyav", "frames", "torchcodec"],
                      help="video decoder (default auto)")
    scan.add_argument("--out", metavar="INDEX.csv", help="where to write the index (default: beside SRC)")
    scan.add_argument("--no-cache", action="store_true", help="probe every file again and rewrite the index")
    scan.add_argument("--workers", type=int, default=None, metavar="N",
                      help="probing processes (default: one per available core)")
    scan.add_argument("--thorough", action="store_true",
                      help="decode every frame of every file (about 10x slower; catches damage anywhere)")
    scan.add_argument("--quiet", action="store_true", help="no progress bar")
    scan.set_defaults(func=run_scan)


def run_scan(args) -> int:
    from pathlib import Path

    from mlfo.data.sources import load_index, summarize
    from mlfo.errors import MLFOError

    if args.workers is not None and args.workers < 1:
        raise MLFOError(f"--workers: must be at least 1, got {args.workers}")
    cache = Path(args.out) if args.out else True
    index = load_index(args.source, fmt=args.fmt, split=args.split, subset=args.subset,
                       split_dir=args.split_dir, backend=args.backend, cache=cache,
                       progress=not args.quiet and sys.stderr.isatty(), workers=args.workers,
                       refresh=args.no_cache, thorough=args.thorough)
    print(summarize(index, min_frames=args.min_frames))
    return 0
