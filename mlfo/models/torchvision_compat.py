"""Load and export torchvision ``r3d_18`` / ``r2plus1d_18`` state dicts.

Our backbones use torchvision's module names, so the mapping is the identity; what this
module adds is checking. Loading compares every key and shape and returns a
``LoadReport`` (missing / unexpected / shape-mismatched keys) instead of failing deep
inside ``load_state_dict``; e.g. torchvision's 3x7x7 stem does not fit the reference
7x7x7 stem, and torchvision's Kinetics classifier ``fc`` is unexpected unless the
backbone was built with ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from mlfo.errors import MLFOError
from mlfo.models.backbones import BACKBONES, VideoResNet, build_backbone

# Older checkpoints predate BatchNorm's counter; its absence changes nothing.
_OPTIONAL_SUFFIXES = (".num_batches_tracked",)


@dataclass
class LoadReport:
    """What a state-dict load did. ``str(report)`` is a short human-readable summary."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)       # ours, absent from the file
    unexpected: list[str] = field(default_factory=list)    # in the file, not ours
    shape_mismatch: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, file, ours

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def __str__(self) -> str:
        def keys(names: list[str]) -> str:
            shown = ", ".join(names[:6])
            return shown + (f" (+{len(names) - 6} more)" if len(names) > 6 else "") if names else "none"

        total = len(self.loaded) + len(self.missing) + len(self.shape_mismatch)
        lines = [f"loaded {len(self.loaded)}/{total} tensors; "
                 f"missing: {keys(self.missing)}; unexpected: {keys(self.unexpected)}"]
        if self.shape_mismatch:
            lines.append("shape mismatch (file vs ours): " + ", ".join(
                f"{k} {list(theirs)} vs {list(ours)}" for k, theirs, ours in self.shape_mismatch[:6])
                + (f" (+{len(self.shape_mismatch) - 6} more)" if len(self.shape_mismatch) > 6 else ""))
        return "\n".join(lines)


def unwrap_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """A bare state dict from a checkpoint object: unwraps {"state_dict"| "model": ...}
    and strips a DistributedDataParallel ``module.`` prefix."""
    for wrapper in ("state_dict", "model"):
        if wrapper in obj and isinstance(obj[wrapper], Mapping):
            obj = obj[wrapper]
            break
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_torchvision_state_dict(backbone: VideoResNet, state_dict: Mapping[str, torch.Tensor],
                                strict: bool = False, source: str = "state_dict") -> LoadReport:
    """Copy every matching tensor of a torchvision-named ``state_dict`` into ``backbone``.

    Keys whose shapes differ are skipped and reported. With ``strict=True`` any missing,
    unexpected or mismatched key raises MLFOError (naming ``source``) and nothing is loaded.
    """
    state_dict = unwrap_state_dict(state_dict)
    ours = backbone.state_dict()
    report = LoadReport()
    to_load = {}
    for key, value in state_dict.items():
        if key not in ours:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(ours[key].shape):
            report.shape_mismatch.append((key, tuple(value.shape), tuple(ours[key].shape)))
        else:
            to_load[key] = value
            report.loaded.append(key)
    report.missing = [k for k in ours if k not in state_dict and not k.endswith(_OPTIONAL_SUFFIXES)]
    if strict and not report.ok:
        raise MLFOError(f"{source}: does not match backbone {backbone.arch['name']} "
                        f"(stem {backbone.arch['stem']}): " + str(report).replace("\n", "; "))
    backbone.load_state_dict(to_load, strict=False)
    return report


def export_torchvision_state_dict(backbone: VideoResNet) -> dict[str, torch.Tensor]:
    """The backbone's weights under torchvision's names, detached copies on the CPU.

    Includes ``fc.*`` only when the backbone has a classifier. A backbone with the
    torchvision stem and ``num_classes=400`` exports a drop-in torchvision checkpoint.
    """
    return {k: v.detach().to("cpu", copy=True) for k, v in backbone.state_dict().items()}


def infer_arch(state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> dict:
    """The ``build_backbone`` kwargs of a torchvision-named state dict (block, stem, widths, fc)."""
    state_dict = unwrap_state_dict(state_dict)
    try:
        block = "r2plus1d" if "layer1.0.conv1.0.0.weight" in state_dict else "r3d"
        widths = [int(state_dict[f"layer{i}.0.conv1.1.weight"].shape[0]) for i in range(1, 5)]
        stem_kernel = tuple(state_dict["stem.0.weight"].shape[2:])
    except KeyError as missing:
        raise MLFOError(f"{source}: not a video ResNet state dict (no key {missing})") from None
    stem = "reference" if stem_kernel == (7, 7, 7) else "torchvision"
    name = "r2plus1d_18" if block == "r2plus1d" else "r3d_18"
    if block == "r3d" and tuple(widths) == BACKBONES["r3d_small"][1]:
        name = "r3d_small"
    fc = state_dict.get("fc.weight")
    return {"name": name, "stem": stem, "widths": widths,
            "num_classes": int(fc.shape[0]) if fc is not None else None}


def backbone_from_torchvision(state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                              source: str = "state_dict") -> tuple[VideoResNet, LoadReport]:
    """Build the matching backbone for a torchvision-named state dict and load it."""
    backbone = build_backbone(**infer_arch(state_dict, source))
    return backbone, load_torchvision_state_dict(backbone, state_dict, strict=strict, source=source)
