"""Settings objects: one frozen dataclass per experiment (or sampler), validated once.

    @dataclass(frozen=True)
    class TrainSettings(Settings):
        runs: int = setting(32, "SGD runs trained at once", minimum=1, maximum=10**5)
        lr: float = setting(0.005, "learning rate", positive=True)
        init: str = setting("4gon", "initialisation", choices=("4gon", "random"))

        def check(self):                       # rules that relate several fields
            ...

Every field is declared with `setting(default, help, ...)`: its bounds are checked in
`__post_init__` (a ValueError naming the field and what was expected), so an instance is
valid or does not exist; presets are instances; `replace(**changes)` validates again. The
CLI flags are generated from the fields (`--n-draws` is field `n_draws`; tms.cli.common), and
a saved record stores `as_record()` whole, which is also what the one reuse rule compares
(tms.core.io.reuse_problem).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any, Sequence

def setting(default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None,
            positive: bool = False, choices: Sequence | None = None, optional: bool = False,
            flag: bool = True) -> Any:
    """A settings field: default, one-line help (the CLI's), bounds (inclusive), `positive`
    (> 0), `choices`, `optional` (None allowed), `flag` (False: not a CLI flag)."""
    meta = dict(help=help, minimum=minimum, maximum=maximum, positive=positive, choices=choices,
                optional=optional, flag=flag)
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings defaults must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata=meta)


def _kind(tp) -> type:
    """The base type of a resolved annotation (typing.get_type_hints): int, float, str, bool or
    tuple, Optional stripped."""
    origin = typing.get_origin(tp)
    if origin in (tuple, typing.Tuple):
        return tuple
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return _kind(args[0]) if origin is not None and args else tp


def _check_value(name: str, value: Any, kind: type, meta: dict) -> Any:
    """The value, checked against its field's type and bounds (ValueError naming the field)."""
    if value is None:
        if meta["optional"]:
            return None
        raise ValueError(f"{name} must be given (got None)")
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        value = float(value)
    elif kind is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {value!r}")
    elif kind is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be a sequence, got {value!r}")
        for i, v in enumerate(value):  # a grid: each number within the field's bounds
            if isinstance(v, numbers.Real) and not isinstance(v, bool):
                _bounded(f"{name}[{i}]", v, meta)
        return tuple(value)
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"{name} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
    return _bounded(name, value, meta) if kind in (int, float) else value


def _bounded(name: str, value, meta: dict):
    lo, hi = meta["minimum"], meta["maximum"]
    if meta["positive"] and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every settings object (see the module docstring)."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if f.metadata.get("help") is None:
                continue
            value = _check_value(f.name, getattr(self, f.name), _kind(hints[f.name]), dict(f.metadata))
            object.__setattr__(self, f.name, value)  # normalised (int 3.0 -> 3 is refused; tuples)
        self.check()

    def check(self) -> None:
        """Rules relating several fields; a subclass raises ValueError naming them."""

    def replace(self, **changes) -> "Settings":
        """A copy with `changes` (validated again); an unknown name is a ValueError."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)} for {type(self).__name__}; "
                             f"known: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def as_record(self) -> dict:
        """Every field, JSON-ready (tuples as lists, nested settings as dicts)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_record(cls, record: dict) -> "Settings":
        """The settings saved by `as_record` (unknown keys a ValueError)."""
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in record.items():
            kind = _kind(hints[k]) if k in hints else None
            kwargs[k] = tuple(v) if kind is tuple and isinstance(v, list) else v
        unknown = sorted(set(kwargs) - set(hints))
        if unknown:
            raise ValueError(f"a saved {cls.__name__} has unknown setting(s) {', '.join(unknown)}")
        return cls(**kwargs)


def _jsonable(v):
    if isinstance(v, Settings):
        return v.as_record()
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def flags(cls) -> list[tuple[str, type, Any, dict]]:
    """(field name, base type, default, metadata) of the fields that are CLI flags."""
    hints = typing.get_type_hints(cls)
    return [(f.name, _kind(hints[f.name]), f.default, dict(f.metadata)) for f in dataclasses.fields(cls)
            if f.metadata.get("help") is not None and f.metadata.get("flag", True)]
