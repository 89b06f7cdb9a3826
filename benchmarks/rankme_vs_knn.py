"""Is RankMe a label-free proxy for kNN accuracy? Spearman rank correlation over the
checkpoints of one run (and the random init), measured, whatever its sign.

Per checkpoint: features of the demo data's train and test videos (``mlfo extract``'s
code and views, low / mid / high levels), RankMe of the TRAIN features (what a user
without labels has: the pretraining videos; ``mlfo.inspect.health``), kNN top-1 of test
videos among train videos (the demo's protocol, k = 10). Then Spearman's rho between
RankMe and kNN per level, with the number of points.

    python benchmarks/rankme_vs_knn.py RUN_DIR DATA_DIR OUT_DIR [--watch-until HH:MM]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mlfo_runs import machine  # noqa: E402

LEVELS = ("low", "mid", "high")


def measure(encoder: str, data: Path, out: Path, arch: str | None) -> dict:
    """RankMe (train features) per level and kNN top-1 (test among train) of one encoder."""
    import mlfo.eval as ev
    from mlfo.eval.features import load_feature_set
    from mlfo.inspect.health import rankme

    if not (out / "test" / "features.npy").is_file():
        views = ev.ViewConfig(clip_len=16, num_clips=4, resize=55, crop_size=48)
        ev.extract_features(encoder, str(data), out, views, arch=arch, levels=True, progress=False)
    row = {"encoder": encoder}
    for level in LEVELS:
        row[f"rankme_{level}"] = rankme(load_feature_set(out / "train", level).features)
        card = ev.evaluate_knn(out, ev.KnnConfig(k=10), level=level, baselines=False, plots=False)[0]
        row[f"knn_{level}"] = card["metrics"]["top1"]
    return row


def spearman(rows: list[dict]) -> dict:
    """rho, p and the number of points per level: over the run's checkpoints, and with the
    random-init encoder added (not the run's own initial weights: another draw, seed 0)."""
    from scipy.stats import spearmanr

    out = {}
    for name, subset in (("checkpoints", [r for r in rows if r["encoder"] != "random"]), ("with_random_init", rows)):
        if len(subset) < 3:
            continue
        for level in LEVELS:
            r = spearmanr([x[f"rankme_{level}"] for x in subset], [x[f"knn_{level}"] for x in subset])
            out.setdefault(name, {})[level] = {"rho": round(float(r.statistic), 3), "p": round(float(r.pvalue), 4),
                                               "points": len(subset)}
    ckpts = [r for r in rows if r["encoder"] != "random"]
    out["consecutive_checkpoints"] = same_direction(ckpts)
    if len(ckpts) >= 3:  # each against training time (checkpoint order)
        out["vs_training_time"] = {f"{m}_{lv}": round(float(spearmanr(range(len(ckpts)), [r[f"{m}_{lv}"] for r in ckpts])
                                                          .statistic), 3) for m in ("rankme", "knn") for lv in LEVELS}
    return out


def same_direction(rows: list[dict]) -> dict:
    """Both values grow with training, so a rank correlation over a run partly measures
    time. Between consecutive checkpoints: how often did RankMe and kNN move the same way?"""
    out = {}
    for level in LEVELS:
        d_rank = [b[f"rankme_{level}"] - a[f"rankme_{level}"] for a, b in zip(rows, rows[1:])]
        d_knn = [b[f"knn_{level}"] - a[f"knn_{level}"] for a, b in zip(rows, rows[1:])]
        moved = [(x, y) for x, y in zip(d_rank, d_knn) if y != 0]  # kNN ties carry no sign
        out[level] = {"same": sum(x * y > 0 for x, y in moved), "pairs": len(moved)}
    return out


def checkpoints(run: Path) -> list[Path]:
    return sorted(run.glob("epoch_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--watch-until", default=None, metavar="HH:MM",
                   help="keep measuring new checkpoints as the run writes them until this UTC time")
    args = p.parse_args()
    results = args.out / "results.json"
    rows = json.loads(results.read_text())["rows"] if results.is_file() else []
    done = {r["encoder"] for r in rows}
    while True:
        ckpt0 = next(iter(checkpoints(args.run)), None)
        todo = [str(c) for c in checkpoints(args.run) if str(c) not in done]
        if "random" not in done and ckpt0 is not None:
            todo.insert(0, "random")
        for enc in todo:
            arch = None
            if enc == "random":  # the run's own architecture, untrained (seed 0, as the run's init)
                from mlfo.eval.encoders import resolve_encoder
                arch = resolve_encoder(str(ckpt0)).info["arch"]["name"]
            t = time.time()
            row = measure(enc, args.data, args.out / Path(enc).stem, arch)
            row["seconds"] = round(time.time() - t, 1)
            rows.append(row)
            done.add(enc)
            summary = {"rows": rows, "spearman": spearman(rows), **machine()}
            results.write_text(json.dumps(summary, indent=1))
            print(json.dumps(row), flush=True)
        if not args.watch_until or time.strftime("%H:%M", time.gmtime()) >= args.watch_until:
            break
        time.sleep(30)
    results.write_text(json.dumps({"rows": rows, "spearman": spearman(rows), **machine()}, indent=1))
    print(json.dumps(spearman(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
