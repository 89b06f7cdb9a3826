"""The one way a dict (from YAML, ``key=value`` overrides or command-line flags) becomes a
typed config dataclass, for every config of mlfo (pretraining, views, fine-tuning, probes).

Coercion and type checks are pydantic's (v2, lax mode: ``"1e-3"`` is a float, ``"yes"`` a
bool, ``[1, "2"]`` a list of ints, ``Literal`` choices checked, floats finite), run over
plain stdlib dataclasses, so the configs stay importable without pydantic's types. What
pydantic does not do the way a command line needs is done here first, in one walk over
the annotations: unknown keys are refused with the known ones listed, ``none`` means
None for an optional field, one number stands for a one-item list, and a bool is not an
integer. Every error is one line naming the dotted key: ``optim.lr: ... got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Callable

from pydantic import ConfigDict, TypeAdapter, ValidationError

from mlfo.config.typed_yaml import field_type, parse_override, strip_optional
from mlfo.errors import MLFOError

__all__ = ["apply_overrides", "build", "diff_configs", "strip_optional", "to_dict"]

_PYDANTIC = ConfigDict(extra="forbid", coerce_numbers_to_str=True, allow_inf_nan=False)


def build(cls, data: dict | None, where: str = "", display: Callable[[str], str] | None = None):
    """Dataclass ``cls`` from ``data``; unknown keys and bad values raise one-line MLFOErrors.

    ``where`` prefixes key names (``"optim"`` -> ``optim.lr``); ``display`` renames a
    top-level field in messages (the command line shows ``--clips``, not ``num_clips``).
    """
    name = display or (lambda key: key)
    try:
        prepared = _prepare(cls, data or {}, where, name)
        return _adapter(cls).validate_python(prepared)
    except ValidationError as err:
        raise MLFOError(_one_line(err, where, name)) from None
    except MLFOError as err:  # raised by a dataclass's own __post_init__ check
        raise MLFOError(_rename(str(err), cls, name)) from None
    except (TypeError, ValueError) as err:
        raise MLFOError(f"{where or cls.__name__}: {err}") from None


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


def apply_overrides(data: dict, overrides: list[str], cls=None) -> dict:
    """Set ``a.b.c=value`` pairs into the nested dict ``data``. With the dataclass ``cls``
    the value is parsed by the key's field type (``mlfo.config.typed_yaml``): a text
    field keeps the text as typed (``data.train=0012`` is folder ``0012``); other values
    are YAML (``[1, 2]``, ``1e-3``, ``{low: 4}``)."""
    for item in overrides:
        if "=" not in item:
            raise MLFOError(f"{item}: an override must look like key=value (e.g. optim.lr=0.01)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise MLFOError(f"{item}: empty key")
        value = parse_override(raw, field_type(cls, key) if cls is not None else None, key)
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


# ----------------------------------------------------------------------------- internals


@functools.cache
def _adapter(cls) -> TypeAdapter:
    _configure(cls)
    return TypeAdapter(cls)


def _configure(cls) -> None:
    """Give ``cls`` and every dataclass it nests pydantic's settings (extra keys forbidden)."""
    if "__pydantic_config__" not in cls.__dict__:
        cls.__pydantic_config__ = _PYDANTIC
    for tp in typing.get_type_hints(cls).values():
        for arg in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(arg):
                _configure(arg)


def _prepare(cls, data, where: str, name: Callable[[str], str]) -> dict:
    if not isinstance(data, dict):
        raise MLFOError(f"{where or cls.__name__}: expected a section (mapping), got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    out = {}
    for key, value in data.items():
        shown = name(key) if not where else f"{where}.{key}"
        if key not in known:
            raise MLFOError(f"{shown}: unknown key (known: {', '.join(sorted(name(k) for k in known))})")
        out[key] = _prepare_value(value, hints[key], shown)
    return out


def _prepare_value(value, tp, shown: str):
    inner, optional = strip_optional(tp)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if optional:
            return None
    if dataclasses.is_dataclass(inner):
        return _prepare(inner, value, shown, lambda key: key)
    if inner in (int, float) and isinstance(value, bool):
        raise MLFOError(f"{shown}: expected {'an integer' if inner is int else 'a number'}, got {value!r}")
    if typing.get_origin(inner) in (list, tuple) and isinstance(value, (int, float, str)) \
            and not isinstance(value, bool):
        return [value]  # one value for a one-item list (``optim.lr_decay_epochs=70``)
    return value


def _one_line(err: ValidationError, where: str, name: Callable[[str], str]) -> str:
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ""
    for i, part in enumerate(loc):
        if part.isdigit():
            key += f"[{part}]"
        elif i == 0 and not where:
            key = name(part)
        else:
            key += f".{part}" if key else part
    key = f"{where}.{key}" if where and key else (key or where)
    message = first["msg"]
    message = message[0].lower() + message[1:]
    if first["type"] == "missing":
        return f"{key.rsplit('[', 1)[0]}: too few values" if loc[-1].isdigit() else f"{key}: a value is missing"
    shown = repr(first.get("input"))
    return f"{key}: {message}, got {shown if len(shown) <= 80 else shown[:77] + '...'}"


def _rename(message: str, cls, name: Callable[[str], str]) -> str:
    """A __post_init__ message starting with a field name shows that field's display name."""
    for f in dataclasses.fields(cls):
        for sep in (":", "["):
            if message.startswith(f.name + sep):
                return name(f.name) + message[len(f.name):]
    return message
