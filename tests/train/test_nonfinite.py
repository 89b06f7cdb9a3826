"""A non-finite state never becomes a checkpoint: BatchNorm statistics that blow up stop
the run like a non-finite loss, a state that went NaN is not saved over last.pt, and the
stop names the newest checkpoint that passed, which resumes."""

from __future__ import annotations

import pytest
import torch

from mlfo.cli import main
from mlfo.errors import MLFOError
from mlfo.train.checkpoint import load_checkpoint
from mlfo.train.pretrain import pretrain
from train_helpers import tiny_config, tiny_overrides

pytestmark = pytest.mark.slow


def all_finite(ckpt: dict) -> bool:
    tensors = [v for v in ckpt["method"].values() if v.is_floating_point()]
    tensors += [v for s in ckpt["optimizer"]["state"].values() for v in s.values()
                if isinstance(v, torch.Tensor) and v.is_floating_point()]
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def test_huge_learning_rate_stops_on_batchnorm_statistics(tiny_data, tmp_path, capsys):
    out = tmp_path / "lr1e6"
    args = tiny_overrides(tiny_data, out, **{"optim.lr": "1e6", "checkpoint.every_steps": 1})
    assert main(["pretrain", "demo_cpu", *args]) == 2  # the loss stays finite; the statistics do not
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("mlfo: error: step ") and "non-finite BatchNorm statistics (" in err
    saved = load_checkpoint(out / "last.pt")
    assert all_finite(saved) and saved["global_step"] >= 1
    # One update at lr 1e6 ruined the weights although they are finite: the checkpoint it
    # wrote is not called good, and resuming it (it resumes) fails the same way.
    doubtful = f"{out / 'last.pt'} holds step {saved['global_step']}, the state that led to this failure"
    assert err.endswith(f"last good checkpoint: none verified in this run ({doubtful})")
    assert main(["pretrain", "demo_cpu", *args, "--resume", "auto"]) == 2
    again = capsys.readouterr().err.strip().splitlines()
    assert f"resumed from {out / 'last.pt'}" in "\n".join(again) and again[-1] == err


def test_checkpoint_followed_by_a_finite_step_is_named_good(tiny_data, tmp_path, monkeypatch):
    from mlfo.method import MLFOMethod

    out = tmp_path / "later"
    pretrain(tiny_config(tiny_data, out, **{"train.epochs": 1}))
    real, calls = MLFOMethod.before_optimizer_step, {"n": 0}

    def blow_statistics(self, epoch):  # the second step after the resume ruins a BatchNorm
        real(self, epoch)
        calls["n"] += 1
        if calls["n"] == 2:
            next(m for m in self.modules() if isinstance(m, torch.nn.BatchNorm3d)).running_var.fill_(float("inf"))

    monkeypatch.setattr(MLFOMethod, "before_optimizer_step", blow_statistics)
    cfg = tiny_config(tiny_data, out, **{"checkpoint.every_steps": 1})
    with pytest.raises(MLFOError) as err:
        pretrain(cfg, resume=str(out / "epoch_0001.pt"))
    # epoch_0001.pt (step 5) led to a finite step 6; last.pt, rewritten at step 6, led to the failure.
    assert str(err.value).startswith("step 7 (epoch 1): non-finite BatchNorm statistics (")
    assert str(err.value).endswith(f"last good checkpoint: {out / 'epoch_0001.pt'} ({out / 'last.pt'} holds "
                                   "step 6, the state that led to this failure)")


def test_nan_state_is_not_saved_over_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    from mlfo.method import MLFOMethod

    real = MLFOMethod.before_optimizer_step
    calls = {"n": 0}

    def poison(self, epoch):
        real(self, epoch)
        calls["n"] += 1
        if calls["n"] == 3:  # an inf gradient: Adam turns the weight and its moments into NaN
            p = next(p for p in self.parameters() if p.grad is not None)
            p.grad.view(-1)[0] = float("inf")

    monkeypatch.setattr(MLFOMethod, "before_optimizer_step", poison)
    out = tmp_path / "nan"
    with pytest.raises(MLFOError) as err:
        pretrain(tiny_config(tiny_data, out, **{"checkpoint.every_steps": 1}))
    message = str(err.value)
    assert message.startswith("step 3: non-finite state, not saved as last.pt (") and "\n" not in message
    assert "optimizer.state." in message and message.endswith(f"last good checkpoint: {out / 'last.pt'}")
    saved = load_checkpoint(out / "last.pt")
    assert saved["global_step"] == 2 and all_finite(saved)


@pytest.mark.parametrize("every, checks", [(0, 4), (3, 7)])
def test_statistics_are_checked_before_saves_and_every_n_steps_not_every_step(tiny_data, tmp_path, monkeypatch,
                                                                               every, checks):
    """10 steps, 4 saves (last.pt and epoch_000N.pt after each of 2 epochs): the statistics
    are read at the saves, plus at steps 3, 6 and 9 with ``finite_check_steps=3``."""
    from mlfo.train import finite

    real, calls = finite.norm_statistics, []

    def counted(module):
        calls.append(1)
        return real(module)

    monkeypatch.setattr(finite, "norm_statistics", counted)
    pretrain(tiny_config(tiny_data, tmp_path / "run", **{"checkpoint.finite_check_steps": every}))
    assert len(calls) == checks
