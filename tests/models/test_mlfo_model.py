"""MLFOModel: output contract, reversed copies, switches, gradients, memory format."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlfo.errors import MLFOError
from mlfo.models import MLFOModel, ModelConfig, build_backbone

# 16 frames keep the reference's 8 / 4 / 2 fine steps; 16 px keeps the test fast.
B, T, S = 2, 16, 16


def make_model(reversed_copies: bool = True, **cfg) -> MLFOModel:
    torch.manual_seed(0)
    return MLFOModel(build_backbone("r3d_small"), ModelConfig(num_prototypes=10, **cfg), reversed_copies)


def make_clips(t: int = T, size: int = S, seed: int = 1) -> torch.Tensor:
    return torch.randn(3, B, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


def assert_unit_norm(x: torch.Tensor) -> None:
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[:-1]))


def test_output_shapes_and_normalisation():
    model = make_model()
    out = model(make_clips())
    assert set(out.clip) == set(out.fine) == set(out.graph) == {"low", "mid", "high"}
    assert set(out.clip_reversed) == {"low", "mid"}
    for level, steps in {"low": 8, "mid": 4, "high": 2}.items():
        assert out.clip[level].shape == (3, B, 128)
        assert out.graph[level].shape == (3, B, 128)
        assert out.fine[level].shape == (3, B, steps, 128)
        for x in (out.clip[level], out.graph[level], out.fine[level]):
            assert_unit_norm(x)
    for x in out.clip_reversed.values():
        assert x.shape == (3, B, 128)
        assert_unit_norm(x)
    assert out.proto_scores.shape == (3, B, 10)
    assert isinstance(model.prototypes, nn.Linear) and model.prototypes.bias is None


def test_every_output_follows_the_method_in_eval_mode():
    """Recompute each embedding from the backbone's levels, step by step as method.md §2."""
    model = make_model().eval()
    clips = make_clips()
    with torch.no_grad():
        out = model(clips)
        levels = model.backbone.forward_levels(clips.flatten(0, 1))   # (3B, C, T', H', W')

        def pooled(level: str, feature: torch.Tensor) -> torch.Tensor:
            steps = {"low": 8, "mid": 4, "high": 2}[level]
            return F.adaptive_avg_pool3d(feature, (steps, 1, 1)).flatten(2)  # (N, C, t)

        def embed(head: nn.Module, feature: torch.Tensor) -> torch.Tensor:
            return F.normalize(head(feature).mean(dim=2), dim=-1).unflatten(0, (3, B))

        for level in ("low", "mid", "high"):
            feature = levels[level]
            if level != "high":
                reversed_ = pooled(level, model.motion_excitation[level](feature.flip(2)))
                feature = model.motion_excitation[level](feature)
                torch.testing.assert_close(out.clip_reversed[level],
                                           embed(model.proj[level], reversed_))
            feature = pooled(level, feature)
            torch.testing.assert_close(out.clip[level], embed(model.proj[level], feature))
            torch.testing.assert_close(out.graph[level], embed(model.proj_graph[level], feature))
            fine = F.normalize(model.proj_fine[level](feature).transpose(1, 2), dim=-1)
            torch.testing.assert_close(out.fine[level], fine.unflatten(0, (3, B)))

        high = pooled("high", levels["high"]).mean(dim=2)                  # (3B, 512)
        embedding = F.normalize(model.global_head(high), dim=-1)
        torch.testing.assert_close(out.proto_scores,
                                   (embedding @ model.prototypes.weight.T).unflatten(0, (3, B)))


def test_motion_blocks_see_the_features_and_their_time_flip():
    model = make_model().eval()
    clips = make_clips()
    seen = {}
    for level in ("low", "mid"):
        model.motion_excitation[level].register_forward_hook(
            lambda module, inputs, output, level=level: seen.__setitem__(level, inputs[0]))
    with torch.no_grad():
        model(clips)
        levels = model.backbone.forward_levels(clips.flatten(0, 1))
    n = 3 * B
    for level in ("low", "mid"):
        assert seen[level].shape[0] == 2 * n
        torch.testing.assert_close(seen[level][:n], levels[level])
        torch.testing.assert_close(seen[level][n:], levels[level].flip(2))
        assert not torch.allclose(seen[level][n:], levels[level])


