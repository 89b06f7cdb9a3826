"""``mlfo data scan SRC``: index a dataset, cache the index, report every problem file.
``mlfo data prepare SRC DST``: a training copy that decodes faster (``mlfo.data.prepare``)."""

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
    register_prepare(commands)


def register_prepare(commands) -> None:
    prepare = commands.add_parser(
        "prepare",
        help="write a training copy of a dataset that decodes several times faster per core",
        description="Re-encode every video of SRC into DST at a smaller short side (every frame kept, "
        "same relative paths as .mp4, CSVs and split files rewritten to match), verify each copy "
        "frame by frame and write DST's index, so every command takes DST where it took SRC. "
        "Resumable: run it again to finish an interrupted copy.",
    )
    prepare.add_argument("source", metavar="SRC", help="a folder of videos, a CSV, or a UCF101/HMDB51 video root")
    prepare.add_argument("dst", metavar="DST", help="a new or empty folder (or an earlier run's, to resume)")
    prepare.add_argument("--format", dest="fmt", default="auto",
                         choices=["auto", "folder", "csv", "ucf101", "hmdb51"], help="dataset format (default: auto)")
    prepare.add_argument("--split-dir", metavar="D", help="folder of the UCF101 / HMDB51 split files")
    prepare.add_argument("--short-side", type=int, default=None, metavar="PX",
                         help="frames scaled to this short side, never enlarged (default 160)")
    prepare.add_argument("--fps", type=float, default=None, help="resample to this frame rate (default: keep every frame)")
    prepare.add_argument("--codec", default="mpeg4", choices=["mpeg4", "libx264", "mjpeg"],
                         help="codec of the copy (default mpeg4: MPEG-4 part 2, measured fastest per core)")
    prepare.add_argument("--gop", type=int, default=16, help="keyframe interval in frames (default 16)")
    prepare.add_argument("--quality", type=int, default=None,
                         help="mpeg4 / mjpeg quantiser 2-31 (default 5), libx264 crf (default 23)")
    prepare.add_argument("--workers", type=int, default=None, metavar="N",
                         help="encoding processes (default: one per available core)")
    prepare.add_argument("--shard", default="1/1", metavar="K/N",
                         help="prepare only every N-th video from the K-th (1 <= K <= N), e.g. one SLURM array task")
    prepare.add_argument("--combine", type=int, default=None, metavar="N",
                         help="after N shards finished: write DST's index from theirs (SRC is not read)")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=run_prepare)


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


def _shard(text: str) -> tuple[int, int]:
    from mlfo.errors import MLFOError

    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise MLFOError(f"--shard: expected K/N with 1 <= K <= N, got {text!r}")
    return int(k), int(n)


def run_prepare(args) -> int:
    from mlfo.data.prepare import DEFAULT_SHORT_SIDE, Encoding, combine, prepare
    from mlfo.errors import MLFOError

    if args.combine is not None:
        if args.combine < 1:
            raise MLFOError(f"--combine: expected the number of shards, got {args.combine}")
        for path in combine(args.dst, args.combine):
            print(f"index: {path}")
        return 0
    if args.workers is not None and args.workers < 1:
        raise MLFOError(f"--workers: must be at least 1, got {args.workers}")
    if args.gop < 1 or (args.fps is not None and args.fps <= 0):
        raise MLFOError("--gop / --fps: must be positive")
    quality = args.quality if args.quality is not None else (23 if args.codec == "libx264" else 5)
    encoding = Encoding(args.codec, 1 if args.codec == "mjpeg" else args.gop, quality)
    shard = _shard(args.shard)
    report = prepare(args.source, args.dst, fmt=args.fmt, split_dir=args.split_dir,
                     short_side=args.short_side or DEFAULT_SHORT_SIDE, fps=args.fps, encoding=encoding,
                     workers=args.workers, shard=shard, progress=not args.quiet and sys.stderr.isatty())
    print(f"prepared {report.done} videos, kept {report.kept} from an earlier run, {len(report.failed)} failed")
    for source, reason in report.failed:
        print(f"  failed: {source}: {reason}")
    for path in report.indexes:
        print(f"index: {path}")
    if shard[1] > 1:
        print(f"shard {shard[0]}/{shard[1]} done; when all are: mlfo data prepare SRC {args.dst} --combine {shard[1]}")
    if report.split_dir:
        print(f"split files: {report.dst / report.split_dir} (use it as --split-dir with {report.dst})")
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
