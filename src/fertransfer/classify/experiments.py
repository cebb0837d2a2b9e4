"""Training the same engine on several training sets, and comparing the results.

The options from the FER literature live here as transformations of the data: leaving a
class out (e.g. the rare disgust), oversampling minority classes up to the majority count,
and the two-tier classifier (positive / negative / neutral first, then the fine class).
Evaluation data never changes between experiments: the real, untranslated val/test splits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fertransfer.data import ImageSet
from fertransfer.expression.cnn import CnnConfig
from fertransfer.expression.models import Classifier, TwoTierClassifier, coarse_groups

from .automl import AutoKerasConfig

log = logging.getLogger(__name__)


@dataclass
class EngineSettings:
    engine: str  # cnn or autokeras
    cnn: CnnConfig = field(default_factory=CnnConfig)
    automl: AutoKerasConfig = field(default_factory=AutoKerasConfig)
    seed: int = 0
    device: str = "auto"


@dataclass
class Trained:
    classifier: Classifier
    history: list[dict]  # per epoch (the flat model, or the coarse model of a two-tier one)
    info: dict  # best epoch, why it stopped, seconds, per-part details


# --- data transformations ---------------------------------------------------------------


def leave_out(split: ImageSet, classes: list[str], dropped: list[str]) -> tuple[ImageSet, list[str]]:
    """Drop the images of `dropped` classes and renumber the labels over the classes kept."""
    kept = [c for c in classes if c not in dropped]
    remap = np.full(len(classes), -1, np.int64)
    for new, name in enumerate(kept):
        remap[classes.index(name)] = new
    index = np.flatnonzero(remap[split.labels] >= 0)
    subset = split.subset(index)
    return ImageSet(subset.images, remap[subset.labels], subset.files), kept


def oversample(split: ImageSet, num_classes: int, seed: int) -> ImageSet:
    """Repeat images of every smaller class (drawn at random) until each matches the largest."""
    rng = np.random.default_rng(seed)
    counts = split.counts(num_classes)
    target = counts.max()
    index = [np.arange(len(split))]
    for label, count in enumerate(counts):
        if 0 < count < target:
            index.append(rng.choice(np.flatnonzero(split.labels == label), target - count, replace=True))
    return split.subset(np.concatenate(index))


def limit(split: ImageSet, count: int, seed: int) -> ImageSet:
    """A stratified random subset of about `count` images (for quick runs); all when count <= 0."""
    if count <= 0 or count >= len(split):
        return split
    from fertransfer.data import stratified_split

    _, taken = stratified_split(split.labels, count / len(split), seed)
    return split.subset(taken)


# --- training ---------------------------------------------------------------------------


def train_flat(
    settings: EngineSettings, train: ImageSet, val: ImageSet, classes: list[str], work_dir: Path,
    checkpoint=None, resume=None, init=None, pseudo=None,
) -> Trained:
    """One classifier over `classes` with the chosen engine, selected on `val`; the cnn starts
    from `init`'s weights when given (fine-tuning), with `pseudo`'s faces (a PseudoLabels) in
    every batch when its share is set."""
    if settings.engine == "cnn":
        from fertransfer.expression.cnn import train_cnn

        result = train_cnn(train.images, train.labels, val.images, val.labels, classes, settings.cnn,
                           seed=settings.seed, device=settings.device, checkpoint=checkpoint, resume=resume,
                           init=init, pseudo=(pseudo.images.images, pseudo.images.labels) if pseudo else None)
        info = {**({"pseudo_share": settings.cnn.pseudo_share, "pseudo_faces": len(pseudo.images)} if pseudo else {}),
                "best_epoch": result.best_epoch, "best_weights": result.best_weights, "stopped": result.stopped,
                "seconds": result.seconds, "steps": result.steps, "validations": len(result.history),
                "epochs_run": result.history[-1]["epoch"] if result.history else 0}
        return Trained(result.classifier, result.history, info)
    if init is not None:
        raise ValueError(f"fine-tuning (init) needs the cnn engine, not {settings.engine}")
    if settings.engine == "autokeras":
        from .automl import train_autokeras

        result = train_autokeras(
            train.images, train.labels, val.images, val.labels, classes, settings.automl, work_dir / "trials",
            seed=settings.seed,
        )
        history, search = result.history, result.info
        if search.get("kept") == "final":  # the epoch whose weights were kept, raw or averaged
            best, weights = search["final_best_epoch"], search.get("final_best_weights", "raw")
        else:
            best, weights = (int(np.nanargmax([r["val_acc"] for r in history])) + 1 if history else None), "raw"
        stopped = "search finished" if search.get("kept") == "trial" else "final run finished"
        return Trained(result.classifier, history, {"best_epoch": best, "best_weights": weights, "stopped": stopped,
                                                    "seconds": result.seconds, "epochs_run": len(history),
                                                    "search": search})
    raise ValueError(f"unknown engine '{settings.engine}'")


def _relabel(split: ImageSet, mapping: np.ndarray) -> ImageSet:
    index = np.flatnonzero(mapping[split.labels] >= 0)
    subset = split.subset(index)
    return ImageSet(subset.images, mapping[subset.labels], subset.files)


def train_two_tier(settings: EngineSettings, train: ImageSet, val: ImageSet, classes: list[str], work_dir: Path) -> Trained:
    """The coarse model over groups, then one fine model per group of two or more classes."""
    groups = coarse_groups(classes)
    group_of = np.array([next(g for g, (_, m) in enumerate(groups.items()) if c in m) for c in classes])
    log.info("two-tier: coarse model over %s", ", ".join(groups))
    coarse = train_flat(settings, _relabel(train, group_of), _relabel(val, group_of), list(groups), work_dir / "coarse")
    fine: dict[str, Classifier | None] = {}
    info = {"coarse": coarse.info, "seconds": coarse.info["seconds"],
            "best_epoch": coarse.info["best_epoch"], "stopped": coarse.info["stopped"]}
    for group, members in groups.items():
        if len(members) < 2:
            fine[group] = None
            continue
        mapping = np.array([members.index(c) if c in members else -1 for c in classes])
        log.info("two-tier: fine model for %s (%s)", group, ", ".join(members))
        part = train_flat(settings, _relabel(train, mapping), _relabel(val, mapping), members, work_dir / f"fine_{group}")
        fine[group] = part.classifier
        info[f"fine_{group}"] = part.info
        info["seconds"] += part.info["seconds"]
    return Trained(TwoTierClassifier(coarse.classifier, fine, groups, list(classes)), coarse.history, info)


# --- comparison -------------------------------------------------------------------------


def comparison_rows(results: dict[str, dict], split: str) -> list[dict]:
    """One row per training set: accuracy, macro-F1 and recall per class on `split`, each beside
    its `person_` twin when the person's faces were scored too."""
    rows = []
    for name, metrics in results.items():
        m, person = metrics[split], metrics.get("person")
        row = {"train_set": name, "train_images": metrics["training"]["train_images"]}
        for key in ("accuracy", "macro_f1"):
            row[key] = m[key]
            if person:
                row[f"person_{key}"] = person[key]
        for c, v in m["per_class"].items():
            row[f"recall_{c}"] = v["recall"]
            if person and c in person["per_class"]:  # a class the person's set lacks has no recall
                row[f"person_recall_{c}"] = person["per_class"][c]["recall"]
        rows.append(row)
    return rows


