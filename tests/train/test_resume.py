"""Resuming where the data order says: another batch size or world size continues at
exactly the next sample, a checkpoint of another data order is refused in one line, and
a fine-tune resumes from RNG states that loading put on another device."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from mlfo.data.loading import ResumableDistributedSampler
from mlfo.data.sources import load_index
from mlfo.errors import MLFOError
from mlfo.train.checkpoint import atomic_torch_save, load_checkpoint
from mlfo.train.engine import Trainer
from mlfo.train.position import restore_position, sampler_block
from mlfo.train.pretrain import pretrain
from mlfo.train.seeding import get_rng_state, set_rng_state
from train_helpers import REPO, read_index_log, recording_train_step, subprocess_env, tiny_config, tiny_overrides

SEED = 0


def _epoch_order(tiny_data, epoch: int = 0) -> list[int]:
    """The one global order of an epoch over the usable videos (any layout deals it out)."""
    n = len(load_index(tiny_data, progress=False).usable(min_frames=8))
    sampler = ResumableDistributedSampler(list(range(n)), num_replicas=1, rank=0, seed=SEED)
    sampler.set_epoch(epoch)
    return [i for _, i in sampler]


@pytest.fixture()
def two_steps_of_four(tiny_data, tmp_path, monkeypatch):
    """A run stopped after 2 steps of 4 videos in one process (8 samples of epoch 0)."""
    monkeypatch.setattr(Trainer, "train_step", recording_train_step(Trainer.train_step))
    out = tmp_path / "run"
    pretrain(tiny_config(tiny_data, out, **{"train.epochs": 1, "train.max_steps": 2}))
    saved = load_checkpoint(out / "last.pt")
    assert (saved["epoch"], saved["sampler"]["samples"], saved["global_step"]) == (0, 8, 2)
    return out


def test_resume_with_half_the_batch_in_one_process_takes_the_next_samples(tiny_data, two_steps_of_four, capsys):
    out = two_steps_of_four
    pretrain(tiny_config(tiny_data, out, **{"train.epochs": 1, "data.batch_size": 2}), resume="auto")
    steps = [r["index"] for r in read_index_log(out)]
    order = _epoch_order(tiny_data)
    assert [len(s) for s in steps] == [4, 4] + [2] * 7  # this layout's epoch: 22 samples, 2 a step
    assert [i for s in steps for i in s] == order  # every sample once, in the one order
    assert "written with 4 videos x 1 process(es) per step, this run takes 2 x 1" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_under_two_processes_with_batch_two_takes_exactly_the_rest_of_the_epoch(tiny_data, two_steps_of_four):
    """Checkpointed by 1 process x 4 videos, resumed by 2 gloo processes x 2 videos (BatchNorm
    not frozen): each step's global batch is the next 4 samples of the one order, the epoch
    ends where the single process's would (20 of 22), and nothing is seen twice."""
    out = two_steps_of_four
    args = tiny_overrides(tiny_data, out, **{"train.epochs": 1, "data.batch_size": 2})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(REPO / "tests" / "train" / "record_indices.py"), "pretrain", "demo_cpu", *args, "--resume", "auto"]
    run = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    order = _epoch_order(tiny_data)
    first = [i for r in read_index_log(out)[:2] for i in r["index"]]  # the single-process steps
    rank0, rank1 = read_index_log(out)[2:], read_index_log(out, rank=1)
    assert len(rank0) == len(rank1) == 3
    global_batches = [sorted(a["index"] + b["index"]) for a, b in zip(rank0, rank1)]
    assert first == order[:8]
    assert global_batches == [sorted(order[8 + 4 * k : 12 + 4 * k]) for k in range(3)]
    final = load_checkpoint(out / "last.pt")
    assert (final["epoch"], final["global_step"], final["sampler"]["world_size"]) == (1, 5, 2)


def test_a_checkpoint_of_another_data_order_is_refused_in_one_line(tiny_data, two_steps_of_four):
    out = two_steps_of_four
    written = (out / "config.yaml").read_text()
    with pytest.raises(MLFOError) as err:
        pretrain(tiny_config(tiny_data, out, **{"train.epochs": 1, "train.seed": 3}), resume="auto")
    message = str(err.value)
    assert str(out / "last.pt") in message and "train.seed=0" in message and "\n" not in message
    assert (out / "config.yaml").read_text() == written  # still the config of last.pt (issue 19, item 8)
    state = load_checkpoint(out / "last.pt")
    state["sampler"]["dataset_size"] = 30  # as if written before videos were removed
    atomic_torch_save(state, out / "last.pt")
    with pytest.raises(MLFOError, match="written for 30 usable training videos, this run has 22"):
        pretrain(tiny_config(tiny_data, out, **{"train.epochs": 1}), resume="auto")


def test_sampler_block_checks(tmp_path):
    path = tmp_path / "last.pt"
    block = sampler_block(seed=1, epoch=2, samples=8, batch_size=4, world_size=2, dataset_size=20)
    assert restore_position({"epoch": 2, "sampler": block}, path, seed=1, dataset_size=20) == (2, 8)
    legacy = {k: v for k, v in block.items() if k != "dataset_size"}  # older checkpoints: not checked
    assert restore_position({"epoch": 2, "sampler": legacy}, path, seed=1, dataset_size=21) == (2, 8)
    cases = [({"epoch": 2, "sampler": block}, 2, 20, "train.seed=1"),
             ({"epoch": 2, "sampler": block}, 1, 19, "written for 20 usable training videos"),
             ({"epoch": 3, "sampler": block}, 1, 20, "inconsistent position"),
             ({"epoch": 2, "sampler": {**block, "samples": 25}}, 1, 20, "inconsistent position"),
             ({"epoch": 2, "sampler": {**block, "seed": "1"}}, 1, 20, "sampler block is missing or incomplete"),
             ({"epoch": 2}, 1, 20, "sampler block is missing")]
    for state, seed, size, message in cases:
        with pytest.raises(MLFOError, match=message):
            restore_position(state, path, seed=seed, dataset_size=size)