class TimeSymmetricBackbone(nn.Module):
    """Per-frame convs and 2x2x2 average pools: its levels of a time-flipped clip are
    exactly the time-flipped levels (for T divisible by 8)."""

    level_channels = {"low": 16, "mid": 32, "high": 64}

    def __init__(self):
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv3d(cin, cout, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU(),
                                 nn.AvgPool3d(2))

        self.low, self.mid, self.high = stage(3, 16), stage(16, 32), stage(32, 64)

    def forward_levels(self, x):
        low = self.low(x)
        mid = self.mid(low)
        return {"low": low, "mid": mid, "high": self.high(mid)}


def test_reversed_embedding_is_the_embedding_of_the_time_flipped_clip():
    """Through a time-symmetric backbone, the reversed copy of x must embed exactly like
    the flipped clip flip(x) does, and differ from x's own embedding (ME sees order)."""
    torch.manual_seed(0)
    model = MLFOModel(TimeSymmetricBackbone(), ModelConfig(num_prototypes=10, me_reduction=4))
    model = model.double().eval()  # float64: equal is ~1e-15, different is >> that
    with torch.no_grad():
        for block in model.motion_excitation.values():
            block.expand.weight.mul_(20)  # untrained gates are tiny; make order matter clearly
    ramp = torch.linspace(-2, 2, 16, dtype=torch.float64).view(1, 1, 1, 16, 1, 1)
    clips = make_clips(t=16, size=16).double() + ramp  # brightening over time: clear motion
    flipped = clips.flip(3)                                       # (3, B, 3, T, H, W): T is dim 3
    with torch.no_grad():
        levels, levels_of_flipped = (model.backbone.forward_levels(c.flatten(0, 1))
                                     for c in (clips, flipped))
        torch.testing.assert_close(levels_of_flipped["low"], levels["low"].flip(2))  # premise
        out, out_flipped = model(clips), model(flipped)
    for level in ("low", "mid"):
        torch.testing.assert_close(out.clip_reversed[level], out_flipped.clip[level])
        torch.testing.assert_close(out.clip[level], out_flipped.clip_reversed[level])
        assert (out.clip[level] - out.clip_reversed[level]).abs().max() > 1e-3


def test_reversed_negatives_off():
    on = make_model().eval()
    off = MLFOModel(build_backbone("r3d_small"), ModelConfig(num_prototypes=10), reversed_copies=False).eval()
    off.load_state_dict(on.state_dict())  # same parameters: the switch adds none
    clips = make_clips()
    with torch.no_grad():
        out_on, out_off = on(clips), off(clips)
    assert out_off.clip_reversed == {}
    for level in ("low", "mid", "high"):  # eval mode: copies do not change the clips' embeddings
        torch.testing.assert_close(out_off.clip[level], out_on.clip[level])
        torch.testing.assert_close(out_off.fine[level], out_on.fine[level])


def test_motion_excitation_off_is_identity():
    model = make_model(motion_excitation=False, reversed_copies=False).eval()
    assert all(isinstance(m, nn.Identity) for m in model.motion_excitation.values())
    assert not any("motion_excitation" in name for name, _ in model.named_parameters())
    clips = make_clips()
    with torch.no_grad():
        out = model(clips)
        low = model.backbone.forward_levels(clips.flatten(0, 1))["low"]
        pooled = F.adaptive_avg_pool3d(low, (8, 1, 1)).flatten(2)
        expected = F.normalize(model.proj["low"](pooled).mean(dim=2), dim=-1)
    torch.testing.assert_close(out.clip["low"], expected.unflatten(0, (3, B)))


def test_reversed_without_motion_excitation_warns_and_is_degenerate():
    with pytest.warns(UserWarning, match="identical"):
        model = make_model(motion_excitation=False)
    with torch.no_grad():
        out = model.eval()(make_clips())
    for level in ("low", "mid"):  # order-blind pooling: the "negative" is the clip itself
        torch.testing.assert_close(out.clip_reversed[level], out.clip[level])


def test_graph_heads_can_be_skipped():
    out = make_model()(make_clips(), with_graph=False)
    assert out.graph == {} and set(out.clip) == {"low", "mid", "high"}


