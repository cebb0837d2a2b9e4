"""What a stage is, as the runner sees it.

A stage module (``fertransfer.<stage>.stage``) defines an options dataclass and exposes
``STAGE = Stage(...)``. The runner owns everything around the stage's work: where it
writes, when it is skipped, and the manifest. The stage only does its work in ``out_dir``
and returns a summary (counts and anything else worth recording).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fertransfer.errors import StageError  # re-exported: it lives on the ground floor

from .options import DataOptions, RunOptions

__all__ = ["Stage", "StageContext", "StageError"]


@dataclass
class StageContext:
    """Everything a stage's run function may use."""

    name: str
    options: Any
    run: RunOptions
    run_dir: Path
    out_dir: Path  # a private work folder; it becomes <run_dir>/<name> on success
    upstream_dirs: dict[str, Path]
    config_dir: Path
    log: logging.Logger
    resuming: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    data: DataOptions = field(default_factory=DataOptions)  # the [data] section (read only `Stage.data_keys`)

    def upstream(self, name: str) -> Path:
        """Finished output folder of an upstream stage."""
        try:
            return self.upstream_dirs[name]
        except KeyError:
            raise StageError(f"stage '{self.name}' needs the output of '{name}', which it was not given") from None

    def path(self, value: str) -> Path:
        """A path from config, relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.config_dir / p)


@dataclass(frozen=True)
class Stage:
    name: str
    options: type
    run: Callable[[StageContext], dict]
    description: str
    # Upstream stages whose outputs this stage reads, given its options.
    upstream: Callable[[Any], list[str]] = lambda options: []
    # Files, folders or glob patterns from config that the stage reads (fingerprinted).
    inputs: Callable[[Any], list[str]] = lambda options: []
    # The [data] keys the stage reads (fingerprinted with its section, their paths as inputs).
    data_keys: tuple[str, ...] = ()
    # Problems with the options found without reading data, one line each; given the options,
    # the config file's folder (for relative paths) and the [data] section. Run for every stage
    # before any starts.
    check: Callable[[Any, Path, DataOptions], list[str]] = lambda options, config_dir, data: []
    # Whether an interrupted run's work folder is reused (e.g. training checkpoints).
    resumable: bool = False
    # How far an interrupted run's work folder got, for `status` (e.g. "step 400"); None: unknown.
    resume_point: Callable[[Path], str | None] = lambda work: None
    # Outputs that commands may rewrite after the run (e.g. `pipeline gallery`), so they are left
    # out of the damage check; fnmatch patterns relative to the stage folder.
    rewritable: tuple[str, ...] = ()
    # Option values for the built-in demo (paths relative to the demo folder, whose data
    # lives in data/lecture.mp4 and data/smileys/), small enough for minutes on 2 CPU cores.
    demo: dict = field(default_factory=dict)
