"""Declaring options: dataclass fields with a help line, a kind and, where useful, choices or a range.

Every stage's options are a plain dataclass built with `option(...)`. From that one
declaration the config module validates TOML, `pipeline init` writes a commented file,
and the runner fingerprints the section. It lives on the ground floor so that option
dataclasses can be declared without importing the runner (`fertransfer.pipelines`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, field
from typing import Any


def option(default: Any, help: str, *, kind: str = "value", choices: tuple | None = None,
           keywords: tuple[str, ...] = (), required: bool = False, execution: bool = False,
           ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None) -> Any:
    """A config option. kind: "value", "path" (resolved against the config file's folder,
    must exist) or "paths" (a list of paths or glob patterns, each must match something).
    `keywords`: values of a path option that name something else (e.g. "extract": an upstream
    stage's output) and are not checked as paths. `required`: an empty path is an error found
    before any stage runs (rather than when the stage gets to it). `execution`: the option says how
    the work runs, not what it produces (threads, compile), so changing it leaves a finished stage
    done (the runner fingerprints it at its default). `ge`, `gt`, `le`, `lt`: the range of a
    number, or of each number of a list (>=, >, <=, <), checked with the stages' own checks before
    any stage runs; None is always allowed (it means "the default rule")."""
    metadata = {"help": help, "kind": kind, "choices": choices, "keywords": keywords, "required": required,
                "execution": execution,
                "range": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return field(default=default, metadata=metadata)


_BOUNDS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
           "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def range_text(f: dataclasses.Field) -> str:
    """An option's range in words, e.g. ">= 1" or "> 0 and <= 1"; "" when it has none."""
    bounds = f.metadata.get("range") or {}
    return " and ".join(f"{_BOUNDS[k][0]} {bounds[k]}" for k in ("ge", "gt", "le", "lt") if k in bounds)


def range_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why `value` (a number, or each number of a list) is outside the option's range: None when
    inside or when the option has none. A ranged float must be finite (TOML allows nan and inf)."""
    bounds = f.metadata.get("range") or {}
    numbers = value if isinstance(value, list) else [value]
    for number in numbers:
        if not bounds or isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        if not math.isfinite(number):
            return f"{value!r} is not a finite number"
        if not all(_BOUNDS[k][1](number, b) for k, b in bounds.items()):
            each = "each value " if isinstance(value, list) else ""
            return f"{value!r} is out of range: {each}must be {range_text(f)}"
    return None


def out_of_range(options: Any) -> list[str]:
    """`key: why` for each field of an options dataclass whose value is outside its declared range."""
    found = []
    for f in dataclasses.fields(options):
        problem = range_problem(f, getattr(options, f.name))
        if problem:
            found.append(f"{f.name}: {problem}")
    return found


def field_default(f: dataclasses.Field) -> Any:
    """The value an option takes when the config leaves it out."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def declared_default(options: type, name: str) -> Any:
    """The default of option `name` of an options dataclass: for a core's config whose fields mirror
    a stage's options, so that each default is declared once (in the options)."""
    return field_default({f.name: f for f in dataclasses.fields(options)}[name])


def execution_options(options: Any) -> list[str]:
    """Names of the options declared with execution=True."""
    return [f.name for f in dataclasses.fields(options) if f.metadata.get("execution")]


THREADS_HELP = ("CPU threads for torch (0: torch's default, one per core; 1 is often fastest on a machine shared "
                "with other busy processes, docs/benchmarks.md).")


__all__ = ["THREADS_HELP", "declared_default", "execution_options", "field_default", "option", "out_of_range",
           "range_problem", "range_text"]
