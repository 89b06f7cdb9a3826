"""What the ablation runners share: call the mlfo CLI in-process, name a run's folder."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

# The ablation's steps, as overrides on a preset: (b) instance = prototypes, graph and
# temporal parts off; (c) + prototypes; (d) + graph; (e) = everything on (the preset).
TEMPORAL_OFF = [
    "objective.motion_low=false", "objective.motion_mid=false", "objective.reversed_negatives=false",
    "objective.timestamp_low=false", "objective.timestamp_mid=false", "objective.timestamp_high=false",
    "model.motion_excitation=false",
]
GRAPH_OFF = ["objective.graph_low=false", "objective.graph_mid=false", "objective.graph_high=false"]
ABLATION = {
    "instance": ["objective.prototypes=false", *GRAPH_OFF, *TEMPORAL_OFF],
    "+prototypes": [*GRAPH_OFF, *TEMPORAL_OFF],
    "+graph": [*TEMPORAL_OFF],
    "full MLFO": [],
}


def run_mlfo(argv: list[str], runner: str) -> None:
    """``mlfo ARGV`` in this process (no start-up per call); a failing step stops the runner."""
    from mlfo.cli import main

    code = main(argv)
    if code:
        raise SystemExit(f"{runner}: mlfo {' '.join(argv[:3])} failed (exit code {code})")


def slug(name: str) -> str:
    """Folder name of a variant: '+graph' -> 'plus_graph', 'full MLFO' -> 'full_MLFO'."""
    return name.replace("+", "plus_").replace(" ", "_")


def machine() -> dict:
    """Where the numbers were measured: results differ between CPU models, so every
    table carries the CPU, the thread count and the date."""
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())
    return {"machine": f"{cpu}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
