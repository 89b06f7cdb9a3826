"""Command-line flags generated from config dataclass fields, read back through the one loader.

A field becomes ``--field-name`` unless its metadata names another flag; its help text is
the metadata's ``help``. Bools are switches (``invert`` makes the flag set False), Literal
fields get ``choices``, list and tuple fields take comma-separated values. Defaults come
from the dataclass (or the ``defaults`` a command passes), so the flags cannot drift from
the library, and ``mlfo eval ... --help`` shows what ``mlfo.eval`` takes. Values are
parsed by ``mlfo.config.build``, so a bad value is one line naming the flag.

    add_flags(parser, FinetuneConfig, defaults={"epochs": 30})
    cfg = from_flags(FinetuneConfig, args)
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from mlfo.config.loader import build, strip_optional

_SEEN = "_mlfo_flags"  # parser attribute: flag -> dest, so two dataclasses can share a flag


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def add_flags(parser, cls, *, defaults: dict | None = None, exclude=(), title: str | None = None) -> None:
    """Add one flag per init field of ``cls`` to ``parser`` (in a group called ``title``).

    A flag another dataclass already added (``--clip-len`` of the training and the test
    views of fine-tuning) is added once; both dataclasses read it.
    """
    defaults = dict(defaults or {})
    root = parser
    seen = getattr(root, _SEEN, None)
    if seen is None:
        seen = {}
        setattr(root, _SEEN, seen)
    group = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in exclude:
            continue
        flag = flag_of(f)
        if flag in seen:
            continue
        seen[flag] = f.name
        default = defaults.get(f.name, _default(f))
        help_text = f.metadata.get("help", "")
        tp, _ = strip_optional(hints[f.name])
        if tp is bool:
            invert = f.metadata.get("invert", False)
            group.add_argument(flag, dest=f.name, action="store_false" if invert else "store_true",
                               default=default, help=help_text)
            continue
        kwargs = {}
        if typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = [str(c) for c in typing.get_args(tp)]
        shown = _show(default)
        group.add_argument(flag, dest=f.name, default=default, metavar=f.metadata.get("metavar"),
                           help=f"{help_text} (default {shown})" if help_text else f"default {shown}", **kwargs)


def from_flags(cls, args: argparse.Namespace, **fixed):
    """Build ``cls`` from the parsed flags (and ``fixed`` values no flag sets)."""
    hints = typing.get_type_hints(cls)
    flags = {f.name: flag_of(f) for f in dataclasses.fields(cls) if f.init}
    values = {}
    for name in flags:
        if name in fixed or not hasattr(args, name):
            continue
        value = getattr(args, name)
        tp, _ = strip_optional(hints[name])
        if isinstance(value, str) and typing.get_origin(tp) in (list, tuple):
            value = [v.strip() for v in value.split(",") if v.strip()]
        values[name] = value
    values.update(fixed)
    return build(cls, values, display=lambda name: flags.get(name, name))


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
