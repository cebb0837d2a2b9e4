"""What a stage is, as the runner sees it.

A stage module (``fertransfer.<stage>.stage``) defines an options dataclass and exposes
``STAGE = Stage(...)``. The runner owns everything around the stage's work: where it
writes, when it is skipped, and the manifest. The stage only does its work in ``out_dir``
and returns a summary (counts and anything else worth recording).

Stages pass artifacts, not folders (Kedro's catalog is the model): a stage declares what it
produces (`produces`: name -> path inside its folder) and what it consumes (`consumes`:
``"<producer>.<name>"``, or a config path that stands in for it); the runner resolves each
consumed artifact to a path and hands it over in ``ctx.artifacts``. A stage never opens
another stage's folder or manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fertransfer.errors import StageError  # re-exported: it lives on the ground floor

from .options import DataOptions, RunOptions

__all__ = ["Consumes", "Stage", "StageContext", "StageError"]


@dataclass(frozen=True)
class Consumes:
    """An artifact a stage reads, named ``"<producer stage>.<artifact>"`` (e.g. ``"extract.faces"``).

    `override`: a config path that stands in for the producer's output (then the producer is not
    needed). `optional`: used when the producer has finished, else None; not an upstream stage
    (augment's gallery shows the person's faces when there are some)."""

    artifact: str
    override: str = ""
    optional: bool = False

    @property
    def producer(self) -> str:
        return self.artifact.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.artifact.split(".", 1)[1]


@dataclass
class StageContext:
    """Everything a stage's run function may use."""

    name: str
    options: Any
    run: RunOptions
    run_dir: Path  # recorded in outputs that name their run; never a way into another stage's folder
    out_dir: Path  # a private work folder; it becomes <run_dir>/<name> on success
    artifacts: dict[str, Path | None]  # "<producer>.<name>" -> its path (None: an optional one not there)
    config_dir: Path
    log: logging.Logger
    resuming: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    data: DataOptions = field(default_factory=DataOptions)  # the [data] section (read only `Stage.data_keys`)

    def artifact(self, name: str) -> Path | None:
        """The path of a consumed artifact (None: an optional one whose producer has not run)."""
        try:
            return self.artifacts[name]
        except KeyError:
            raise StageError(f"stage '{self.name}' reads '{name}', which it does not declare in `consumes`") from None

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
    # What the stage writes that other stages read: artifact name -> path inside its folder.
    produces: dict[str, str] = field(default_factory=dict)
    # What it reads of other stages' outputs, given its options and the [data] section.
    consumes: Callable[[Any, DataOptions], list[Consumes]] = lambda options, data: []
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
    # Files a finished run must have written (relative to the stage folder): without them the
    # runner refuses to publish the stage as done (e.g. cyclegan's checkpoints/latest.pt).
    outputs: tuple[str, ...] = ()
    # Options that change only the stage's final evaluation, not what it trains (cyclegan: the
    # judge, the person score): a finished run whose config changed in these alone is not run
    # again but handed, in a copy of its folder, to `evaluate` (context, its summary) -> the new summary.
    evaluation_options: tuple[str, ...] = ()
    evaluate: Callable[[StageContext, dict], dict] | None = None
    # Option values for the built-in demo (paths relative to the demo folder, whose data
    # lives in data/lecture.mp4 and data/smileys/), small enough for minutes on 2 CPU cores.
    demo: dict = field(default_factory=dict)

    def upstream(self, options: Any, data: DataOptions | None = None) -> list[str]:
        """The stages whose finished output this one needs (producers of what it consumes, unless a
        config path stands in or the artifact is optional), in the order first consumed."""
        needs = self.consumes(options, data or DataOptions())
        return list(dict.fromkeys(c.producer for c in needs if not c.override and not c.optional))
