"""Checking a config dataclass's values against its field types, so that a bad TOML value
fails where it is read, with the field's name, not later inside torch."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from typing import Any, Literal

_UNIONS = (typing.Union, types.UnionType)  # Optional[X] and X | None


def _fits(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return value in typing.get_args(kind)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin in _UNIONS:
        return any(_fits(value, option) for option in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:  # nan and inf are floats no option means: a rate of nan trains NaN weights
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _describe(kind: Any) -> str:
    """'crf' or 'softmax' or None, for Literal["crf", "softmax"] | None."""
    if typing.get_origin(kind) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(kind))
    if typing.get_origin(kind) in _UNIONS:
        return " or ".join(_describe(option) for option in typing.get_args(kind))
    if kind is type(None):
        return "None"
    if kind is float:
        return "a finite number"
    return getattr(kind, "__name__", str(kind))


def check_fields(config: Any, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
    """Raise ValueError naming the first field whose value has the wrong type or range.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     size: int = 1
    >>> check_fields(C(size="3"))
    Traceback (most recent call last):
    ValueError: size = '3' should be int
    >>> @dataclass
    ... class R:
    ...     rate: float = 0.1
    >>> check_fields(R(rate=float("inf")))
    Traceback (most recent call last):
    ValueError: rate = inf should be a finite number
    """
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if not _fits(value, hints[f.name]):
            raise ValueError(f"{f.name} = {value!r} should be {_describe(hints[f.name])}")
    for name in positive:  # None means "not set" and passes
        if getattr(config, name) is not None and getattr(config, name) <= 0:
            raise ValueError(f"{name} = {getattr(config, name)!r} should be greater than 0")
    for name in non_negative:
        if getattr(config, name) is not None and getattr(config, name) < 0:
            raise ValueError(f"{name} = {getattr(config, name)!r} should be 0 or more")
