"""Indexing throughput: CPU per video of the probe behind ``mlfo data scan`` / ``load_index``.

Generates once, under ``--work-dir``:
- Kinetics-like videos: 320x240, 30 fps, 10 s (300 frames), H.264 (x264 veryfast, crf 23,
  one keyframe every 250 frames, B-frames), moving texture with per-frame noise;
- 5,000 small videos (64x48, 2 s, H.264): 50 distinct encodes, each copied under 100
  names (probing does not depend on a file being unique).

Measures, in one run:
1. per Kinetics-like video, the CPU time of ``probe_video`` in this process (median over
   files and rounds), and of the earlier probe (decode the first and the last frame, i.e.
   the whole last GOP, with the reader's speed-ups off), interleaved, for the ratio;
2. ``load_index`` (no cache) of the Kinetics-like set and of the 5,000 small videos on
   ``--workers`` processes (default: every core) with the progress bar: wall time, CPU of
   all processes, videos/s, videos/s per core, ms of CPU per video;
3. the Kinetics-400 estimate: 240,000 videos x (1) on 16 cores.

    python benchmarks/index_throughput.py            # ~1 min (+ ~1 min the first time: data)
    python benchmarks/index_throughput.py --quick    # fewer rounds and videos
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from data_throughput import earlier_reader  # this folder: the reader without its speed-ups
from mlfo.data.readers import open_video, pyav
from mlfo.data.sources import load_index, probe_video

KINETICS_VIDEOS = 240_000


# ----------------------------------------------------------------------------- data
def write_h264(path: Path, frames: np.ndarray, fps: int, gop: int) -> None:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast", "threads": "1",
                          "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def moving_texture(seed: int, num_frames: int, height: int, width: int) -> np.ndarray:
    """uint8 (F, H, W, 3): a blocky colour texture panning diagonally, plus fine noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 8 + num_frames // 8 + 2, width // 8 + num_frames // 8 + 2, 3))
    texture = np.kron(coarse, np.ones((8, 8, 1))).astype(np.int16)
    noise = rng.integers(-10, 11, size=(4, height, width, 3), dtype=np.int16)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        window = texture[t: t + height, t: t + width]
        frames[t] = np.clip(window + noise[t % 4], 0, 255)
    return frames


def prepare(work_dir: Path, kinetics: int, small: int) -> tuple[Path, Path]:
    """Folders of Kinetics-like and small videos (made once, then reused)."""
    big_dir, small_dir = work_dir / "kinetics_like", work_dir / "small"
    distinct = min(8, kinetics)
    if len(list(big_dir.glob("*.mp4"))) != kinetics:
        shutil.rmtree(big_dir, ignore_errors=True)
        big_dir.mkdir(parents=True)
        for i in range(distinct):
            write_h264(big_dir / f"k{i:05d}.mp4", moving_texture(i, 300, 240, 320), fps=30, gop=250)
        for i in range(distinct, kinetics):
            shutil.copyfile(big_dir / f"k{i % distinct:05d}.mp4", big_dir / f"k{i:05d}.mp4")
    if len(list(small_dir.glob("*.mp4"))) != small:
        shutil.rmtree(small_dir, ignore_errors=True)
        small_dir.mkdir(parents=True)
        for i in range(50):
            write_h264(small_dir / f"s{i:05d}.mp4", moving_texture(1000 + i, 50, 48, 64), fps=25, gop=250)
        for i in range(50, small):
            shutil.copyfile(small_dir / f"s{i % 50:05d}.mp4", small_dir / f"s{i:05d}.mp4")
    return big_dir, small_dir


# ----------------------------------------------------------------------------- timing
def earlier_probe(path: str) -> None:
    """The earlier probe: decode the first and the last frame (the whole last GOP), with
    the reader as it decoded then (``data_throughput.earlier_reader``)."""
    with earlier_reader(True), open_video(path) as reader:
        reader.get_frames(sorted({0, reader.num_frames - 1}))


