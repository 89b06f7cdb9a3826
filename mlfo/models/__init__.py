"""Backbones, motion excitation, heads and the MLFO model (see docs/design.md)."""

from mlfo.models.backbones import BACKBONES, LEVELS, VideoResNet, arch_kwargs, build_backbone
from mlfo.models.heads import GlobalHead, ProjectionHead, make_prototypes, normalize_rows_
from mlfo.models.mlfo_model import MLFOModel, MLFOOutput, ModelConfig
from mlfo.models.motion_excitation import MotionExcitation
from mlfo.models.torchvision_compat import (
    LoadReport,
    backbone_from_torchvision,
    export_torchvision_state_dict,
    infer_arch,
    load_torchvision_state_dict,
)

__all__ = [
    "BACKBONES",
    "LEVELS",
    "GlobalHead",
    "LoadReport",
    "MLFOModel",
    "MLFOOutput",
    "ModelConfig",
    "MotionExcitation",
    "ProjectionHead",
    "VideoResNet",
    "arch_kwargs",
    "backbone_from_torchvision",
    "build_backbone",
    "export_torchvision_state_dict",
    "infer_arch",
    "load_torchvision_state_dict",
    "make_prototypes",
    "normalize_rows_",
]
