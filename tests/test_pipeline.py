"""The stage runner, the config and the CLI, driven through fake stages (tests/fake_stages.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fake_stages import PASSTHROUGH_MODULES
from fertransfer.pipelines import ConfigError, load_config, registry, run_pipeline, stage_status
from fertransfer.pipelines.cli import main
from fertransfer.pipelines.config import default_config_text


@pytest.fixture
def fake_stages(monkeypatch):
    """extract and cyclegan are the fake stages under test; augment and classify are pass-throughs."""
    monkeypatch.setitem(registry.STAGE_MODULES, "extract", "fake_first")
    monkeypatch.setitem(registry.STAGE_MODULES, "cyclegan", "fake_second")
    for name in ("augment", "classify"):
        monkeypatch.setitem(registry.STAGE_MODULES, name, PASSTHROUGH_MODULES[name])


@pytest.fixture
def project(tmp_path, fake_stages) -> Path:
    (tmp_path / "input.txt").write_text("hello")
    (tmp_path / "pipeline.toml").write_text(default_config_text({"run": {"dir": "out"}}))
    return tmp_path


def states(config) -> dict[str, str]:
    return {name: stage_status(config, name).state for name in registry.STAGE_ORDER}


def test_init_writes_every_option_with_a_comment(tmp_path, fake_stages, capsys):
    assert main(["init", str(tmp_path)]) == 0
    text = (tmp_path / "pipeline.toml").read_text()
    assert "# A text file to copy.\nsource = \"input.txt\"" in text
    assert "[cyclegan]\n# Appended to the first stage's text.\nsuffix = \"!\"" in text
    assert "# --- pass-through test stage augment\n[augment]\n# Written to the stage's one output file.\nnote = \"ran\"" in text
    config = load_config(tmp_path / "pipeline.toml")
    assert config.options("extract").repeat == 1 and config.run.seed == 0
    assert main(["init", str(tmp_path)]) == 1  # refuses to overwrite


def test_run_all_writes_manifests_then_skips(project):
    config = load_config(project / "pipeline.toml")
    assert states(config) == dict.fromkeys(registry.STAGE_ORDER, "missing")
    statuses = run_pipeline(config, "all")
    assert [status.name for status in statuses] == ["extract", "cyclegan", "augment", "classify"]  # in order
    assert states(config) == dict.fromkeys(registry.STAGE_ORDER, "done")
    assert (project / "out" / "cyclegan" / "result.txt").read_text() == "hello!"
    manifest = json.loads((project / "out" / "extract" / "manifest.json").read_text())
    assert manifest["summary"] == {"characters": 5, "resumed": False}
    assert manifest["config"] == {"source": "input.txt", "repeat": 1, "fail_midway": False, "threads": 0}
    assert manifest["outputs"] == {"files": ["copy.txt", "done.txt"], "count": 2}
    assert set(manifest["timings"]) >= {"started", "finished", "seconds"}
    assert "numpy" in manifest["versions"] and "python" in manifest["versions"]
    assert list(manifest["fingerprint"]["inputs"].values())[0] is not None
    assert not list((project / "out").glob("*.partial"))

    manifests = [project / "out" / name / "manifest.json" for name in registry.STAGE_ORDER]
    before = [manifest.stat().st_mtime_ns for manifest in manifests]
    run_pipeline(config, "all")  # nothing changed: all skipped
    assert [manifest.stat().st_mtime_ns for manifest in manifests] == before


def test_changes_make_stages_stale(project):
    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "all")
    config.options("cyclegan").suffix = "?"
    assert states(config)["extract"] == "done"
    assert stage_status(config, "cyclegan").state == "stale"
    assert "config" in stage_status(config, "cyclegan").reason

    (project / "input.txt").write_text("changed input")
    assert stage_status(config, "extract").state == "stale"
    run_pipeline(config, "extract")
    # The upstream manifest changed, so the downstream stage is stale too.
    status = stage_status(config, "cyclegan")
    assert status.state == "stale" and "upstream" in status.reason


def recorded_without(path: Path, option: str) -> None:
    """Rewrite the fingerprint in `path` (a manifest or a .partial's fingerprint file) as a fertransfer
    whose stage had no `option` yet would have recorded it."""
    from fertransfer.pipelines import runner

    document = json.loads(path.read_text())
    recorded = document.get("fingerprint", document)
    del recorded["config"][option]
    recorded["digest"] = runner._digest({k: v for k, v in recorded.items() if k != "digest"})
    path.write_text(json.dumps(document))


def test_an_option_added_since_a_run_finished_leaves_it_done_at_its_default(project):
    """A run finished by an older fertransfer, whose stage had no `fail_midway` yet, stays done
    after the upgrade; setting the new option away from its default makes it stale."""
    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "all")
    recorded_without(project / "out" / "cyclegan" / "manifest.json", "fail_midway")
    assert states(config)["cyclegan"] == "done" and states(config)["classify"] == "done"
    config.options("cyclegan").fail_midway = True
    status = stage_status(config, "cyclegan")
    assert status.state == "stale" and "config" in status.reason


def test_a_run_interrupted_before_an_option_was_added_is_continued(project):
    from fertransfer.pipelines.runner import FINGERPRINT_FILE

    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "extract")
    config.options("cyclegan").fail_midway = True
    with pytest.raises(Exception, match="failed midway"):
        run_pipeline(config, "cyclegan")
    recorded_without(project / "out" / "cyclegan.partial" / FINGERPRINT_FILE, "suffix")
    assert stage_status(config, "cyclegan").text == "interrupted, resumes from attempt 2"
    with pytest.raises(Exception, match="failed midway"):
        run_pipeline(config, "cyclegan")
    assert (project / "out" / "cyclegan.partial" / "attempts.txt").read_text() == "2"


def test_inputs_are_identified_by_content_not_by_time(project):
    import os

    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "all")
    # The same bytes written again (a dataset copied or unpacked anew): new mtime, still done.
    os.utime(project / "input.txt", ns=(1, 1))
    assert states(config)["extract"] == "done"
    (project / "input.txt").write_text("hello")
    assert states(config)["extract"] == "done"
    # Same size, different bytes: stale.
    (project / "input.txt").write_text("HELLO")
    assert stage_status(config, "extract").state == "stale"


def test_interrupted_stage_is_never_done_and_resumable_stage_continues(project):
    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "extract")
    config.options("cyclegan").fail_midway = True
    with pytest.raises(Exception, match="failed midway"):
        run_pipeline(config, "cyclegan")
    # Not done; and since `run` would continue the work folder, status says so rather than "missing".
    assert stage_status(config, "cyclegan").text == "interrupted, resumes from attempt 2"
    assert (project / "out" / "cyclegan.partial" / "attempts.txt").read_text() == "1"

    # Same config again (still failing): the resumable stage gets its partial folder back.
    with pytest.raises(Exception, match="failed midway"):
        run_pipeline(config, "cyclegan")
    assert (project / "out" / "cyclegan.partial" / "attempts.txt").read_text() == "2"

    config.options("cyclegan").fail_midway = False  # a different config starts afresh
    assert stage_status(config, "cyclegan").state == "missing"
    [status] = run_pipeline(config, "cyclegan")
    assert status.manifest["summary"]["attempts"] == 1 and not status.manifest["summary"]["resumed"]


def test_failed_rerun_keeps_the_previous_complete_output(project):
    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "extract")
    config.options("extract").fail_midway = True
    with pytest.raises(Exception, match="failed midway"):
        run_pipeline(config, "extract", force=True)
    assert (project / "out" / "extract" / "done.txt").exists()
    assert stage_status(config, "extract").state == "stale"


def test_downstream_stage_needs_its_upstream(project, capsys):
    assert main(["run", "cyclegan", "--config", str(project / "pipeline.toml")]) == 1
    assert "needs 'extract', which is missing" in capsys.readouterr().err


def test_config_problems_are_all_reported_before_work(project, capsys):
    (project / "bad.toml").write_text(
        '[run]\nseed = "zero"\ncolour = 1\n'
        '[extract]\nsource = "nowhere.txt"\nrepeat = 1.5\n'
        '[cyclegan]\nsufix = "?"\n'
        '[train]\nx = 1\n'
    )
    assert main(["run", "all", "--config", str(project / "bad.toml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5, lines
    text = "\n".join(lines)
    assert "[run].seed: expected int, got str 'zero'" in text
    assert "[run]: unknown key 'colour'" in text
    assert "[extract].repeat: expected int, got float 1.5" in text
    assert "[cyclegan]: unknown key 'sufix' (known: suffix, fail_midway)" in text
    assert "[train]: unknown section" in text
    assert not (project / "out").exists()

    (project / "missing.toml").write_text('[extract]\nsource = "nowhere.txt"\n')
    assert main(["run", "all", "--config", str(project / "missing.toml")]) == 2
    assert "[extract].source: path not found: nowhere.txt" in capsys.readouterr().err
    assert not (project / "runs").exists()


def test_run_of_one_stage_runs_only_that_stage(project, capsys):
    assert main(["run", "augment", "--config", str(project / "pipeline.toml")]) == 0
    assert (project / "out" / "augment" / "ran.txt").read_text() == "ran"
    assert states(load_config(project / "pipeline.toml")) == {
        "extract": "missing", "cyclegan": "missing", "augment": "done", "classify": "missing"}


def test_an_unknown_stage_is_refused_before_any_work(project, capsys):
    with pytest.raises(SystemExit) as refused:
        main(["run", "train", "--config", str(project / "pipeline.toml")])
    assert refused.value.code == 2 and "invalid choice: 'train'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="unknown stage 'train'; stages: extract, cyclegan, augment, classify"):
        run_pipeline(load_config(project / "pipeline.toml"), "train")
    assert not (project / "out").exists()


def test_status_lists_each_stage(project, capsys):
    config_path = str(project / "pipeline.toml")
    assert main(["run", "extract", "--config", config_path]) == 0
    capsys.readouterr()
    assert main(["status", "--config", config_path]) == 0
    out = capsys.readouterr().out
    assert "extract   done" in out and "2 files in" in out
    assert "cyclegan  missing" in out and "augment   missing" in out and "classify  missing" in out


def test_config_errors_on_bad_toml(tmp_path):
    (tmp_path / "p.toml").write_text("[run\n")
    with pytest.raises(ConfigError, match="p.toml"):
        load_config(tmp_path / "p.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")


def test_report_shows_each_stage(project, capsys):
    config_path = str(project / "pipeline.toml")
    assert main(["run", "extract", "--config", config_path]) == 0
    assert f"run report: {project / 'out' / 'report.html'}" in capsys.readouterr().out
    page = (project / "out" / "report.html").read_text()
    assert "<h2>extract</h2>" in page and "test stage one" in page
    assert "<th>characters</th><td class=\"num\">5</td>" in page
    assert "<h2>augment</h2><p class=\"muted\">Not run.</p>" in page
    assert main(["run", "all", "--config", config_path]) == 0
    page = (project / "out" / "report.html").read_text()
    assert "<h2>augment</h2>" in page and "pass-through test stage augment" in page
    (project / "out" / "report.html").unlink()
    assert main(["report", str(project / "out")]) == 0
    assert (project / "out" / "report.html").exists()


def test_a_damaged_output_is_not_done_and_run_runs_the_stage_again(project, capsys):
    config_path = str(project / "pipeline.toml")
    assert main(["run", "all", "--config", config_path]) == 0
    result = project / "out" / "cyclegan" / "result.txt"
    manifest = json.loads((project / "out" / "cyclegan" / "manifest.json").read_text())
    assert manifest["output_check"]["files"]["result.txt"][0] == len("hello!")
    result.write_text("hel")  # truncated
    config = load_config(config_path)
    status = stage_status(config, "cyclegan")
    assert status.state == "damaged" and status.text == "damaged: result.txt changed (6 -> 3 bytes)"
    capsys.readouterr()
    assert main(["status", "--config", config_path]) == 0
    assert "cyclegan  damaged: result.txt changed" in capsys.readouterr().out

    [_, status, *_] = run_pipeline(config, "all")
    assert status.state == "done" and result.read_text() == "hello!"
    assert stage_status(config, "cyclegan").state == "done"

    # Same size, other bytes; and a missing file.
    (project / "out" / "extract" / "copy.txt").write_text("HELLO")
    (project / "out" / "extract" / "done.txt").unlink()
    assert stage_status(config, "extract").text == "damaged: copy.txt changed, done.txt missing"
    assert stage_status(config, "cyclegan").text == "stale (upstream extract)"


def test_output_check_of_a_large_folder_hashes_a_sample(tmp_path, monkeypatch):
    import shutil

    from fertransfer.pipelines import runner

    monkeypatch.setattr(runner, "HASH_ALL_UP_TO", 10)
    monkeypatch.setattr(runner, "HASH_SAMPLE", 4)
    folder = tmp_path / "stage"
    (folder / "sets").mkdir(parents=True)
    for i in range(40):
        (folder / "sets" / f"{i:03d}.png").write_bytes(bytes([i]) * (100 + i))
    (folder / "gallery.html").write_text("rewritten by other commands")
    check = runner.record_outputs(folder, rewritable=("gallery.html",))
    assert check["count"] == 40 and check["index"] == runner.OUTPUT_INDEX and "files" not in check
    assert 4 <= check["hashed"] <= 5  # the spread plus the largest file
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)  # new modification times: still intact
    (copy / "gallery.html").write_text("changed")
    assert runner.find_damage(copy, check) == []
    (copy / "sets" / "039.png").write_bytes(b"x" * 139)  # the largest file is always hashed
    (copy / "sets" / "001.png").unlink()
    assert runner.find_damage(copy, check) == ["sets/001.png missing", "sets/039.png changed"]
    (copy / runner.OUTPUT_INDEX).unlink()
    assert "missing or unreadable" in runner.find_damage(copy, check)[0]


def test_staleness_flows_downstream_in_status(project, capsys):
    config_path = str(project / "pipeline.toml")
    assert main(["run", "all", "--config", config_path]) == 0
    (project / "input.txt").write_text("changed input")
    capsys.readouterr()
    assert main(["status", "--config", config_path]) == 0
    out = capsys.readouterr().out
    assert "extract   stale (changed: inputs)" in out
    assert "cyclegan  stale (upstream extract)" in out
    with pytest.raises(Exception, match="needs 'extract', which is stale"):
        run_pipeline(load_config(config_path), "cyclegan")
    run_pipeline(load_config(config_path), "all")
    assert states(load_config(config_path))["cyclegan"] == "done"


def test_cyclegan_status_names_the_step_it_resumes_from(tmp_path):
    from fertransfer.cyclegan.stage import STAGE

    work = tmp_path / "cyclegan.partial"
    assert STAGE.resume_point(work) is None
    (work / "checkpoints").mkdir(parents=True)
    for step in (40, 120, 80):
        (work / "checkpoints" / f"step_{step:08d}.pt").write_bytes(b"")
    (work / "checkpoints" / "latest.pt").write_bytes(b"")
    assert STAGE.resume_point(work) == "step 120"


def test_untouched_init_config_lists_every_missing_input_as_a_default(tmp_path, capsys):
    assert main(["init", str(tmp_path)]) == 0
    for config in (tmp_path / "pipeline.toml", tmp_path / "empty.toml"):
        config.touch()
        capsys.readouterr()
        assert main(["run", "all", "--config", str(config)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        expected = ["[extract].inputs: empty", "[data].fer: required but not set"]
        for part in expected:
            [line] = [line for line in lines if part in line]
            stage = part[1:].split("]")[0]
            assert line.endswith(f"(default; set it in [{stage}])"), line
        assert not any("lambda_expression" in line for line in lines), lines  # no follow-on error
    (tmp_path / "set.toml").write_text('[data]\nfer = "nowhere"\n')
    assert main(["run", "classify", "--config", str(tmp_path / "set.toml")]) == 2
    assert capsys.readouterr().err.strip().endswith("[data].fer: path not found: nowhere")


def test_old_configs_say_where_shared_keys_moved(tmp_path, capsys):
    (tmp_path / "old.toml").write_text('[cyclegan]\nfer = "fer"\n[augment]\nlabels = "ferplus"\n'
                                       '[classify]\nclasses = ["a", "b"]\n[extract]\nclasses = ["a"]\n')
    assert main(["status", "--config", str(tmp_path / "old.toml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(": ", 2)[-1] for line in lines] == [
        "[cyclegan] fer moved to [data] fer", "[augment] labels moved to [data] labels",
        "[classify] classes moved to [data] classes"]  # extract's classes is its own option


def test_ferplus_labels_without_the_votes_file_stop_before_any_stage(tmp_path, capsys):
    (tmp_path / "fer").mkdir()
    (tmp_path / "c.toml").write_text('[data]\nfer = "fer"\nlabels = "ferplus"\n')
    assert main(["run", "classify", "--config", str(tmp_path / "c.toml")]) == 2
    assert "[data].ferplus: labels = \"ferplus\" needs" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_runner_restores_the_thread_count_a_stage_sets(project):
    import torch

    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3
    torch.set_num_threads(wanted)
    try:
        text = (project / "pipeline.toml").read_text()
        (project / "pipeline.toml").write_text(text.replace("[extract]\n", "[extract]\nthreads = 1\n", 1)
                                              .replace("\nthreads = 0\n", "\n", 1))
        config = load_config(project / "pipeline.toml")
        assert config.options("extract").threads == 1
        run_pipeline(config, "all")
        assert torch.get_num_threads() == wanted
        second = json.loads((project / "out" / "cyclegan" / "manifest.json").read_text())
        assert second["summary"]["threads"] == wanted  # the later stage ran with the count from before
    finally:
        torch.set_num_threads(before)


def test_execution_options_leave_a_finished_stage_done(project):
    config = load_config(project / "pipeline.toml")
    run_pipeline(config, "all")
    recorded = json.loads((project / "out" / "extract" / "manifest.json").read_text())["fingerprint"]["digest"]
    text = (project / "pipeline.toml").read_text()
    (project / "pipeline.toml").write_text(text.replace("\nthreads = 0\n", "\nthreads = 1\n", 1))
    config = load_config(project / "pipeline.toml")
    assert config.options("extract").threads == 1
    assert states(config)["extract"] == "done" and states(config)["cyclegan"] == "done"
    run_pipeline(config, "all")  # skipped: the manifest is the one from before
    assert json.loads((project / "out" / "extract" / "manifest.json").read_text())["fingerprint"]["digest"] == recorded
    (project / "pipeline.toml").write_text(text.replace("repeat = 1", "repeat = 2", 1))
    config = load_config(project / "pipeline.toml")
    assert stage_status(config, "extract").text == "stale (changed: config)"


def test_real_stages_declare_threads_and_compile_as_execution_options():
    from fertransfer.options import execution_options
    from fertransfer.pipelines.registry import STAGE_MODULES, get_stage

    assert STAGE_MODULES["extract"] == "fertransfer.extract.stage"
    found = {name: execution_options(get_stage(name).options()) for name in ("extract", "cyclegan", "augment")}
    assert found == {"extract": ["threads"], "cyclegan": ["threads", "compile"], "augment": ["threads"]}


@pytest.mark.parametrize("section, values, message", [
    ("cyclegan", {"image_size": 16, "n_layers": 3}, "[cyclegan].image_size: 16 is too small for a PatchGAN"),
    ("cyclegan", {"image_size": 64, "load_size": 60}, "[cyclegan].load_size: 60 is smaller than image_size 64"),
    ("cyclegan", {"lambda_expression": -1.0}, "[cyclegan].lambda_expression: -1.0 is out of range: must be >= 0"),
    ("augment", {"sets": ["real+synth"]}, "[augment].sets: unknown set(s) real+synth"),
    ("augment", {"threads": -1}, "[augment].threads: -1 is negative"),
    ("classify", {"train_sets": []}, "[classify].train_sets: empty"),
    ("classify", {"train_sets": ["real", "real"]}, "[classify].train_sets: a set is named twice"),
    ("classify", {"leave_out": ["bored"]}, "[classify].leave_out: unknown class(es) ['bored']"),
    ("data", {"labels": "ferplus"}, "[data].ferplus: labels = \"ferplus\" needs"),
])
def test_option_rules_stop_the_run_before_any_stage(tmp_path, capsys, section, values, message):
    """Every rule `run` used to find out late is found by `check`: exit 2, nothing written."""
    from fertransfer.pipelines.runner import check_before_run

    (tmp_path / "fer" / "happy").mkdir(parents=True)
    (tmp_path / "video.mp4").write_bytes(b"")
    overrides = {"run": {"dir": "run"}, "data": {"fer": "fer"}, "extract": {"inputs": ["video.mp4"]}}
    (tmp_path / "pipeline.toml").write_text(default_config_text(overrides))
    check_before_run(load_config(tmp_path / "pipeline.toml"), list(registry.STAGE_ORDER))  # the rest is fine
    overrides[section] = {**overrides.get(section, {}), **values}
    (tmp_path / "pipeline.toml").write_text(default_config_text(overrides))
    assert main(["run", "all", "--config", str(tmp_path / "pipeline.toml")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "run").exists()


def test_no_core_config_default_disagrees_with_the_option_it_mirrors():
    import dataclasses

    from fertransfer.classify.options import CNN_OPTIONS
    from fertransfer.classify.stage import ClassifyOptions
    from fertransfer.cyclegan.stage import CycleganOptions, train_config
    from fertransfer.cyclegan.train import TrainConfig
    from fertransfer.expression.config import CnnConfig
    from fertransfer.options import field_default

    for options, config, derived in ((CycleganOptions, TrainConfig, {"load_size", "diffaugment"}), (ClassifyOptions, CnnConfig, set())):
        declared = {f.name: field_default(f) for f in dataclasses.fields(options)}
        mirrored = {f.name: field_default(f) for f in dataclasses.fields(config) if f.name in declared}
        assert mirrored, config
        differ = {name: (declared[name], value) for name, value in mirrored.items()
                  if name not in derived and value != declared[name]}
        assert not differ, f"{config.__name__} defaults differ from {options.__name__}: {differ}"
    assert set(CNN_OPTIONS) <= {f.name for f in dataclasses.fields(ClassifyOptions)}
    # the stage hands the loop every option it mirrors, and derives load_size (9/8 of image_size)
    cfg = train_config(CycleganOptions(steps=7, lambda_expression=0.5), seed=3, device="cpu")
    assert (cfg.steps, cfg.lambda_expression, cfg.load_size, cfg.seed) == (7, 0.5, 72, 3)
