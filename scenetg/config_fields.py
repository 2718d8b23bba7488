"""Reading config files and coercing their values to the declared types, naming the key on failure.

`read_config_mapping` is the one reader of a YAML config (build, train, eval-suite): a one-line
error for a missing, non-UTF-8 or invalid file, then dotted-key overrides from the command line.

YAML and command lines give strings where numbers were meant and ``"false"`` where a boolean was
meant (``bool("false")`` is True). Each function converts one value or raises `ConfigError` with
one line that names the key, e.g. ``captions.frames_per_scene: expected an integer >= 1, got 2.5``.
NaN and infinities are never accepted. `coerce_fields` applies them to every field of a dataclass
from its type hints plus bounds in the field's metadata (TRL's ``__post_init__`` habit)::

    @dataclass
    class FilterConfig:
        min_margin: float = field(default=0.02, metadata={"min": 0.0})

        def __post_init__(self):
            coerce_fields(self, "filter")
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from scenetg.errors import ConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    return (" " + " and ".join(parts)) if parts else ""


def coerce_bool(key: str, value: Any) -> bool:
    """True/False, or the strings true/false/yes/no/on/off/1/0 (any case), or the ints 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ConfigError(f"{key}: expected true or false, got {_show(value)}")


def _number(value: Any) -> float | None:
    """A real number from an int, float or numeric string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.strip()) if not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            return None
    return None


def coerce_int(key: str, value: Any, min: int | None = None, max: int | None = None) -> int:
    """An integer (``8``, ``"8"``, ``8.0``); ``2.5``, ``"eight"`` and booleans are refused."""
    expected = f"expected an integer{_range_text(min, max)}"
    n = _number(value)
    if n is None or (isinstance(n, float) and not (math.isfinite(n) and n.is_integer())):
        raise ConfigError(f"{key}: {expected}, got {_show(value)}")
    n = int(n)
    if (min is not None and n < min) or (max is not None and n > max):
        raise ConfigError(f"{key}: {expected}, got {n}")
    return n


def coerce_float(
    key: str, value: Any, min: float | None = None, max: float | None = None, min_open: bool = False
) -> float:
    """A finite float in [min, max] (``(min, max]`` with ``min_open``); numeric strings accepted."""
    expected = f"expected a number{_range_text(min, max, min_open)}"
    n = _number(value)
    if n is None or not math.isfinite(n):
        raise ConfigError(f"{key}: {expected}, got {_show(value)}")
    n = float(n)
    too_low = min is not None and (n <= min if min_open else n < min)
    if too_low or (max is not None and n > max):
        raise ConfigError(f"{key}: {expected}, got {n:g}")
    return n


def coerce_str(key: str, value: Any, choices: typing.Sequence[str] | None = None) -> str:
    """A string (numbers are written out: a model named ``123``); one of `choices` when given."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{key}: expected a string, got {_show(value)}")
    text = str(value)
    if choices is not None and text not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {text!r}")
    return text


def coerce_batch_size(key: str, value: Any) -> int | str:
    """``auto`` (any case) or an integer >= 1: a batch size (`scenetg.models.batch_size`)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    n = _number(value)
    if n is None or (isinstance(n, float) and not (math.isfinite(n) and n.is_integer())) or n < 1:
        raise ConfigError(f"{key}: expected 'auto' or an integer >= 1, got {_show(value)}")
    return int(n)


def coerce_vllm_memory(key: str, value: Any) -> float | str:
    """``auto`` (any case) or a share in (0, 1]: the memory a vLLM engine takes (of the GPU; of
    host RAM on vLLM's CPU build; `scenetg.models.vllm_runner.vllm_memory_args`)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    n = _number(value)
    if n is None or not math.isfinite(n) or not 0 < n <= 1:
        raise ConfigError(f"{key}: expected 'auto' or a share > 0 and <= 1, got {_show(value)}")
    return float(n)


def coerce_value(key: str, value: Any, type_: Any, meta: typing.Mapping[str, Any] | None = None) -> Any:
    """`value` as `type_` (bool, int, float, str, ``X | None``, ``list[X]``, ``dict[str, X]``),
    with the bounds in `meta` (``min``, ``max``, ``min_open``, ``choices``) on scalars;
    ``meta={"batch_size": True}`` takes ``auto`` or an integer >= 1, ``{"vllm_memory": True}``
    ``auto`` or a share in (0, 1]."""
    meta = meta or {}
    if meta.get("batch_size"):
        return coerce_batch_size(key, value)
    if meta.get("vllm_memory"):
        return coerce_vllm_memory(key, value)
    origin, args = typing.get_origin(type_), typing.get_args(type_)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None:
            return None
        rest = [a for a in args if a is not type(None)]
        return coerce_value(key, value, rest[0], meta)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_show(value)}")
        return [coerce_value(f"{key}[{i}]", v, args[0], meta) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_show(value)}")
        return {coerce_str(key, k): coerce_value(f"{key}.{k}", v, args[1], meta) for k, v in value.items()}
    if type_ is bool:
        return coerce_bool(key, value)
    if type_ is int:
        return coerce_int(key, value, meta.get("min"), meta.get("max"))
    if type_ is float:
        return coerce_float(key, value, meta.get("min"), meta.get("max"), meta.get("min_open", False))
    if type_ is str:
        return coerce_str(key, value, meta.get("choices"))
    return value


def coerce_fields(obj: Any, section: str = "") -> None:
    """Coerce every field of dataclass `obj` in place (nested dataclasses and fields with
    ``metadata={"custom": True}`` are left to their owner); keys are named ``section.field``."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("custom") or dataclasses.is_dataclass(value):
            continue
        key = f"{section}.{f.name}" if section else f.name
        setattr(obj, f.name, coerce_value(key, value, hints[f.name], f.metadata))


def dataclass_from_mapping(
    cls: type,
    data: Any,
    where: str = "",
    scalar: typing.Callable[[str, Any, Any], Any] | None = None,
) -> Any:
    """Dataclass `cls` from a config mapping: the one reader behind build, train and eval-suite
    configs. Sections that are dataclasses recurse; an unknown key is a one-line error naming it
    and the known ones; `scalar(key, value, hint)` converts the other values (default: as given,
    for classes whose ``__post_init__`` coerces)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(data) - set(names))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(names)})")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where or 'config'}: missing key(s) {', '.join(missing)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = dataclass_from_mapping(hints[name], value, key, scalar)
        else:
            kwargs[name] = scalar(key, value, hints[name]) if scalar else value
    return cls(**kwargs)


def read_config_mapping(
    path: str | Path | None,
    overrides: typing.Mapping[str, Any] | None = None,
    base: typing.Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The mapping in the YAML file `path` (None: a copy of `base`, else empty) with dotted-key
    `overrides` applied (``{"captions.model": "/m"}`` sets ``captions: {model: /m}``).

    ConfigError (one line, naming the file) for a missing file, a file that is not UTF-8 or not
    YAML, or a top level that is not a mapping.
    """
    data: dict[str, Any] = copy.deepcopy(dict(base)) if base else {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        data = loaded or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data
