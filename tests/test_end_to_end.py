"""The whole pipeline on generated data, as a user runs it: `pipeline run all`, re-runs, the
report, a changed option, and a stage killed midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fertransfer.demo import DemoVideoSpec, make_demo_video, make_smiley_dataset
from fertransfer.pipelines import load_config, stage_status
from fertransfer.pipelines.cli import main
from fertransfer.pipelines.config import default_config_text

STAGES = ("extract", "cyclegan", "augment", "classify")

TINY = {
    "run": {"dir": "run"},
    "data": {"fer": "data/smileys"},
    "extract": {"inputs": ["data/lecture.mp4"], "min_face_size": 40, "min_face_px": 48, "samples": 8},
    "cyclegan": {"image_size": 24, "ngf": 4, "ndf": 4, "steps": 24, "checkpoint_every": 12, "sample_every": 12,
                 "swd_images": 8, "sample_images": 2, "person_score_steps": 50},
    "augment": {"gallery_examples": 2, "batch_size": 64},
    "classify": {"train_sets": ["real", "balanced"], "epochs": 1, "width": 8,
                 "batch_size": 32, "patience": 0, "tta": "center", "footage": "extract"},
}


@pytest.fixture(scope="module")
def project(make_project) -> Path:
    return make_project("e2e", TINY, frames=60, train_images=140, test_images=70)


def manifest(project: Path, stage: str) -> dict:
    return json.loads((project / "run" / stage / "manifest.json").read_text())


def test_run_all_then_report(project, capsys):
    config = str(project / "pipeline.toml")
    assert main(["run", "all", "--config", config]) == 0
    out = capsys.readouterr().out
    assert f"run report: {project / 'run' / 'report.html'}" in out
    assert "judge on" in out and "translated test images: agreement" in out  # the headline, printed
    summaries = {stage: manifest(project, stage)["summary"] for stage in STAGES}
    assert summaries["extract"]["totals"]["kept"] > 10
    assert summaries["cyclegan"]["steps"] == 24
    assert summaries["augment"]["sets"]["balanced"]["counts"]
    classify = summaries["classify"]
    assert set(classify["train_sets"]) == {"real", "balanced"}
    assert 0.0 <= classify["train_sets"]["real"]["test_accuracy"] <= 1.0
    judged = classify["translation_judge"]["splits"]
    for split in ("train", "test"):
        assert judged[split]["images"] == sum(summaries["augment"]["translated"][split].values())
        assert 0.0 <= judged[split]["judge_agreement"]["overall"] <= 1.0
    assert (project / "run" / "classify" / "gallery" / "gallery.html").is_file()
    # The person score beside the judge: the cyclegan stage's own, and classify's on augment's translations.
    translation = summaries["cyclegan"]["translation"]
    assert 0.0 <= translation["person_score"]["overall"] <= 1.0 and translation["person_crops"] >= 5
    assert 0.0 <= judged["test"]["person_score"]["overall"] <= 1.0 and "person_score_on_sources" in judged["test"]
    assert "person score" in out and "cyclegan on" in out
    assert "person score" in (project / "run" / "classify" / "gallery" / "gallery.html").read_text()
    page = (project / "run" / "report.html").read_text()
    assert "person score" in page
    assert page.index("<h2>Headline</h2>") < page.index("<h2>extract</h2>")  # results first
    for stage in STAGES:
        assert f"<h2>{stage}</h2>" in page
    for picture in ("extract/samples.png", "cyclegan/loss_curve.png", "cyclegan/samples/final.png",
                    "augment/gallery.png", "classify/comparison.png", "classify/confusion_real.png"):
        assert f'src="{picture}"' in page and (project / "run" / picture).is_file()
    assert 'href="augment/gallery.html"' in page
    # unlabelled footage: said plainly, with the person model's predictions over it instead
    run = project / "run"
    assert "Person accuracy cannot be measured" in page
    assert "person accuracy: cannot be measured" in out
    assert classify["person_model"]["set"] == "real" and (run / "classify" / "person_model" / "model.json").is_file()
    assert f"model for the person: {run / 'classify' / 'person_model'} (set real;" in out
    assert f"pipeline serve --run {run}" in out and "<b>Model for the person: <code>classify/person_model" in page
    footage = classify["footage"]
    assert footage["faces"] == summaries["extract"]["totals"]["footage"]
    for picture in ("classify/footage/distribution.png", "classify/footage/timeline_lecture.png"):
        assert f'src="{picture}"' in page and (run / picture).is_file()


def test_rerun_skips_everything_and_a_changed_option_reruns_downstream(project):
    config = str(project / "pipeline.toml")
    before = {stage: manifest(project, stage)["timings"]["finished"] for stage in STAGES}
    mtimes = {stage: (project / "run" / stage / "manifest.json").stat().st_mtime_ns for stage in STAGES}
    assert main(["run", "all", "--config", config]) == 0
    assert {stage: (project / "run" / stage / "manifest.json").stat().st_mtime_ns for stage in STAGES} == mtimes

    text = (project / "pipeline.toml").read_text().replace("steps = 24", "steps = 12", 1)
    (project / "pipeline.toml").write_text(text)
    status = {stage: stage_status(load_config(config), stage).state for stage in STAGES}
    assert status == {"extract": "done", "cyclegan": "stale", "augment": "stale", "classify": "stale"}
    assert stage_status(load_config(config), "augment").text == "stale (upstream cyclegan)"
    assert main(["run", "all", "--config", config]) == 0
    assert (project / "run" / "extract" / "manifest.json").stat().st_mtime_ns == mtimes["extract"]
    for stage in ("cyclegan", "augment", "classify"):
        assert (project / "run" / stage / "manifest.json").stat().st_mtime_ns != mtimes[stage], stage
    assert manifest(project, "cyclegan")["summary"]["steps"] == 12
    assert before["extract"] == manifest(project, "extract")["timings"]["finished"]


def test_killed_stage_is_not_done_and_continues_from_its_checkpoint(project):
    """SIGKILL the cyclegan stage after its first checkpoint; the next run resumes from it."""
    text = (project / "pipeline.toml").read_text()
    text = text.replace("steps = 12", "steps = 200", 1).replace("checkpoint_every = 12", "checkpoint_every = 5", 1)
    (project / "pipeline.toml").write_text(text)
    config = str(project / "pipeline.toml")
    partial = project / "run" / "cyclegan.partial"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "fertransfer.pipelines.cli", "run", "cyclegan", "--config", config],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list((partial / "checkpoints").glob("step_*.pt")):
            assert process.poll() is None, "the stage ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    status = stage_status(load_config(config), "cyclegan")
    assert status.state == "interrupted" and status.text.startswith("interrupted, resumes from step ")
    # The old complete output is kept, not replaced by the partial one.
    assert manifest(project, "cyclegan")["summary"]["steps"] == 12

    # Same config as the killed run, so the runner hands its work folder back.
    assert main(["run", "cyclegan", "--config", config]) == 0
    summary = manifest(project, "cyclegan")["summary"]
    assert summary["steps"] == 200
    assert summary["resumed_from_step"] >= 5
    assert not partial.exists()


def test_a_truncated_checkpoint_makes_the_stage_damaged(project):
    latest = project / "run" / "cyclegan" / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    config = load_config(project / "pipeline.toml")
    status = stage_status(config, "cyclegan")
    assert status.state == "damaged" and status.text.startswith("damaged: checkpoints/latest.pt changed")
    assert stage_status(config, "augment").state == "stale"


def test_option_mistakes_of_every_stage_stop_the_run_before_any_stage(tmp_path, capsys):
    """A typo in the last stage's options costs seconds, not the hour of training before it."""
    values = {**TINY, "extract": {**TINY["extract"], "every_n": 0, "thresholds": [0.6, 0.7]},
              "augment": {**TINY["augment"], "sets": ["real", "real+synth"]},
              "cyclegan": {**TINY["cyclegan"], "lambda_expression": -1.0},
              "classify": {**TINY["classify"], "train_sets": ["real", "balancd"]}}
    make_demo_video(tmp_path / "data" / "lecture.mp4", DemoVideoSpec(frames=4))
    make_smiley_dataset(tmp_path / "data" / "smileys", train_images=14, test_images=7)
    (tmp_path / "pipeline.toml").write_text(default_config_text(values))
    assert main(["run", "all", "--config", str(tmp_path / "pipeline.toml")]) == 2
    err = capsys.readouterr().err
    for problem in ("[extract].every_n: 0 is out of range: must be >= 1", "[extract].thresholds: expected three scores",
                    "[cyclegan].lambda_expression: -1.0 is out of range: must be >= 0",
                    "[augment].sets: unknown set(s) real+synth",
                    "[classify].train_sets: unknown set(s) balancd"):
        assert problem in err
    assert not (tmp_path / "run").exists()  # nothing ran, nothing half-written
