"""The demo's config: each stage's `Stage.demo` settings over the built-in demo data.

It lives with the runner because it reads the stage registry; the data itself comes from
`fertransfer.demo`, which imports nothing from the runner.
"""

from __future__ import annotations

from pathlib import Path

from fertransfer.demo import DemoVideoSpec, write_demo_data

from .config import default_config_text
from .registry import STAGE_ORDER, get_stage

DEMO_FER = "data/smileys"  # the labelled smiley dataset stands in for FER2013


def demo_overrides() -> dict[str, dict]:
    """Each stage's own demo settings (Stage.demo), plus the run folder and the demo's FER."""
    return {"run": {"dir": "run"}, "data": {"fer": DEMO_FER},
            **{name: dict(get_stage(name).demo) for name in STAGE_ORDER}}


def write_demo(folder: str | Path, video: DemoVideoSpec = DemoVideoSpec()) -> Path:
    """Write data/lecture.mp4, data/smileys/ and pipeline.toml into `folder`; returns the config path."""
    write_demo_data(folder, video)
    config = Path(folder) / "pipeline.toml"
    config.write_text(default_config_text(demo_overrides()))
    return config


__all__ = ["demo_overrides", "write_demo"]