def comparison_markdown(rows: list[dict], split: str, person: str = "") -> str:
    """The comparison table; `person` describes the person's set when its columns are present."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    metric = {"accuracy", "macro_f1"} | {c for c in columns if c.startswith("recall_")}
    header = [(f"{split} {c}" if person and c in metric else c).replace("person_", "person ")
              .replace("recall_", "recall ").replace("macro_f1", "macro-F1") for c in columns]
    intro = f"Comparison on the real {split} split"
    intro += f" and, in the person columns, on the person's faces ({person})." if person else "."
    lines = [intro, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "")) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(rows: list[dict], path: Path, split: str) -> None:
    """Accuracy and macro-F1 per training set, and recall per class for each set; with the
    person's faces scored, their bars (hatched) stand beside the FER ones and get their own
    recall panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["train_set"] for r in rows]
    person = any("person_accuracy" in r for r in rows)
    classes = list(dict.fromkeys(k[len("recall_"):] for r in rows for k in r if k.startswith("recall_")))
    panels = [(f"recall per class ({split})", "recall_")]
    if person:
        panels.append(("recall per class (person)", "person_recall_"))
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(7 + 7 * len(panels), 4.5),
                             gridspec_kw={"width_ratios": [1.2 if person else 1] + [2] * len(panels)})
    x = np.arange(len(names))
    overall = [("accuracy", f"accuracy ({split})"), ("macro_f1", f"macro-F1 ({split})")]
    if person:
        overall = [overall[0], ("person_accuracy", "accuracy (person)"),
                   overall[1], ("person_macro_f1", "macro-F1 (person)")]
    width = 0.8 / len(overall)
    for i, (key, label) in enumerate(overall):
        bars = axes[0].bar(x + (i - (len(overall) - 1) / 2) * width, [r.get(key, np.nan) for r in rows], width,
                           label=label, color=f"C{0 if 'accuracy' in key else 1}",
                           hatch="//" if key.startswith("person_") else None, edgecolor="white")
        axes[0].bar_label(bars, fmt="%.3f", fontsize=6 if person else 7)
    axes[0].set_xticks(x, names, rotation=20)
    axes[0].set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"overall ({split}{' and person' if person else ''})")
    xc = np.arange(len(classes))
    width = 0.8 / max(1, len(rows))
    for ax, (title, prefix) in zip(axes[1:], panels):
        for i, r in enumerate(rows):
            ax.bar(xc + (i - (len(rows) - 1) / 2) * width, [r.get(f"{prefix}{c}", np.nan) for c in classes],
                   width, label=r["train_set"])
        ax.set_xticks(xc, classes)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