class _OnAnotherDevice:
    """A tensor as ``torch.load(map_location=<a GPU>)`` returns it, seen from the CPU:
    ``torch.set_rng_state`` and ``.numpy()`` refuse it, ``.cpu()`` gives the values back."""

    def __init__(self, tensor: torch.Tensor):
        self._tensor = tensor

    def cpu(self) -> torch.Tensor:
        return self._tensor


def _moved(state: dict) -> dict:
    return {k: _moved(v) if isinstance(v, dict) else _OnAnotherDevice(v) if isinstance(v, torch.Tensor) else v
            for k, v in state.items()}


def test_rng_state_loaded_onto_another_device_restores():
    state = get_rng_state()
    expected = (torch.rand(3), np.random.rand(3))
    with pytest.raises(TypeError):
        torch.set_rng_state(_moved(state)["torch"])  # what a GPU tensor meets without .cpu()
    set_rng_state(_moved(state))
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


@pytest.mark.slow
def test_finetune_resumes_from_rng_states_loaded_onto_another_device(tiny_data, tmp_path, monkeypatch):
    """A fine-tune killed after epoch 1 and resumed with its checkpoint's RNG states on
    "another device" (as ``map_location=cuda`` would put them) ends with the weights of
    the uninterrupted run: dropout draws continue exactly."""
    from mlfo.train import checkpoint
    from mlfo.eval.finetune import FinetuneConfig, finetune
    from mlfo.eval.views import ViewConfig
    from mlfo.models import build_backbone

    index = load_index(tiny_data, progress=False)
    records = index.usable(min_frames=4)
    cfg = FinetuneConfig(epochs=2, batch_size=4, clip_len=4, crop_size=32, warmup_epochs=0, device="cpu")
    views = ViewConfig(clip_len=4, num_clips=1, resize=32, crop_size=32)

    def backbone():
        torch.manual_seed(0)
        return build_backbone("r3d_small", widths=[8, 16, 16, 32])

    classes = len(index.classes)
    finetune(backbone(), records, records[:4], classes, tmp_path / "whole", cfg, views, progress=False)
    real_save, real_load = checkpoint.atomic_torch_save, checkpoint.load_checkpoint

    def save_then_die(obj, path):
        real_save(obj, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(backbone(), records, records[:4], classes, tmp_path / "killed", cfg, views, progress=False)
    monkeypatch.setattr(checkpoint, "atomic_torch_save", real_save)
    loads = []

    def load_onto_another_device(path, map_location="cpu"):
        state = real_load(path, map_location=map_location)
        loads.append(path)
        return {**state, "rng": [_moved(rank) for rank in state["rng"]]}

    monkeypatch.setattr(checkpoint, "load_checkpoint", load_onto_another_device)
    resumed = finetune(backbone(), records, records[:4], classes, tmp_path / "killed", cfg, views, progress=False)
    assert loads and [h["epoch"] for h in resumed.history] == [1, 2]
    a = real_load(tmp_path / "whole" / "last.pt")["method"]
    b = real_load(tmp_path / "killed" / "last.pt")["method"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_finetune_resumes_with_another_batch_size_at_the_next_sample(tiny_data, tmp_path, monkeypatch):
    """The fine-tune's position is the engine's sampler block: killed after 2 steps of 4
    videos, resumed with 2 videos a step, it takes exactly the rest of the one order."""
    from mlfo.eval.finetune import FinetuneConfig, finetune
    from mlfo.eval.views import ViewConfig
    from mlfo.models import build_backbone
    from mlfo.train import checkpoint

    monkeypatch.setattr(Trainer, "train_step", recording_train_step(Trainer.train_step))
    index = load_index(tiny_data, progress=False)
    records, out = index.usable(min_frames=4), tmp_path / "ft"
    views = ViewConfig(clip_len=4, num_clips=1, resize=32, crop_size=32)

    def run(batch_size: int):
        cfg = FinetuneConfig(epochs=1, batch_size=batch_size, clip_len=4, crop_size=32, warmup_epochs=0,
                             device="cpu", checkpoint_steps=1)
        backbone = build_backbone("r3d_small", widths=[8, 16, 16, 32])
        return finetune(backbone, records, records[:2], len(index.classes), out, cfg, views, progress=False)

    real_save, saves = checkpoint.atomic_torch_save, []

    def save_twice_then_die(obj, path):
        real_save(obj, path)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "atomic_torch_save", save_twice_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(4)
    monkeypatch.setattr(checkpoint, "atomic_torch_save", real_save)
    assert load_checkpoint(out / "last.pt")["sampler"]["samples"] == 8
    result = run(2)
    steps = [r["index"] for r in read_index_log(out)]
    assert [len(s) for s in steps] == [4, 4] + [2] * 7
    assert [i for s in steps for i in s] == _epoch_order(tiny_data)  # every sample once, in the one order
    assert [h["epoch"] for h in result.history] == [1]
