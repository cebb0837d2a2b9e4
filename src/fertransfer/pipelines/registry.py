"""The stages in pipeline order, and where each one lives.

A stage plugs in by providing ``fertransfer.<name>.stage.STAGE``. Stage modules import their
heavy dependencies (torch, keras) inside their run functions so that the CLI starts fast.
"""

from __future__ import annotations

import importlib

from .stage import Stage

STAGE_ORDER: tuple[str, ...] = ("extract", "cyclegan", "augment", "classify")

# Where each stage's `STAGE` object lives.
STAGE_MODULES: dict[str, str] = {name: f"fertransfer.{name}.stage" for name in STAGE_ORDER}


def get_stage(name: str) -> Stage:
    if name not in STAGE_ORDER:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_ORDER)}")
    return importlib.import_module(STAGE_MODULES[name]).STAGE
