"""Typed configuration from plain TOML tables.

A config section is a dataclass whose fields say their type; ``option()`` adds a help text
and the allowed range or choices. ``parse_section`` turns a TOML table into that dataclass
and reports every problem in one ``RecipeError``, a line per key naming what is allowed;
``document_section`` describes each key (type, default, range, help) for ``vaezoo options``
and docs/recipes.md:

    @dataclass
    class DataConfig:
        path: Path = option(help="folder of images", must_exist=True)
        size: int = option(28, min=4, help="side of the square the images are resized to")
        color: Literal["gray", "rgb"] = option("gray")

Supported field types: bool, int, float, str, pathlib.Path, Literal[...], list[T],
``T | None`` and nested dataclasses (sub-tables). A dataclass may define ``check(self)``
that raises ``ValueError`` for rules spanning several fields.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

from vaezoo.core.errors import RecipeError

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    gt: float | None = None,
    must_exist: bool = False,
    default_factory: Any = _MISSING,
) -> Any:
    """A dataclass field with a help text and validation rules (inclusive ``min``/``max``, strict ``gt``)."""
    metadata = {"help": help, "min": min, "max": max, "gt": gt, "must_exist": must_exist}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=functools.partial(copy.copy, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def did_you_mean(word: str, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is Path:
        return "a path (string)"
    if origin is Literal:
        choices = typing.get_args(tp)
        return repr(choices[0]) if len(choices) == 1 else "one of " + ", ".join(repr(c) for c in choices)
    if origin in (list, tuple):
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return getattr(tp, "__name__", str(tp))


class _Invalid(Exception):
    """A value that does not fit its field; the message, when given, says why better than the type."""


def _coerce(value: Any, tp: Any, key: str, ctx: "_Context") -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        reasons = []
        for arg in args:
            try:
                return _coerce(value, arg, key, ctx)
            except _Invalid as err:
                reasons += [str(err)] if str(err) else []
        raise _Invalid(reasons[0] if len(reasons) == 1 else "")
    if origin is Literal:
        if value in typing.get_args(tp) and type(value) is not bool:
            return value
        raise _Invalid
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _Invalid
        (item_type, *_) = typing.get_args(tp)
        try:
            return [_coerce(v, item_type, key, ctx) for v in value]
        except _Invalid as err:
            raise _Invalid(f"{err} in the list" if str(err) else "") from None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Invalid
        return parse_section(typing.cast(type, tp), value, source=ctx.source, section=key, base_dir=ctx.base_dir, cli_keys=ctx.cli_keys,
                             check_paths=ctx.check_paths)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # TOML writes nan and inf; no option means either
                raise _Invalid(f"expected a finite number, got {value!r}")
            return float(value)
        raise _Invalid
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise _Invalid
        path = Path(value).expanduser()
        if not path.is_absolute():
            # Paths in a recipe file are relative to that file; paths given with --set to the shell.
            path = (Path.cwd() if key in ctx.cli_keys else ctx.base_dir) / path
        return path.resolve()
    raise TypeError(f"config field {key} has an unsupported type {tp!r}")


@dataclasses.dataclass
class _Context:
    source: str
    base_dir: Path
    cli_keys: frozenset[str]
    check_paths: bool = True


def _check_range(value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    numbers = value if isinstance(value, list) else [value]
    for v in numbers:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if meta.get("min") is not None and v < meta["min"]:
            return f"must be >= {meta['min']}, got {v}"
        if meta.get("max") is not None and v > meta["max"]:
            return f"must be <= {meta['max']}, got {v}"
        if meta.get("gt") is not None and v <= meta["gt"]:
            return f"must be > {meta['gt']}, got {v}"
    return None


def parse_section(
    cls: type,
    table: Any,
    *,
    source: str,
    section: str,
    base_dir: Path | None = None,
    cli_keys: typing.Iterable[str] = (),
    check_paths: bool = True,
) -> Any:
    """Validate ``table`` against the dataclass ``cls``. Every problem is collected (unknown
    keys, missing required keys, wrong types, values out of range, missing paths) and raised
    as one ``RecipeError`` that lists them; the dataclass's own ``check`` runs only when the
    fields themselves are valid.

    ``check_paths=False`` skips the ``must_exist`` checks (opening a finished run elsewhere).
    """
    ctx = _Context(source, base_dir or Path.cwd(), frozenset(cli_keys), check_paths)
    if not isinstance(table, dict):
        raise RecipeError(source, f"[{section}]", f"must be a table, got {type(table).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    problems: list[RecipeError] = []

    def blame(name: str) -> str:   # a value is blamed where it was written: the file or --set
        return "--set" if f"{section}.{name}" in ctx.cli_keys else source

    for key in table:
        if key not in fields:
            problems.append(RecipeError(blame(key), f"[{section}] {key}",
                                        f"unknown key{did_you_mean(key, fields)}; allowed: {', '.join(fields)}"))
    values = {}
    for name, f in fields.items():
        where = blame(name)
        if name not in table:
            if f.default is _MISSING and f.default_factory is _MISSING:
                problems.append(RecipeError(
                    source, f"[{section}] {name}",
                    f"is required ({_describe(hints[name])}): {f.metadata.get('help', '')}".rstrip(": ")))
            continue
        try:
            value = _coerce(table[name], hints[name], f"{section}.{name}", ctx)
        except _Invalid as err:
            problems.append(RecipeError(
                where, f"[{section}] {name}", str(err) or f"expected {_describe(hints[name])}, got {table[name]!r}"))
            continue
        except RecipeError as err:   # a sub-table, with problems of its own
            problems.append(err)
            continue
        problem = _check_range(value, f.metadata)
        if problem:
            problems.append(RecipeError(where, f"[{section}] {name}", problem))
            continue
        if ctx.check_paths and f.metadata.get("must_exist") and isinstance(value, Path) and not value.exists():
            problems.append(RecipeError(where, f"[{section}] {name}", f"path does not exist: {value}"))
            continue
        values[name] = value
    if problems:
        raise RecipeError.combine(problems)
    instance = cls(**values)
    check = getattr(instance, "check", None)
    if callable(check):
        try:
            check()
        except ValueError as err:
            raise RecipeError(source, f"[{section}]", str(err)) from None
    return instance


def to_table(instance: Any) -> dict:
    """A config dataclass as a TOML-ready table: paths as strings, ``None`` left out."""
    out = {}
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if value is None:
            continue
        if dataclasses.is_dataclass(value):
            value = to_table(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[f.name] = value
    return out


@dataclasses.dataclass
class OptionDoc:
    """One key of a config section, described for people (``vaezoo options``, docs/recipes.md)."""

    key: str
    type_text: str            # in words: "an integer", "one of 'elbo', 'iwae'", "a list of numbers" ...
    default: Any              # the default value; ``_MISSING`` when the key is required
    help: str
    limits: str = ""          # in words: ">= 1", "> 0.0 and <= 1.0", "the path must exist"
    table: type | None = None  # the dataclass of a sub-table

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def allowed(self) -> str:
        """The type and the limits together: "an integer >= 1", "a number > 0.0 and <= 1.0"."""
        if not self.limits:
            return self.type_text
        if self.limits.startswith(("each", "the")):
            return f"{self.type_text}, {self.limits}"
        return f"{self.type_text} ({self.limits})" if " or " in self.type_text else f"{self.type_text} {self.limits}"


def _limits(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    bounds = [f"{op} {meta[k]}" for k, op in (("gt", ">"), ("min", ">="), ("max", "<=")) if meta.get(k) is not None]
    text = " and ".join(bounds)
    if text and typing.get_origin(tp) in (list, tuple):
        text = f"each {text}"
    if meta.get("must_exist"):
        text = f"{text}; the path must exist" if text else "the path must exist"
    return text


def document_section(cls: type) -> list[OptionDoc]:
    """Every key of the config dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    docs = []
    for f in dataclasses.fields(cls):
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:
            default = f.default_factory()
        else:
            default = _MISSING
        tp = hints[f.name]
        table = typing.cast(type, tp) if dataclasses.is_dataclass(tp) else None
        docs.append(OptionDoc(f.name, _describe(tp), default, f.metadata.get("help", ""), _limits(tp, f.metadata), table))
    return docs


def describe_section(cls: type) -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) rows, as text."""
    return [(d.key, d.allowed, "(required)" if d.required else repr(d.default), d.help) for d in document_section(cls)]
