"""Progress reports: bars on a terminal, plain log lines in a file (no carriage returns)."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fertransfer.progress import LineProgress, progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Lines:
    """The progress lines logged so far (caplog.messages is a fresh list at every call)."""

    def __init__(self, caplog) -> None:
        self.caplog = caplog

    def __len__(self) -> int:
        return len(self.caplog.messages)

    def __getitem__(self, index):
        return self.caplog.messages[index]

    def __iter__(self):
        return iter(self.caplog.messages)

    def __eq__(self, other) -> bool:
        return self.caplog.messages == other


@pytest.fixture
def lines(caplog) -> Lines:
    caplog.set_level(logging.INFO, logger="fertransfer.progress")
    return Lines(caplog)


def test_a_file_gets_a_line_every_tenth_and_one_at_the_end(monkeypatch, lines):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress(range(100), desc="work", unit="img", min_gap=0)
    assert isinstance(bar, LineProgress)
    assert sum(1 for _ in bar) == 100 and bar.n == 100
    assert len(lines) == 10
    assert lines[0].startswith("work: 10/100 img (10%)") and "left" in lines[0]
    assert lines[-1].startswith("work: 100/100 img (100%)") and "in all" in lines[-1]
    assert not any("\r" in line for line in lines) and sys.stderr.getvalue() == ""


def test_a_quick_loop_reports_once(monkeypatch, lines):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    for _ in progress(range(1000), desc="quick"):
        pass
    assert len(lines) == 1 and lines[0].startswith("quick: 1000/1000 it (100%)")


def test_the_interface_the_stages_use(monkeypatch, lines):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with progress(total=None, desc="video", unit="frame", interval=0, min_gap=0) as bar:
        bar.update(16 - bar.n)
        bar.set_postfix({"G": "1.000"})
        bar.update(16)
    assert bar.n == 32
    assert len(lines) == 3 and lines[0].startswith("video: 16 frame, ") and "%" not in lines[0]
    assert lines[1].startswith("video: 32 frame, ") and lines[1].endswith("; G=1.000")
    assert "in all" in lines[2]
    bar.close()  # twice is harmless
    assert len(lines) == 3
    steps = progress(range(5, 10), initial=5, total=10, desc="resumed")
    assert list(steps) == [5, 6, 7, 8, 9] and steps.n == 10 and lines[-1].startswith("resumed: 10/10 it")


def test_disabled_or_every_none_counts_silently(monkeypatch, lines):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    for options in ({"disable": True}, {"every": None}):
        bar = progress(range(50), desc="quiet", min_gap=0, **options)
        assert sum(1 for _ in bar) == 50 and bar.n == 50
    assert lines == []


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    from tqdm import tqdm

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress(range(3), desc="bar", mininterval=0, file=terminal)
    assert isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2]
    assert "\r" in terminal.getvalue()


def _tiny_project(folder: Path, demo_video: Path, smileys: Path) -> Path:
    from fertransfer.pipelines.config import default_config_text

    config = folder / "pipeline.toml"
    config.write_text(default_config_text({
        "run": {"dir": "run"},
        "extract": {"inputs": [str(demo_video)], "min_face_size": 40, "min_face_px": 48, "samples": 4},
        "data": {"fer": str(smileys)},
        "cyclegan": {"image_size": 24, "ngf": 4, "ndf": 4, "steps": 12,
                     "checkpoint_every": 12, "sample_every": 12, "swd_images": 8, "sample_images": 2},
    }))
    return config


def test_stages_with_stderr_in_a_file_write_no_carriage_return(demo_video, smileys, tmp_path):
    """`pipeline run ... 2> log`: progress as plain lines, no bar redraws."""
    config = _tiny_project(tmp_path, demo_video, smileys)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    log_file = tmp_path / "stderr.log"
    with open(log_file, "wb") as stderr:
        for stage in ("extract", "cyclegan"):
            subprocess.run([sys.executable, "-m", "fertransfer.pipelines.cli", "run", stage, "--config", str(config)],
                           env=env, stdout=subprocess.DEVNULL, stderr=stderr, check=True, timeout=300)
    text = log_file.read_bytes()
    assert b"\r" not in text
    assert b"fertransfer.progress: lecture.mp4: 96/96 frame (100%)" in text
    assert b"fertransfer.progress: cyclegan: 12/12 step (100%)" in text


@pytest.mark.slow
def test_pipeline_demo_with_stderr_in_a_file_writes_no_carriage_return(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    log_file = tmp_path / "stderr.log"
    with open(log_file, "wb") as stderr:
        subprocess.run([sys.executable, "-m", "fertransfer.pipelines.cli", "demo", str(tmp_path / "demo")],
                       env=env, stdout=subprocess.DEVNULL, stderr=stderr, check=True, timeout=1200)
    text = log_file.read_bytes()
    assert b"\r" not in text and b"fertransfer.progress: cyclegan:" in text
