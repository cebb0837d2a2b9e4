"""Built-in demo data (no downloads); `fertransfer.pipelines.demo` adds the config that chains every stage on it."""

from __future__ import annotations

import shutil
from pathlib import Path

from .smileys import make_smiley_dataset
from .video import DemoVideoSpec, make_demo_video


def write_demo_data(folder: str | Path, video: DemoVideoSpec = DemoVideoSpec()) -> Path:
    """Write data/lecture.mp4 and data/smileys/ into `folder` unless there; returns the data folder."""
    data = Path(folder) / "data"
    # Written under a temporary name and renamed, so an interrupted demo never leaves half a dataset.
    if not (data / "lecture.mp4").exists():
        make_demo_video(data / "lecture.tmp.mp4", video).rename(data / "lecture.mp4")
    if not (data / "smileys").exists():
        shutil.rmtree(data / "smileys.tmp", ignore_errors=True)
        make_smiley_dataset(data / "smileys.tmp").rename(data / "smileys")
    return data


__all__ = ["DemoVideoSpec", "make_demo_video", "make_smiley_dataset", "write_demo_data"]
