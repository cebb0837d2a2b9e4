"""experiments/frontier.py on the demo at tiny sizes: a grid of cyclegan settings, one point each,
finished settings reused on a second run, a misspelt option stopping it before any training."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "frontier.py"
spec = importlib.util.spec_from_file_location("frontier", SCRIPT)
frontier = importlib.util.module_from_spec(spec)
spec.loader.exec_module(frontier)

TINY = {
    "run": {"dir": "run", "device": "cpu"},
    "data": {"fer": "data/smileys"},
    "extract": {"inputs": ["data/lecture.mp4"], "min_face_size": 40, "min_face_px": 48, "samples": 4},
    "cyclegan": {"image_size": 16, "ngf": 4, "ndf": 4, "n_layers": 2, "steps": 4,
                 "checkpoint_every": 4, "sample_every": 4, "swd_images": 16, "sample_images": 2,
                 "lambda_expression": 0.0, "eval_images": 30, "person_score_steps": 30, "threads": 1},
}


@pytest.fixture(scope="module")
def demo(make_project) -> Path:
    from fertransfer.data import FER
    from fertransfer.expression.cnn import CnnClassifier, CnnConfig, FaceNet
    from fertransfer.expression.models import save_classifier

    folder = make_project("frontier", TINY, frames=48, train_images=70, test_images=70)
    torch.manual_seed(0)
    save_classifier(CnnClassifier(FaceNet(7, 1, 4), list(FER.names), 1, 16, CnnConfig(width=4, crop=14)),
                    folder / "judge")
    return folder


def test_grid_settings_from_the_command_line_and_a_file(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\nlambda_identity = [0, 0.5]\n[[settings]]\nname = "paper"\ngenerator = "resnet_6blocks"\n')
    settings = frontier.grid_settings(["generator=unet,resnet_9blocks"], grid)
    assert settings[:2] == [{"lambda_identity": 0, "generator": "unet"}, {"lambda_identity": 0, "generator": "resnet_9blocks"}]
    assert len(settings) == 5 and settings[-1] == {"name": "paper", "generator": "resnet_6blocks"}
    assert frontier.setting_name(settings[0]) == "lambda_identity=0,generator=unet"
    assert frontier.grid_settings([], None) == [{}]
    assert frontier.parse_value("0.5") == 0.5 and frontier.parse_value("unet") == "unet"


def test_frontier_on_the_demo(demo, capsys):
    config = demo / "pipeline.toml"
    args = ["-c", str(config), "--judge", str(demo / "judge"), "--set", "lambda_identity=0,0.5",
            "--common", "steps=4"]
    assert frontier.main(args) == 0
    out = demo / "run" / "frontier"
    rows = list(csv.DictReader((out / "frontier.csv").open()))
    assert [r["setting"] for r in rows] == ["lambda_identity=0", "lambda_identity=0.5"]
    for row in rows:
        assert 0 <= float(row["person_score"]) <= 1 and 0 <= float(row["judge_agreement"]) <= 1
        assert row["steps"] == "4" and not row["error"]
    points = json.loads((out / "frontier.json").read_text())
    assert points[0]["per_class"]["person_score"] and points[0]["per_class"]["judge_agreement"]
    assert (out / "frontier.png").stat().st_size > 1000
    assert "lambda_identity=0.5: person score" in capsys.readouterr().out
    # The extract stage ran once, in the person's run dir, and both settings read it.
    assert (demo / "run" / "extract" / "manifest.json").is_file()
    assert (out / "lambda_identity-0" / "extract").resolve() == (demo / "run" / "extract").resolve()
    # Again, with one more setting: the finished ones are reused, not retrained.
    manifest = out / "lambda_identity-0" / "cyclegan" / "manifest.json"
    before = manifest.stat().st_mtime_ns
    assert frontier.main([*args[:4], "--set", "lambda_identity=0,0.5,1", "--common", "steps=4"]) == 0
    assert manifest.stat().st_mtime_ns == before
    assert len(list(csv.DictReader((out / "frontier.csv").open()))) == 3
    # A finished run of the person's own pipeline joins the picture as a named point.
    assert frontier.main([*args[:4], "--set", "lambda_identity=0", "--common", "steps=4",
                          "--include", f"own run={out / 'lambda_identity-0.5'}"]) == 0
    rows = list(csv.DictReader((out / "frontier.csv").open()))
    assert [r["setting"] for r in rows] == ["own run", "lambda_identity=0"] and rows[0]["steps"] == "4"
    # Finished runs alone are drawn together, nothing trained.
    joined = demo / "joined"
    assert frontier.main([*args[:4], "--out", str(joined), "--include", f"a={out / 'lambda_identity-0'}",
                          "--include", f"b={out / 'lambda_identity-1'}"]) == 0
    assert [r["setting"] for r in csv.DictReader((joined / "frontier.csv").open())] == ["a", "b"]
    assert sorted(p.name for p in joined.iterdir()) == ["frontier.csv", "frontier.json", "frontier.png"]
    assert manifest.stat().st_mtime_ns == before
    assert frontier.main([*args[:4], "--include", f"nothing={demo / 'judge'}"]) == 2
    assert "--include nothing=" in capsys.readouterr().err


def test_a_misspelt_option_stops_before_any_training(demo, capsys):
    args = ["-c", str(demo / "pipeline.toml"), "--judge", str(demo / "judge"), "--set", "lambda_identiy=0,1",
            "--out", str(demo / "misspelt")]
    assert frontier.main(args) == 2
    assert "lambda_identiy" in capsys.readouterr().err
    assert not list((demo / "misspelt").glob("*/cyclegan"))
    # A dry run checks and prints the settings, and runs nothing.
    dry = ["-c", str(demo / "pipeline.toml"), "--judge", str(demo / "judge"), "--set", "lambda_identity=0,1",
           "--out", str(demo / "dry"), "--dry-run"]
    assert frontier.main(dry) == 0
    assert "lambda_identity=1: " in capsys.readouterr().out and not (demo / "dry").exists()


def test_the_example_grid_names_real_options():
    import dataclasses

    from fertransfer.cyclegan.stage import GENERATORS, CycleganOptions

    settings = frontier.grid_settings([], SCRIPT.parents[1] / "examples" / "frontier_grid.toml")
    known = {f.name for f in dataclasses.fields(CycleganOptions)}
    assert len(settings) == 4 and all(set(s) - {"name"} <= known for s in settings)
    assert all(s["generator"] in GENERATORS for s in settings)
    grids = sorted((SCRIPT.parents[1] / "examples").rglob("*grid*.toml"))
    assert len(grids) >= 3
    for grid in grids:  # the measured ones too: each setting's options exist, its generator is known
        for setting in frontier.grid_settings([], grid):
            assert set(setting) - {"name"} <= known, (grid, setting)
            assert setting.get("generator", GENERATORS[0]) in GENERATORS, (grid, setting)


def test_every_example_config_parses():
    """What a user copies, and the configs behind docs/results.md: every option name and value
    checked, with no data needed."""
    from fertransfer.pipelines.config import load_config

    configs = [p for p in sorted((SCRIPT.parents[1] / "examples").rglob("*.toml")) if "grid" not in p.name]
    assert len(configs) >= 15 and any(p.parent.name == "measured" for p in configs)
    for path in configs:
        config = load_config(path)
        assert config.run_dir.parent.name == "runs", path  # every run lands in the repository's runs/


def test_the_judges_accuracy_on_the_persons_own_faces(demo, tmp_path):
    """The yardstick line: the judge on the person's labelled faces (a subset of its classes),
    brought through the generator's size; none when the person has no labelled faces."""
    import numpy as np
    from PIL import Image

    from fertransfer.pipelines.config import load_config

    base = load_config(demo / "pipeline.toml")
    assert frontier.person_test_folder(base) is None  # the demo's footage has no labels
    rng = np.random.default_rng(0)
    for name in ("angry", "happy"):
        (tmp_path / "person" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8)).save(tmp_path / "person" / name / f"{i}.png")
    config_path = demo / "pipeline_person.toml"
    text = (demo / "pipeline.toml").read_text()
    assert 'person_test = ""' in text
    config_path.write_text(text.replace('person_test = ""', f'person_test = "{tmp_path / "person"}"'))
    reference = frontier.person_reference(load_config(config_path), demo / "judge")
    assert reference["images"] == 6 and 0 <= reference["overall"] <= 1
    assert reference["per_class"]["angry"] is not None and reference["per_class"]["sad"] is None
    row = frontier.with_reference({"setting": "x", "person_score": 0.5, "judge_agreement": 0.5,
                                   "judge_source_accuracy": 0.7, "untranslated_control": 0.0, "per_class": {}},
                                  reference)
    assert row["judge_person_accuracy"] == reference["overall"] and row["per_class"]["judge_person_accuracy"]
    frontier.write_outputs([row], tmp_path, "title")
    assert next(csv.DictReader((tmp_path / "frontier.csv").open()))["judge_person_accuracy"] == str(reference["overall"])
    assert frontier.with_reference(row, None) is row


