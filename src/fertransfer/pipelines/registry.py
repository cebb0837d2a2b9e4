"""The stages in pipeline order, and where each one lives.

A stage plugs in by providing ``fertransfer.<name>.stage.STAGE``; until that module exists
the stage is listed as not built yet. Stage modules import their heavy dependencies
(torch, keras) inside their run functions so that the CLI starts fast.
"""

from __future__ import annotations

import importlib

from .stage import Stage

STAGE_ORDER: tuple[str, ...] = ("extract", "cyclegan", "augment", "classify")

# Where each stage's `STAGE` object lives.
STAGE_MODULES: dict[str, str] = {name: f"fertransfer.{name}.stage" for name in STAGE_ORDER}


class StageNotBuilt(LookupError):
    pass


def get_stage(name: str) -> Stage:
    if name not in STAGE_ORDER:
        raise KeyError(f"unknown stage '{name}'; stages: {', '.join(STAGE_ORDER)}")
    module_name = STAGE_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise StageNotBuilt(f"stage '{name}' is not built yet") from None
    return module.STAGE


def built_stages() -> list[Stage]:
    stages = []
    for name in STAGE_ORDER:
        try:
            stages.append(get_stage(name))
        except StageNotBuilt:
            pass
    return stages
