"""Which codec, GOP and quality a prepared training copy should use (``mlfo data prepare``).

For each candidate encoding, the same sources are re-encoded at a short side and timed as
training reads them: one MLFO sample = decode the 2T-frame span of a video, clips A, B, G,
random resized crop + flip to 112x112 (``ThreeClipDataset``), in one process, one thread.
Reported per encoding: samples per CPU second (median of interleaved turns, so load from
other processes hits every row alike), the bytes of a 10 s video (250 frames), the
encoding CPU time per 10 s video, and the PSNR of 112x112 training crops cut from the copy
against the same crops cut from the raw source (``crop_psnr``). Sources: ``prepared_rows.textured_video`` at 640x360,
H.264 as raw downloads are (x264 defaults: GOP 250, B-frames), 10 s each; made once
under ``--work-dir``.

    python benchmarks/prepare_codecs.py --seconds 12   # ~15 min on 2 cores shared with 7 other jobs
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
from mlfo.data.prepare.encode import Encoding, transcode  # noqa: E402
from mlfo.data.readers import open_video  # noqa: E402
from mlfo.data.sources import VideoRecord  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from data_throughput import measure_interleaved  # noqa: E402
from prepared_rows import FRAMES, textured_video  # noqa: E402

CANDIDATES = [  # (label, encoding, short side)
    ("MPEG-4 part 2, GOP 8, q5", Encoding("mpeg4", 8, 5), 128),
    ("MPEG-4 part 2, GOP 16, q5", Encoding("mpeg4", 16, 5), 128),
    ("MPEG-4 part 2, GOP 32, q5", Encoding("mpeg4", 32, 5), 128),
    ("MPEG-4 part 2, GOP 8, q5", Encoding("mpeg4", 8, 5), 160),
    ("MPEG-4 part 2, GOP 16, q5", Encoding("mpeg4", 16, 5), 160),
    ("MPEG-4 part 2, GOP 32, q5", Encoding("mpeg4", 32, 5), 160),
    ("MPEG-4 part 2, GOP 64, q5", Encoding("mpeg4", 64, 5), 160),
    ("MPEG-4 part 2, GOP 16, q3", Encoding("mpeg4", 16, 3), 160),
    ("MPEG-4 part 2, GOP 16, q8", Encoding("mpeg4", 16, 8), 160),
    ("H.264 no B, GOP 16, crf 23", Encoding("libx264", 16, 23), 160),
    ("H.264 no B, GOP 64, crf 23", Encoding("libx264", 64, 23), 160),
    ("H.264 no B, GOP 250, crf 23", Encoding("libx264", 250, 23), 160),
    ("H.264 no B fastdecode, GOP 16", Encoding("libx264", 16, 23, fast_decode=True), 160),
    ("MJPEG, q5", Encoding("mjpeg", 1, 5), 160),
]


def sources(work_dir: Path, count: int) -> list[Path]:
    return [textured_video(work_dir / "raw_640x360" / f"v{k}.mp4", 640, 360, seed=k) for k in range(count)]


def encode_all(paths: list[Path], out_dir: Path, enc: Encoding, short: int) -> tuple[list[Path], float, float]:
    """The copies, mean bytes per video and mean encoding CPU seconds per video (made once;
    a reused set reports the CPU time recorded when it was made)."""
    record = out_dir / "encode_cpu_s.txt"
    outs = [out_dir / path.name for path in paths]
    if not record.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.process_time()
        for path, out in zip(paths, outs):
            with open_video(path) as reader:
                transcode(reader, out, enc, short)
        record.write_text(f"{(time.process_time() - start) / len(paths)}\n")
    return outs, sum(o.stat().st_size for o in outs) / len(outs), float(record.read_text())


def crop_psnr(raws: list[Path], copies: list[Path], crop: int = 112, boxes: int = 8) -> float:
    """PSNR (dB) of training crops cut from a copy against the same crops (same relative box,
    same flip-free resize to ``crop``) cut from the raw source: what the copy changes of what
    the network sees. Frames 10, 100 and 200; ``boxes`` random boxes of the presets' range."""
    import numpy as np

    from mlfo.data.transforms import random_resized_crop_params, resized_crop

    generator = torch.Generator().manual_seed(0)
    errors = []
    for raw, copy in zip(raws, copies):
        with open_video(raw) as a, open_video(copy) as b:
            frames_a, frames_b = a.get_frames([10, 100, 200]), b.get_frames([10, 100, 200])
        (ha, wa), (hb, wb) = frames_a.shape[1:3], frames_b.shape[1:3]
        for _ in range(boxes):
            top, left, h, w = random_resized_crop_params(ha, wa, (0.5, 1.0), (3 / 4, 4 / 3), generator)
            sy, sx = hb / ha, wb / wa
            box_b = (round(top * sy), round(left * sx), max(1, round(h * sy)), max(1, round(w * sx)))
            ca = resized_crop(frames_a, top, left, h, w, crop).float()
            cb = resized_crop(frames_b, *box_b, crop).float()
            errors.append(float(((ca - cb) ** 2).mean()))
    return float(10 * np.log10(255 ** 2 / np.mean(errors)))


def pipeline(paths: list[Path], frames: int):
    records = [VideoRecord(str(p), frames, 25.0, 0, 0) for p in paths]
    ds = ThreeClipDataset(records, clip_len=16, r_max=3, crop_size=112, backend="pyav")
    return lambda i: ds[(0, i % len(ds))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per row")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "mlfo_bench_prepare")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    paths = sources(args.work_dir, args.videos)
    rows = [("source: H.264 640x360 (x264 defaults)", 0, paths,
             sum(p.stat().st_size for p in paths) / len(paths), 0.0)]
    for label, enc, short in CANDIDATES:
        print(f"encoding {label} s{short} ...", file=sys.stderr, flush=True)
        slug = f"{enc.codec}-g{enc.gop}-q{enc.quality}{'-fd' if enc.fast_decode else ''}-s{short}"
        outs, size, cpu = encode_all(paths, args.work_dir / slug, enc, short)
        rows.append((label, short, outs, size, cpu))
    measured = measure_interleaved([(pipeline(r[2], FRAMES),) for r in rows], len(paths), args.seconds)
    scale = 1.0  # the sources are 10 s long
    print(f"{len(paths)} videos, {FRAMES} frames; samples = 3 clips 16x112x112, crop+flip; 1 thread\n")
    print("| encoding | short side | samples per CPU-s | MB per 10 s video | encode CPU-s per 10 s video "
          "| crop PSNR vs raw (dB) |\n|---|---|---|---|---|---|")
    for (label, short, outs, size, cpu), (_, per_cpu) in zip(rows, measured):
        psnr = f"{crop_psnr(paths, outs):.1f}" if short else "-"
        print(f"| {label} | {short or 'as stored'} | {per_cpu:.1f} | {size * scale / 1e6:.3f} | {cpu * scale:.2f} "
              f"| {psnr} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
