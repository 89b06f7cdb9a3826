"""Backbone topology: parameter counts against torchvision, level shapes, rebuild, memory format."""

import pytest
import torch

from mlfo.errors import MLFOError
from mlfo.models.backbones import build_backbone, midplanes_for


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Published by torchvision (models.video.r3d_18 / r2plus1d_18, Kinetics-400 heads).
@pytest.mark.parametrize("name, expected", [("r3d_18", 33_371_472), ("r2plus1d_18", 31_505_325)])
def test_torchvision_stem_matches_torchvision_parameter_count(name, expected):
    assert num_params(build_backbone(name, stem="torchvision", num_classes=400)) == expected


def test_no_classifier_by_default_and_small_backbone_size():
    r3d = build_backbone("r3d_18", stem="torchvision")
    assert r3d.fc is None
    assert num_params(r3d) == 33_371_472 - (512 * 400 + 400)
    assert 8.2e6 < num_params(build_backbone("r3d_small")) < 8.4e6


def test_r2plus1d_midplanes_follow_torchvision_formula():
    assert midplanes_for(64, 64) == 144
    assert midplanes_for(64, 128) == 230
    assert midplanes_for(256, 512) == 921
    assert midplanes_for(512, 512) == 1152


def halve(n: int, times: int) -> int:
    for _ in range(times):
        n = (n + 1) // 2  # stride-2 conv / pool with "same" padding
    return n


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18", "r3d_small"])
@pytest.mark.parametrize("stem", ["reference", "torchvision"])
@pytest.mark.parametrize("shape", [(2, 3, 8, 32, 32), (1, 3, 16, 48, 40)])
def test_level_shapes(name, stem, shape):
    torch.manual_seed(0)
    backbone = build_backbone(name, stem=stem).eval()
    n, _, t, h, w = shape
    x = torch.randn(shape)
    with torch.no_grad():
        levels = backbone.forward_levels(x)
        pooled = backbone(x)
    stem_halvings = 2 if stem == "reference" else 1  # conv stride 2 (+ max-pool stride 2)
    channels = backbone.level_channels
    for depth, level in enumerate(["low", "mid", "high"], start=1):
        expected = (n, channels[level], halve(t, depth),
                    halve(h, stem_halvings + depth), halve(w, stem_halvings + depth))
        assert tuple(levels[level].shape) == expected, level
    assert pooled.shape == (n, channels["high"])
    torch.testing.assert_close(pooled, levels["high"].mean(dim=(2, 3, 4)))


def test_level_channels_and_widths():
    assert build_backbone("r3d_18").level_channels == {"low": 128, "mid": 256, "high": 512}
    assert build_backbone("r3d_small").level_channels == {"low": 64, "mid": 128, "high": 256}
    custom = build_backbone("r3d_18", widths=[8, 16, 24, 32])
    assert custom.level_channels == {"low": 16, "mid": 24, "high": 32}


@pytest.mark.parametrize("kwargs", [
    {"name": "r2plus1d_18", "stem": "torchvision", "num_classes": 10},
    {"name": "r3d_small"},
    {"name": "r3d_18", "widths": [8, 16, 24, 32]},
])
def test_arch_rebuilds_an_identical_network(kwargs):
    original = build_backbone(**kwargs)
    rebuilt = build_backbone(**original.arch)
    assert rebuilt.arch == original.arch
    rebuilt.load_state_dict(original.state_dict())  # strict: same keys and shapes
    assert num_params(rebuilt) == num_params(original)


def test_classifier_is_optional():
    x = torch.randn(2, 3, 8, 32, 32)
    with_fc = build_backbone("r3d_small", num_classes=5).eval()
    assert with_fc.classify(x).shape == (2, 5)
    assert with_fc(x).shape == (2, 256)  # forward never applies fc
    with pytest.raises(MLFOError, match="num_classes"):
        build_backbone("r3d_small").classify(x)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "resnet50"}, "unknown name"),
    ({"name": "r3d_18", "stem": "fancy"}, "unknown stem"),
    ({"name": "r3d_18", "widths": [64, 128]}, "4 positive widths"),
])
def test_bad_arguments_raise_user_errors(kwargs, message):
    with pytest.raises(MLFOError, match=message):
        build_backbone(**kwargs)


@pytest.mark.parametrize("name", ["r3d_small", "r2plus1d_18"])
def test_channels_last_3d_gives_the_same_features(name):
    torch.manual_seed(0)
    backbone = build_backbone(name, stem="torchvision", widths=[8, 16, 24, 32]).eval()
    x = torch.randn(2, 3, 8, 32, 32)
    expected = backbone.forward_levels(x)
    backbone = backbone.to(memory_format=torch.channels_last_3d)
    got = backbone.forward_levels(x.contiguous(memory_format=torch.channels_last_3d))
    for level in expected:
        torch.testing.assert_close(got[level], expected[level], rtol=1e-4, atol=1e-5)


def test_arch_kwargs_is_the_one_reading_of_a_saved_arch():
    from mlfo.models import arch_kwargs

    net = build_backbone("r3d_small", widths=[8, 16, 16, 32], num_classes=5)
    saved = {**net.arch, "extra": "ignored"}
    assert build_backbone(**arch_kwargs(saved)).arch == net.arch
    assert arch_kwargs(saved, classifier=False) == {**{k: net.arch[k] for k in ("name", "stem", "widths")},
                                                    "num_classes": None}
    assert build_backbone(**arch_kwargs("r3d_18")).arch == build_backbone("r3d_18").arch
