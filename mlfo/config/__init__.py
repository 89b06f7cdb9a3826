"""Typed configuration: dataclasses, one loader for all of them, presets, command-line flags.

``schema`` (the pretraining dataclasses), ``loader`` (dict -> dataclass, one-line errors
naming the key), ``presets`` (YAML files and shipped presets), ``flags`` (argparse flags
generated from dataclass fields).
"""

from mlfo.config.loader import apply_overrides, build, diff_configs, to_dict
from mlfo.config.presets import (
    config_from_dict,
    config_text,
    load_config,
    preset_names,
    resolve_config_path,
    save_config,
    written_by_mlfo,
)
from mlfo.config.schema import (
    BackboneConfig,
    CheckpointConfig,
    Config,
    DataConfig,
    OptimConfig,
    TrainConfig,
    validate,
)

__all__ = [
    "BackboneConfig", "CheckpointConfig", "Config", "DataConfig", "OptimConfig", "TrainConfig",
    "apply_overrides", "build", "config_from_dict", "config_text", "diff_configs", "load_config", "preset_names",
    "resolve_config_path", "save_config", "to_dict", "validate", "written_by_mlfo",
]
