"""Encoders for downstream use: export the bare backbone, load it back.

An exported encoder is ``{"arch": backbone.arch, "state_dict": torchvision-named state
dict, "source": where it came from}``: small, free of optimizer and head weights, and
loadable by torchvision's ``r3d_18`` when the stem is torchvision's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mlfo.errors import MLFOError
from mlfo.models import build_backbone, export_torchvision_state_dict, load_torchvision_state_dict
from mlfo.models.torchvision_compat import infer_arch
from mlfo.method import MLFOMethod
from mlfo.train.checkpoint import atomic_torch_save, load_checkpoint


def is_pretrain_checkpoint(ckpt: dict) -> bool:
    return isinstance(ckpt, dict) and "method" in ckpt and "encoder_arch" in ckpt


def backbone_state_from_checkpoint(ckpt: dict) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a pretraining checkpoint (torchvision names)."""
    return MLFOMethod.encoder_state(ckpt["method"])


def _arch_kwargs(arch: dict) -> dict:
    """build_backbone keyword arguments from a saved ``arch`` (ignores unknown extras)."""
    keys = ("name", "stem", "widths", "num_classes")
    return {k: arch[k] for k in keys if k in arch}


def export_encoder(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the encoder of a pretraining checkpoint to ``out`` (torchvision names)."""
    ckpt = load_checkpoint(checkpoint)
    if not is_pretrain_checkpoint(ckpt):
        raise MLFOError(f"{checkpoint}: not an mlfo pretraining checkpoint (no model / encoder_arch)")
    backbone = build_backbone(**_arch_kwargs(ckpt["encoder_arch"]))
    load_torchvision_state_dict(backbone, backbone_state_from_checkpoint(ckpt), strict=True, source=str(checkpoint))
    payload = {
        "arch": backbone.arch,
        "state_dict": export_torchvision_state_dict(backbone),
        "source": {
            "checkpoint": str(Path(checkpoint).resolve()),
            "epoch": ckpt.get("epoch"),
            "step": ckpt.get("global_step", ckpt.get("step")),
        },
    }
    return atomic_torch_save(payload, out)


def load_encoder(path: str | Path, map_location="cpu"):
    """A VideoResNet in eval mode from an exported encoder, a pretraining checkpoint, or a
    bare torchvision-named state dict (its architecture inferred from the shapes)."""
    obj = load_checkpoint(path, map_location=map_location)
    if is_pretrain_checkpoint(obj):
        arch, state = obj["encoder_arch"], backbone_state_from_checkpoint(obj)
    elif "arch" in obj and "state_dict" in obj:
        arch, state = obj["arch"], obj["state_dict"]
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        arch, state = infer_arch(obj, source=str(path)), obj
    else:
        raise MLFOError(f"{path}: neither an exported encoder nor an mlfo pretraining checkpoint")
    backbone = build_backbone(**_arch_kwargs(arch))
    load_torchvision_state_dict(backbone, state, strict=True, source=str(path))
    return backbone.eval()
