"""Bad input to the runner, one test per kind (issue 24): two runs on one run folder, numeric
options out of range, a project moved or copied, a same-size change inside an output, partial
state left unreadable by a crash, a stage that ends without its outputs, a crash while publishing.

The stages here are fakes (tests/fake_slow.py for extract, pass-throughs from tests/fake_stages.py for
the others) except where a real stage's partial state is the point (classify's metrics.json,
cyclegan's checkpoints and loss log).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

import fertransfer
from fake_stages import PASSTHROUGH_MODULES
from fertransfer.pipelines import load_config, registry, run_pipeline, stage_status
from fertransfer.pipelines.cli import main
from fertransfer.pipelines.config import default_config_text
from fertransfer.pipelines.lock import LOCK_FILE
from fertransfer.pipelines.options import RunOptions, field_default
from fertransfer.pipelines.runner import SCHEME_EDGES, StageError, quick_hash

TESTS = Path(__file__).resolve().parent
SRC = Path(fertransfer.__file__).resolve().parents[1]
# extract is the slow fake stage; the other stages are pass-throughs that read nothing of it.
FAKE_MODULES = {"extract": "fake_slow", **PASSTHROUGH_MODULES}


# --- one run at a time per run folder ----------------------------------------------------------


@pytest.fixture
def slow_project(tmp_path, monkeypatch) -> Path:
    """extract is the slow fake stage, waiting for `release`; the others are pass-throughs."""
    for name, module in FAKE_MODULES.items():
        monkeypatch.setitem(registry.STAGE_MODULES, name, module)
    (tmp_path / "input.txt").write_text("hello")
    (tmp_path / "pipeline.toml").write_text(default_config_text({"run": {"dir": "out"},
                                                                 "extract": {"release": "release"}}))
    return tmp_path


def start_run(project: Path) -> subprocess.Popen:
    """`pipeline run all` in another process, with the same fake stages."""
    code = ("import sys; from fertransfer.pipelines import registry; "
            f"registry.STAGE_MODULES.update({FAKE_MODULES!r}); "
            "from fertransfer.pipelines.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    log = open(project / "first.log", "w")
    return subprocess.Popen([sys.executable, "-c", code, "run", "all", "-c", str(project / "pipeline.toml")],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until_working(project: Path, process: subprocess.Popen) -> None:
    """Until the other run holds the lock and has begun its stage."""
    deadline = time.monotonic() + 60
    while not ((project / "out" / "extract.partial" / "first.txt").exists()
               and (project / "out" / LOCK_FILE).read_text().strip()):
        assert process.poll() is None, (project / "first.log").read_text()
        assert time.monotonic() < deadline, "the first run did not start its stage within 60 s"
        time.sleep(0.05)


def test_a_second_run_on_one_run_folder_exits_at_once_and_the_first_loses_nothing(slow_project, capsys):
    config = str(slow_project / "pipeline.toml")
    first = start_run(slow_project)
    try:
        wait_until_working(slow_project, first)
        t0 = time.perf_counter()
        assert main(["run", "all", "-c", config]) == 1
        assert time.perf_counter() - t0 < 1.0
        err = capsys.readouterr().err
        assert f"is in use by pid {first.pid} (started 20" in err and "run all" in err
        # status reads without the lock, and says who holds it
        assert main(["status", "-c", config]) == 0
        out = capsys.readouterr().out
        assert f"running now: pid {first.pid}" in out and "extract   missing" in out
        (slow_project / "release").touch()
        assert first.wait(60) == 0, (slow_project / "first.log").read_text()
    finally:
        first.kill()
    stage = slow_project / "out" / "extract"
    states = {name: stage_status(load_config(config), name).state for name in registry.STAGE_ORDER}
    assert states == dict.fromkeys(registry.STAGE_ORDER, "done")  # `run all` went on past the slow stage
    assert (stage / "first.txt").read_text() == "hello" and (stage / "second.txt").read_text() == "hello!"
    assert not (slow_project / "out" / "extract.partial").exists()
    assert (slow_project / "out" / LOCK_FILE).read_text() == ""  # released cleanly: nothing to warn about


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(slow_project, caplog):
    config = str(slow_project / "pipeline.toml")
    first = start_run(slow_project)
    try:
        wait_until_working(slow_project, first)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
    assert json.loads((slow_project / "out" / LOCK_FILE).read_text())["pid"] == first.pid  # left behind
    (slow_project / "release").touch()
    with caplog.at_level(logging.WARNING, "fertransfer"):
        assert main(["run", "all", "-c", config]) == 0
    assert f"taking over the lock left by pid {first.pid}" in caplog.text
    assert stage_status(load_config(config), "extract").state == "done"


def test_demo_and_gallery_take_the_lock_too(tmp_path, capsys):
    run_dir = tmp_path / "demo" / "run"
    code = ("import sys, time; from fertransfer.pipelines.lock import run_folder_lock\n"
            "with run_folder_lock(sys.argv[1], command='pipeline run all'):\n"
            "    print('held', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["demo", str(tmp_path / "demo")]) == 1
        assert f"in use by pid {holder.pid}" in capsys.readouterr().err
        assert main(["gallery", str(run_dir)]) == 1  # it would write into run/augment
    finally:
        holder.kill()
        holder.wait()
    assert f"in use by pid {holder.pid}" in capsys.readouterr().err
    assert not (tmp_path / "demo" / "pipeline.toml").exists()  # refused before it wrote anything


# --- numeric options: a range each, checked before anything runs -------------------------------


def numeric_options():
    """(section, field, int or float) of every number option of [run] and the stages (lists of
    numbers included: their range holds for each item; a choice of numbers needs no range)."""
    sections = [("run", RunOptions)] + [(name, registry.get_stage(name).options) for name in registry.STAGE_ORDER]
    for section, cls in sections:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[f.name])) - {type(None)} or {hints[f.name]}
            if f.metadata.get("choices") or bool in kinds:
                continue
            if kinds & {int, float, list[int], list[float]}:
                yield section, f, float if kinds & {float, list[float]} else int


def outside_values(f: dataclasses.Field, kind: type) -> list:
    """Values just outside the option's declared range (and, for floats, nan and inf)."""
    bounds = f.metadata["range"]
    step = 1 if kind is int else 0.5
    values = []
    if "ge" in bounds:
        values.append(kind(bounds["ge"] - step))
    if "gt" in bounds:
        values.append(kind(bounds["gt"]))
    if "le" in bounds:
        values.append(kind(bounds["le"] + step))
    if "lt" in bounds:
        values.append(kind(bounds["lt"]))
    return values + ([math.nan, math.inf] if kind is float else [])


