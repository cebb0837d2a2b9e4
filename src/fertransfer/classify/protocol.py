"""The benchmark protocol: where training starts (scratch or a trained model), which seeds, and
the comparison over seeds that can tell a gain from noise.

- **scratch** (`init = ""`): every training set from random weights, for the same step budget;
- **adapt** (`init = "real"` or a model folder): one model trained on real FER, fine-tuned on
  every set (`real` included: the control for "more training") for the same steps at the same
  learning rate.

Every set is trained once per seed; figures are the mean and standard deviation over seeds, and
each set's difference from `real` is paired by seed. The person's figures and their 95%
clip-bootstrap intervals come from `clips`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .clips import LEVELS, mean_std

INIT_REAL = "real"  # [classify].init: train the real-FER model first, then fine-tune from it
REFERENCE = "real"  # the set every other set is compared with, seed by seed
LEVEL_NAMES = {"frames": "frames", "clips_majority": "clips (majority)",
               "clips_mean_probability": "clips (mean probability)"}


# --- options --------------------------------------------------------------------------


def seed_problems(seeds: list[int] | None) -> list[str]:
    """Config problems of [classify].seeds (None: the run's seed alone)."""
    if seeds is None:
        return []
    if not seeds:
        return ["seeds: empty; name at least one seed, e.g. [0, 1, 2] (or leave it out: [run] seed alone)"]
    problems = []
    negative = [s for s in seeds if s < 0]
    if negative:
        problems.append(f"seeds: a seed must not be negative, got {negative}")
    if len(set(seeds)) != len(seeds):
        problems.append(f"seeds: a seed is named twice: {seeds}")
    return problems


def resolve_seeds(seeds: list[int] | None, run_seed: int) -> list[int]:
    return list(seeds) if seeds is not None else [run_seed]


def seed_folder(set_folder: Path, seed: int, seeds: list[int]) -> Path:
    """The first seed's model lives in the set's folder (what predict, the judge and a single-seed
    run use); every further seed in seed_<n>/ inside it."""
    return set_folder if seed == seeds[0] else set_folder / f"seed_{seed}"


def model_meta(path: Path) -> tuple[Path, dict]:
    """(model folder, its model.json) for a model folder or model.json; StageError when unreadable."""
    from fertransfer.expression.models import MODEL_JSON, find_model

    folder = find_model(path)
    try:
        return folder, json.loads((folder / MODEL_JSON).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder / MODEL_JSON}: unreadable model description ({error})") from None


def init_mismatch(where: str, meta: dict, classes: list[str], size: int, channels: int) -> str | None:
    """The one-line error for an initial model that cannot start this training (both sides named)."""
    theirs = (list(meta.get("classes", [])), meta.get("size"), meta.get("channels"))
    if meta.get("engine") != "cnn":
        return f"{where}: a {meta.get('engine')} model; fine-tuning starts from a cnn model"
    if theirs == (list(classes), size, channels):
        return None
    return (f"{where}: the model's classes [{', '.join(theirs[0])}] at {theirs[1]} px, {theirs[2]} channel(s) are not "
            f"this run's [{', '.join(classes)}] at {size} px, {channels} channel(s)")


def configured_model(text: str, config_dir: Path) -> tuple[Path, dict] | None:
    """(model folder, its model.json) of a model path as a config names it (relative to the config);
    None when the path does not exist (the config's path check names it)."""
    path = Path(text).expanduser()
    path = path if path.is_absolute() else config_dir / path
    return model_meta(path) if path.exists() else None


def init_problems(init: str, config_dir: Path, engine: str, two_tier: bool, classes: list[str], size: int,
                  channels: int) -> list[str]:
    """What is wrong with [classify].init, found without training (the path itself is checked
    by the config's path check)."""
    from fertransfer.errors import StageError

    if not init:
        return []
    problems = []
    if engine != "cnn" or two_tier:
        problems.append(f"init: fine-tuning needs engine = \"cnn\" without two_tier (got engine = \"{engine}\""
                        f"{', two_tier' if two_tier else ''})")
    if init == INIT_REAL:
        return problems
    try:
        found = configured_model(init, config_dir)
    except (StageError, ValueError) as error:
        return problems + [f"init: {error}"]
    if found is None:
        return problems
    folder, meta = found
    mismatch = init_mismatch(f"init: {folder}", meta, classes, size, channels)
    return problems + ([mismatch] if mismatch else [])


# --- figures over seeds ---------------------------------------------------------------


def fer_statistics(per_seed: dict[str, list[dict]], split: str) -> dict[str, dict]:
    """Per set: accuracy and macro-F1 on `split`, mean and std over seeds, and the accuracy's
    difference from `real` paired by seed."""
    out = {}
    reference = per_seed.get(REFERENCE)
    for name, runs in per_seed.items():
        accuracy = [m[split]["accuracy"] for m in runs]
        figures = {"accuracy": mean_std(accuracy), "macro_f1": mean_std([m[split]["macro_f1"] for m in runs])}
        if reference is not None and name != REFERENCE:
            figures["difference"] = mean_std(np.subtract(accuracy, [m[split]["accuracy"] for m in reference]))
        out[name] = figures
    return out


def _pm(figures: dict | None, percent: bool = True) -> str:
    """'61.2 ± 0.8' (points) or '61.2' for one seed; '-' when missing."""
    if not figures:
        return "-"
    scale = 100 if percent else 1
    text = f"{scale * figures['mean']:+.1f}" if "sign" in figures else f"{scale * figures['mean']:.1f}"
    if figures.get("std") is not None:
        text += f" ± {scale * figures['std']:.1f}"
    if figures.get("interval"):
        low, high = figures["interval"]
        text += f" [{scale * low:.1f}, {scale * high:.1f}]"
    return text


def _signed(figures: dict | None) -> dict | None:
    return {**figures, "sign": True} if figures else None


def statistics_rows(fer: dict[str, dict], person: dict[str, dict] | None, seeds: list[int]) -> list[dict]:
    """One flat row per set (for comparison.csv's statistics and the chart): means, stds,
    intervals and differences from `real`, as fractions."""
    rows = []
    for name, figures in fer.items():
        row = {"train_set": name, "seeds": len(seeds),
               "test_accuracy_mean": figures["accuracy"]["mean"], "test_accuracy_std": figures["accuracy"]["std"]}
        if "difference" in figures:
            row["test_accuracy_vs_real_mean"] = figures["difference"]["mean"]
            row["test_accuracy_vs_real_std"] = figures["difference"]["std"]
        for level in LEVELS if person else ():
            p = person[name][level]
            key = f"person_{level}"
            row[f"{key}_mean"], row[f"{key}_std"] = p["mean"], p["std"]
            if p.get("interval"):
                row[f"{key}_ci_low"], row[f"{key}_ci_high"] = p["interval"]
            d = p.get("difference")
            if d:
                row[f"{key}_vs_real_mean"], row[f"{key}_vs_real_std"] = d["mean"], d["std"]
                if d.get("interval"):
                    row[f"{key}_vs_real_ci_low"], row[f"{key}_vs_real_ci_high"] = d["interval"]
        rows.append(row)
    return rows


def statistics_markdown(fer: dict[str, dict], person: dict[str, dict] | None, seeds: list[int], split: str,
                        protocol: str, warnings: list[str], draws: int) -> str:
    """The table that tells a gain from noise: per set, mean ± std over seeds (points), the 95%
    clip-bootstrap interval in brackets, and the difference from `real` paired by seed."""
    seed_text = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
    lines = [f"Protocol: {protocol}; {seed_text}. Figures in points: mean ± standard deviation over seeds"
             + (f"; [95% interval from {draws} bootstrap resamples of the person's clips, not frames]"
                if person and draws else "") + "; Δ: the set minus `real`, paired by seed.", ""]
    head = [f"{split} accuracy", f"Δ {split}"]
    if person:
        for level in LEVELS:
            head += [f"person {LEVEL_NAMES[level]}", f"Δ person {LEVEL_NAMES[level]}"]
    lines += ["| set | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for name, figures in fer.items():
        cells = [_pm(figures["accuracy"]), _pm(_signed(figures.get("difference")))]
        if person:
            for level in LEVELS:
                p = person[name][level]
                cells += [_pm(p), _pm(_signed(p.get("difference")))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [""] + [f"Warning: {w}" for w in warnings] + ([""] if warnings else [])
    return "\n".join(lines) + "\n"


def plot_statistics(fer: dict[str, dict], person: dict[str, dict] | None, path: Path, split: str,
                    reference: str = REFERENCE) -> None:
    """Accuracy per set with error bars (FER: std over seeds; person: the 95% clip-bootstrap
    interval of the seed mean) and, beside it, the paired difference from `reference`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(fer)
    series = [(f"FER {split} (± std over seeds)", {n: fer[n]["accuracy"] for n in names}, False)]
    if person:
        series += [(f"person, {LEVEL_NAMES[level]} (95% clip interval)", {n: person[n][level] for n in names}, True)
                   for level in LEVELS]
    others = [n for n in names if n != reference]
    differences = reference in names and others
    fig, axes = plt.subplots(1, 2 if differences else 1, figsize=(15 if differences else 8, 4.8), squeeze=False)
    x = np.arange(len(names))
    width = 0.8 / len(series)

    def bars(ax, figures: dict, keys: list[str], offset: float, label: str, interval: bool, color: str) -> None:
        means = np.array([figures[k]["mean"] if figures.get(k) else np.nan for k in keys])
        if interval:
            lows = np.array([figures[k].get("interval", [m, m])[0] if figures.get(k) else np.nan
                             for k, m in zip(keys, means)])
            highs = np.array([figures[k].get("interval", [m, m])[1] if figures.get(k) else np.nan
                              for k, m in zip(keys, means)])
            error = np.stack([means - lows, highs - means])
        else:
            error = np.array([(figures[k].get("std") or 0.0) if figures.get(k) else np.nan for k in keys])
        drawn = ax.bar(np.arange(len(keys)) + offset, 100 * means, width, yerr=100 * error, capsize=3, label=label,
                       color=color, edgecolor="white")
        ax.bar_label(drawn, fmt="%.1f", fontsize=6, padding=2)

    ax = axes[0][0]
    for i, (label, figures, interval) in enumerate(series):
        bars(ax, figures, names, (i - (len(series) - 1) / 2) * width, label, interval, f"C{i}")
    ax.set_xticks(x, names, rotation=20)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title("accuracy per training set")
    if differences:
        ax = axes[0][1]
        diff_series = [(f"FER {split} (± std over seeds)", {n: fer[n].get("difference") for n in others}, False)]
        if person:
            diff_series += [(f"person, {LEVEL_NAMES[level]} (95% clip interval)",
                             {n: person[n][level].get("difference") for n in others}, True) for level in LEVELS]
        width = 0.8 / len(diff_series)
        for i, (label, figures, interval) in enumerate(diff_series):
            bars(ax, figures, others, (i - (len(diff_series) - 1) / 2) * width, label, interval, f"C{i}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(others)), others, rotation=20)
        ax.set_ylabel(f"difference from {reference} (points)")
        ax.set_title(f"each set minus {reference}, paired by seed")
    # One legend below both panels (the series and their colours are the same in each), so that
    # no bar hides under it.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