@pytest.mark.parametrize("cfg", [{}, {"head_batchnorm": True}])
def test_gradients_reach_every_parameter(cfg):
    model = make_model(**cfg).train()
    out = model(make_clips())
    generator = torch.Generator().manual_seed(0)
    tensors = [*out.clip.values(), *out.clip_reversed.values(), *out.fine.values(),
               *out.graph.values(), out.proto_scores]
    loss = sum((x * torch.randn(x.shape, generator=generator)).sum() for x in tensors)
    loss.backward()
    no_grad = [name for name, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    assert any(name.startswith("backbone.layer2") for name, _ in model.named_parameters())


def test_normalize_prototypes():
    model = make_model()
    with torch.no_grad():
        model.prototypes.weight.mul_(torch.rand(10, 1) * 5 + 0.1)
    model.normalize_prototypes()
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(10))
    assert model.prototypes.weight.grad is None
    scores = model(make_clips()).proto_scores
    assert scores.abs().max() <= 1 + 1e-5  # cosine similarities


def test_channels_last_3d_model():
    model = make_model().eval()
    clips = make_clips()
    with torch.no_grad():
        expected = model(clips)
        model = model.to(memory_format=torch.channels_last_3d)
        got = model(clips)
    for level in ("low", "mid", "high"):
        torch.testing.assert_close(got.clip[level], expected.clip[level], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.fine[level], expected.fine[level], rtol=1e-4, atol=1e-5)
    model.train()(clips).proto_scores.sum().backward()
    assert model.backbone.stem[0].weight.grad is not None


def test_config_from_dict():
    from mlfo.config import build

    cfg = build(ModelConfig, {"num_prototypes": 50, "fine_steps": {"low": 4}}, where="model")
    assert cfg.num_prototypes == 50 and cfg.fine_steps == {"low": 4, "mid": 4, "high": 2}
    torch.manual_seed(0)
    out = MLFOModel(build_backbone("r3d_small"), cfg)(make_clips())
    assert out.fine["low"].shape == (3, B, 4, 128) and out.proto_scores.shape == (3, B, 50)
    with pytest.raises(MLFOError, match=r"^model\.protos: unknown key"):
        build(ModelConfig, {"protos": 3}, where="model")
    with pytest.raises(MLFOError, match=r"^model\.fine_steps:"):
        build(ModelConfig, {"fine_steps": {"low": 0}}, where="model")


def test_too_short_clips_for_the_fine_steps_are_refused():
    # 8-frame clips give the high level one step: pooling to 2 would repeat it, and
    # timestamp matching between identical steps cannot learn.
    with pytest.raises(MLFOError, match=r"^model\.fine_steps\.low: 8 steps .* only 4"):
        make_model()(make_clips(t=8))
    out = make_model(fine_steps={"low": 4, "mid": 2, "high": 1})(make_clips(t=8))
    assert out.fine["high"].shape == (3, B, 1, 128)


def test_rejects_unstacked_clips():
    with pytest.raises(ValueError, match="n, B, 3, T, H, W"):
        make_model()(torch.randn(B, 3, T, S, S))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_forward_backward_channels_last():
    model = make_model().cuda().to(memory_format=torch.channels_last_3d).train()
    out = model(make_clips().cuda())
    assert out.proto_scores.device.type == "cuda"
    (out.proto_scores.sum() + sum(x.sum() for x in out.clip_reversed.values())).backward()
    model.normalize_prototypes()
    assert all(p.grad is not None for p in model.parameters())


def test_prototype_scores_are_float32_under_bf16_autocast():
    """Sinkhorn's input must not be rounded by autocast: the scores are computed in float32
    from the (float32) global embedding, exactly as without autocast."""
    model = make_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_clips())
    assert out.clip["high"].dtype == torch.bfloat16  # autocast did reach the rest of the model
    assert out.proto_scores.dtype == torch.float32 and out.global_embedding.dtype == torch.float32
    exact = out.global_embedding @ model.prototypes.weight.t()  # fp32 matmul, autocast off here
    assert torch.equal(out.proto_scores, exact)
    assert not torch.equal(out.proto_scores, exact.bfloat16().float())  # not bf16-rounded scores
