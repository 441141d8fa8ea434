"""Typed config dataclasses, validated at the edge: YAML files and ``--set key=value`` overrides.

Every field carries its help text in ``metadata["help"]``. A bad key is an error naming it and the
close matches; a bad value names the field, the value and the allowed values or type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A config problem, naming the source (file or --set) and the field."""


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with a help text (mutable defaults go through ``default_factory``)."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def from_mapping(cls: type[C], values: dict[str, Any], source: str) -> C:
    """Build ``cls`` from a mapping, checking every key and value."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)  # YAML keys may be numbers or null
            hint = f"; did you mean {close}?" if close else f"; known keys: {sorted(fields)}"
            raise ConfigError(f"{source}: unknown key {key!r}{hint}")
        kwargs[key] = _coerce(value, hints[key], f"{source}: {key}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {err}") from err


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
    """``cls`` from an optional YAML file, then ``key=value`` overrides (values parsed as YAML)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        loaded = _read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(loaded).__name__}")
        values.update(loaded)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: not valid YAML ({err})") from err
    source = str(path) if path is not None else "config"
    return from_mapping(cls, values, source + (" + --set" if overrides else ""))


TRAINERS = ("lm", "gym", "dual_play", "complementary")


def trainer_kind(path: str | Path | None = None, overrides: list[str] | None = None) -> str:
    """The ``trainer`` key of a config file (or a ``--set trainer=...`` override): ``"lm"`` by default."""
    kind: Any = "lm"
    if path is not None and Path(path).is_file():
        try:
            loaded = _read_yaml(Path(path))
        except ConfigError:
            loaded = None  # load_config reports the YAML error with its position
        if isinstance(loaded, dict):
            kind = loaded.get("trainer", kind)
    for item in overrides or []:
        key, _, raw = item.partition("=")
        if key.strip() == "trainer":
            try:
                kind = yaml.safe_load(raw)
            except yaml.YAMLError as err:
                raise ConfigError(f"--set {item!r}: not valid YAML ({err})") from err
    if kind not in TRAINERS:
        raise ConfigError(f"{path or 'config'}: trainer={kind!r} is not one of {list(TRAINERS)}")
    return kind


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid UTF-8 text ({err})") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err


def to_mapping(config: Any) -> dict[str, Any]:
    """A plain dict of the config (for saving next to a run)."""
    return dataclasses.asdict(config)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}={value!r} matches none of {args}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:  # a string: YAML 1.1 reads "2e-5" (no dot) as one
            number = float(value)
        except (ValueError, OverflowError):
            number = None
        if number is not None and not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if number is not None:
            return number
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def describe(cls: type) -> str:
    """One line per field: name, default and help (for ``--help`` and docs)."""
    lines = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"  {f.name} (default {default!r}): {f.metadata.get('help', '')}")
    return "\n".join(lines)
