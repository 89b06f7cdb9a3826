"""Host synchronisations per training step (issue 16): independent of the number of
processes and at most 5, counted under gloo with 2 and 3 processes by hooks on host
reads, device tensors made from host values and host-blocking collectives
(count_syncs.py says what is counted and why). A video that fails to decode on one rank
is replaced, so every rank keeps its full batch and no row counts are exchanged."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from mlfo.train.metrics_log import read_metrics
from train_helpers import mlfo_command, subprocess_env, tiny_overrides

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
BOUND = 5
STEPS = 3  # the first builds DDP and the optimizer state; 2 and 3 are the steady state
SYNCS = ("read", "creation", "blocking")


def count(tiny_data: Path, out: Path, world: int) -> list[list[list[list[str]]]]:
    """Per rank, per step: the counted calls ``[kind, name, site]``."""
    videos = sorted((tiny_data.parent / "videos").glob("*.mp4"))
    args = tiny_overrides(tiny_data, out, **{"data.batch_size": 2, "train.epochs": 1, "train.max_steps": STEPS,
                                             "objective.queue_start": 0, "objective.graph_start": 0,
                                             "data.max_skipped_share": 0.5})
    cmd = [mlfo_command()[0], "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--standalone",
           str(HERE / "count_syncs.py"), "pretrain", "demo_cpu", *args]
    env = {**subprocess_env(), "MLFO_FAIL_VIDEO": ",".join(v.name for v in videos[::4])}
    env["PYTHONPATH"] = f"{HERE}:{env['PYTHONPATH']}"
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    assert {r["videos"] for r in read_metrics(out)} == {2 * world}  # full batches on every rank
    assert (out / "skipped_videos.txt").read_text().strip()  # some rank did replace a video
    return [json.loads((out / f"syncs-rank{r}.json").read_text()) for r in range(world)]


def syncs(calls: list[list[str]]) -> Counter:
    return Counter(f"{kind} {name} at {site}" for kind, name, site in calls if kind in SYNCS)


def test_host_syncs_per_step_are_few_and_independent_of_world_size(tiny_data, tmp_path):
    counts = {world: count(tiny_data, tmp_path / f"w{world}", world) for world in (2, 3)}
    for world, ranks in counts.items():
        for rank, steps in enumerate(ranks):
            assert len(steps) == STEPS
            for step, calls in enumerate(steps[1:], start=2):
                found = syncs(calls)
                print(f"world {world} rank {rank} step {step}: {sum(found.values())} host syncs",
                      dict(found), "collectives:", sum(1 for c in calls if c[0] == "collective"))
                assert found == syncs(counts[2][0][step - 1]), (world, rank, step)  # the same calls
                assert sum(found.values()) <= BOUND, (world, rank, step, dict(found))
    # Device collectives are queued, not waited for; their number does not grow with W either.
    collectives = {w: [sum(1 for c in calls if c[0] == "collective") for calls in ranks[0][1:]]
                   for w, ranks in counts.items()}
    assert collectives[2] == collectives[3]
