"""Typed option schemas: a dataclass says which keys a YAML mapping may hold and of what type.

One checker serves every options file: the training configs (``segmentation/engine/config.py``),
``--set KEY=VALUE`` overrides and the label-space pipeline YAML (``prolab_cli/pipeline.py``).
An unknown key names the nearest valid one; a value of the wrong type names the key and the
type it must have. Each message is one line (:class:`InputError`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Mapping, Union

from .errors import InputError

#: a field whose type is ``Pair[int]`` holds a two-element list (``[H, W]``, ``[LONG, SHORT]``)
T = typing.TypeVar("T")


class Pair(typing.Generic[T]):
    """Marker type of a two-element YAML list of ``T`` (kept a list, as YAML gives it)."""


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type of every field of dataclass ``cls``."""
    return typing.get_type_hints(cls)


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of the schema ``cls`` as ``section.key`` (nested dataclasses flattened)."""
    keys = []
    for name, tp in field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys += dotted_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def unknown_key(where: str, key: str, valid: list[str]) -> InputError:
    """``where: unknown key 'optim.lrr' (did you mean 'optim.lr'?)``; without a near match the
    valid keys are listed."""
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if not near:  # a typo in the last part only: compare within its section
        head, _, last = key.rpartition(".")
        siblings = [v for v in valid if v.rpartition(".")[0] == head]
        near = [f"{head}.{m}" if head else m
                for m in difflib.get_close_matches(last, [s.rpartition(".")[2] for s in siblings], n=1, cutoff=0.5)]
    hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
    return InputError(f"{where}: unknown key {key!r} ({hint})")


def describe_type(tp: Any) -> str:
    """The type ``tp`` in words, for error messages."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        words = [describe_type(a) for a in args if a is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is Pair:
        return f"a pair [A, B] of {describe_type(args[0]).split(' ', 1)[1]}s"
    return {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string",
            dict: "a mapping"}.get(tp, getattr(tp, "__name__", str(tp)))


def _wrong(where: str, key: str, tp: Any, value: Any) -> InputError:
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    return InputError(f"{where}: {key!r} must be {describe_type(tp)}, not {type(value).__name__} {shown}")


def coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """``value`` checked against type ``tp`` (integers and numeric strings such as YAML's ``1e-4``
    become floats where a number is expected); raises :class:`InputError` naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _wrong(where, key, dict, value)
        return check(tp, value, where, prefix=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, key, where)
            except InputError:
                continue
        raise _wrong(where, key, tp, value)
    if origin is Literal:
        if value in args and not isinstance(value, bool):
            return value
        raise _wrong(where, key, tp, value)
    if origin is Pair:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise _wrong(where, key, tp, value)
        return [coerce(v, args[0], key, where) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:
        if isinstance(value, Mapping):
            return dict(value)
    raise _wrong(where, key, tp, value)


def check(cls: type, data: Mapping, where: str, prefix: str = "", defaults: bool = True) -> Any:
    """An instance of dataclass ``cls`` from mapping ``data``: unknown keys, missing required keys
    and values of the wrong type raise :class:`InputError` naming the key (``prefix`` + name).
    ``defaults=False`` also requires the keys that have a default."""
    types_ = field_types(cls)
    for key in data:
        if key not in types_:
            raise unknown_key(where, f"{prefix}{key}", [f"{prefix}{k}" for k in dotted_keys(cls)])
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = coerce(data[f.name], types_[f.name], f"{prefix}{f.name}", where)
        elif not defaults or (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING):
            raise InputError(f"{where}: missing key {prefix + f.name!r} ({describe_type(types_[f.name])})")
    return cls(**values)


def schema_type(cls: type, dotted: str, where: str) -> tuple[Any, list[str]]:
    """The type of key ``dotted`` (``section.key``) in schema ``cls`` and the path that leads to it;
    a key below a ``dict`` field is typed ``Any``. Unknown keys raise with the nearest valid one."""
    parts = dotted.split(".")
    tp: Any = cls
    for i, part in enumerate(parts):
        if tp is dict or tp is Any:
            return Any, parts
        hints = field_types(tp) if dataclasses.is_dataclass(tp) else {}
        if part not in hints:
            raise unknown_key(where, dotted, dotted_keys(cls))
        tp = hints[part]
    if dataclasses.is_dataclass(tp):
        raise InputError(f"{where}: {dotted!r} is a section; set one of its keys ({', '.join(dotted_keys(tp, dotted + '.'))})")
    return tp, parts
