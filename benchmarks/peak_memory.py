"""Peak memory of one MLFO training step, per clip, beside the bare backbone's.

Each measurement runs in a fresh process, so one case's allocator cache cannot hide
another's peak. On CPU the peak is the process's maximum resident set size (ru_maxrss)
during two training steps minus the resident size just before them (model, optimizer
and the input batch already allocated); on GPU it is torch.cuda.max_memory_allocated
over the same steps minus the memory allocated before them.

    python benchmarks/peak_memory.py                 # r3d_small 16x48x48 and 8x64x64, r3d_18 16x112x112
    python benchmarks/peak_memory.py --quick         # r3d_small only
    python benchmarks/peak_memory.py --device cuda   # GPU allocator numbers
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

CASES = [  # (backbone, T, S, videos)
    ("r3d_small", 16, 48, 8),
    ("r3d_small", 8, 64, 8),
    ("r3d_18", 16, 112, 2),
]


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_in_this_process(kind: str, name: str, frames: int, size: int, videos: int, device: str) -> dict:
    import torch

    from mlfo.losses import MLFOObjective, ObjectiveConfig
    from mlfo.models import MLFOModel, ModelConfig, build_backbone

    torch.manual_seed(0)
    dev = torch.device(device)
    clips = torch.randn(3, videos, 3, frames, size, size, device=dev)  # (A/B/G, B, 3, T, H, W)
    if kind == "backbone":
        net = build_backbone(name).to(dev)
        params = list(net.parameters())

        def step():
            net(clips.flatten(0, 1)).pow(2).mean().backward()
    else:
        steps = {"low": min(8, frames // 2), "mid": min(4, frames // 4), "high": min(2, frames // 8)}
        net = MLFOModel(build_backbone(name), ModelConfig(num_prototypes=200, fine_steps=steps)).to(dev)
        objective = MLFOObjective(ObjectiveConfig(queue_start=0, graph_start=0, queue_length=256,
                                                  timestamp_high=steps["high"] >= 2), 200).to(dev)
        params = list(net.parameters())

        def step():
            net.normalize_prototypes()
            total, _ = objective(net(clips), epoch=1)
            total.backward()
    optimizer = torch.optim.Adam(params, lr=1e-3)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _rss_mib()
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        step()
        optimizer.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"peak_mib": peak - before, "clips": 3 * videos}


def run_case(kind, name, frames, size, videos, device) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, name, str(frames), str(size), str(videos), device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="r3d_small cases only")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, frames, size, videos, device = args.child
        print(json.dumps(measure_in_this_process(kind, name, int(frames), int(size), int(videos), device)))
        return
    import torch

    print(f"torch {torch.__version__}, device {args.device}; peak over two steps, fresh process per case")
    cases = [c for c in CASES if not (args.quick and c[0] != "r3d_small")]
    for name, frames, size, videos in cases:
        base = run_case("backbone", name, frames, size, videos, args.device)
        mlfo = run_case("mlfo", name, frames, size, videos, args.device)
        clips = mlfo["clips"]
        print(f"{name:10s} {frames}x{size}x{size}  {clips:3d} clips   backbone fwd+bwd "
              f"{base['peak_mib']:8.1f} MiB ({base['peak_mib'] / clips:6.1f}/clip)   MLFO step "
              f"{mlfo['peak_mib']:8.1f} MiB ({mlfo['peak_mib'] / clips:6.1f}/clip)   "
              f"ratio {mlfo['peak_mib'] / max(base['peak_mib'], 1e-9):.2f}", flush=True)


if __name__ == "__main__":
    main()
