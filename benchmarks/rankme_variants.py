"""RankMe against kNN across ablation variants (issue 18): the final checkpoint of each
variant of one ``benchmarks/ablation.py`` seed, and a random-init encoder of the same
architecture. Spearman's rho per level, with the number of points, whatever its sign.

    python benchmarks/ablation.py --out runs/abl --steps 150 --seeds 0
    python benchmarks/rankme_variants.py runs/abl/seed0 runs/abl/data OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlfo_runs import machine  # noqa: E402
from rankme_vs_knn import LEVELS, measure  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("seed_dir", type=Path, help="one seed's folder of benchmarks/ablation.py (variant/pretrain/last.pt)")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--arch", default="r3d_small", help="the random-init encoder's architecture")
    args = p.parse_args()
    from scipy.stats import spearmanr

    rows = []
    for run in sorted(d for d in args.seed_dir.iterdir() if (d / "pretrain" / "last.pt").is_file()):
        rows.append({"variant": run.name, **measure(str(run / "pretrain" / "last.pt"), args.data, args.out / run.name, None)})
    rows.append({"variant": "random init", **measure("random", args.data, args.out / "random", args.arch)})
    result = {"rows": rows, **machine()}
    for name, subset in (("variants", rows[:-1]), ("with_random_init", rows)):
        for level in LEVELS:
            r = spearmanr([x[f"rankme_{level}"] for x in subset], [x[f"knn_{level}"] for x in subset])
            result.setdefault(name, {})[level] = {"rho": round(float(r.statistic), 3),
                                                  "p": round(float(r.pvalue), 4), "points": len(subset)}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
