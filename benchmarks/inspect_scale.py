"""How ``mlfo inspect``'s analysis scales with the collection: health, map, galleries and
near-duplicates of N videos (``mlfo.inspect.api.analyse``, the code the page runs after
extraction), on synthetic features of r3d_18's sizes (low 64, mid 128, high 512): 50
clusters on a 32-dimensional subspace plus noise, 0.5 % exact copies of other videos. Extraction is not
timed here (``benchmarks/extract_throughput.py``; it is ``mlfo extract``'s and shards over
torchrun); thumbnails are written only for the videos the page shows (at most
``--map-points`` + queries x (k + 1) + 20 x 12), whatever N is.

Per N: wall time of each step of one encoder's analysis, peak resident memory of the
process, and the size of the page's JSON of every video. Times grow as N^2 for the
neighbour search (every video is a duplicate query) and are near constant elsewhere
(subsampled map and uniformity).

    python benchmarks/inspect_scale.py --videos 10000 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlfo_runs import machine  # noqa: E402

DIMS = {"low": 64, "mid": 128, "high": 512}


def synthetic(n: int, seed: int = 0):
    """VideoFeatures-like levels and halves of ``n`` videos (float32)."""
    from mlfo.inspect.collection import VideoFeatures

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, 32))
    which = rng.integers(0, 50, size=n)
    levels, halves = {}, {}
    for level, dim in DIMS.items():
        basis = rng.normal(size=(32, dim))
        x = (centres[which] + 0.5 * rng.normal(size=(n, 32))) @ basis + 0.3 * rng.normal(size=(n, dim))
        dup = rng.choice(n, size=n // 100, replace=False)
        x[dup[1::2]] = x[dup[::2]]  # n / 200 exact copies: near-duplicate pairs to find
        a = x + 0.1 * rng.normal(size=x.shape)
        b = x + 0.1 * rng.normal(size=x.shape)
        levels[level], halves[level] = x.astype(np.float32), (a.astype(np.float32), b.astype(np.float32))
    return VideoFeatures(np.arange(n), levels, halves)


def collection(n: int):
    from mlfo.data.sources import VideoRecord
    from mlfo.inspect.collection import Collection

    records = [VideoRecord(f"/data/videos/v{i:07d}.mp4", 64, 25.0, 320, 240) for i in range(n)]
    return Collection(records, n, [], {})


def measure(n: int) -> dict:
    import mlfo.inspect.api as api

    feats, coll, cfg = synthetic(n), collection(n), api.InspectConfig()
    steps, real = {}, {}
    for name in ("embedding_health", "map_2d", "gallery", "duplicate_groups"):  # time each step in place
        real[name] = getattr(api, name)

        def timed(*args, _name=name, **kwargs):
            t = time.perf_counter()
            out = real[_name](*args, **kwargs)
            steps[_name] = steps.get(_name, 0.0) + time.perf_counter() - t
            return out

        setattr(api, name, timed)
    try:
        start = time.perf_counter()
        result = api.analyse(feats, coll, cfg)
        total = time.perf_counter() - start
    finally:
        for name, fn in real.items():
            setattr(api, name, fn)
    videos = json.dumps(api._video_entries(coll, {}))
    return {"videos": n, "seconds": round(total, 1), **{f"{k}_s": round(v, 1) for k, v in steps.items()},
            "duplicate_groups": len(result["duplicates"]), "videos_json_mb": round(len(videos) / 2**20, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, nargs="+", default=[10000, 20000])
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args()
    rows = []
    for n in sorted(args.videos):
        rows.append(measure(n))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, **machine()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