def test_rescoring_finished_runs_without_training(demo, capsys):
    """--rescore: the final evaluation again under the run's own options gives the run's own
    figures (the same crops, faces and seeded score); with the score's options changed it gives the
    new score's, beside the recorded one; the run's folder is only read."""
    config = demo / "pipeline.toml"
    base = ["-c", str(config), "--judge", str(demo / "judge")]
    assert frontier.main([*base, "--set", "lambda_identity=0", "--common", "steps=4"]) == 0
    run = demo / "run" / "frontier" / "lambda_identity-0"
    manifest = run / "cyclegan" / "manifest.json"
    before = manifest.stat().st_mtime_ns, (run / "cyclegan" / "person_score.pt").read_bytes()
    recorded = json.loads(manifest.read_text())["summary"]["translation"]

    same = demo / "rescored_same"
    assert frontier.main([*base, "--out", str(same), "--include", f"a={run}", "--rescore", "threads=1"]) == 0
    row = json.loads((same / "frontier.json").read_text())[0]
    assert row["person_score"] == recorded["person_score"]["overall"] == row["person_score_as_run"]
    assert row["judge_agreement"] == recorded["judge"]["judge_agreement"]["overall"]
    assert row["hybrid_control"] == max(recorded["controls"]["blends"].values())
    assert row["steps"] == 4 and (same / "a" / "person_score.pt").is_file()

    strict = demo / "rescored_strict"
    assert frontier.main([*base, "--out", str(strict), "--include", f"a={run}",
                          "--rescore", "person_score_blends=0", "threads=1"]) == 0
    rescored = json.loads((strict / "a" / "translation.json").read_text())
    assert rescored["rescored_with"]["person_score_blends"] == 0
    def weights(folder: Path) -> list[torch.Tensor]:
        saved = torch.load(folder / "person_score.pt")
        return [v for part in saved.values() if isinstance(part, dict) for v in part.values() if torch.is_tensor(v)]

    assert weights(run / "cyclegan")
    assert all(torch.equal(a, b) for a, b in zip(weights(same / "a"), weights(run / "cyclegan")))
    assert not all(torch.equal(a, b) for a, b in zip(weights(strict / "a"), weights(run / "cyclegan")))
    row = json.loads((strict / "frontier.json").read_text())[0]
    assert row["person_score_as_run"] == recorded["person_score"]["overall"]
    assert row["judge_agreement"] == recorded["judge"]["judge_agreement"]["overall"]  # the same translations
    assert (manifest.stat().st_mtime_ns, (run / "cyclegan" / "person_score.pt").read_bytes()) == before

    # A folder that is no finished run is a failed row; the other run is still scored.
    mixed = demo / "rescored_mixed"
    assert frontier.main([*base, "--out", str(mixed), "--include", f"none={demo / 'judge'}", "--include", f"a={run}",
                          "--rescore", "threads=1"]) == 1
    rows = list(csv.DictReader((mixed / "frontier.csv").open()))
    assert "no finished cyclegan stage" in rows[0]["error"] and rows[1]["person_score"] and not rows[1]["error"]
    # A config naming other data than the run's: a failed row saying so, nothing scored.
    other = demo / "pipeline_other.toml"
    other.write_text(config.read_text().replace('fer = "data/smileys"', 'fer = "data/other"'))
    assert 'fer = "data/other"' in other.read_text()
    assert frontier.main(["-c", str(other), "--judge", str(demo / "judge"), "--out", str(demo / "rescored_other"),
                          "--include", f"a={run}", "--rescore", "threads=1"]) == 1
    row = next(csv.DictReader((demo / "rescored_other" / "frontier.csv").open()))
    assert "[data] fer" in row["error"] and "run's own config" in row["error"]
    # Misuse: with a grid (it trains), or an option the stage does not know.
    assert frontier.main([*base, "--set", "lambda_identity=0", "--include", f"a={run}", "--rescore", "threads=1"]) == 2
    assert "--rescore" in capsys.readouterr().err
    assert frontier.main([*base, "--out", str(strict), "--include", f"a={run}", "--rescore", "person_score_blend=1"]) == 2
    assert "person_score_blend" in capsys.readouterr().err
