"""Typed pretraining configuration: YAML presets plus ``key=value`` overrides.

One dataclass per concern. The model and objective sections are the dataclasses their
own modules define (``mlfo.models.ModelConfig``, ``mlfo.losses.objective.ObjectiveConfig``),
so a switch added there is configurable here with no extra code. Every value is
type-checked against the dataclass annotations; an unknown key or a value of the wrong
type is refused with an ``MLFOError`` naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from mlfo.errors import MLFOError
from mlfo.losses.objective import ObjectiveConfig
from mlfo.models import ModelConfig


@dataclass
class BackboneConfig:
    """Arguments of ``mlfo.models.build_backbone``."""

    name: Literal["r3d_18", "r2plus1d_18", "r3d_small"] = "r3d_18"
    stem: Literal["reference", "torchvision"] = "reference"
    widths: list[int] | None = None  # None: the architecture's own widths


@dataclass
class DataConfig:
    """Where the training videos are and how clips are cut from them."""

    train: str = ""  # a CSV, a folder of videos, or a UCF101/HMDB51 root
    fmt: Literal["auto", "folder", "csv", "ucf101", "hmdb51"] = "auto"
    split: int = 1
    split_dir: str | None = None
    backend: Literal["auto", "pyav", "frames", "torchcodec"] = "auto"
    # Write the built-in demo dataset into the folder of ``train`` when that CSV is missing,
    # so that the demo preset runs on a fresh clone.
    generate_demo: bool = False
    clip_len: int = 16  # T frames per clip
    r_max: int = 3  # largest frame-rate step of the three-clip sampler
    crop_size: int = 112
    crop_scale: tuple[float, float] = (0.5, 1.0)
    color_augment: bool = True  # grayscale + colour jitter on the training device
    per_frame_color: bool = True  # reference: colour/grayscale drawn per frame
    # Colour augmentation strengths (defaults: the reference). Milder values suit data
    # whose colours carry no class information and would otherwise be learned first.
    color_p_gray: float = 0.5  # probability of "grayscale" (one random channel copied)
    color_strength: float = 0.5  # brightness / contrast / saturation factors in 1 +- this
    color_hue: float = 0.25  # hue shift in +- this (fraction of a turn)
    batch_size: int = 64  # videos per process (x3 clips)
    num_workers: int = 4
    persistent_workers: bool = True
    pin_memory: bool = True  # only used on GPU
    prefetch_factor: int = 2


@dataclass
class OptimConfig:
    """Adam with step decay, as the reference; warmup and cosine are extra options."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9  # sgd only
    schedule: Literal["step", "cosine", "constant"] = "step"
    lr_decay_epochs: list[int] = field(default_factory=lambda: [70])
    lr_decay_factor: float = 0.1
    warmup_epochs: float = 0.0


@dataclass
class CheckpointConfig:
    """``last.pt`` every epoch (and every ``every_steps`` steps if > 0), ``epoch_NNNN.pt``
    every ``every_epochs`` epochs, of which the newest ``keep`` stay (0 keeps all)."""

    every_steps: int = 0
    every_epochs: int = 10
    keep: int = 3


@dataclass
class TrainConfig:
    """The run itself: length, device, speed switches, logging."""

    epochs: int = 100
    seed: int = 0
    out_dir: str = "runs/pretrain"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "bf16", "fp16"] = "off"  # GPU only
    channels_last: bool = False  # channels_last_3d memory format (GPU speed-up)
    compile: bool = False  # torch.compile the model
    sync_bn: bool = False  # SyncBatchNorm across processes (GPU only)
    # BatchNorm layers use their running statistics and do not update them: makes a
    # multi-process run equal to a single-process one; also for tiny per-GPU batches.
    freeze_bn: bool = False
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True


