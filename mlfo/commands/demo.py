"""``mlfo demo``: the whole system on built-in data, pretrained encoder against random init.

It runs the same steps a user runs on their own videos (demo-data, pretrain, extract,
eval knn / retrieval / linear, plots), so a green demo is evidence that each works, and
it prints one table that says what pretraining bought on motion- and appearance-defined
classes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

EPILOG = """\
what it writes (OUT defaults to mlfo-demo/):
  OUT/data/         the demo dataset (H.264 mp4 videos, CSV lists, classes.json)
  OUT/pretrain/     checkpoints, config.yaml, metrics.jsonl, TensorBoard logs, metrics.png
  OUT/features/     features of the pretrained and the random-init encoder, eval cards, plots
  OUT/report.md     the comparison table
Run it again with the same OUT to reuse finished steps (pretraining resumes where it stopped).
"""

# What the table shows: (card label, metric, column title).
COLUMNS = [
    ("knn", "top1", "kNN"),
    ("retrieval", "R@1", "R@1"),
    ("linear", "top1", "linear"),
]
GROUPS = ("motion", "appearance")


COMMANDS = {"demo": "generate demo data, pretrain, evaluate against random init (the README's main job)"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help=COMMANDS["demo"],
        description="Generate the demo dataset, pretrain MLFO with the demo_cpu preset, and "
        "evaluate kNN, retrieval and a linear probe for the pretrained encoder and a "
        "random-init encoder of the same architecture.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="mlfo-demo", metavar="DIR", help="output folder (default: mlfo-demo)")
    p.add_argument("--config", default="demo_cpu", help="pretraining preset or YAML (default: demo_cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the pretraining run")
    p.add_argument("--videos-per-class", type=int, default=30,
                   help="demo videos per class (default 30: 20 train + 10 test)")
    p.add_argument("--knn-k", type=int, default=10, help="neighbours for kNN (default 10: 20 train videos a class)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="pretraining config overrides, e.g. train.epochs=5")
    p.set_defaults(func=run_demo)


def _stage(number: int, title: str) -> float:
    print(f"\n== [{number}/5] {title}", flush=True)
    return time.time()


def _pretrain(args, data_dir: Path, run_dir: Path):
    """Stage 2: pretraining with the preset on the demo data (resumes a stopped run)."""
    from mlfo.config import load_config
    from mlfo.errors import MLFOError
    from mlfo.train.plot import plot_run
    from mlfo.train.pretrain import pretrain

    t = _stage(2, f"MLFO pretraining ({args.config}) -> {run_dir}")
    overrides = [
        f"data.train={data_dir / 'train.csv'}",
        "data.generate_demo=false",
        f"train.out_dir={run_dir}",
        f"train.seed={args.seed}",
        *args.overrides,
    ]
    cfg = load_config(args.config, overrides)
    result = pretrain(cfg, resume="auto")
    if result.last_checkpoint is None:
        raise MLFOError(f"{run_dir}: pretraining wrote no checkpoint")
    plot_run(run_dir)
    print(f"   {result.global_step} steps in {time.time() - t:.0f} s; curves: {run_dir / 'metrics.png'}",
          flush=True)
    return cfg, result


def run_demo(args) -> int:
    import mlfo.eval as ev
    from mlfo.data.demo import generate_demo_dataset
    from mlfo.data.loading import default_workers

    out = Path(args.out).resolve()
    data_dir, run_dir, features_dir = out / "data", out / "pretrain", out / "features"
    started = time.time()

    t = _stage(1, f"demo dataset -> {data_dir}")
    generate_demo_dataset(data_dir, seed=args.seed, videos_per_class=args.videos_per_class)
    print(f"   done in {time.time() - t:.0f} s", flush=True)

    cfg, result = _pretrain(args, data_dir, run_dir)

    t = _stage(3, f"features of the pretrained and a random-init encoder -> {features_dir}")
    crop = cfg.data.crop_size
    views = ev.ViewConfig(clip_len=cfg.data.clip_len, num_clips=4, resize=round(crop * 8 / 7), crop_size=crop)
    ev.extract_features(str(result.last_checkpoint), str(data_dir), features_dir, views, baselines=["random"],
                        seed=args.seed, workers=default_workers())
    print(f"   done in {time.time() - t:.0f} s", flush=True)

    t = _stage(4, "evaluation: kNN, retrieval, linear probe")
    ev.evaluate_knn(features_dir, ev.KnnConfig(k=args.knn_k))
    ev.evaluate_retrieval(features_dir)
    ev.evaluate_linear(features_dir)
    print(f"   done in {time.time() - t:.0f} s", flush=True)

    _stage(5, "comparison")
    table = comparison_table(features_dir)
    report = out / "report.md"
    report.write_text(
        "# mlfo demo: MLFO pretraining against random init\n\n"
        f"Command: `mlfo demo --out {args.out}` (seed {args.seed}, config {args.config}); "
        f"{result.global_step} pretraining steps; total {time.time() - started:.0f} s.\n"
        f"Test split of the demo data; numbers in %. kNN k={args.knn_k}; retrieval: test "
        "videos query train videos; linear: BN + linear probe chosen on a train hold-out.\n\n"
        + table + "\n"
    )
    print(table)
    print(f"\nreport: {report}\nplots: {features_dir}/*.png, {run_dir / 'metrics.png'}")
    print(f"mlfo demo finished in {(time.time() - started) / 60:.1f} min")
    return 0


def comparison_table(features_dir: str | Path) -> str:
    """One Markdown row per encoder (pretrained, then baselines) from the eval cards."""
    from mlfo.eval.cards import read_card

    features_dir = Path(features_dir)
    encoders = [features_dir] + sorted(p for p in (features_dir / "baselines").glob("*") if p.is_dir())
    header = ["encoder"] + [f"{title} {group}" for _, _, title in COLUMNS for group in ("all",) + GROUPS]
    rows = []
    for folder in encoders:
        cards = {label: read_card(path) if (path := folder / f"{label}.card.json").is_file() else None
                 for label, _, _ in COLUMNS}
        name = next((c["encoder"]["name"] for c in cards.values() if c), folder.name)
        row = ["MLFO pretrained" if folder == features_dir else name]
        for label, metric, _ in COLUMNS:
            card = cards[label] or {}
            row.append(_fmt(card.get("metrics", {}).get(metric)))
            for group in GROUPS:
                row.append(_fmt(card.get("groups", {}).get(group, {}).get(metric)))
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.1f}"
