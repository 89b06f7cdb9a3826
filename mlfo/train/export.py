"""Encoders for downstream use: export the bare backbone, load it back.

An exported encoder is a safetensors file: the backbone's tensors under torchvision's
names, and in the header metadata ``arch`` and ``source`` (JSON) plus ``trained_on``
(``mlfo.data.provenance``). safetensors holds tensors and strings only, so reading a
shared file cannot run code, and torchvision's ``r3d_18`` loads the tensors when the
stem is torchvision's. ``load_encoder`` also reads pretraining checkpoints and plain
tensor ``.pt`` files (``{"arch", "state_dict"}`` or a bare state dict), with
``weights_only=True``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlfo.data import provenance
from mlfo.errors import MLFOError
from mlfo.models import arch_kwargs, build_backbone, export_torchvision_state_dict, load_torchvision_state_dict
from mlfo.models.backbones import BACKBONES
from mlfo.models.torchvision_compat import infer_arch, unwrap_state_dict
from mlfo.method import MLFOMethod
from mlfo.train.checkpoint import atomic_write, load_checkpoint

SUFFIX = ".safetensors"
FORMAT = "mlfo-encoder/1"


@dataclass
class EncoderFile:
    """What an encoder file holds, before a backbone is built from it."""

    arch: dict
    state: dict[str, torch.Tensor]  # torchvision names
    trained_on: np.ndarray | None = None  # name digests of the pretraining videos, if recorded


def is_pretrain_checkpoint(ckpt: dict) -> bool:
    return isinstance(ckpt, dict) and "method" in ckpt and "encoder_arch" in ckpt


def backbone_state_from_checkpoint(ckpt: dict) -> dict[str, torch.Tensor]:
    """The backbone's tensors of a pretraining checkpoint (torchvision names)."""
    return MLFOMethod.encoder_state(ckpt["method"])


def checked_arch(arch, state: dict, source: str) -> dict:
    """``arch_kwargs``, then the tensors must be of that architecture, so that no
    header builds a network other (or larger) than the one the file holds."""
    kwargs = arch_kwargs(arch, source=source)
    held = infer_arch(state, source=source)
    claimed = (BACKBONES[kwargs["name"]][0], kwargs["stem"], list(kwargs["widths"] or BACKBONES[kwargs["name"]][1]),
               kwargs["num_classes"])
    found = (BACKBONES[held["name"]][0], held["stem"], held["widths"], held["num_classes"])
    if claimed != found:
        def show(a):
            return f"{a[0]}, stem {a[1]}, widths {a[2]}, classes {a[3]}"
        raise MLFOError(f"{source}: the recorded architecture ({show(claimed)}) is not the one its tensors "
                        f"hold ({show(found)})")
    return kwargs


def check_dtypes(backbone, state: dict, source: str) -> None:
    """Refuse a tensor that is not floating point where the backbone's is: casting int8 or
    bool weights to float would evaluate other weights than the file's, without a word."""
    ours = backbone.state_dict()
    for key, value in unwrap_state_dict(state).items():
        if key in ours and ours[key].is_floating_point():
            if not isinstance(value, torch.Tensor):
                raise MLFOError(f"{source}: {key} is not a tensor ({type(value).__name__})")
            if not value.is_floating_point():
                raise MLFOError(f"{source}: {key} is a {str(value.dtype).replace('torch.', '')} tensor where "
                                "the encoder has float weights: refused (a cast would change the weights)")


def _trained_on(ckpt: dict) -> np.ndarray | None:
    value = ckpt.get("trained_on")
    return value.numpy().astype(np.int64) if isinstance(value, torch.Tensor) else None


def export_path(out: str | Path) -> Path:
    """``OUT`` as given when it ends in .safetensors, ``OUT.safetensors`` when it has no
    suffix; another suffix (``encoder.pt``) is refused rather than silently renamed."""
    out = Path(out)
    if out.suffix == "":
        return out.with_name(out.name + SUFFIX)
    if out.suffix != SUFFIX:
        raise MLFOError(f"{out}: an exported encoder is a safetensors file; name it "
                        f"{out.with_suffix(SUFFIX).name}")
    return out


def _check_target(out: Path, checkpoint: str | Path, overwrite: bool) -> None:
    """The export may replace only an encoder mlfo exported (or any file with ``overwrite``),
    never a folder or the checkpoint it reads."""
    if out.is_dir():
        raise MLFOError(f"{out}: is a folder; give the encoder file's name")
    if not out.exists():
        return
    if os.path.samefile(out, checkpoint):
        raise MLFOError(f"{out}: is the checkpoint being exported; give another file name")
    if not overwrite and not is_mlfo_export(out):
        raise MLFOError(f"{out}: exists and is not an encoder mlfo exported; give another name, or add "
                        "--overwrite to replace it")


