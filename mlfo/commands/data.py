"""``mlfo data scan SRC``: index a dataset, cache the index, report every problem file."""

from __future__ import annotations

import sys

COMMANDS = {"data": "inspect and index video datasets"}


def register(subparsers) -> None:
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
    scan.add_argument("--min-frames", type=int, default=32, metavar="N",
                      help="report videos with at most N frames as too short (default 32 = 2T for T=16)")
    scan.add_argument("--backend", default="auto", choices=["auto", "pyav", "frames", "torchcodec"],
                      help="video decoder (default auto)")
    scan.add_argument("--out", metavar="INDEX.csv", help="where to write the index (default: beside SRC); "
                      "an existing file is replaced only when it is an index mlfo wrote")
    scan.add_argument("--overwrite", action="store_true",
                      help="replace --out even when it is not an index mlfo wrote (never SRC itself)")
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
    cache = check_index_target(Path(args.out), Path(args.source), args.overwrite) if args.out else True
    index = load_index(args.source, fmt=args.fmt, split=args.split, subset=args.subset,
                       split_dir=args.split_dir, backend=args.backend, cache=cache,
                       progress=not args.quiet and sys.stderr.isatty(), workers=args.workers,
                       refresh=args.no_cache, thorough=args.thorough)
    print(summarize(index, min_frames=args.min_frames))
    return 0


def check_index_target(out, source, overwrite: bool):
    """``--out`` of ``data scan``: refused when it is the source itself, a folder, or a file
    that is not an index mlfo wrote (``--overwrite`` allows the last), before any probing."""
    import os

    from mlfo.errors import MLFOError

    if out.is_dir():
        raise MLFOError(f"{out}: --out is a folder; give the index file's name")
    if not out.exists():
        return out
    if not out.is_file():
        raise MLFOError(f"{out}: --out is not a regular file")
    if source.exists() and os.path.samefile(out, source):
        raise MLFOError(f"{out}: --out is the source being scanned; give another file name")
    if not overwrite and not _is_index(out):
        raise MLFOError(f"{out}: exists and is not an index mlfo wrote; give another --out, or add "
                        "--overwrite to replace it")
    return out


def _is_index(path) -> bool:
    """Whether ``path`` starts with the header line of the index mlfo writes."""
    from mlfo.data.sources.cache import CACHE_COLUMNS

    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.readline(4096).rstrip("\r\n") == ",".join(CACHE_COLUMNS)
    except (OSError, UnicodeDecodeError):
        return False
