"""Cost of one full MLFO training step relative to the bare backbone.

MLFO step : the engine's step of ``mlfo.method.MLFOMethod`` (benchmarks/method_step.py):
            prototype re-normalisation; ``prepare`` of the uint8 batch (colour
            augmentation on the device, as the Kinetics preset; ``--no-color`` skips it);
            MLFOModel forward on the 3 clips of B videos (ME blocks, reversed copies,
            every head, prototypes); MLFOObjective with every term on (queue and graph
            active); backward; Adam step.
Baseline  : the same module's backbone forward on the same 3B prepared clips (globally
            pooled high feature), a trivial loss (mean square), backward. No optimizer.

The two are timed interleaved (one baseline, one MLFO step, ...) after a warm-up, and
the median of each is reported, so a busy neighbour on a shared machine slows both.
Wall and process CPU time are both reported; with one thread the CPU-time ratio is the
steadier number on a shared machine. On a GPU (``--device cuda``) every timed call ends
with ``torch.cuda.synchronize()``; benchmarks/gpu_check.py measures every precision there.

    python benchmarks/step_overhead.py            # r3d_small 8x64x64 and r3d_18 16x112x112
    python benchmarks/step_overhead.py --quick    # fewer repeats, 2 videos for r3d_18
    python benchmarks/step_overhead.py --profile  # also print where the MLFO step's time goes
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from method_step import StepPair, mlfo_config

CASES = [  # (backbone, T, S)
    ("r3d_small", 8, 64),
    ("r3d_18", 16, 112),
]


def make_step_functions(name: str, frames: int, size: int, videos: int, prototypes: int, color: bool,
                        device: str = "cpu"):
    cfg = mlfo_config(name, frames, size, videos, prototypes, **{"data.color_augment": str(color).lower()})
    pair = StepPair(cfg, device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def baseline_step():
        pair.backbone()
        sync()

    def mlfo_step():
        pair.mlfo()
        sync()

    return baseline_step, mlfo_step


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time is
    the steadier measure of work (it excludes time spent waiting for a core)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(name, frames, size, videos, prototypes, warmup, repeats, profile, color=True, device="cpu"):
    baseline_step, mlfo_step = make_step_functions(name, frames, size, videos, prototypes, color, device)
    for _ in range(warmup):
        baseline_step()
        mlfo_step()
    base, mlfo = [], []
    for _ in range(repeats):
        base.append(timed(baseline_step))
        mlfo.append(timed(mlfo_step))
    b_wall, m_wall = (statistics.median(t[0] for t in runs) for runs in (base, mlfo))
    b_cpu, m_cpu = (statistics.median(t[1] for t in runs) for runs in (base, mlfo))
    print(f"{name:10s} {frames}x{size}x{size}  B={videos} ({3 * videos} clips)  "
          f"backbone fwd+bwd {b_wall:7.3f} s (cpu {b_cpu:7.3f})   "
          f"MLFO step {m_wall:7.3f} s (cpu {m_cpu:7.3f})   "
          f"ratio {m_wall / b_wall:5.3f} (cpu {m_cpu / b_cpu:5.3f})", flush=True)
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            mlfo_step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    return m_wall / b_wall, m_cpu / b_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller r3d_18 batch")
    parser.add_argument("--videos", type=int, default=4, help="videos per step (x3 clips)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prototypes", type=int, default=200, help="K")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", choices=[c[0] for c in CASES], help="run one backbone only")
    parser.add_argument("--profile", action="store_true", help="profile one MLFO step per case")
    parser.add_argument("--no-color", action="store_true", help="MLFO step without the colour augmentation")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("step_overhead: no CUDA device here; run without --device cuda")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 7)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, median of {repeats} "
          f"after {args.warmup} warm-up step(s), colour {'off' if args.no_color else 'on'}; target ratio <= 1.25")
    for name, frames, size in CASES:
        if args.only and name != args.only:
            continue
        videos = 2 if (args.quick and name == "r3d_18") else args.videos
        measure(name, frames, size, videos, args.prototypes, args.warmup, repeats, args.profile,
                color=not args.no_color, device=args.device)


if __name__ == "__main__":
    main()