def test_every_numeric_option_declares_a_range():
    found = list(numeric_options())
    assert len(found) > 50
    unbounded = [f"[{s}].{f.name}" for s, f, _ in found if not f.metadata.get("range")]
    assert not unbounded, f"numeric options without a range: {unbounded}"


def test_init_writes_each_range_in_the_comments(tmp_path):
    assert main(["init", str(tmp_path)]) == 0
    text = (tmp_path / "pipeline.toml").read_text()
    assert "# Training steps in all (with time_budget_minutes: the most it may run). Range: >= 1.\nsteps = 5000" in text
    assert "Adam learning rate (beta1 0.5). Range: > 0.\nlr = 0.0002" in text
    assert "Range: >= 32 and <= 1024.\ncrop_size = 128" in text


def toml_number(value) -> str:
    return "nan" if value != value else ("inf" if value == math.inf else repr(value))


def test_fuzz_out_of_range_values_exit_2_before_any_run_folder_exists(tmp_path, capsys):
    """Each numeric option, just outside its range (and nan, inf), alone in a config: exit 2
    with a line naming the key, and no run folder."""
    tried = 0
    for section, f, kind in numeric_options():
        for value in outside_values(f, kind):
            path = tmp_path / "pipeline.toml"
            run = "" if section == "run" else '[run]\ndir = "run"\n'
            text = toml_number(value) if not isinstance(field_default(f), list) else f"[{toml_number(value)}]"
            path.write_text(f"{run}[{section}]\n{f.name} = {text}\n"
                            + ('dir = "run"\n' if section == "run" and f.name != "dir" else ""))
            assert main(["run", "all", "-c", str(path)]) == 2, f"[{section}].{f.name} = {value}"
            err = capsys.readouterr().err
            assert sum(f"[{section}].{f.name}: " in line for line in err.splitlines()) == 1, err  # once
            assert not (tmp_path / "run").exists()
            tried += 1
    assert tried > 80


