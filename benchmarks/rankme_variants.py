"""RankMe against kNN across ablation variants (issue 18): the final checkpoint of each
variant of one seed of ``benchmarks/ablation.py`` or ``benchmarks/real_footage.py``
(``SEED_DIR/VARIANT/pretrain/last.pt``), and a random-init encoder of the same
architecture. Spearman's rho per level, with the number of points, whatever its sign;
also the RankMe each run logged last during pretraining (``health/rankme``, the prototype
queue: variants without prototypes log none) against each level's kNN.

    python benchmarks/ablation.py --out runs/abl --steps 150 --seeds 0
    python benchmarks/rankme_variants.py runs/abl/seed0 runs/abl/data OUT_DIR
    python benchmarks/rankme_variants.py runs/rf/seed0 runs/rf/data OUT_DIR --clip-len 16 --clips 4 \\
        --resize 37 --crop-size 32                                  # real_footage.py's views
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlfo_runs import machine  # noqa: E402
from rankme_vs_knn import LEVELS, QUEUE, add_view_args, logged_rankme, measure, rho, views_of  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("seed_dir", type=Path, help="one seed's folder (VARIANT/pretrain/last.pt)")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    add_view_args(p)
    args = p.parse_args()
    runs = sorted(d for d in args.seed_dir.iterdir() if (d / "pretrain" / "last.pt").is_file())
    rows = []
    for i, run in enumerate(runs):
        found = measure(str(run / "pretrain" / "last.pt"), args.data, args.out / run.name, views_of(args),
                        random_twin=i == 0)
        found[0].update(variant=run.name, **{QUEUE: logged_rankme(run / "pretrain")})
        rows.insert(i, found[0])
        rows += [dict(r, variant="random init") for r in found[1:]]
    result = {"rows": rows, **machine()}
    for name, subset in (("variants", rows[:-1]), ("with_random_init", rows)):
        for level in LEVELS:
            result.setdefault(name, {})[level] = rho(subset, f"rankme_{level}", f"knn_{level}")
    result["logged_queue_rankme"] = {level: rho(rows, QUEUE, f"knn_{level}") for level in LEVELS}
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
