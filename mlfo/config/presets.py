"""Pretraining configs from files: the presets shipped in the package (``mlfo/configs``),
YAML files, ``key=value`` overrides, and the resolved config saved beside every run."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from mlfo.config.loader import apply_overrides, build, to_dict
from mlfo.config.schema import Config, validate
from mlfo.config.typed_yaml import read_yaml
from mlfo.errors import MLFOError


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
        data = read_yaml(path, Config)
    data = apply_overrides(data, list(overrides or []), Config)
    try:
        cfg = build(Config, data)
    except MLFOError as err:
        if name_or_path is None:
            raise
        raise MLFOError(f"{source}: {err}") from None
    return validate(cfg)


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from the dict saved in a checkpoint."""
    return validate(build(Config, data))


# The first line of every config file mlfo writes: what tells its own file from a user's.
RESOLVED_HEADER = "# mlfo: the resolved configuration of this run, rewritten at every start (keep notes elsewhere)"


def config_text(cfg: Config) -> str:
    """The YAML text mlfo writes for ``cfg``, headed by ``RESOLVED_HEADER``."""
    return RESOLVED_HEADER + "\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(config_text(cfg))


def written_by_mlfo(path: str | Path) -> bool:
    """Whether ``path`` is a config file ``save_config`` wrote: its header, or (runs from
    before the header) text that is exactly what mlfo writes for its content, so that
    replacing it loses nothing."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if text.startswith(RESOLVED_HEADER + "\n"):
            return True
        return text == yaml.safe_dump(to_dict(config_from_dict(read_yaml(Path(path), Config))), sort_keys=False)
    except (MLFOError, OSError, UnicodeDecodeError):
        return False
