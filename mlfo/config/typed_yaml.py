"""YAML read by the types of the config it fills: a path stays the text the user typed.

YAML alone turns ``0012`` into 10 (octal), ``1.10`` into 1.1, ``1_000`` into 1000 and
cuts ``exp #2`` at the comment; for a field typed ``str`` (a path, or a ``Literal`` of
names such as ``amp: off``) that is a different folder or a refused choice. So a config
file is composed into YAML nodes first and each value is built by its field's type:
text fields take the scalar's text, other fields YAML's value. ``key=value`` overrides
go the same way (``parse_override``).

The reader refuses, in one line with the line number, what a config never needs and an
attacker or a copy-paste slip brings: a key given twice in one mapping (the second would
silently replace the first), aliases (``*name``: nine lines of aliases expand to 9^9
items), and tags that build Python objects (``!!python/object``: running code).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlfo.errors import MLFOError

_NULL = "tag:yaml.org,2002:null"
_PYTHON = "tag:yaml.org,2002:python/"


class _Refused(Exception):
    """A refusal found while composing; carries the one-line reason."""


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases before anything is expanded."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are refused "
                           "(a few lines of them can expand to hundreds of millions of items); write the values out")
        return super().compose_node(parent, index)


def strip_optional(tp) -> tuple[Any, bool]:
    """(the type without ``None``, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), len(args) < len(typing.get_args(tp))
    return tp, False


def is_text(tp) -> bool:
    """Whether a (non-optional) field type takes the user's text as is: str, or a Literal of names."""
    if tp is str:
        return True
    return typing.get_origin(tp) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(tp))


def field_type(cls, dotted: str):
    """The annotated type of ``a.b.c`` in dataclass ``cls`` (None when a part is unknown)."""
    tp = cls
    for part in dotted.split("."):
        inner, _ = strip_optional(tp)
        if not dataclasses.is_dataclass(inner):
            return None
        tp = typing.get_type_hints(inner).get(part)
        if tp is None:
            return None
    return tp


def read_yaml(path: Path, cls) -> dict:
    """The mapping of YAML file ``path``, its values typed by dataclass ``cls``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise MLFOError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise MLFOError(f"{path}: cannot read ({err.strerror})") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        _check(loader, node, "")
        if not isinstance(node, MappingNode):
            raise MLFOError(f"{path}: expected a mapping of sections at the top level")
        return _build(loader, node, cls)
    except _Refused as err:
        raise MLFOError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise MLFOError(f"{path}: not valid YAML{where}") from None
    finally:
        loader.dispose()


def parse_override(raw: str, tp, key: str):
    """The value of ``key=raw``: the text itself for a text field, else YAML's value of it
    (the text again when it is not YAML: the type check then names the key)."""
    if tp is not None and is_text(strip_optional(tp)[0]):
        return raw
    if not raw.strip():
        return ""
    loader = _Loader(raw)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(loader, node, "")
        return loader.construct_object(node, deep=True)
    except _Refused as err:
        raise MLFOError(f"{key}: {err}") from None
    except yaml.YAMLError:
        return raw
    finally:
        loader.dispose()


def _check(loader: _Loader, node: Node, where: str) -> None:
    """Refuse Python tags, unknown tags and keys given twice, anywhere in the tree."""
    line = node.start_mark.line + 1
    if node.tag.startswith(_PYTHON):
        tag = "!!" + node.tag[len("tag:yaml.org,2002:"):]
        raise _Refused(f"line {line}: refused the tag {tag} (it would create Python objects, which can run code)")
    if node.tag == "tag:yaml.org,2002:merge":
        raise _Refused(f"line {line}: merge keys (<<) are refused; write the keys out")
    if node.tag not in loader.yaml_constructors:
        raise _Refused(f"line {line}: unknown YAML tag {node.tag}")
    if isinstance(node, SequenceNode):
        for i, child in enumerate(node.value):
            _check(loader, child, f"{where}[{i}]")
    elif isinstance(node, MappingNode):
        seen: dict = {}
        for key_node, value_node in node.value:
            _check(loader, key_node, where)
            if not isinstance(key_node, ScalarNode):
                raise _Refused(f"line {key_node.start_mark.line + 1}: a key must be a name, not a list or mapping")
            key = loader.construct_object(key_node, deep=True)
            dotted = f"{where}.{key}" if where else str(key)
            if key in seen:
                raise _Refused(f"{dotted}: given twice (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                               "the second would silently replace the first")
            seen[key] = key_node.start_mark.line + 1
            _check(loader, value_node, dotted)


def _build(loader: _Loader, node: Node, tp):
    """The Python value of ``node`` for a field of type ``tp`` (None: untyped, YAML's value)."""
    inner = strip_optional(tp)[0] if tp is not None else None
    if isinstance(node, MappingNode) and inner is not None and dataclasses.is_dataclass(inner):
        hints, out = typing.get_type_hints(inner), {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = _build(loader, value_node, hints.get(key))  # unknown keys: refused by build()
        return out
    if isinstance(node, ScalarNode) and inner is not None and is_text(inner):
        if node.tag == _NULL:  # empty, ~ or null: None (refused by the type check where not optional)
            return None
        return node.value  # the scalar's text (quotes removed), never YAML's number
    return loader.construct_object(node, deep=True)
