"""The speed switches and DDP as the engine runs them: channels_last reaches the input,
compile covers the model (one graph, no breaks), DDP is wrapped per gradient phase
(static graph, never a per-step search), and the step's colour is batched without a
host synchronisation. CPU only, a few seconds each."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from mlfo.distributed import DistContext
from mlfo.method import MLFOMethod
from mlfo.train.metrics_log import read_metrics
from mlfo.train.parallel import ParallelMethod, to_channels_last
from mlfo.train.pretrain import build_trainer, pretrain
from mlfo.train.seeding import derive_seed
from train_helpers import tiny_config


def _first_conv(method: MLFOMethod) -> nn.Conv3d:
    return next(m for m in method.encoder.modules() if isinstance(m, nn.Conv3d))


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_reaches_the_first_convolution(tiny_data, tmp_path, channels_last):
    cfg = tiny_config(tiny_data, tmp_path, **{"train.channels_last": str(channels_last).lower(), "train.max_steps": 2})
    trainer = build_trainer(cfg, DistContext())
    conv = _first_conv(trainer.method)
    layouts = []
    conv.register_forward_pre_hook(lambda _, args: layouts.append(
        args[0].is_contiguous(memory_format=torch.channels_last_3d)))
    trainer.fit()
    assert layouts == [channels_last] * 2
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d) == channels_last


def test_channels_last_keeps_the_losses(tiny_data, tmp_path):
    """The first step's losses (same weights, same batch) agree across layouts. Later steps
    are not compared: the layouts' features differ by ~1e-5, Adam's first update normalises
    tiny gradients to full-size steps, and the runs then drift apart by chance (on fc58c14
    three steps agreed at seed 0 and differed by 6e-4 and 3.5e-3 at seeds 1 and 2)."""
    runs = {}
    for flag in ("true", "false"):
        out = tmp_path / flag
        pretrain(tiny_config(tiny_data, out, **{"train.channels_last": flag, "train.max_steps": 1}))
        runs[flag] = [r[k] for r in read_metrics(out) for k in sorted(r) if k.startswith("loss/")]
    assert runs["true"] and len(runs["true"]) == len(runs["false"])
    np.testing.assert_allclose(runs["true"], runs["false"], rtol=1e-4)


def test_to_channels_last_keeps_values_and_flattens_to_channels_last_3d():
    x = torch.randn(3, 2, 3, 4, 5, 6)  # (clips, videos, C, T, H, W)
    y = to_channels_last(x)
    assert torch.equal(x, y) and y.stride()[2] == 1
    assert y.flatten(0, 1).is_contiguous(memory_format=torch.channels_last_3d)
    assert to_channels_last(x[0]).is_contiguous(memory_format=torch.channels_last_3d)


def test_the_model_compiles_to_one_graph_and_only_the_model_is_compiled(tiny_data, tmp_path):
    """``train.compile`` compiles the model: one graph, no break (``fullgraph`` would
    raise on one). The objective stays eager: its syncs would break the graph."""
    method = MLFOMethod(tiny_config(tiny_data, tmp_path))
    x = torch.randn(3, 2, 3, 4, 32, 32)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(method.model)(x, with_graph=True)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    method.compile(backend="eager", fullgraph=True)
    assert method.model._compiled_call_impl is not None and method._compiled_call_impl is None
    torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_training_gives_the_eager_losses(tiny_data, tmp_path, monkeypatch):
    """A compiled run (AOTAutograd without code generation: inductor takes minutes on
    2 cores; benchmarks/gpu_check.py compiles with inductor on a GPU) trains like eager."""
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    pretrain(tiny_config(tiny_data, eager, **{"train.max_steps": 2}))
    real_compile = MLFOMethod.compile
    monkeypatch.setattr(MLFOMethod, "compile", lambda self: real_compile(self, backend="aot_eager", fullgraph=True))
    torch._dynamo.reset()
    try:
        pretrain(tiny_config(tiny_data, compiled, **{"train.max_steps": 2, "train.compile": "true"}))
    finally:
        torch._dynamo.reset()
    np.testing.assert_allclose([r["loss/total"] for r in read_metrics(compiled)],
                               [r["loss/total"] for r in read_metrics(eager)], rtol=1e-5)


def _parameters_with_gradient(method: MLFOMethod, epoch: int) -> set[str]:
    method.zero_grad(set_to_none=True)
    method.before_forward(epoch)
    total, _ = method(torch.randn(3, 4, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0)), epoch)
    total.backward()
    return {name for name, p in method.named_parameters() if p.grad is not None}


def test_the_gradient_phase_tells_when_the_trained_parameters_change(tiny_data, tmp_path):
    """Epochs of equal phase reach the same parameters, other phases other ones: the
    contract that lets DDP trust the set it finds in a wrap's first step."""
    cfg = tiny_config(tiny_data, tmp_path, **{"objective.graph_start": 2, "objective.queue_start": 1,
                                              "objective.freeze_prototypes_epochs": 3})
    method = MLFOMethod(cfg)
    reached = {epoch: _parameters_with_gradient(method, epoch) for epoch in range(4)}
    phases = {epoch: method.gradient_phase(epoch) for epoch in range(4)}
    for a in range(4):
        for b in range(4):
            assert (reached[a] == reached[b]) == (phases[a] == phases[b]), (a, b)
    assert any(name.startswith("model.proj_graph.") for name in reached[3] - reached[0])


