"""Shared fixtures: the demo data generators, and the shared FER data when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs {SHARED_DATA} (the shared data beside the checkout)")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def smileys(tmp_path_factory) -> Path:
    """A small smiley dataset in the Kaggle folder layout (train + PublicTest + PrivateTest)."""
    from fertransfer.demo.smileys import make_smiley_dataset

    return make_smiley_dataset(tmp_path_factory.mktemp("smileys") / "smileys", train_images=210, test_images=70)


@pytest.fixture(scope="session")
def demo_video(tmp_path_factory) -> Path:
    """A short demo lecture video (96 frames, the no-face stretch included)."""
    from fertransfer.demo.video import DemoVideoSpec, make_demo_video

    return make_demo_video(tmp_path_factory.mktemp("video") / "lecture.mp4", DemoVideoSpec(frames=96))


@pytest.fixture(scope="session")
def make_project(tmp_path_factory):
    """A factory of small project folders: data/lecture.mp4 (the demo video), data/smileys and a
    pipeline.toml written from `config` (a dict of sections, the rest at their defaults)."""
    from fertransfer.demo.smileys import make_smiley_dataset
    from fertransfer.demo.video import DemoVideoSpec, make_demo_video
    from fertransfer.pipelines.config import default_config_text

    def make(name: str, config: dict, frames: int, train_images: int, test_images: int) -> Path:
        folder = tmp_path_factory.mktemp(name)
        make_demo_video(folder / "data" / "lecture.mp4", DemoVideoSpec(frames=frames))
        make_smiley_dataset(folder / "data" / "smileys", train_images=train_images, test_images=test_images)
        (folder / "pipeline.toml").write_text(default_config_text(config))
        return folder

    return make
