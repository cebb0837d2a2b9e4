"""The person model: the one model `pipeline run all` tells the user to use for the person.

It is the set named by `[classify] person_model` (default: real+synthetic when trained, else real),
chosen before any score is seen. Choosing by the person's test figures (or FER's PrivateTest)
would make the chosen figure optimistic, so they are reported as evidence, never used to choose.
The model is copied to `classify/person_model/` with a model card saying why and what was measured;
`pipeline serve --run` and `pipeline predict --run` take it from there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

PERSON_MODEL = "person_model"  # folder inside the classify stage's output
PREFERRED = ("real+synthetic", "real")  # the default, in order, when [classify] person_model is empty


def person_model_set(configured: str, train_sets: list[str]) -> tuple[str, str]:
    """(the set's name, why it was chosen): the configured one, else the first of PREFERRED trained,
    else the first set trained."""
    if configured:
        return configured, f"configured: [classify] person_model = \"{configured}\""
    for name in PREFERRED:
        if name in train_sets:
            return name, (f"the default: {' when trained, else '.join(PREFERRED)} "
                          "([classify] person_model is empty)")
    return train_sets[0], "the default: the first training set (neither real+synthetic nor real was trained)"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def evidence_table(results: dict[str, dict], chosen: str) -> list[str]:
    """Markdown rows: every trained set's FER val/test and person figures, the chosen one marked."""
    person = any("person" in m for m in results.values())
    head = "| set | FER val accuracy | FER test accuracy | FER test macro-F1 |"
    head += " person accuracy | person macro-F1 |" if person else ""
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, m in results.items():
        cells = [f"**{name}** (this model)" if name == chosen else name,
                 _percent(m.get("val", {}).get("accuracy")), _percent(m.get("test", {}).get("accuracy")),
                 f"{m['test']['macro_f1']:.3f}" if "test" in m else "-"]
        if person:
            cells += [_percent(m.get("person", {}).get("accuracy")),
                      f"{m['person']['macro_f1']:.3f}" if "person" in m else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def caveats(results: dict[str, dict], chosen: str) -> list[str]:
    """What a reader should know about the choice: how the person figures compare, and when none exist."""
    scored = {name: m["person"]["accuracy"] for name, m in results.items() if "person" in m}
    if not scored:
        return ["No labelled faces of the person were scored ([classify] person_test is empty), so how well "
                "this model reads the person's expressions is not measured; the FER figures say how it does on "
                "FER2013's faces."]
    best = max(scored, key=scored.get)
    if scored[best] <= scored.get(chosen, 0):
        return [f"On the person's test faces this set scored highest of the sets trained ({_percent(scored[chosen])})."]
    return [f"On the person's test faces '{best}' scored higher ({_percent(scored[best])} against "
            f"{_percent(scored.get(chosen))}). That test set was not used to choose: a set chosen by it would "
            "carry an optimistic figure. Differences of a few points on one person's clips are often noise; "
            f"set [classify] person_model = \"{best}\" to ship that set instead."]


def publish_person_model(out_dir: Path, chosen: str, slug: str, why: str, results: dict[str, dict]) -> dict:
    """Copy `<out_dir>/<slug>/model` to `<out_dir>/person_model` and write its card; returns the summary."""
    source = out_dir / slug / "model"
    target = out_dir / PERSON_MODEL
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    card = target / "README.md"
    original = card.read_text() if card.is_file() else ""
    notes = caveats(results, chosen)
    lines = [f"# Person model: {chosen}", "",
             f"The model to use for this person (`pipeline serve --run RUN`, `pipeline predict INPUT --run RUN`): "
             f"a copy of `{slug}/model`.", "",
             f"- chosen: {why}; chosen before any score was seen, so the figures below are honest estimates",
             *[f"- {note}" for note in notes], "",
             "## Evidence: every set trained in this run", "", *evidence_table(results, chosen), ""]
    if original:
        lines += ["## The set's model card", "", *("#" + line if line.startswith("#") else line
                                                   for line in original.splitlines()), ""]
    card.write_text("\n".join(lines))
    return {"set": chosen, "path": PERSON_MODEL, "chosen": why,
            **({"person_accuracy": round(results[chosen]["person"]["accuracy"], 4)} if "person" in results[chosen]
               else {"person_accuracy": None}),
            "notes": notes}
