"""Video ResNets (R3D-18, R(2+1)D-18, a small R3D) with low / mid / high feature taps.

The module tree and parameter names follow torchvision's ``torchvision.models.video``
exactly (``stem.0``, ``layer1.0.conv1.0``, ``layer2.0.downsample.0``, ``fc`` ...), so
torchvision checkpoints load without renaming (see ``torchvision_compat``). torchvision
itself is not a dependency: it cannot be installed beside the CPU torch build.

Two stems:
- ``"reference"`` (MLFO's reference implementation, method.md §2): conv 7x7x7 with
  temporal stride 1 and spatial stride 2, BN, ReLU, then a 1x3x3 spatial max-pool;
- ``"torchvision"``: torchvision's stems (R3D: conv 3x7x7; R(2+1)D: the factorised
  1x7x7 -> 3x1x1 stem with 45 middle channels), no pooling.
layer2-4 halve time and space. Taps: low = layer2, mid = layer3, high = layer4.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mlfo.errors import MLFOError

LEVELS = ("low", "mid", "high")
STEMS = ("reference", "torchvision")

# name -> (block type, default widths of layer1..layer4)
BACKBONES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "r3d_18": ("r3d", (64, 128, 256, 512)),
    "r2plus1d_18": ("r2plus1d", (64, 128, 256, 512)),
    "r3d_small": ("r3d", (32, 64, 128, 256)),
}


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factorised into 1x3x3 (space) -> BN -> ReLU -> 3x1x1 (time)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(in_planes, midplanes, (1, 3, 3), stride=(1, stride, stride),
                      padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), stride=(stride, 1, 1),
                      padding=(1, 0, 0), bias=False),
        )


def conv3d_simple(in_planes: int, out_planes: int, midplanes: int, stride: int = 1) -> nn.Conv3d:
    """A plain 3x3x3 convolution (``midplanes`` unused; same signature as Conv2Plus1D)."""
    del midplanes
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


CONV_BUILDERS: dict[str, Callable[..., nn.Module]] = {"r3d": conv3d_simple, "r2plus1d": Conv2Plus1D}


def midplanes_for(in_planes: int, out_planes: int) -> int:
    """Middle width of a (2+1)D conv with about the parameters of a full 3x3x3 conv.

    torchvision computes it once per block from the block's input and output widths and
    uses it for both convolutions of the block; so do we (the parameter count depends on it).
    """
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


class BasicBlock(nn.Module):
    """ResNet basic block, named as torchvision's: conv1 = (conv, BN, ReLU), conv2 = (conv, BN)."""

    def __init__(self, in_planes: int, planes: int, conv_builder: Callable[..., nn.Module],
                 stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        midplanes = midplanes_for(in_planes, planes)
        self.conv1 = nn.Sequential(
            conv_builder(in_planes, planes, midplanes, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


def make_stem(stem: str, block: str, width: int) -> nn.Sequential:
    """The layer before layer1 (see the module docstring for the two kinds)."""
    if stem == "reference":
        # The 7x7x7 stem of MLFO's R3D-18; used for R(2+1)D too (a full 3D conv).
        return nn.Sequential(
            nn.Conv3d(3, width, 7, stride=(1, 2, 2), padding=3, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
    if block == "r3d":
        return nn.Sequential(
            nn.Conv3d(3, width, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
    mid = max(1, width * 45 // 64)  # torchvision: 45 for width 64
    return nn.Sequential(
        nn.Conv3d(3, mid, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):
    """An 18-layer video ResNet whose intermediate layers are exposed as three levels.

    ``forward_levels(x)`` gives the layer2 / layer3 / layer4 feature maps the MLFO heads
    use; ``forward(x)`` gives the globally pooled layer4 feature used for evaluation.
    ``fc`` exists only when ``num_classes`` is given (torchvision checkpoints carry a
    512 -> 400 Kinetics classifier); it is never applied by ``forward``, see ``classify``.
    """

    def __init__(self, name: str, stem: str = "reference",
                 widths: tuple[int, int, int, int] | list[int] | None = None,
                 num_classes: int | None = None, layers: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        if name not in BACKBONES:
            raise MLFOError(f"backbone: unknown name {name!r} (choose {', '.join(BACKBONES)})")
        if stem not in STEMS:
            raise MLFOError(f"backbone.stem: unknown stem {stem!r} (choose {', '.join(STEMS)})")
        block, default_widths = BACKBONES[name]
        widths = tuple(int(w) for w in (widths if widths is not None else default_widths))
        if len(widths) != 4 or min(widths) < 1:
            raise MLFOError(f"backbone.widths: need 4 positive widths, got {list(widths)}")
        self.name, self.block, self.stem_kind, self.widths = name, block, stem, widths
        self.num_classes = num_classes
        conv_builder = CONV_BUILDERS[block]

        self.stem = make_stem(stem, block, widths[0])
        self._in_planes = widths[0]
        self.layer1 = self._make_layer(conv_builder, widths[0], layers[0], stride=1)
        self.layer2 = self._make_layer(conv_builder, widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(conv_builder, widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(conv_builder, widths[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(widths[3], num_classes) if num_classes else None
        self._init_weights()

    def _make_layer(self, conv_builder, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_planes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(self._in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm3d(planes),
            )
        layers = [BasicBlock(self._in_planes, planes, conv_builder, stride, downsample)]
        self._in_planes = planes
        layers += [BasicBlock(planes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation (also the reference implementation's for conv/BN).
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def level_channels(self) -> dict[str, int]:
        return {"low": self.widths[1], "mid": self.widths[2], "high": self.widths[3]}

    @property
    def arch(self) -> dict:
        """The ``build_backbone`` keyword arguments that rebuild this network."""
        return {"name": self.name, "stem": self.stem_kind, "widths": list(self.widths),
                "num_classes": self.num_classes}

    def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x (N, 3, T, H, W) -> {"low": (N, C2, T/2, ..), "mid": (N, C3, T/4, ..), "high": (N, C4, T/8, ..)}.

        Spatial size: H/8, H/16, H/32 with the reference stem; H/4, H/8, H/16 with torchvision's.
        """
        x = self.layer1(self.stem(x))
        low = self.layer2(x)
        mid = self.layer3(low)
        high = self.layer4(mid)
        return {"low": low, "mid": mid, "high": high}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, T, H, W) -> (N, C4): the globally average-pooled layer4 feature."""
        return self.avgpool(self.forward_levels(x)["high"]).flatten(1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, 3, T, H, W) -> (N, num_classes) logits of the optional ``fc`` classifier."""
        if self.fc is None:
            raise MLFOError("backbone: no classifier (build it with num_classes=...)")
        return self.fc(self(x))


MAX_WIDTH = 4096  # channels of a layer in a saved architecture; r3d_18's widest is 512
MAX_CLASSES = 100_000


def _int_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def arch_kwargs(arch: dict | str, classifier: bool = True, source: str = "arch") -> dict:
    """``build_backbone`` keyword arguments of a saved ``arch`` (a ``backbone.arch`` dict or a
    bare name): THE reading of an architecture for checkpoints, exported encoders and
    baselines. A file's header is data and may ask for any size or type, so names, types
    and ranges are checked before anything is built (one line naming ``source``); unknown
    extras are ignored; ``classifier=False`` drops ``num_classes`` (features need none)."""
    if isinstance(arch, str):
        arch = {"name": arch}
    if not isinstance(arch, dict):
        raise MLFOError(f"{source}: the architecture record is not a mapping, got {type(arch).__name__}")
    name, stem = arch.get("name"), arch.get("stem", "reference")
    widths, classes = arch.get("widths"), arch.get("num_classes") if classifier else None
    if not isinstance(name, str) or name not in BACKBONES:
        raise MLFOError(f"{source}: arch name {str(name)[:40]!r} is not one of {', '.join(BACKBONES)}")
    if not isinstance(stem, str) or stem not in STEMS:
        raise MLFOError(f"{source}: arch stem {str(stem)[:40]!r} is not one of {', '.join(STEMS)}")
    if widths is not None and not (isinstance(widths, (list, tuple)) and len(widths) == 4
                                   and all(_int_in(w, 1, MAX_WIDTH) for w in widths)):
        raise MLFOError(f"{source}: arch widths {str(widths)[:60]} are not 4 integers in 1..{MAX_WIDTH}")
    if classes is not None and not _int_in(classes, 1, MAX_CLASSES):
        raise MLFOError(f"{source}: arch num_classes {str(classes)[:40]} is not an integer in 1..{MAX_CLASSES}")
    return {"name": name, "stem": stem, "widths": None if widths is None else list(widths), "num_classes": classes}


def build_backbone(name: str, stem: str = "reference", widths=None,
                   num_classes: int | None = None) -> VideoResNet:
    """Build a backbone by name: "r3d_18", "r2plus1d_18" or "r3d_small" (widths 32-64-128-256).

    ``stem="reference"`` is MLFO's 7x7x7 stem + max-pool; ``"torchvision"`` matches
    torchvision's ``r3d_18`` / ``r2plus1d_18`` (with ``num_classes=400``, parameter for
    parameter). ``backbone.arch`` holds these arguments.
    """
    return VideoResNet(name, stem=stem, widths=widths, num_classes=num_classes)