def test_all_out_of_range_values_are_listed_in_one_message(tmp_path, capsys):
    path = tmp_path / "pipeline.toml"
    path.write_text('[run]\ndir = "run"\n[cyclegan]\nsteps = 0\nbatch_size = -1\ncheckpoint_every = 0\nlr = -1.0\n'
                    "[extract]\ncrop_size = 7\n")
    assert main(["run", "all", "-c", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    for key in ("cyclegan].steps", "cyclegan].batch_size", "cyclegan].checkpoint_every", "cyclegan].lr",
                "extract].crop_size"):
        assert sum(key in line for line in err) == 1, (key, err)
    assert not (tmp_path / "run").exists()


# --- fingerprints survive a move; outputs are hashed whole where small -------------------------


@pytest.fixture
def fake_project(tmp_path, monkeypatch) -> Path:
    for name, module in FAKE_MODULES.items():
        monkeypatch.setitem(registry.STAGE_MODULES, name, module)
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "input.txt").write_text("hello")
    (project / "pipeline.toml").write_text(default_config_text({"run": {"dir": "out"},
                                                                "extract": {"source": "data/input.txt"}}))
    return project




def test_a_project_copied_with_cp_a_stays_done(fake_project, tmp_path):
    run_pipeline(load_config(fake_project / "pipeline.toml"), "all")
    copy = tmp_path / "elsewhere" / "copied"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(fake_project), str(copy)], check=True)
    subprocess.run(["rm", "-rf", str(fake_project)], check=True)  # nothing may still point at the original
    config = load_config(copy / "pipeline.toml")
    assert stage_status(config, "extract").state == "done"
    manifest = json.loads((copy / "out" / "extract" / "manifest.json").read_text())
    assert list(manifest["fingerprint"]["inputs"]) == ["data/input.txt"]
    (copy / "data" / "input.txt").write_text("HELLO")  # and a real change is still seen
    assert stage_status(config, "extract").reason == "changed: inputs"


