"""Two nodes for real: the README's multi-node command, run twice on this machine.

Each "node" is its own ``torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d
--rdzv_endpoint 127.0.0.1:PORT --rdzv_id ID`` (gloo on CPU), started at the same time and
meeting through the c10d rendezvous; both share one run folder, as the README asks
(``--out`` on storage every node sees), and each indexes the data before the process
group exists. The entry point is the CLI with a hook recording each rank's steps
(tests/train/record_indices.py), so each node shows what it trained.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

from mlfo.train.checkpoint import load_checkpoint
from mlfo.train.metrics_log import read_metrics
from train_helpers import REPO, read_index_log, subprocess_env, tiny_overrides

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_train_one_run_to_the_same_final_step(tiny_data, tmp_path):
    out = tmp_path / "shared_run"
    node_cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}",
                "--rdzv_id", "mlfo-two-nodes", str(REPO / "tests" / "train" / "record_indices.py"),
                "pretrain", "demo_cpu", *tiny_overrides(tiny_data, out, **{"data.batch_size": 2}),
                "--out", str(out), "--resume", "auto"]
    nodes = [subprocess.Popen(node_cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        outputs = [node.communicate(timeout=150) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert sum("mlfo: 10 steps, last checkpoint" in o for o, _ in outputs) == 1  # rank 0's node reports

    final = load_checkpoint(out / "last.pt")
    assert (final["epoch"], final["global_step"], final["world_size"]) == (2, 10, 2)
    assert len(final["rng"]) == 2  # both ranks took part in the final save
    ranks = [read_index_log(out, rank) for rank in (0, 1)]
    assert [len(r) for r in ranks] == [10, 10]  # each node trained the same 10 steps
    for epoch in (0, 1):
        seen = [i for r in ranks for step in r if step["epoch"] == epoch for i in step["index"]]
        assert len(seen) == 20 and len(set(seen)) == 20  # the nodes split each epoch, no overlap
    rows = read_metrics(out)
    assert len(rows) == 10 and all(r["videos"] == 4 for r in rows)
    assert all(np.isfinite(r["loss/total"]) for r in rows)
