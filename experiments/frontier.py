"""The frontier between keeping the expression and reaching the person, as one picture.

    PYTHONPATH=src python experiments/frontier.py -c examples/mead_M030.toml \\
        --judge ../runs/fer2013_cnn/classify/real/model \\
        --set generator=resnet_6blocks,resnet_6blocks_residual_resize --set lambda_expression=0,1 \\
        --common steps=2000 threads=1

Runs the cyclegan stage once per setting of a grid on one person's config and plots judge
agreement (y) against the person score (x) on translated FER PrivateTest, one labelled point per
setting; writes frontier.csv, frontier.json and frontier.png. A setting is a set of [cyclegan]
options over the config's own: `--set KEY=V1,V2,...` (repeatable; the grid is their product),
or a TOML file (`--grid FILE`) with `[grid]` (key = [values], a product) and/or
`[[settings]]` tables (one setting each, `name` optional); `--common KEY=VALUE ...` applies to
every setting (sizes, steps, threads, an `expression_classifier` trained once).

Each setting runs in `<run dir>/frontier/<setting>/` (its config beside it as setting.json)
with the person's extract stage shared (linked, run once in the run dir): the runner's
fingerprints skip a setting whose cyclegan stage is already done, so a rerun or a larger grid
reuses finished points, and an interrupted setting resumes from its checkpoint. The judge is
`--judge`, else the config's [cyclegan] or [classify] judge, else the run's classify/real/model.
A setting that fails is reported and the others go on; the exit status is then 1. With
`--include` alone (no --set or --grid) nothing is trained: finished runs, e.g. settings run side by
side in separate folders, are drawn together. With `--rescore KEY=VALUE ...` as well, each included
run's final evaluation is done again under its own recorded options with those changed (a stricter
person score, `person_score_blends=0.5`; another judge; more test faces), its generator as trained:
seconds per run instead of its training time. Its recorded score stays beside it
(person_score_as_run), and each run's new person_score.pt and translation.json go to
`<out>/<name>/`; the runs themselves are not touched.

When the person has labelled faces (the config's [classify] person_test, e.g. extract's
person_test/), the plot also draws the judge's accuracy on them, brought through the generator's
size as translations are: how well the judge reads the person's own expressions at all, a
yardstick for judge agreement on translations into the person (column judge_person_accuracy,
per class in frontier.json; judge_source_accuracy is its accuracy on the FER sources).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import re
import sys
from pathlib import Path

import tomllib

from fertransfer.errors import StageError
from fertransfer.pipelines.config import ConfigError, load_config, parse_config, resolve
from fertransfer.pipelines.runner import read_manifest, run_pipeline

log = logging.getLogger("frontier")
NAMED_POINTS = 6  # more points than this are numbered, their names listed beside the plot

COLUMNS = ("setting", "person_score", "judge_agreement", "swd_translated", "swd_untranslated", "swd_change",
           "person_control", "untranslated_control", "hybrid_control", "person_crops", "images", "steps", "train_seconds",
           "judge_source_accuracy", "judge_person_accuracy", "person_score_as_run", "warning", "error")


def parse_value(text: str):
    """A TOML value (1, 0.5, true, "x", [1, 2]); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def grid_settings(sets: list[str], grid_file: Path | None) -> list[dict]:
    """The settings: the product of `--set` lists and the file's [grid], plus its [[settings]]."""
    axes: dict[str, list] = {}
    explicit: list[dict] = []
    if grid_file is not None:
        data = tomllib.loads(grid_file.read_text())
        unknown = set(data) - {"grid", "settings"}
        if unknown:
            raise ValueError(f"{grid_file}: unknown table(s) {sorted(unknown)} (known: grid, settings)")
        for key, values in (data.get("grid") or {}).items():
            axes[key] = values if isinstance(values, list) else [values]
        explicit = [dict(s) for s in data.get("settings") or []]
    for text in sets:
        key, value = parse_assignment(text)
        axes[key] = [parse_value(v) for v in value.split(",")]
    product = [dict(zip(axes, values)) for values in itertools.product(*axes.values())] if axes else []
    settings = product + explicit
    return settings or [{}]  # no grid: the config's own setting, alone


def setting_name(setting: dict) -> str:
    """A label and folder name: the setting's options, or its given `name`."""
    if "name" in setting:
        return str(setting["name"])
    if not setting:
        return "config"
    return ",".join(f"{k}={v}" for k, v in setting.items())


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", name).replace(",", "__").replace("=", "-")


