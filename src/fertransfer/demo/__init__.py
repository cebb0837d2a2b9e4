"""Built-in demo data (no downloads) and a config that chains every stage on it."""

from __future__ import annotations

import shutil
from pathlib import Path

from .smileys import make_smiley_dataset
from .video import DemoVideoSpec, make_demo_video

# Small settings per stage so that the whole demo runs in minutes on 2 CPU cores.
# Keys of stages that are not built yet are ignored when the config is written.
DEMO_OVERRIDES: dict[str, dict] = {
    "run": {"dir": "run"},
    "extract": {"inputs": ["data/lecture.mp4"]},
    "cyclegan": {"fer": "data/smileys"},
    "augment": {"fer": "data/smileys"},
    "classify": {"fer": "data/smileys"},
}


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
    config.write_text(default_config_text(DEMO_OVERRIDES))
    return config


__all__ = ["DEMO_OVERRIDES", "DemoVideoSpec", "make_demo_video", "make_smiley_dataset", "write_demo"]
