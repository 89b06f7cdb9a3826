"""Which 2-D map for ``mlfo inspect`` / ``mlfo eval retrieval``: quality and CPU time.

Quality is sklearn's trustworthiness (k = 10): how many of each point's 2-D neighbours are
true neighbours in feature space (1 = all). Compared: t-SNE (the one map,
``mlfo.inspect.mapping``) and PCA as the cheap floor; UMAP where ``umap-learn`` is installed
(it is not in requirements.txt: it would add numba and llvmlite). Time is CPU time of this
process (``time.process_time``), which a busy neighbour affects less than wall time.

    python benchmarks/map_quality.py FEATURES.npy [--sizes 2000,13320]
    # FEATURES.npy: any (N, C) features, e.g. feats/demo/train/features.npy;
    # --synthetic N: clustered Gaussian features (101 clusters, 512-d) instead
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlfo_runs import machine  # noqa: E402


def synthetic(n: int, dim: int = 512, clusters: int = 101, seed: int = 0) -> np.ndarray:
    """UCF101-sized stand-in: non-negative (post-ReLU-like) clustered features."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(clusters, dim)))
    return np.abs(centres[rng.integers(0, clusters, n)] + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)


def timed(fn):
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def compare(x: np.ndarray, seed: int = 0) -> dict:
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    from mlfo.eval.retrieval import l2_normalize
    from mlfo.inspect.mapping import map_2d

    xn = l2_normalize(x)
    m, t_tsne = timed(lambda: map_2d(x, max_points=len(x), seed=seed))
    pca, t_pca = timed(lambda: PCA(2, random_state=seed).fit_transform(xn))
    row = {"n": len(x), "dim": x.shape[1],
           "tsne": {"cpu_s": round(t_tsne, 2), "trustworthiness": round(float(trustworthiness(xn, m.xy, n_neighbors=10)), 4)},
           "pca": {"cpu_s": round(t_pca, 2), "trustworthiness": round(float(trustworthiness(xn, pca, n_neighbors=10)), 4)}}
    try:
        import umap  # noqa: F401
    except ImportError:
        row["umap"] = "umap-learn not installed"
    else:
        emb, t_umap = timed(lambda: umap.UMAP(random_state=seed).fit_transform(xn))
        row["umap"] = {"cpu_s": round(t_umap, 2), "trustworthiness": round(float(trustworthiness(xn, emb, n_neighbors=10)), 4)}
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("features", nargs="?", type=Path)
    p.add_argument("--synthetic", type=int, default=0, metavar="N")
    p.add_argument("--full-vs-subsample", type=int, default=0, metavar="N",
                   help="also time the map of N synthetic points in full against the 2000-point subsample")
    args = p.parse_args()
    rows = []
    if args.features:
        rows.append(dict(compare(np.load(args.features, allow_pickle=False)), source=str(args.features)))
    if args.synthetic:
        rows.append(dict(compare(synthetic(args.synthetic)), source=f"synthetic {args.synthetic}"))
    if args.full_vs_subsample:
        from mlfo.inspect.mapping import MAX_POINTS, map_2d

        x = synthetic(args.full_vs_subsample)
        _, full = timed(lambda: map_2d(x, max_points=len(x)))
        _, sub = timed(lambda: map_2d(x, max_points=MAX_POINTS))
        rows.append({"source": f"synthetic {len(x)}", "full_cpu_s": round(full, 1),
                     f"subsample_{MAX_POINTS}_cpu_s": round(sub, 1)})
    print(json.dumps({"rows": rows, **machine()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
