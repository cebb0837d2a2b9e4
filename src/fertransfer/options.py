"""Declaring options: dataclass fields with a help line, a kind and, where useful, choices.

Every stage's options are a plain dataclass built with `option(...)`. From that one
declaration the config module validates TOML, `pipeline init` writes a commented file,
and the runner fingerprints the section. It lives on the ground floor so that option
dataclasses can be declared without importing the runner (`fertransfer.pipelines`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field
from typing import Any


def option(default: Any, help: str, *, kind: str = "value", choices: tuple | None = None,
           keywords: tuple[str, ...] = (), required: bool = False, execution: bool = False) -> Any:
    """A config option. kind: "value", "path" (resolved against the config file's folder,
    must exist) or "paths" (a list of paths or glob patterns, each must match something).
    `keywords`: values of a path option that name something else (e.g. "extract": an upstream
    stage's output) and are not checked as paths. `required`: an empty path is an error found
    before any stage runs (rather than when the stage gets to it). `execution`: the option says how
    the work runs, not what it produces (threads, compile), so changing it leaves a finished stage
    done (the runner fingerprints it at its default)."""
    metadata = {"help": help, "kind": kind, "choices": choices, "keywords": keywords, "required": required,
                "execution": execution}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=metadata)
    return field(default=default, metadata=metadata)


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


__all__ = ["THREADS_HELP", "declared_default", "execution_options", "field_default", "option"]
