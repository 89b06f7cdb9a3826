"""Feature extraction throughput: videos and clips per second, and where the time goes.

Runs the same code as ``mlfo extract`` (EvalClipDataset + batched encoder forward) on the
demo dataset, for a random-init encoder of each architecture, and reports
- decode+views: the DataLoader alone (decoding, resize, crops; the views leave it as uint8),
- end to end: decoding + normalisation on the device + encoder forward, as ``mlfo extract`` runs it,
so the ratio says whether extraction is bound by decoding or by the network.

    python benchmarks/extract_throughput.py             # r3d_small 8x64 and 16x48, r3d_18 16x112
    python benchmarks/extract_throughput.py --quick     # r3d_small 16x48 only, 40 videos
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

CASES = [  # (backbone, clip_len, crop, resize)
    ("r3d_small", 8, 64, 72),
    ("r3d_small", 16, 48, 54),
    ("r3d_18", 16, 112, 128),
]


def main() -> None:
    from mlfo.data.datasets import EvalClipDataset
    from mlfo.data.demo import generate_demo_dataset
    from mlfo.data.sources import load_index
    from mlfo.eval.encoders import random_encoder
    from mlfo.eval.extract import compute_features
    from mlfo.eval.views import ViewConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--videos", type=int, default=110, help="videos to extract (default: the demo test split)")
    parser.add_argument("--clips", type=int, default=4, help="uniform clips per video (centre crop)")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per batch")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--data", help="demo dataset folder (default: generate one in a temp dir)")
    args = parser.parse_args()
    cases = [CASES[1]] if args.quick else CASES
    videos = 40 if args.quick else args.videos

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else generate_demo_dataset(Path(tmp) / "demo", seed=0)
        records = load_index(str(Path(data) / "test.csv"), progress=False).records[:videos]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(records)} videos, "
              f"{args.clips} clips x centre crop, batch {args.batch_size} videos, {args.workers} workers")
        for name, clip_len, crop, resize in cases:
            dataset = EvalClipDataset(records, clip_len=clip_len, num_clips=args.clips, crop_size=crop,
                                      resize=resize, crop_mode="center")
            loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers,
                                                 collate_fn=lambda b: b)
            start = time.perf_counter()
            for _ in loader:
                pass
            decode_s = time.perf_counter() - start

            views = ViewConfig(clip_len=clip_len, num_clips=args.clips, crop_size=crop, resize=resize)
            encoder = random_encoder(name, seed=0)
            start = time.perf_counter()
            compute_features({encoder.key: encoder.module}, views.dataset(records), levels=["high"],
                             batch_size=args.batch_size * args.clips, views_per_video=args.clips,
                             num_workers=args.workers, progress=False)
            total_s = time.perf_counter() - start
            n, clips = len(records), len(records) * args.clips
            print(f"{name:10s} {clip_len:2d}x{crop}x{crop}  decode+views {n / decode_s:6.1f} videos/s   "
                  f"end to end {n / total_s:6.1f} videos/s ({clips / total_s:6.1f} clips/s)   "
                  f"decoding share {decode_s / total_s:4.0%}", flush=True)


if __name__ == "__main__":
    main()