def find_judge(config, given: str | None) -> Path | None:
    if given:
        return Path(given).resolve()
    for stage in ("cyclegan", "classify"):
        value = getattr(config.options(stage), "judge", "") if stage in config.sections else ""
        if value:
            return resolve(config.base_dir, value).resolve()
    model = config.run_dir / "classify" / "real" / "model"
    return model.resolve() if model.is_dir() else None


def setting_config(data: dict, config_path: Path, folder: Path, overrides: dict):
    """The person's config with its run dir moved to `folder` and the setting's [cyclegan] options."""
    data = {section: dict(values) for section, values in data.items()}
    data.setdefault("run", {})["dir"] = str(folder.resolve())
    data["cyclegan"] = {**data.get("cyclegan", {}), **overrides}
    config, problems = parse_config(data, config_path.resolve())
    if problems:
        raise ConfigError([f"setting {setting_name(overrides)}: {p}" for p in problems])
    return config, data["cyclegan"]


def point(name: str, summary: dict) -> dict:
    """One row of the frontier from a finished cyclegan manifest's summary."""
    translation = summary.get("translation") or {}
    controls = translation.get("controls") or {}
    swd = (summary.get("swd") or {}).get("BtoA") or {}
    judge = translation.get("judge") or {}
    row = {
        "setting": name,
        "person_score": (translation.get("person_score") or {}).get("overall"),
        "judge_agreement": (judge.get("judge_agreement") or {}).get("overall"),
        "swd_translated": swd.get("translated"), "swd_untranslated": swd.get("untranslated"),
        "swd_change": (round(swd["translated"] / swd["untranslated"] - 1, 4) if swd.get("untranslated") else None),
        "person_control": controls.get("held_out_person_crops"),
        "untranslated_control": controls.get("untranslated_sources"),
        # the largest share of hybrids it took for the person, over their detail scales
        "hybrid_control": max((controls.get("blends") or {}).values(), default=None),
        "person_crops": translation.get("person_crops"), "images": translation.get("images"),
        "steps": summary.get("steps"), "train_seconds": summary.get("train_seconds"),
        "judge_source_accuracy": (judge.get("source_accuracy") or {}).get("overall"),
        "warning": translation.get("warning") or translation.get("not_computed"), "error": None,
    }
    per_class = {"person_score": (translation.get("person_score") or {}).get("per_class"),
                 "judge_agreement": (judge.get("judge_agreement") or {}).get("per_class")}
    return {**row, "per_class": per_class, "time_budget": summary.get("time_budget")}


def included_point(name: str, run_dir: str) -> dict:
    """The point of a run folder whose cyclegan stage is done (--include)."""
    manifest = read_manifest(Path(run_dir) / "cyclegan")
    if not manifest or "summary" not in manifest:
        raise ValueError(f"--include {name}={run_dir}: no finished cyclegan stage there")
    return point(name, manifest["summary"])


def person_test_folder(config) -> Path | None:
    """The person's labelled faces, where the config's [classify] person_test says (extract's
    person_test/ for "extract"), or extract's person_test/ when there is no [classify]."""
    value = config.options("classify").person_test if "classify" in config.sections else "extract"
    if not value:
        return None
    folder = config.run_dir / "extract" / "person_test" if value == "extract" else resolve(config.base_dir, value)
    return folder if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")) else None


def person_reference(config, judge_path: Path) -> dict | None:
    """The judge's accuracy on the person's own labelled faces, brought through the generator's
    size as translations are: what it can read on the person at all, the yardstick for judge
    agreement on translations into the person. None without labelled faces of the person."""
    from fertransfer.classify.testsets import load_test_set
    from fertransfer.data.classes import class_set
    from fertransfer.expression.judge import judge_accuracy_at_size
    from fertransfer.expression.models import load_classifier, predict_labels

    folder = person_test_folder(config)
    if folder is None:
        return None
    judge = load_classifier(judge_path)
    test = load_test_set(folder, class_set(judge.classes), judge.channels, None, where=str(folder))
    rates = judge_accuracy_at_size(lambda x: predict_labels(judge, x)[0], test.data.images, test.data.labels,
                                   judge.classes, config.options("cyclegan").image_size, judge.size,
                                   judge.channels)
    log.info("judge accuracy on the person's own labelled faces (%s, %d images, through %d px): %.3f", folder,
             rates["images"], config.options("cyclegan").image_size, rates["overall"])
    return {**rates, "folder": str(folder)}


