"""Which codec, GOP and quality a prepared training copy should use (``mlfo data prepare``).

For each candidate encoding, the same sources are re-encoded at a short side and timed as
training reads them: one MLFO sample = decode the 2T-frame span of a video, clips A, B, G,
random resized crop + flip to 112x112 (``ThreeClipDataset``), in one process, one thread.
Reported per encoding: samples per CPU second (median of interleaved turns, so load from
other processes hits every row alike), the bytes of a 10 s video (250 frames) and the
encoding CPU time per 10 s video. Sources: demo videos rendered at 640x360, H.264 (x264
defaults: GOP 250, B-frames), 250 frames each; made once under ``--work-dir``.

    python benchmarks/prepare_codecs.py            # ~6 min on a shared 2-core machine
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from mlfo.data.datasets import ThreeClipDataset  # noqa: E402
from mlfo.data.demo import generate_demo_dataset  # noqa: E402
from mlfo.data.prepare.encode import Encoding, transcode  # noqa: E402
from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.sources import VideoRecord  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from data_throughput import measure_interleaved  # noqa: E402

CANDIDATES = [  # (label, encoding, short side)
    ("MPEG-4 part 2, GOP 8, q5", Encoding("mpeg4", 8, 5), 128),
    ("MPEG-4 part 2, GOP 16, q5", Encoding("mpeg4", 16, 5), 128),
    ("MPEG-4 part 2, GOP 32, q5", Encoding("mpeg4", 32, 5), 128),
    ("MPEG-4 part 2, GOP 16, q3", Encoding("mpeg4", 16, 3), 128),
    ("MPEG-4 part 2, GOP 16, q5", Encoding("mpeg4", 16, 5), 160),
    ("H.264 no B, GOP 16, crf 23", Encoding("libx264", 16, 23), 128),
    ("H.264 no B, GOP 64, crf 23", Encoding("libx264", 64, 23), 128),
    ("H.264 no B, GOP 250, crf 23", Encoding("libx264", 250, 23), 128),
    ("H.264 no B fastdecode, GOP 16", Encoding("libx264", 16, 23, fast_decode=True), 128),
    ("MJPEG, q5", Encoding("mjpeg", 1, 5), 128),
    ("MJPEG, q5", Encoding("mjpeg", 1, 5), 160),
]


def sources(work_dir: Path, frames: int) -> list[Path]:
    from mlfo.data.demo.classes import CLASS_NAMES

    root = generate_demo_dataset(work_dir / "src_640x360", seed=0, videos_per_class=2, num_frames=frames,
                                 width=640, height=360, classes=list(CLASS_NAMES[:4]))
    return sorted((root / "videos").glob("*.mp4"))


def encode_all(paths: list[Path], out_dir: Path, enc: Encoding, short: int) -> tuple[list[Path], float, float]:
    """The copies, mean bytes per video and mean encoding CPU seconds per video."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outs, cpu = [], 0.0
    for path in paths:
        out = out_dir / path.name
        start = time.process_time()
        with open_video(path) as reader:
            transcode(reader, out, enc, short)
        cpu += time.process_time() - start
        outs.append(out)
    return outs, sum(o.stat().st_size for o in outs) / len(outs), cpu / len(outs)


def pipeline(paths: list[Path], frames: int):
    records = [VideoRecord(str(p), frames, 25.0, 0, 0) for p in paths]
    ds = ThreeClipDataset(records, clip_len=16, r_max=3, crop_size=112, backend="pyav")
    return lambda i: ds[(0, i % len(ds))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per row")
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "mlfo_bench_prepare")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = sources(args.work_dir, args.frames)
    rows = [("source: H.264 640x360 (x264 defaults)", 0, paths,
             sum(p.stat().st_size for p in paths) / len(paths), 0.0)]
    for k, (label, enc, short) in enumerate(CANDIDATES):
        print(f"encoding {label} s{short} ...", file=sys.stderr, flush=True)
        outs, size, cpu = encode_all(paths, args.work_dir / f"c{k}", enc, short)
        rows.append((label, short, outs, size, cpu))
    measured = measure_interleaved([(pipeline(r[2], args.frames),) for r in rows], len(paths), args.seconds * len(rows))
    scale = 250 / args.frames
    print(f"{len(paths)} videos, {args.frames} frames; samples = 3 clips 16x112x112, crop+flip; 1 thread\n")
    print(f"| encoding | short side | samples per CPU-s | MB per 10 s video | encode CPU-s per 10 s video |")
    print("|---|---|---|---|---|")
    for (label, short, _, size, cpu), (_, per_cpu) in zip(rows, measured):
        print(f"| {label} | {short or 'as stored'} | {per_cpu:.1f} | {size * scale / 1e6:.3f} | {cpu * scale:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
