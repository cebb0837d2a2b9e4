"""Built-in demo data (no downloads) and a config that chains every stage on it."""

from __future__ import annotations

import shutil
from pathlib import Path

from .smileys import make_smiley_dataset
from .video import DemoVideoSpec, make_demo_video


def demo_overrides() -> dict[str, dict]:
    """Each built stage's own demo settings (Stage.demo), plus the run folder."""
    from fertransfer.pipelines.registry import built_stages

    return {"run": {"dir": "run"}, **{stage.name: dict(stage.demo) for stage in built_stages()}}


def write_demo(folder: str | Path, video: DemoVideoSpec = DemoVideoSpec()) -> Path:
    """Write data/lecture.mp4, data/smileys/ and pipeline.toml into `folder`; returns the config path."""
    from fertransfer.pipelines.config import default_config_text

    folder = Path(folder)
    data = folder / "data"
    # Written under a temporary name and renamed, so an interrupted demo never leaves half a dataset.
    if not (data / "lecture.mp4").exists():
        make_demo_video(data / "lecture.tmp.mp4", video).rename(data / "lecture.mp4")
    if not (data / "smileys").exists():
        shutil.rmtree(data / "smileys.tmp", ignore_errors=True)
        make_smiley_dataset(data / "smileys.tmp").rename(data / "smileys")
    config = folder / "pipeline.toml"
    config.write_text(default_config_text(demo_overrides()))
    return config


__all__ = ["demo_overrides", "DemoVideoSpec", "make_demo_video", "make_smiley_dataset", "write_demo"]