def plot(points: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in points if p["person_score"] is not None and p["judge_agreement"] is not None]
    numbered = len(shown) > NAMED_POINTS  # many labels would overlap: numbers on the plot, names beside it
    fig, ax = plt.subplots(figsize=(13 if numbered else 8, 6), dpi=110)
    # Labels of points close together (settings that barely differ) alternate above and below.
    by_height = sorted(enumerate(shown, 1), key=lambda np_: (np_[1]["judge_agreement"], np_[1]["person_score"]))
    moved = False
    for rank, (number, p) in enumerate(by_height):
        ax.scatter(p["person_score"], p["judge_agreement"], s=36)
        before = p.get("person_score_as_run")
        if before is not None and before != p["person_score"]:  # rescored: an arrow from the run's own score
            moved = True
            ax.scatter(before, p["judge_agreement"], s=36, facecolors="none", edgecolors="0.6")
            ax.annotate("", (p["person_score"], p["judge_agreement"]), xytext=(before, p["judge_agreement"]),
                        arrowprops={"arrowstyle": "->", "color": "0.6", "linewidth": 0.7})
        ax.annotate(str(number) if numbered else p["setting"], (p["person_score"], p["judge_agreement"]),
                    fontsize=7, xytext=(4, 4 if rank % 2 else -10), textcoords="offset points")
    if numbered:
        names = [f"{n}. {p['setting']}: {p['person_score']:.2f}"
                 + (f" (was {p['person_score_as_run']:.2f})" if p.get("person_score_as_run") is not None else "")
                 + f", {p['judge_agreement']:.1%}" for n, p in enumerate(shown, 1)]
        fig.text(0.63, 0.95, "\n".join(names), va="top", fontsize=7)
    if moved:
        ax.scatter([], [], s=36, facecolors="none", edgecolors="0.6", label="the person score the run recorded (arrow: rescored)")
    controls = [p["untranslated_control"] for p in shown if p["untranslated_control"] is not None]
    if controls:
        ax.axvline(sum(controls) / len(controls), color="0.6", linestyle=":", label="untranslated FER (control)")
    person = [p["judge_person_accuracy"] for p in shown if p.get("judge_person_accuracy") is not None]
    if person:
        sources = [p["judge_source_accuracy"] for p in shown if p.get("judge_source_accuracy") is not None]
        ax.axhline(person[0], color="tab:purple", linestyle="-.", linewidth=0.8,
                   label=f"judge accuracy on the person's own labelled faces: {person[0]:.1%}"
                         + (f" (on the FER sources: {sum(sources) / len(sources):.1%})" if sources else ""))
    ax.axhline(0.85, color="tab:green", linestyle="--", linewidth=0.8, label="targets: agreement 0.85, person 0.8")
    ax.axvline(0.8, color="tab:green", linestyle="--", linewidth=0.8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("person score (share of translated PrivateTest taken for the person)")
    ax.set_ylabel("judge agreement on translated PrivateTest")
    missing = len(points) - len(shown)
    ax.set_title(title + (f" ({missing} setting(s) without both figures)" if missing else ""), fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.62 if numbered else 1, 1))
    fig.savefig(path)
    plt.close(fig)


