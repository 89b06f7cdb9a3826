"""torchvision state dicts load into our backbones and export back unchanged."""

import pytest
import torch

from mlfo.errors import MLFOError
from mlfo.models.backbones import build_backbone
from mlfo.models.torchvision_compat import (
    backbone_from_torchvision,
    export_torchvision_state_dict,
    infer_arch,
    load_torchvision_state_dict,
)

# Key names and shapes of torchvision's own models (torchvision.models.video), written
# out by hand so that a naming slip on our side cannot pass by deriving keys from ourselves.
TORCHVISION_R3D_18 = {
    "stem.0.weight": (64, 3, 3, 7, 7),
    "stem.1.running_var": (64,),
    "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
    "layer1.0.conv1.1.weight": (64,),
    "layer1.1.conv2.0.weight": (64, 64, 3, 3, 3),
    "layer2.0.conv1.0.weight": (128, 64, 3, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
    "layer2.0.downsample.1.running_mean": (128,),
    "layer4.1.conv2.1.bias": (512,),
    "fc.weight": (400, 512),
    "fc.bias": (400,),
}
TORCHVISION_R2PLUS1D_18 = {
    "stem.0.weight": (45, 3, 1, 7, 7),
    "stem.1.weight": (45,),
    "stem.3.weight": (64, 45, 3, 1, 1),
    "stem.4.weight": (64,),
    "layer1.0.conv1.0.0.weight": (144, 64, 1, 3, 3),
    "layer1.0.conv1.0.1.weight": (144,),
    "layer1.0.conv1.0.3.weight": (64, 144, 3, 1, 1),
    "layer1.0.conv1.1.weight": (64,),
    "layer2.0.conv1.0.0.weight": (230, 64, 1, 3, 3),
    "layer2.0.conv2.0.0.weight": (230, 128, 1, 3, 3),  # torchvision reuses the block's midplanes
    "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
    "layer4.0.conv1.0.0.weight": (921, 256, 1, 3, 3),
    "fc.weight": (400, 512),
}


def random_torchvision_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with torchvision's keys and shapes for ``name``, random values."""
    generator = torch.Generator().manual_seed(seed)
    template = build_backbone(name, stem="torchvision", num_classes=400).state_dict()
    state = {}
    for key, value in template.items():
        if value.is_floating_point():
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            state[key] = torch.randint(1, 100, value.shape, generator=generator)
    return state


@pytest.mark.parametrize("name, known", [("r3d_18", TORCHVISION_R3D_18),
                                         ("r2plus1d_18", TORCHVISION_R2PLUS1D_18)])
def test_torchvision_key_names_and_shapes(name, known):
    state = build_backbone(name, stem="torchvision", num_classes=400).state_dict()
    for key, shape in known.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    assert not [k for k in state if not k.startswith(("stem.", "layer", "fc."))]


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_round_trip_is_identity(name, tmp_path):
    source = random_torchvision_state_dict(name)
    path = tmp_path / "torchvision.pth"
    torch.save(source, path)

    backbone = build_backbone(name, stem="torchvision", num_classes=400)
    report = load_torchvision_state_dict(backbone, torch.load(path), strict=True)
    assert report.ok and len(report.loaded) == len(source)
    exported = export_torchvision_state_dict(backbone)
    assert list(exported) == list(source)
    for key in source:
        assert torch.equal(exported[key], source[key]), key

    again = build_backbone(**backbone.arch)
    assert load_torchvision_state_dict(again, exported, strict=True).ok
    for key, value in again.state_dict().items():
        assert torch.equal(value, source[key]), key


def test_reference_stem_reports_stem_and_classifier():
    source = random_torchvision_state_dict("r3d_18")
    backbone = build_backbone("r3d_18")  # reference 7x7x7 stem, no fc
    stem_before = backbone.stem[0].weight.detach().clone()
    report = load_torchvision_state_dict(backbone, source)

    assert not report.ok
    assert report.unexpected == ["fc.weight", "fc.bias"]
    assert report.shape_mismatch == [("stem.0.weight", (64, 3, 3, 7, 7), (64, 3, 7, 7, 7))]
    assert report.missing == []
    assert torch.equal(backbone.stem[0].weight, stem_before)  # skipped, not half-copied
    ours = backbone.state_dict()
    for key in report.loaded:
        assert torch.equal(ours[key], source[key]), key
    assert len(report.loaded) == len(source) - 3

    text = str(report)
    assert len(text.splitlines()) <= 3
    for fragment in ("fc.weight", "stem.0.weight", "[64, 3, 3, 7, 7]", f"loaded {len(source) - 3}/"):
        assert fragment in text


def test_strict_load_raises_and_loads_nothing():
    backbone = build_backbone("r3d_18")
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    with pytest.raises(MLFOError, match="^ckpt.pth: does not match backbone r3d_18"):
        load_torchvision_state_dict(backbone, random_torchvision_state_dict("r3d_18"),
                                    strict=True, source="ckpt.pth")
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_missing_keys_reported_but_not_batchnorm_counters():
    source = random_torchvision_state_dict("r3d_18")
    del source["layer4.1.conv2.1.running_mean"]
    for key in [k for k in source if k.endswith("num_batches_tracked")]:
        del source[key]  # old checkpoints have no counters
    report = load_torchvision_state_dict(build_backbone("r3d_18", stem="torchvision",
                                                        num_classes=400), source)
    assert report.missing == ["layer4.1.conv2.1.running_mean"]
    assert report.unexpected == [] and report.shape_mismatch == []
    assert "missing: layer4.1.conv2.1.running_mean" in str(report)


def test_wrapped_and_ddp_prefixed_checkpoints_load():
    source = random_torchvision_state_dict("r3d_18")
    wrapped = {"state_dict": {f"module.{k}": v for k, v in source.items()}, "epoch": 3}
    backbone = build_backbone("r3d_18", stem="torchvision", num_classes=400)
    assert load_torchvision_state_dict(backbone, wrapped, strict=True).ok
    assert torch.equal(backbone.fc.weight, source["fc.weight"])


def test_wrong_architecture_gives_a_short_report():
    report = load_torchvision_state_dict(build_backbone("r3d_18", stem="torchvision"),
                                         random_torchvision_state_dict("r2plus1d_18"))
    assert report.missing and report.unexpected
    assert "more)" in str(report) and len(str(report)) < 1500


@pytest.mark.parametrize("kwargs", [
    {"name": "r3d_18", "stem": "torchvision", "num_classes": 400},
    {"name": "r2plus1d_18", "stem": "torchvision", "num_classes": 400},
    {"name": "r3d_small", "stem": "reference", "num_classes": None},
])
def test_infer_arch_and_rebuild(kwargs):
    backbone = build_backbone(**kwargs)
    state = export_torchvision_state_dict(backbone)
    assert infer_arch(state) == backbone.arch
    rebuilt, report = backbone_from_torchvision(state)
    assert report.ok and rebuilt.arch == backbone.arch


def test_infer_arch_rejects_foreign_state_dicts():
    with pytest.raises(MLFOError, match="^x.pt: not a video ResNet"):
        infer_arch({"conv1.weight": torch.zeros(1)}, source="x.pt")
