"""Is RankMe a label-free proxy for kNN accuracy? Spearman rank correlation over the
checkpoints of one run (and a random-init twin), measured, whatever its sign.

Per checkpoint: features of the data's train and test videos (``mlfo extract``'s code and
views, low / mid / high levels), RankMe of the TRAIN features (what a user without labels
has: the pretraining videos; ``mlfo.inspect.health``), kNN top-1 of test videos among train
videos (k = 10). Also the RankMe that pretraining itself logged (``health/rankme`` in the
run's metrics.jsonl: the prototype queue's embeddings, no extra forward pass) at the
checkpoint's step, against the same kNN. Then Spearman's rho per level, with the number
of points. The random-init encoder is the first checkpoint's architecture (``--baseline
random``, seed 0: another draw than the run's own initial weights).

    python benchmarks/rankme_vs_knn.py RUN_DIR DATA_DIR OUT_DIR [--watch-until HH:MM]
    python benchmarks/rankme_vs_knn.py runs/rf/seed0/full_MLFO/pretrain runs/rf/data OUT \\
        --clip-len 16 --clips 4 --resize 37 --crop-size 32          # real_footage.py's views
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
QUEUE = "queue_rankme"  # row key of the RankMe logged during pretraining


def add_view_args(p: argparse.ArgumentParser) -> None:
    """The evaluation views (default: the demo's)."""
    p.add_argument("--clip-len", type=int, default=16)
    p.add_argument("--clips", type=int, default=4)
    p.add_argument("--resize", type=int, default=55)
    p.add_argument("--crop-size", type=int, default=48)


def views_of(args):
    import mlfo.eval as ev

    return ev.ViewConfig(clip_len=args.clip_len, num_clips=args.clips, resize=args.resize, crop_size=args.crop_size)


def _row(name: str, features: Path) -> dict:
    import mlfo.eval as ev
    from mlfo.eval.features import load_feature_set
    from mlfo.inspect.health import rankme

    row = {"encoder": name}
    for level in LEVELS:
        row[f"rankme_{level}"] = rankme(load_feature_set(features / "train", level).features)
        card = ev.evaluate_knn(features, ev.KnnConfig(k=10), level=level, baselines=False, plots=False)[0]
        row[f"knn_{level}"] = card["metrics"]["top1"]
    return row


def measure(encoder: str, data: Path, out: Path, views, random_twin: bool = False) -> list[dict]:
    """RankMe (train features) and kNN top-1 (test among train) per level of ``encoder``,
    and of its random-init twin (same architecture) when ``random_twin``."""
    import mlfo.eval as ev

    if not (out / "test" / "features.npy").is_file():
        ev.extract_features(encoder, str(data), out, views, levels=True, progress=False,
                            baselines=["random"] if random_twin else [])
    return [_row(encoder, out)] + ([_row("random", out / "baselines" / "random")] if random_twin else [])


def logged_rankme(run: Path, checkpoint: str | None = None) -> float | None:
    """``health/rankme`` that pretraining logged at ``checkpoint``'s step (the last value
    logged at or before it), or its last logged value; None when it logged none."""
    import torch

    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    step = float("inf")
    if checkpoint is not None:
        step = torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]
    logged = [r["health/rankme"] for r in rows if "health/rankme" in r and r["step"] <= step]
    return logged[-1] if logged else None


def rho(rows: list[dict], x: str, y: str) -> dict | None:
    from scipy.stats import spearmanr

    pairs = [(r[x], r[y]) for r in rows if r.get(x) is not None]
    if len(pairs) < 3:
        return None
    r = spearmanr(*zip(*pairs))
    return {"rho": round(float(r.statistic), 3), "p": round(float(r.pvalue), 4), "points": len(pairs)}


def spearman(rows: list[dict]) -> dict:
    """rho, p and the number of points per level: over the run's checkpoints, and with the
    random-init encoder added; the logged queue RankMe against each level's kNN."""
    from scipy.stats import spearmanr

    ckpts = [r for r in rows if r["encoder"] != "random"]
    out = {}
    for name, subset in (("checkpoints", ckpts), ("with_random_init", rows)):
        for level in LEVELS:
            if (found := rho(subset, f"rankme_{level}", f"knn_{level}")) is not None:
                out.setdefault(name, {})[level] = found
    for level in LEVELS:
        if (found := rho(ckpts, QUEUE, f"knn_{level}")) is not None:
            out.setdefault("logged_queue_rankme", {})[level] = found
    out["consecutive_checkpoints"] = same_direction(ckpts)
    if len(ckpts) >= 3:  # each against training time (checkpoint order)
        keys = [f"{m}_{lv}" for m in ("rankme", "knn") for lv in LEVELS] + [QUEUE]
        out["vs_training_time"] = {k: round(float(spearmanr(range(len(ckpts)), [r.get(k) for r in ckpts]).statistic), 3)
                                   for k in keys if all(r.get(k) is not None for r in ckpts)}
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
    add_view_args(p)
    args = p.parse_args()
    results = args.out / "results.json"
    rows = json.loads(results.read_text())["rows"] if results.is_file() else []
    done = {r["encoder"] for r in rows}
    while True:
        for ckpt in [str(c) for c in checkpoints(args.run) if str(c) not in done]:
            t = time.time()
            found = measure(ckpt, args.data, args.out / Path(ckpt).stem, views_of(args), random_twin="random" not in done)
            found[0][QUEUE] = logged_rankme(args.run, ckpt)
            for row in found:
                row["seconds"] = round(time.time() - t, 1)
                rows.append(row)
                done.add(row["encoder"])
                print(json.dumps(row), flush=True)
            results.write_text(json.dumps({"rows": rows, "spearman": spearman(rows), **machine()}, indent=1))
        if not args.watch_until or time.strftime("%H:%M", time.gmtime()) >= args.watch_until:
            break
        time.sleep(30)
    rows.sort(key=lambda r: (r["encoder"] == "random", r["encoder"]))
    results.write_text(json.dumps({"rows": rows, "spearman": spearman(rows), **machine()}, indent=1))
    print(json.dumps(spearman(rows), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