def test_a_same_size_change_inside_a_checkpoint_is_damage(fake_project):
    config = load_config(fake_project / "pipeline.toml")
    run_pipeline(config, "extract")
    weights = fake_project / "out" / "extract" / "weights.bin"
    data = bytearray(weights.read_bytes())
    assert len(data) > 2 * 64 * 1024  # the middle of the file is beyond the first and last 64 KiB
    data[len(data) // 2: len(data) // 2 + 4] = b"\x7f\x7f\xff\xff"  # a weight of 3.4e38
    weights.write_bytes(bytes(data))
    status = stage_status(config, "extract")
    assert status.state == "damaged" and status.reason == "weights.bin changed"
    assert main(["run", "extract", "-c", str(fake_project / "pipeline.toml")]) == 0
    assert weights.read_bytes() == bytes(range(256)) * 1200


def test_a_manifest_of_the_edges_only_scheme_is_still_checked_by_it(fake_project):
    """Run folders written before whole-file hashing are not all 'damaged' after the upgrade."""
    config = load_config(fake_project / "pipeline.toml")
    run_pipeline(config, "extract")
    stage = fake_project / "out" / "extract"
    manifest = json.loads((stage / "manifest.json").read_text())
    names = list(manifest["output_check"]["files"])
    manifest["output_check"] = {"scheme": SCHEME_EDGES, "count": len(names), "hashed": len(names),
                                "files": {n: [(stage / n).stat().st_size, quick_hash(stage / n)] for n in names}}
    (stage / "manifest.json").write_text(json.dumps(manifest))
    assert stage_status(config, "extract").state == "done"


# --- partial state, missing outputs, a crash while publishing ----------------------------------


def test_unreadable_run_folder_files_are_never_a_traceback(fake_project, capsys):
    config_path = str(fake_project / "pipeline.toml")
    assert main(["run", "all", "-c", config_path]) == 0
    out = fake_project / "out"
    (out / ".input-digests.json").write_text('{"trunc')
    (out / LOCK_FILE).write_bytes(b"\x00\xff garbage")
    (out / "extract" / "manifest.json").write_text('{"stage": "ext')
    assert main(["status", "-c", config_path]) == 0
    assert "extract   missing" in capsys.readouterr().out
    assert main(["run", "all", "-c", config_path]) == 0
    assert stage_status(load_config(config_path), "extract").state == "done"


def test_a_stage_without_its_declared_outputs_is_not_published(fake_project, monkeypatch):
    import fake_slow

    monkeypatch.setattr(fake_slow, "STAGE", dataclasses.replace(fake_slow.STAGE, outputs=("model.pt",)))
    config = load_config(fake_project / "pipeline.toml")
    with pytest.raises(StageError, match=r"extract: ended without model.pt in .*extract.partial; not marked done"):
        run_pipeline(config, "extract")
    assert stage_status(config, "extract").state == "missing"
    assert not (fake_project / "out" / "extract").exists()


def test_a_crash_between_the_two_renames_of_publishing_is_recovered(fake_project, monkeypatch, caplog):
    config_path = str(fake_project / "pipeline.toml")
    run_pipeline(load_config(config_path), "extract")
    (fake_project / "data" / "input.txt").write_text("changed")
    renames = []
    real_rename = Path.rename

    def crash_on_the_second(self, target):
        renames.append(target)
        if len(renames) == 2:
            raise KeyboardInterrupt  # the process dies between `extract` -> `extract.old` and `.partial` -> `extract`
        return real_rename(self, target)

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(Path, "rename", crash_on_the_second)
        run_pipeline(load_config(config_path), "extract")
    out = fake_project / "out"
    assert not (out / "extract").exists() and (out / "extract.old").is_dir() and (out / "extract.partial").is_dir()
    started = json.loads((out / "extract.partial" / "manifest.json").read_text())["timings"]["started"]

    config = load_config(config_path)
    assert stage_status(config, "extract").text == "interrupted, finished but not published: `pipeline run` publishes it"
    with caplog.at_level(logging.INFO, "fertransfer"):
        assert main(["run", "extract", "-c", config_path]) == 0
    assert "finished but was not published; publishing it" in caplog.text
    assert stage_status(config, "extract").state == "done"
    assert (out / "extract" / "first.txt").read_text() == "changed"
    assert json.loads((out / "extract" / "manifest.json").read_text())["timings"]["started"] == started  # not rerun
    assert not (out / "extract.old").exists() and not (out / "extract.partial").exists()


# --- unreadable partial state of the real stages: redone with a warning naming the file --------


def test_a_truncated_metrics_json_in_classify_partial_is_trained_again(smileys, tmp_path, monkeypatch, caplog):
    from fertransfer.classify import experiments

    config_path = tmp_path / "pipeline.toml"
    config_path.write_text(default_config_text({"run": {"dir": "run", "device": "cpu"}, "data": {"fer": str(smileys)},
                                                "classify": {"epochs": 1, "width": 8, "batch_size": 32, "patience": 0,
                                                             "tta": "center"}}))
    config = load_config(config_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(experiments, "comparison_rows", interrupted)  # after 'real' is trained and scored
        run_pipeline(config, "classify")
    metrics = tmp_path / "run" / "classify.partial" / "real" / "metrics.json"
    metrics.write_text(metrics.read_text()[:100])  # cut short, as by a full disk
    with caplog.at_level(logging.WARNING, "fertransfer"):
        assert main(["run", "classify", "-c", str(config_path)]) == 0
    assert f"{metrics}: unreadable (" in caplog.text and "training that set again" in caplog.text
    assert stage_status(config, "classify").state == "done"
    assert json.loads((tmp_path / "run" / "classify" / "real" / "metrics.json").read_text())["training"]


def test_truncated_cyclegan_partial_files_are_redone_from_the_last_good_checkpoint(smileys, tmp_path, monkeypatch,
                                                                                  caplog):
    from fertransfer.cyclegan import train as train_module
    from test_cyclegan import face_folder, write_config

    config_path = write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, fer_classes=["happy", "sad"])
    config = load_config(config_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(train_module, "plot_losses", interrupted)  # after step 6, before the manifest
        run_pipeline(config, "cyclegan")
    work = tmp_path / "run" / "cyclegan.partial"
    newest = work / "checkpoints" / "step_00000006.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    with open(work / "losses.csv", "a") as handle:
        handle.write("7,0.000")  # a row cut short
    for weights in (work / "expression_classifier").iterdir():
        if weights.suffix != ".json" and weights.is_file():
            weights.write_bytes(weights.read_bytes()[:50])
    assert stage_status(config, "cyclegan").text == "interrupted, resumes from step 6"

    with caplog.at_level(logging.WARNING, "fertransfer"):
        assert main(["run", "cyclegan", "-c", str(config_path)]) == 0
    assert "step_00000006.pt: not a readable checkpoint" in caplog.text
    assert "expression_classifier: the kept expression classifier does not load" in caplog.text
    status = stage_status(config, "cyclegan")
    assert status.state == "done" and status.manifest["summary"]["resumed_from_step"] == 3
    assert len((tmp_path / "run" / "cyclegan" / "losses.csv").read_text().splitlines()) == 7  # header + 6 steps


def test_a_cyclegan_checkpoint_changed_in_a_few_bytes_is_damaged(smileys, tmp_path):
    from test_cyclegan import face_folder, write_config

    config = load_config(write_config(tmp_path, face_folder(tmp_path / "faces"), smileys, fer_classes=["happy", "sad"],
                                      lambda_expression=0.0))
    run_pipeline(config, "cyclegan")
    latest = tmp_path / "run" / "cyclegan" / "checkpoints" / "latest.pt"
    data = bytearray(latest.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4] = b"\x7f\x7f\xff\xff"
    latest.write_bytes(bytes(data))
    status = stage_status(config, "cyclegan")
    assert status.state == "damaged" and "checkpoints/latest.pt changed" in status.reason
