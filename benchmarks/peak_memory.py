"""Peak memory of one MLFO training step, per clip, beside the bare backbone's.

Both run ``mlfo.method.MLFOMethod`` (benchmarks/method_step.py): the MLFO case its full
training step (colour on the device, model + objective with every term on, backward,
Adam), the backbone case the same module's backbone forward + backward + Adam step on
the same prepared clips. Each measurement runs in a fresh process, so one case's
allocator cache cannot hide another's peak.
- CPU: the process's maximum resident set size (ru_maxrss) during two training steps
  minus the resident size just before them (model, optimizer and the batch allocated;
  Adam's state is created in the first step and counts).
- GPU (``--device cuda``): one warm-up step first (Adam's state, cuDNN's algorithm
  search and its trial workspaces), then ``torch.cuda.max_memory_allocated`` over two
  steps minus what was allocated before them: the memory a step needs on top of the
  model, its optimizer state and the batch.

    python benchmarks/peak_memory.py                 # r3d_small 16x48x48 and 8x64x64, r3d_18 16x112x112
    python benchmarks/peak_memory.py --quick         # r3d_small only
    python benchmarks/peak_memory.py --device cuda   # GPU allocator numbers
    python benchmarks/peak_memory.py --device cuda --amp bf16 --channels-last
"""

from __future__ import annotations

import argparse
import json
import os
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
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_in_this_process(kind: str, name: str, frames: int, size: int, videos: int, device: str,
                            amp: str = "off", channels_last: bool = False) -> dict:
    import torch

    from method_step import StepPair, mlfo_config

    cfg = mlfo_config(name, frames, size, videos, **{"train.amp": f'"{amp}"', "train.channels_last": str(channels_last).lower()})
    pair = StepPair(cfg, device)
    cuda = pair.device.type == "cuda"

    def step():
        if kind == "backbone":
            pair.backbone(optimizer_step=True)
        else:
            pair.mlfo()

    if cuda:
        step()  # warm-up: optimizer state, cuDNN algorithm search
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _rss_mib()
    for _ in range(2):
        step()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"peak_mib": peak - before, "clips": 3 * videos}


def run_case(kind, name, frames, size, videos, device, amp, channels_last) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, name, str(frames), str(size), str(videos), device, amp,
           str(int(channels_last))]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"peak_memory: the {kind} case of {name} {frames}x{size}x{size} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="r3d_small cases only")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"], help="autocast (GPU only)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, frames, size, videos, device, amp, channels_last = args.child
        print(json.dumps(measure_in_this_process(kind, name, int(frames), int(size), int(videos), device, amp,
                                                 channels_last == "1")))
        return
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("peak_memory: no CUDA device here; run without --device cuda")
        return
    if args.amp != "off" and args.device != "cuda":
        sys.exit("peak_memory: --amp is GPU-only (mlfo trains fp32 on CPU)")
    print(f"torch {torch.__version__}, device {args.device}, amp {args.amp}, channels_last {args.channels_last}; "
          "peak over two steps, fresh process per case")
    cases = [c for c in CASES if not (args.quick and c[0] != "r3d_small")]
    for name, frames, size, videos in cases:
        base = run_case("backbone", name, frames, size, videos, args.device, args.amp, args.channels_last)
        mlfo = run_case("mlfo", name, frames, size, videos, args.device, args.amp, args.channels_last)
        clips = mlfo["clips"]
        print(f"{name:10s} {frames}x{size}x{size}  {clips:3d} clips   backbone fwd+bwd "
              f"{base['peak_mib']:8.1f} MiB ({base['peak_mib'] / clips:6.1f}/clip)   MLFO step "
              f"{mlfo['peak_mib']:8.1f} MiB ({mlfo['peak_mib'] / clips:6.1f}/clip)   "
              f"ratio {mlfo['peak_mib'] / max(base['peak_mib'], 1e-9):.2f}", flush=True)


if __name__ == "__main__":
    main()