def rescored_point(name: str, run_dir: str, config_path: Path, overrides: dict, out: Path) -> dict:
    """The point of a finished run whose final evaluation is done again under its recorded
    [cyclegan] options with `overrides` (nothing retrained; the run's folder is only read).

    The options and seed come from the run's manifest (its fingerprint), [data] from the config
    given with -c, which must name the same data (a differing FER or faces folder is an error).
    """
    import dataclasses

    from fertransfer.cyclegan.options import CycleganOptions
    from fertransfer.cyclegan.stage import STAGE, rescore
    from fertransfer.pipelines.runner import resolve_artifacts
    from fertransfer.pipelines.stage import StageContext

    run_dir = Path(run_dir).resolve()
    manifest = read_manifest(run_dir / "cyclegan")
    if not manifest or "summary" not in manifest or "fingerprint" not in manifest:
        raise ValueError(f"--include {name}={run_dir}: no finished cyclegan stage there")
    recorded = manifest["fingerprint"]["config"]
    data = tomllib.loads(Path(config_path).read_text())
    data["run"] = {**data.get("run", {}), "dir": str(run_dir), "seed": manifest["fingerprint"]["seed"]}
    known = {f.name for f in dataclasses.fields(CycleganOptions)}
    data["cyclegan"] = {**{k: v for k, v in recorded.items() if k in known and v is not None}, **overrides}
    config, problems = parse_config(data, Path(config_path).resolve())
    if problems:
        raise ConfigError([f"--rescore {name}: {p}" for p in problems])
    here = lambda value: resolve(config.base_dir, value).resolve() if value else None  # noqa: E731
    for key in ("fer", "faces"):  # the data its held-out crops and test faces come from
        if key in recorded and here(recorded[key]) != here(getattr(config.data, key)):
            raise ValueError(f"--include {name}={run_dir}: the run's [data] {key} {recorded[key]!r} is not the config's "
                             f"{getattr(config.data, key)!r}: give the run's own config with -c")
    folder = out / folder_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    context = StageContext(name="cyclegan", options=config.options("cyclegan"), run=config.run, run_dir=run_dir,
                           out_dir=folder, artifacts=resolve_artifacts(config, STAGE), config_dir=config.base_dir,
                           log=logging.getLogger("fertransfer.cyclegan"), data=config.data)
    translation = rescore(context, run_dir / "cyclegan" / "checkpoints" / "latest.pt")
    (folder / "translation.json").write_text(json.dumps({"run": str(run_dir), "rescored_with": overrides,
                                                         "translation": translation}, indent=1, default=str))
    as_run = ((manifest["summary"].get("translation") or {}).get("person_score") or {}).get("overall")
    return {**point(name, {**manifest["summary"], "translation": translation}), "person_score_as_run": as_run}


def rescored_or_failed(name: str, run_dir: str, config_path: Path, overrides: dict, out: Path) -> dict:
    """`rescored_point`, or a row naming the error: one run that cannot be scored must not lose the others."""
    try:
        return rescored_point(name, run_dir, config_path, overrides, out)
    except ConfigError:
        raise  # a misspelt option is the same for every run: stop before scoring any
    except Exception as error:  # noqa: BLE001
        log.error("rescoring %s failed: %s: %s", name, type(error).__name__, error)
        message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return {**{c: None for c in COLUMNS}, "setting": name, "error": message}


def run_frontier(config_path: Path, settings: list[dict], common: dict, judge: str | None = None,
                 out: Path | None = None, dry_run: bool = False, included: list[dict] = ()) -> list[dict]:
    """Each setting's point (after the `included` ones), the outputs rewritten after every setting."""
    config_path = Path(config_path)
    base = load_config(config_path)
    data = tomllib.loads(config_path.read_text())
    judge_path = find_judge(base, judge)
    if judge_path is None:
        raise StageError("no judge: give --judge (a classify-stage model trained on real FER), set [classify] judge, "
                         f"or run the config's classify stage first ({base.run_dir / 'classify' / 'real' / 'model'})")
    out = Path(out) if out else base.run_dir / "frontier"
    uses_extract = not base.data.faces
    # Every setting's config first: a misspelt option stops the run before any training.
    planned = []
    for setting in settings:
        name = setting_name(setting)
        overrides = {**common, **{k: v for k, v in setting.items() if k != "name"}, "judge": str(judge_path)}
        folder = out / folder_name(name)
        planned.append((name, folder, *setting_config(data, config_path, folder, overrides)))
    names = [name for name, *_ in planned]
    if len(set(names)) != len(names):
        raise ValueError(f"two settings share a name: {names}")
    if dry_run:
        for name, folder, _, cyclegan in planned:
            print(f"{name}: {folder}\n  [cyclegan] {json.dumps(cyclegan)}")
        print(f"judge: {judge_path}; extract: {base.run_dir / 'extract' if uses_extract else 'not used'}")
        return []
    out.mkdir(parents=True, exist_ok=True)
    if uses_extract and planned:
        run_pipeline(base, "extract")  # once, shared by every setting (skipped when done)
    reference = person_reference(base, judge_path)
    title = f"{config_path.name}: judge agreement against person score"
    points = [with_reference(p, reference) for p in included]
    if included:
        write_outputs(points, out, title)
    for number, (name, folder, config, cyclegan) in enumerate(planned, 1):
        log.info("setting %d/%d: %s", number, len(planned), name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "setting.json").write_text(json.dumps({"name": name, "cyclegan": cyclegan}, indent=1))
            if uses_extract and not (folder / "extract").exists():
                (folder / "extract").symlink_to((base.run_dir / "extract").resolve(), target_is_directory=True)
            (status,) = run_pipeline(config, "cyclegan")
            summary = (status.manifest or read_manifest(folder / "cyclegan") or {}).get("summary") or {}
            points.append(with_reference(point(name, summary), reference))
        except Exception as error:  # noqa: BLE001 - one failed setting must not lose the others
            log.error("setting %s failed: %s: %s", name, type(error).__name__, error)
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            points.append({**{c: None for c in COLUMNS}, "setting": name, "error": message})
        write_outputs(points, out, title)
    return points


