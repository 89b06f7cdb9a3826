"""``mlfo demo-data OUT``: write the built-in synthetic demo dataset and print its summary."""

from __future__ import annotations

import argparse
import sys
import time


COMMANDS = {"demo-data": "write the built-in synthetic action dataset (H.264 mp4 + CSV split)"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-data",
        help=COMMANDS["demo-data"],
        description=(
            "Write a labelled synthetic action dataset: textured objects on textured "
            "backgrounds whose motion defines most classes and whose shape defines a few. "
            "Deterministic by seed. An existing folder holding the same dataset is reused."
        ),
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--videos-per-class", type=int, default=30, help="videos per class (default 30)")
    parser.add_argument("--frames", type=int, default=64, help="frames per video (default 64)")
    parser.add_argument("--size", type=int, nargs=2, default=(80, 80), metavar=("WIDTH", "HEIGHT"),
                        help="frame size in pixels, both even (default 80 80)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate (default 25)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    parser.add_argument("--force", action="store_true", help="regenerate even if OUT holds the same dataset")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mlfo.data.demo import demo_summary, generate_demo_dataset

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total or done % 50 == 0:
            end = "\n" if done == total else ("\r" if sys.stderr.isatty() else "\n")
            print(f"  writing videos {done}/{total}", end=end, file=sys.stderr, flush=True)

    start = time.perf_counter()
    out = generate_demo_dataset(
        args.out,
        seed=args.seed,
        videos_per_class=args.videos_per_class,
        num_frames=args.frames,
        width=args.size[0],
        height=args.size[1],
        fps=args.fps,
        workers=args.workers,
        overwrite=args.force,
        progress=progress,
    )
    print(demo_summary(out))
    print(f"  done in {time.perf_counter() - start:.1f} s")
    return 0