class _Pretend(DistContext):
    """One real process in a real gloo group, seen as distributed: DDP wraps for real."""

    @property
    def distributed(self) -> bool:
        return True


def test_ddp_is_a_static_graph_wrap_rebuilt_where_the_phase_changes(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, **{"objective.graph_start": 1})
    torch.manual_seed(0)
    method = MLFOMethod(cfg)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        parallel = ParallelMethod(method, _Pretend())
        first = parallel.for_epoch(0)
        assert isinstance(first, nn.parallel.DistributedDataParallel)
        assert first.static_graph and not first.find_unused_parameters
        assert first.forward_sync_buffers is False  # no per-step broadcast of every buffer (docs/design.md)
        assert parallel.for_epoch(0) is first  # no re-wrap within a phase
        x = torch.randn(3, 4, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
        for _ in range(2):  # the static graph's first (searching) step, then a trusted one
            method.zero_grad(set_to_none=True)
            first(x, 0)[0].backward()
        graph_heads = [p for name, p in method.named_parameters() if name.startswith("model.proj_graph.")]
        assert graph_heads and all(p.grad is None for p in graph_heads)  # unused: no gradient, as in one process
        second = parallel.for_epoch(1)
        assert second is not first and second.static_graph
        method.zero_grad(set_to_none=True)
        second(x, 1)[0].backward()
        assert all(p.grad is not None for p in graph_heads)
        parallel.release()
        del first, second
    finally:
        dist.destroy_process_group()


def _batch(videos: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"clips": torch.randint(0, 256, (videos, 3, 4, 16, 16, 3), dtype=torch.uint8, generator=g),
            "index": torch.tensor([5, 0, 17][:videos])}


def test_prepare_colours_each_video_with_its_own_key_in_one_batched_call(tiny_data, tmp_path):
    """The step's colour augmentation: one call for the batch, equal (every bit, on CPU)
    to colouring each video alone with its (seed, epoch, index) generator as before."""
    method = MLFOMethod(tiny_config(tiny_data, tmp_path, **{"data.color_augment": "true"}))
    batch = _batch()
    out = method.prepare(batch, 2, torch.device("cpu"))  # (3 clips, B, 3, T, S, S)
    per_video = []
    for video, index in zip(batch["clips"], batch["index"].tolist()):
        g = torch.Generator().manual_seed(derive_seed(method.cfg.train.seed, "colour", 2, index))
        per_video.append(method.color(video, generator=g))
    assert torch.equal(out, torch.stack(per_video).transpose(0, 1))
    assert not torch.equal(out, method.prepare(batch, 3, torch.device("cpu")))  # keyed by the epoch too


def test_prepare_reads_no_device_value_on_the_host(tiny_data, tmp_path):
    """By construction: on the meta device any host synchronisation raises."""
    method = MLFOMethod(tiny_config(tiny_data, tmp_path, **{"data.color_augment": "true"}))
    out = method.prepare(_batch(), 0, torch.device("meta"))
    assert out.device.type == "meta" and out.shape == (3, 3, 3, 4, 16, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_prepare_on_cuda_has_no_host_synchronisation(tiny_data, tmp_path):
    method = MLFOMethod(tiny_config(tiny_data, tmp_path, **{"data.color_augment": "true"}))
    batch = _batch()
    batch["clips"] = batch["clips"].pin_memory()
    expected = method.prepare(batch, 0, torch.device("cpu"))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = method.prepare(batch, 0, torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.allclose(out.cpu(), expected, atol=1e-4)



def test_under_autocast_the_objective_runs_in_float32(tiny_data, tmp_path, monkeypatch):
    """bf16 / fp16 autocast speeds up the model; the losses' temperature-scaled logits are
    computed in float32 (autocast off, float32 embeddings)."""
    from mlfo.losses.objective import MLFOObjective

    seen = []
    real = MLFOObjective.forward

    def spy(self, out, epoch):
        seen.append((torch.is_autocast_enabled("cpu"), out.clip["high"].dtype, out.fine["low"].dtype,
                     out.graph["low"].dtype, out.proto_scores.dtype))
        return real(self, out, epoch)

    monkeypatch.setattr(MLFOObjective, "forward", spy)
    method = MLFOMethod(tiny_config(tiny_data, tmp_path))
    x = torch.randn(3, 4, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference, _ = method(x, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low_precision, _ = method(x, 1)
    assert seen[1] == (False, *[torch.float32] * 4) and low_precision.dtype == torch.float32
    assert abs(low_precision.item() - reference.item()) < 0.05 * abs(reference.item())