@dataclass
class Config:
    """Everything ``mlfo pretrain`` needs; saved resolved beside every run and checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# ---------------------------------------------------------------------------------------
# Building dataclasses from plain dicts, with type coercion
# ---------------------------------------------------------------------------------------

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except MLFOError as err:
                errors.append(str(err))
        raise MLFOError(errors[0] if errors else f"{key}: cannot be None")
    if origin is Literal:
        if isinstance(value, str):
            for choice in args:
                if str(choice) == value:
                    return choice
        if value in args:
            return value
        raise MLFOError(f"{key}: {value!r} is not one of {', '.join(map(str, args))}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise MLFOError(f"{key}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip() else []
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise MLFOError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise MLFOError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise MLFOError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise MLFOError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise MLFOError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise MLFOError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise MLFOError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise MLFOError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise MLFOError(f"{key}: expected a string, got {value!r}")
    return value  # an annotation we do not check (kept as given)


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict, prefix: str = ""):
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise MLFOError."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in (data or {}).items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise MLFOError(f"{dotted}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], dotted)
    try:
        builder = getattr(cls, "from_dict", None)
        if builder is not None and "values" in inspect.signature(builder).parameters:
            # The section's own validation (e.g. ModelConfig.fine_steps), given coerced values.
            if "where" in inspect.signature(builder).parameters:
                return builder(kwargs, where=prefix or cls.__name__)
            return builder(kwargs)
        return cls(**kwargs)
    except MLFOError:
        raise
    except (TypeError, ValueError) as err:  # a __post_init__ check of a foreign dataclass
        raise MLFOError(f"{prefix or cls.__name__}: {err}") from None


def to_dict(cfg) -> dict:
    """Plain-Python (YAML-safe) dict of a dataclass tree; tuples become lists."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` pairs into the nested dict ``data`` (validated later)."""
    for item in overrides:
        if "=" not in item:
            raise MLFOError(f"{item}: an override must look like key=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise MLFOError(f"{item}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise MLFOError(f"{key}: {part} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def validate(cfg: Config) -> Config:
    """Checks that need more than a type: ranges and combinations."""
    positive = {
        "data.clip_len": cfg.data.clip_len,
        "data.crop_size": cfg.data.crop_size,
        "data.batch_size": cfg.data.batch_size,
        "data.r_max": cfg.data.r_max,
        "train.epochs": cfg.train.epochs,
        "data.prefetch_factor": cfg.data.prefetch_factor,
    }
    for key, value in positive.items():
        if value < 1:
            raise MLFOError(f"{key}: must be at least 1, got {value}")
    non_negative = {
        "data.num_workers": cfg.data.num_workers,
        "train.max_steps": cfg.train.max_steps,
        "checkpoint.every_steps": cfg.checkpoint.every_steps,
        "checkpoint.every_epochs": cfg.checkpoint.every_epochs,
        "checkpoint.keep": cfg.checkpoint.keep,
        "optim.weight_decay": cfg.optim.weight_decay,
        "optim.warmup_epochs": cfg.optim.warmup_epochs,
        "data.color_strength": cfg.data.color_strength,
        "data.color_hue": cfg.data.color_hue,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise MLFOError(f"{key}: must not be negative, got {value}")
    if not cfg.optim.lr > 0:
        raise MLFOError(f"optim.lr: must be positive, got {cfg.optim.lr}")
    if not 0 <= cfg.data.color_p_gray <= 1:
        raise MLFOError(f"data.color_p_gray: must be in [0, 1], got {cfg.data.color_p_gray}")
    low, high = cfg.data.crop_scale
    if not 0 < low <= high <= 1:
        raise MLFOError(f"data.crop_scale: need 0 < min <= max <= 1, got {cfg.data.crop_scale}")
    if cfg.train.sync_bn and cfg.train.freeze_bn:
        raise MLFOError("train.sync_bn: cannot be combined with train.freeze_bn")
    return cfg


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    """Names of the presets shipped inside the package (``mlfo/configs/*.yaml``)."""
    folder = resources.files("mlfo") / "configs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML path, or the bare name of a shipped preset (``demo_cpu``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix not in (".yaml", ".yml") and len(path.parts) == 1:
        packaged = resources.files("mlfo") / "configs" / f"{path.name}.yaml"
        if packaged.is_file():
            return Path(str(packaged))
    if path.exists():
        raise MLFOError(f"{path}: not a file")
    raise MLFOError(
        f"{path}: no such config file or preset (presets: {', '.join(preset_names())})"
    )


def load_config(name_or_path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML file or preset name, apply ``key=value`` overrides, type-check."""
    data: dict = {}
    source = "defaults"
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise MLFOError(f"{path}: not valid YAML{where}") from None
        if not isinstance(data, dict):
            raise MLFOError(f"{path}: expected a mapping of sections at the top level")
    data = apply_overrides(data, list(overrides or []))
    try:
        cfg = from_dict(Config, data)
    except MLFOError as err:
        if name_or_path is None:
            raise
        raise MLFOError(f"{source}: {err}") from None
    return validate(cfg)


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from the dict saved in a checkpoint."""
    return validate(from_dict(Config, data))


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def diff_configs(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}.{key}" if prefix else key
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += diff_configs(a, b, dotted)
        elif a != b:
            keys.append(dotted)
    return keys
