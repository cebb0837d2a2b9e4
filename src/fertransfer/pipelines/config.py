"""Reading, checking and writing the TOML config.

All problems in a config are collected and reported together, one line each, before any
stage starts, so that a typo costs seconds rather than a failed training run.
"""

from __future__ import annotations

import dataclasses
import glob
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

from .options import DataOptions, RunOptions, field_default, range_text
from .registry import STAGE_ORDER, get_stage

DEFAULT_CONFIG = "pipeline.toml"


class ConfigError(ValueError):
    """One or more problems in a config file; str() is one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class Config:
    path: Path
    run: RunOptions
    sections: dict[str, Any]  # stage name -> its options dataclass instance
    data: DataOptions = dataclasses.field(default_factory=DataOptions)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def run_dir(self) -> Path:
        return resolve(self.base_dir, self.run.dir)

    def options(self, stage: str) -> Any:
        return self.sections[stage]


def resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# --- type checking --------------------------------------------------------------------


def _check_type(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_check_type(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if typing.get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "")


def build_options(cls: type, values: dict, where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            problems.append(f"{where}: unknown key '{key}' (known: {', '.join(known)})")
            continue
        if not _check_type(value, hints[key]):
            problems.append(
                f"{where}.{key}: expected {_type_name(hints[key])}, got {type(value).__name__} {value!r}"
            )
            continue
        choices = known[key].metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"{where}.{key}: {value!r} is not one of {', '.join(map(str, choices))}")
            continue
        kwargs[key] = value
    return cls(**kwargs)


def moved_to_data(name: str, stage_options: type, values: dict, problems: list[str]) -> dict:
    """`values` without the keys that moved from a stage section to [data] (one problem each)."""
    own = {f.name for f in fields(stage_options)}
    moved = [key for key in values if key in DATA_KEYS and key not in own]
    problems += [f"[{name}] {key} moved to [data] {key}" for key in moved]
    return {k: v for k, v in values.items() if k not in moved}


DATA_KEYS = {f.name for f in fields(DataOptions)}


def parse_config(data: dict, path: Path) -> tuple[Config, list[str]]:
    problems: list[str] = []
    run = build_options(RunOptions, data.get("run", {}), "[run]", problems)
    shared = build_options(DataOptions, data.get("data", {}), "[data]", problems)
    sections = {}
    for name, values in data.items():
        if name in ("run", "data"):
            continue
        if name not in STAGE_ORDER:
            problems.append(f"[{name}]: unknown section (known: run, data, {', '.join(STAGE_ORDER)})")
            continue
        if not isinstance(values, dict):
            problems.append(f"[{name}]: expected a table of options")
            continue
        stage = get_stage(name)
        values = moved_to_data(name, stage.options, values, problems)
        sections[name] = build_options(stage.options, values, f"[{name}]", problems)
    for name in STAGE_ORDER:
        if name not in sections:
            sections[name] = get_stage(name).options()
    return Config(path, run, sections, shared), problems


def load_config(path: str | Path = DEFAULT_CONFIG) -> Config:
    """Parse and type-check a config; raises ConfigError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"{path}: config file not found (write one with 'pipeline init DIR')"])
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: {error}"]) from None
    config, problems = parse_config(data, path.resolve())
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return config


def default_note(options: Any, key: str, section: str) -> str:
    """" (default; set it in [section])" when an option holds its default value, else ""."""
    known = {f.name: f for f in fields(options)}
    if key in known and getattr(options, key) == field_default(known[key]):
        return f" (default; set it in [{section}])"
    return ""


def missing_inputs(config: Config, stage_names: list[str]) -> list[str]:
    """Config paths of the given stages (and the [data] keys they read) that do not exist or, when
    required, are not set; one message each, saying when the value is the default (one the user
    may never have written)."""
    problems = []
    data_keys = {key for name in stage_names for key in get_stage(name).data_keys}
    sections = [(name, config.sections[name], None) for name in stage_names]
    if data_keys:
        sections.insert(0, ("data", config.data, data_keys))
    for name, options, only in sections:
        for f in fields(options):
            if only is not None and f.name not in only:
                continue
            kind = f.metadata.get("kind")
            value = getattr(options, f.name)
            default = default_note(options, f.name, name)
            if kind in ("path", "paths") and not value and f.metadata.get("required"):
                problems.append(f"[{name}].{f.name}: required but not set{default}")
            elif kind == "path" and value and value not in f.metadata.get("keywords", ()):
                if not resolve(config.base_dir, value).exists():
                    problems.append(f"[{name}].{f.name}: path not found: {value}{default}")
            elif kind == "paths":
                for pattern in value:
                    full = str(resolve(config.base_dir, pattern))
                    if not glob.glob(full, recursive=True):
                        problems.append(f"[{name}].{f.name}: nothing matches {pattern}{default}")
    return problems


def data_problems(data: DataOptions) -> list[str]:
    """Rules of the [data] section found without reading data."""
    if data.labels == "ferplus" and not data.ferplus:
        return ['ferplus: labels = "ferplus" needs the path of FER+\'s fer2013new.csv']
    return []


# --- writing a commented config ---------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def section_toml(name: str, options: Any, header: str = "") -> str:
    lines = [f"[{name}]"] if not header else [header, f"[{name}]"]
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        help_text = f.metadata.get("help", "")
        choices = f.metadata.get("choices")
        if choices:
            help_text += f" One of: {', '.join(map(str, choices))}."
        if range_text(f):
            help_text += f" Range: {range_text(f)}."
        if help_text:
            lines.append(f"# {help_text}")
        if value is None:
            lines.append(f"# {f.name} =")
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def default_config_text(overrides: dict[str, dict] | None = None) -> str:
    """A full config with every option, its default (or override) and a comment on each."""
    overrides = overrides or {}
    parts = [
        "# fertransfer pipeline config. Relative paths are relative to this file.\n"
        "# Run a stage with `pipeline run STAGE`, all of them with `pipeline run all`.\n"
    ]
    parts.append(section_toml("run", RunOptions(**overrides.get("run", {}))))
    parts.append(section_toml("data", DataOptions(**overrides.get("data", {})),
                              header="# --- What several stages share, declared once"))
    for name in STAGE_ORDER:
        stage = get_stage(name)
        values = {
            f.name: overrides.get(name, {}).get(f.name, field_default(f)) for f in fields(stage.options)
        }
        parts.append(section_toml(name, stage.options(**values), header=f"# --- {stage.description}"))
    return "\n".join(parts)
