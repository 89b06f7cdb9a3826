"""Learning-quality ablation of MLFO on the built-in demo dataset.

Same step budget, same data, same evaluation for five encoders:

    (a) random init              the untrained encoder of the same architecture
    (b) instance                 high-level instance contrast only
    (c) + prototypes             (b) + prototypical contrast (Sinkhorn codes, queue)
    (d) + graph                  (c) + graph constraint on the three levels
    (e) + temporal = full MLFO   (d) + ME block, low/mid motion contrast with reversed
                                 hard negatives, timestamp matching on the three levels

Every trained variant runs with each seed (the seed changes model init and clip
sampling; the data is fixed). Each encoder is evaluated by kNN (k=10), retrieval and a
linear probe on the test split, separately for the motion- and the appearance-defined
classes. Writes ``OUT/ablation.json`` (every raw number) and ``OUT/ablation.md`` (mean
+- sample std over seeds) and prints the table.

    python benchmarks/ablation.py --out runs/ablation                 # 3 seeds, preset budget
    python benchmarks/ablation.py --out runs/ablation --steps 200 --seeds 0 1 2
    python benchmarks/ablation.py --out /tmp/abl --quick              # smoke test, ~3 min

Runs finished earlier (their card files exist) are reused, so an interrupted ablation
continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlfo_runs import ABLATION, machine, run_mlfo, slug

# Objective / model switches of each trained variant (everything else: the preset).
VARIANTS: dict[str, list[str]] = ABLATION
LABELS = {
    "random init": "(a) random init",
    "instance": "(b) instance contrast",
    "+prototypes": "(c) + prototypes",
    "+graph": "(d) + graph constraint",
    "full MLFO": "(e) + temporal = full MLFO",
}
METRICS = [("knn", "top1", "kNN"), ("retrieval", "R@1", "R@1"), ("linear", "top1", "linear")]
GROUPS = ("motion", "appearance", "all")


def _cli(argv: list[str]) -> None:
    run_mlfo(argv, "ablation")


def _read_scores(folder: Path) -> dict:
    """{metric: {group: value}} from the eval cards in ``folder``."""
    scores = {}
    for label, metric, title in METRICS:
        card = json.loads((folder / f"{label}.card.json").read_text())
        scores[title] = {"all": card["metrics"][metric]}
        for group, values in card.get("groups", {}).items():
            scores[title][group] = values[metric]
    return scores


def _evaluate(features: Path, args) -> None:
    center = ["--center"] if args.center else []
    _cli(["eval", "knn", str(features), "--k", str(args.knn_k), "--no-plots", *center])
    _cli(["eval", "retrieval", str(features), "--no-plots", *center])
    _cli(["eval", "linear", str(features), "--no-plots"])


def run(args) -> dict:
    from mlfo.config import load_config
    from mlfo.data.demo import generate_demo_dataset

    out = Path(args.out).resolve()
    if args.data:  # an existing demo dataset (train.csv, test.csv, classes.json)
        data = Path(args.data).resolve()
    else:
        data = generate_demo_dataset(out / "data", seed=0)
    base = load_config(args.config, list(args.overrides))  # the view follows the clip settings
    clip_len, crop = base.data.clip_len, base.data.crop_size
    steps = args.steps or base.train.max_steps or base.train.epochs * (220 // base.data.batch_size)  # 220 train videos
    view = ["--clip-len", str(clip_len), "--clips", str(args.eval_clips),
            "--resize", str(round(crop * 8 / 7)), "--crop-size", str(crop), "--quiet"]
    raw: dict[str, dict[str, dict]] = {name: {} for name in LABELS}
    timings: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for seed in args.seeds:
        for name in args.variants:
            run_dir = out / f"seed{seed}" / slug(name)
            features = run_dir / "features"
            if not (features / "linear.card.json").is_file():
                started = time.time()
                print(f"\n== seed {seed}: {LABELS[name]} ({steps} steps)", flush=True)
                overrides = [
                    f"data.train={data / 'train.csv'}", "data.generate_demo=false",
                    f"train.out_dir={run_dir / 'pretrain'}", f"train.seed={seed}",
                    f"train.max_steps={steps}", f"train.epochs={max(base.train.epochs, steps)}",
                    "train.progress=false", "train.tensorboard=false", "checkpoint.every_epochs=0",
                    *VARIANTS[name], *args.overrides,
                ]
                _cli(["pretrain", args.config, *overrides])
                baseline = ["--baseline", "random", "--seed", str(seed)] if name == args.variants[0] else []
                _cli(["extract", str(run_dir / "pretrain" / "last.pt"), str(data), str(features), *baseline, *view])
                _evaluate(features, args)
                timings[name].append(round(time.time() - started, 1))
            raw[name][str(seed)] = _read_scores(features)
            random_dir = out / f"seed{seed}" / slug(args.variants[0]) / "features" / "baselines" / "random"
            if name == args.variants[0]:
                raw["random init"][str(seed)] = _read_scores(random_dir)
            print(f"   {LABELS[name]}, seed {seed}: "
                  + ", ".join(f"{t} motion {raw[name][str(seed)][t]['motion']:.1f}" for _, _, t in METRICS),
                  flush=True)
    return {"raw": raw, "steps": steps, "timings_s": timings}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {std:.1f}"


def table(raw: dict) -> str:
    header = ["encoder"] + [f"{title} {group}" for _, _, title in METRICS for group in GROUPS[:2]] \
        + [f"{title} all" for _, _, title in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, label in LABELS.items():
        per_seed = raw.get(name) or {}
        if not per_seed:
            continue
        cells = [label]
        columns = [(t, g) for _, _, t in METRICS for g in GROUPS[:2]] + [(t, "all") for _, _, t in METRICS]
        for title, group in columns:
            cells.append(_mean_std([s[title][group] for s in per_seed.values()]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/ablation", help="output folder (default: runs/ablation)")
    parser.add_argument("--data", default=None, help="demo dataset folder (default: OUT/data, generated)")
    parser.add_argument("--config", default="demo_cpu", help="preset or YAML (default: demo_cpu)")
    parser.add_argument("--steps", type=int, default=0,
                        help="optimizer steps per run (default: the preset's budget)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--knn-k", type=int, default=10)
    parser.add_argument("--eval-clips", type=int, default=4, help="clips per video for features (default 4)")
    parser.add_argument("--center", action="store_true", help="centre features before kNN / retrieval")
    parser.add_argument("--quick", action="store_true", help="smoke test: 10 steps, one seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="extra pretraining overrides")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = args.steps or 10, args.seeds[:1]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = "python benchmarks/ablation.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"command: {command}", flush=True)
    started = time.time()
    result = run(args)
    import torch

    result.update({
        "command": command,
        "config": args.config,
        "seeds": args.seeds,
        "knn_k": args.knn_k,
        "center": args.center,
        "overrides": args.overrides,
        **machine(),
        "total_s": round(time.time() - started, 1),
    })
    out = Path(args.out)
    md = table(result["raw"])
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "ablation.md").write_text(
        f"Command: `{command}`\n\n{result['steps']} steps per run, seeds {args.seeds}, "
        f"{result['machine']}, {result['date']}, total {result['total_s'] / 60:.1f} min.\n"
        f"Test split, %, mean ± sample std over seeds. kNN k={args.knn_k}"
        f"{', centred features' if args.center else ''}; R@1: test queries train; "
        "linear: BN + linear probe chosen on a train hold-out.\n\n" + md + "\n")
    print("\n" + md)
    print(f"\nwritten: {out / 'ablation.json'}, {out / 'ablation.md'} ({result['total_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