def cpu_ms_per_call(fns: list, paths: list[str], rounds: int) -> list[float]:
    """Median CPU ms of each ``fn(path)`` over every path and round, the functions taken in
    turn on each file (after one warm-up each), so machine load hits them alike."""
    for fn in fns:
        for path in paths:
            fn(path)
    times = [[] for _ in fns]
    for _ in range(rounds):
        for path in paths:
            for k, fn in enumerate(fns):
                start = time.process_time()
                fn(path)
                times[k].append((time.process_time() - start) * 1000)
    return [statistics.median(t) for t in times]


def children_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def scan(folder: Path, workers: int | None) -> tuple[int, float, float]:
    """(videos, wall s, CPU s of every process) of one uncached ``load_index``."""
    cpu0, wall0 = children_cpu(), time.perf_counter()
    index = load_index(folder, cache=False, progress=True, workers=workers)
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    bad = [r for r in index.records if r.status != "ok"]
    if bad:
        raise SystemExit(f"{bad[0].path}: {bad[0].status} (the benchmark's videos must all probe ok)")
    return len(index.records), wall, cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds, 16 Kinetics-like videos")
    parser.add_argument("--kinetics", type=int, default=None, help="Kinetics-like videos (default 32, quick 16)")
    parser.add_argument("--small", type=int, default=5000, help="small videos (default 5000)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per video (default 5, quick 3)")
    parser.add_argument("--workers", type=int, default=None, help="probing processes (default: every core)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "mlfo_bench_index")
    args = parser.parse_args(argv)
    kinetics = args.kinetics or (16 if args.quick else 32)
    rounds = args.rounds or (3 if args.quick else 5)

    print(f"preparing videos in {args.work_dir} ...", file=sys.stderr, flush=True)
    big_dir, small_dir = prepare(args.work_dir, kinetics, args.small)
    big = sorted(str(p) for p in big_dir.glob("*.mp4"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"PyAV {av.__version__}, {cores} cores available; {kinetics} Kinetics-like videos "
          f"(320x240, 30 fps, 300 frames, GOP 250), {args.small} small videos (64x48, 50 frames)\n")

    distinct = big[: min(8, len(big))]
    if hasattr(pyav, "SKIM"):
        probe_ms, old_ms = cpu_ms_per_call([probe_video, earlier_probe], distinct, rounds)
    else:  # a tree from before this benchmark: its probe_video is the earlier probe
        (probe_ms,), old_ms = cpu_ms_per_call([probe_video], distinct, rounds), float("nan")
    print("1. one process, CPU ms per Kinetics-like video (median)")
    print(f"   probe_video (index + last keyframe)        {probe_ms:8.2f} ms")
    print(f"   earlier probe (first + last frame)         {old_ms:8.2f} ms   ({old_ms / probe_ms:.2f}x)\n")

    print("2. load_index, no cache, with the progress bar", file=sys.stderr)
    workers = args.workers or cores
    rows = []
    for name, folder in (("Kinetics-like", big_dir), ("small", small_dir)):
        n, wall, cpu = scan(folder, workers)
        rows.append((name, n, wall, cpu))
    print(f"2. load_index on {workers} worker processes (no cache)")
    print(f"   {'videos':<14} {'count':>6} {'wall s':>8} {'videos/s':>9} {'CPU ms/video':>13} {'videos/s per core':>18}")
    for name, n, wall, cpu in rows:
        print(f"   {name:<14} {n:>6} {wall:>8.2f} {n / wall:>9.1f} {1000 * cpu / n:>13.2f} {n / cpu:>18.1f}")
    seconds = KINETICS_VIDEOS * probe_ms / 1000 / 16
    print(f"\n3. Kinetics-400 estimate: {KINETICS_VIDEOS:,} videos x {probe_ms:.2f} ms / 16 cores = "
          f"{seconds:.0f} s ({seconds / 60:.1f} min) of probing, if storage keeps up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