def with_reference(row: dict, reference: dict | None) -> dict:
    """A point with the judge's accuracy on the person's own faces beside it (the same for every
    setting of one person)."""
    if reference is None:
        return row
    per_class = {**(row.get("per_class") or {}), "judge_person_accuracy": reference["per_class"]}
    return {**row, "judge_person_accuracy": reference["overall"], "per_class": per_class}


def write_outputs(points: list[dict], out: Path, title: str) -> None:
    with open(out / "frontier.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(points)
    (out / "frontier.json").write_text(json.dumps(points, indent=1, default=str))
    plot(points, out / "frontier.png", title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, type=Path, help="the person's pipeline.toml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="a [cyclegan] option and its values (repeatable; the grid is the product)")
    parser.add_argument("--grid", type=Path, help="TOML with [grid] (key = [values]) and/or [[settings]] tables")
    parser.add_argument("--common", nargs="*", default=[], metavar="KEY=VALUE",
                        help="[cyclegan] options for every setting (e.g. steps=2000 threads=1)")
    parser.add_argument("--judge", help="a classify-stage model trained on real FER")
    parser.add_argument("--out", type=Path, help="where the settings and the plot go (default: <run dir>/frontier)")
    parser.add_argument("--include", action="append", default=[], metavar="NAME=RUN_DIR",
                        help="also plot a finished run's cyclegan stage as the point NAME (repeatable), e.g. the "
                             "person's own `pipeline run all`")
    parser.add_argument("--rescore", nargs="+", metavar="KEY=VALUE",
                        help="with --include only: evaluate each included run again under its own [cyclegan] "
                             "options with these changed (e.g. person_score_blends=0.5); nothing is trained")
    parser.add_argument("--dry-run", action="store_true", help="check and print the settings; run nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        only_included = args.include and not args.set and not args.grid
        settings = [] if only_included else grid_settings(args.set, args.grid)
        common = {k: parse_value(v) for k, v in map(parse_assignment, args.common)}
        if args.rescore:
            if not only_included:
                raise ValueError("--rescore evaluates --include'd runs again: give no --set or --grid with it")
            overrides = {**common, **{k: parse_value(v) for k, v in map(parse_assignment, args.rescore)}}
            out = args.out or load_config(args.config).run_dir / "frontier_rescored"
            included = [rescored_or_failed(*parse_assignment(text), args.config, overrides, out) for text in args.include]
            args.out = out
        else:
            included = [included_point(*parse_assignment(text)) for text in args.include]
        points = run_frontier(args.config, settings, common, args.judge, args.out, args.dry_run, included)
        if args.dry_run:
            return 0
    except (ConfigError, StageError, ValueError, OSError, tomllib.TOMLDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for p in points:
        if p["error"]:
            print(f"{p['setting']}: FAILED: {p['error']}")
        else:
            fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
            print(f"{p['setting']}: person score {fmt(p['person_score'])}, judge agreement "
                  f"{fmt(p['judge_agreement'])}, SWD change {fmt(p['swd_change'])}, {p['steps']} steps"
                  + (f" [{p['warning']}]" if p["warning"] else ""))
    person = next((p["judge_person_accuracy"] for p in points if p.get("judge_person_accuracy") is not None), None)
    if person is not None:
        print(f"the judge's accuracy on the person's own labelled faces: {person:.3f} (the yardstick for agreement)")
    out = args.out or load_config(args.config).run_dir / "frontier"
    print(f"frontier: {out / 'frontier.png'} ({out / 'frontier.csv'}, {out / 'frontier.json'})")
    return 1 if any(p["error"] for p in points) else 0


if __name__ == "__main__":
    sys.exit(main())