def is_mlfo_export(path: Path) -> bool:
    """Whether ``path`` is a safetensors file whose header says mlfo exported it."""
    from safetensors import safe_open

    try:
        if not _is_safetensors(path):
            return False
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("format") == FORMAT
    except Exception:  # unreadable: not ours
        return False


def export_encoder(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write the encoder of a pretraining checkpoint to ``out`` (a .safetensors file); an
    existing ``out`` is replaced only when mlfo exported it, or with ``overwrite``."""
    from safetensors.torch import save

    out = export_path(out)
    ckpt = load_checkpoint(checkpoint)
    if not is_pretrain_checkpoint(ckpt) or not isinstance(ckpt["method"], dict):
        raise MLFOError(f"{checkpoint}: not an mlfo pretraining checkpoint (no model / encoder_arch)")
    backbone = build_encoder(EncoderFile(ckpt["encoder_arch"], backbone_state_from_checkpoint(ckpt)), str(checkpoint))
    _check_target(out, checkpoint, overwrite)
    source = {"checkpoint": str(Path(checkpoint).resolve()), "epoch": ckpt.get("epoch"),
              "step": ckpt.get("global_step", ckpt.get("step"))}
    metadata = {"format": FORMAT, "arch": json.dumps(backbone.arch), "source": json.dumps(source)}
    trained_on = _trained_on(ckpt)
    if trained_on is not None:
        metadata["trained_on"] = provenance.to_text(trained_on)
    tensors = {k: v.contiguous() for k, v in export_torchvision_state_dict(backbone).items()}
    payload = save(tensors, metadata=metadata)
    return atomic_write(out, lambda fh: fh.write(payload))


def _is_safetensors(path: Path) -> bool:
    """safetensors: an 8-byte header length, then a JSON header (a torch file is a zip)."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path, map_location) -> EncoderFile:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        state = load_file(str(path), device=str(map_location) if map_location is not None else "cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise MLFOError(f"{path}: not a readable safetensors file ({str(err).splitlines()[0]})") from None
    try:
        arch = json.loads(metadata["arch"]) if "arch" in metadata else infer_arch(state, source=str(path))
        trained_on = provenance.from_text(metadata["trained_on"]) if "trained_on" in metadata else None
    except (ValueError, TypeError) as err:
        raise MLFOError(f"{path}: unreadable mlfo metadata in the safetensors header ({err})") from None
    if not isinstance(arch, dict):
        raise MLFOError(f"{path}: the 'arch' metadata is not a JSON object")
    return EncoderFile(arch, state, trained_on)


def read_encoder_file(path: str | Path, map_location="cpu") -> EncoderFile:
    """An encoder's architecture, tensors and pretraining record from any file it may be in."""
    path = Path(path)
    if not path.is_file():
        raise MLFOError(f"{path}: encoder file not found")
    if _is_safetensors(path):
        return _read_safetensors(path, map_location)
    obj = load_checkpoint(path, map_location=map_location)
    if is_pretrain_checkpoint(obj):
        return EncoderFile(obj["encoder_arch"], backbone_state_from_checkpoint(obj), _trained_on(obj))
    if "arch" in obj and "state_dict" in obj and isinstance(obj["arch"], dict):
        return EncoderFile(obj["arch"], obj["state_dict"], _trained_on(obj))
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return EncoderFile(infer_arch(obj, source=str(path)), obj)
    raise MLFOError(f"{path}: neither an exported encoder nor an mlfo pretraining checkpoint")


def build_encoder(enc: EncoderFile, source: str):
    """A VideoResNet in eval mode holding ``enc``'s weights (architecture checked before
    anything is built; every key, shape and float type must match)."""
    backbone = build_backbone(**checked_arch(enc.arch, enc.state, source))
    check_dtypes(backbone, enc.state, source)
    load_torchvision_state_dict(backbone, enc.state, strict=True, source=source)
    return backbone.eval()


def load_encoder(path: str | Path, map_location="cpu"):
    """A VideoResNet in eval mode from an exported encoder (.safetensors), a pretraining
    checkpoint, or a plain tensor .pt file (its architecture inferred from the shapes)."""
    return build_encoder(read_encoder_file(path, map_location), str(path))
