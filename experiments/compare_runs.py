"""Training sets from different run folders, compared on the same person, paired by seed.

    PYTHONPATH=src python experiments/compare_runs.py \\
        real=runs/mead_M030_cut/classify/real \\
        cut=runs/mead_M030_cut/classify/real_synthetic \\
        paper=runs/mead_M030_paper/classify/real_synthetic \\
        --person-test runs/mead_M030/extract/person_test

The classify stage pairs its sets by seed within one run; translations of another generator
live in another run folder. Each NAME=FOLDER is a set's folder of a finished classify stage
(its first seed's `person_predictions.npz` and `metrics.json`, further seeds in `seed_<n>/`);
every folder must hold the same seeds and have scored the same person_test (the same extract). Prints,
per set: FER test accuracy, and person accuracy per frame and per clip (majority label, mean
probability) as mean ± std over seeds with the 95% interval from resampling clips, and the
difference from the reference (the first set, or --reference) paired by seed, with the same
statistics the stage uses (`fertransfer.classify.clips.person_statistics`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fertransfer.classify.clips import LEVELS, find_clips, mean_std, person_statistics
from fertransfer.classify.protocol import plot_statistics
from fertransfer.classify.testsets import load_test_set
from fertransfer.data.classes import class_set


def seed_runs(folder: Path) -> dict[int, Path]:
    """{seed: folder} of one set: the folder itself and its seed_<n>/ subfolders."""
    runs = {}
    for path in [folder, *sorted(folder.glob("seed_*"))]:
        metrics = path / "metrics.json"
        if not (metrics.is_file() and (path / "person_predictions.npz").is_file()):
            raise ValueError(f"{path}: no metrics.json and person_predictions.npz (a classify set folder "
                             "with person_test)")
        runs[int(json.loads(metrics.read_text())["seed"])] = path
    return runs


def load_sets(named: dict[str, Path]) -> tuple[list[int], dict, list[str]]:
    """Seeds, {name: {"probs", "predicted", "fer"}} (one entry per seed), and the class names."""
    sets, seeds, classes = {}, None, None
    for name, folder in named.items():
        runs = seed_runs(folder)
        if seeds is None:
            seeds = sorted(runs)
        elif sorted(runs) != seeds:
            raise ValueError(f"{name}: seeds {sorted(runs)}, the first set has {seeds}: no pairing")
        metrics = [json.loads((runs[s] / "metrics.json").read_text()) for s in seeds]
        saved = [np.load(runs[s] / "person_predictions.npz") for s in seeds]
        classes = classes or metrics[0]["classes"]
        if metrics[0]["classes"] != classes:
            raise ValueError(f"{name}: classes {metrics[0]['classes']}, the first set has {classes}")
        sets[name] = {"probs": [p["probs"] for p in saved], "predicted": [p["labels"] for p in saved],
                      "fer": [m["test"]["accuracy"] for m in metrics]}
    return seeds, sets, classes


def compare(named: dict[str, Path], person_test: Path, reference: str, draws: int = 2000, seed: int = 0) -> dict:
    """The statistics of every set, the reference's difference included."""
    seeds, sets, classes = load_sets(named)
    test = load_test_set(person_test, class_set(classes), 1, 16, where=str(person_test))
    labels, files = test.data.labels, test.data.files
    for name, s in sets.items():
        if any(len(p) != len(labels) for p in s["probs"]):
            raise ValueError(f"{name}: predictions for {len(s['probs'][0])} frames, {person_test} has {len(labels)}: "
                             "not the set it scored")
    clips = find_clips(files, labels, len(classes))
    predicted = {name: s["predicted"] for name, s in sets.items()}
    person = person_statistics(labels, {name: s["probs"] for name, s in sets.items()}, clips, reference, draws, seed,
                               predicted)
    fer = {}
    for name, s in sets.items():
        fer[name] = mean_std(s["fer"])
        if name != reference:
            fer[name]["difference"] = mean_std(np.subtract(s["fer"], sets[reference]["fer"]))
    return {"seeds": seeds, "frames": len(labels), "clips": clips.count, "warnings": clips.warnings,
            "reference": reference, "fer_test": fer, "person": person}


def markdown(result: dict) -> str:
    def cell(figures: dict) -> str:
        text = f"{100 * figures['mean']:.1f}" + (f" ± {100 * figures['std']:.1f}" if figures.get("std") else "")
        if "interval" in figures:
            low, high = figures["interval"]
            text += f" [{100 * low:.1f}, {100 * high:.1f}]"
        return text

    reference = result["reference"]
    header = ["set", "FER test", *(f"person, {level}" for level in LEVELS)]
    lines = [f"{len(result['seeds'])} seeds {result['seeds']}, {result['frames']} frames in {result['clips']} clips; "
             f"mean ± std over seeds [95% interval resampling clips]; differences from '{reference}' paired by seed",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, levels in result["person"].items():
        row = [name, cell(result["fer_test"][name]), *(cell(levels[level]) for level in LEVELS)]
        lines.append("| " + " | ".join(row) + " |")
        if name != reference:
            row = [f"{name} − {reference}", cell(result["fer_test"][name]["difference"]),
                   *(cell(levels[level]["difference"]) for level in LEVELS)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines + [f"warning: {w}" for w in result["warnings"]]) + "\n"


def chart(result: dict, path: Path) -> None:
    """The figures as the classify stage draws its own sets (accuracy, and the paired differences)."""
    fer = {name: {"accuracy": figures, **({"difference": figures["difference"]} if "difference" in figures else {})}
           for name, figures in result["fer_test"].items()}
    plot_statistics(fer, result["person"], path, "test", reference=result["reference"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sets", nargs="+", metavar="NAME=FOLDER", help="a classify stage's set folder")
    parser.add_argument("--person-test", required=True, type=Path, help="the person's labelled faces the sets scored")
    parser.add_argument("--reference", help="the set the others are compared with (default: the first)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="clip resamples (the stage's default)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--chart", type=Path, help="also draw them here (PNG): the stage's comparison_seeds.png")
    args = parser.parse_args(argv)
    try:
        named = {}
        for text in args.sets:
            name, sep, folder = text.partition("=")
            if not sep or not name:
                raise ValueError(f"{text!r}: expected NAME=FOLDER")
            named[name] = Path(folder)
        reference = args.reference or next(iter(named))
        if reference not in named:
            raise ValueError(f"--reference {reference!r} is not one of {list(named)}")
        result = compare(named, args.person_test, reference, args.bootstrap)
    except (ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.chart:
        chart(result, args.chart)
    return 0


if __name__ == "__main__":
    sys.exit(main())
