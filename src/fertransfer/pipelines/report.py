"""`report.html`: one offline page per run with what every stage did and its pictures.

The page is built only from the stage folders and their manifests, so it can be rebuilt at
any time (`pipeline report RUN_DIR`). Pictures are linked by relative paths, so the run folder
can be copied or zipped and still opens without a network.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fertransfer.atomic import atomic_write_text

from .registry import STAGE_ORDER
from .runner import MANIFEST

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 14px; display: block; max-width: 100%;
        overflow-x: auto; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; }
figure img { max-width: 100%; max-height: 520px; border: 1px solid #ccc; image-rendering: pixelated; }
figcaption { font-size: 13px; color: #555; } .muted { color: #777; } details { margin: .5em 0; }
"""

# Pictures shown per stage: top-level PNGs plus these (relative to the stage folder).
EXTRA_PICTURES = ("samples/final.png",)
PAGES = ("gallery.html", "report.md")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)) and len(value) > 12:
        text = ", ".join(map(str, value[:12])) + f", ... ({len(value)} items)"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(map(str, value))
    else:
        text = str(value)
    css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{css}>{html.escape(text)}</td>"


def _is_table(value: Any) -> bool:
    """A dict of dicts with the same scalar keys renders as a grid (e.g. per-class counts)."""
    if not isinstance(value, dict) or not value:
        return False
    rows = list(value.values())
    if not all(isinstance(r, dict) and r for r in rows):
        return False
    keys = list(rows[0])
    return all(list(r) == keys and all(not isinstance(v, (dict, list)) for v in r.values()) for r in rows)


def render_value(value: Any) -> str:
    if _is_table(value):
        columns = list(next(iter(value.values())))
        head = "<tr><th></th>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>"
        body = "".join(
            f"<tr><th>{html.escape(str(name))}</th>" + "".join(_cell(row[c]) for c in columns) + "</tr>"
            for name, row in value.items()
        )
        return f"<table>{head}{body}</table>"
    if isinstance(value, dict):
        rows = "".join(  # empty values (None, "", [], {}) say nothing: left out
            f"<tr><th>{html.escape(str(k).replace('_', ' '))}</th>"
            + (f"<td>{render_value(v)}</td>" if isinstance(v, dict) else _cell(v))
            + "</tr>"
            for k, v in value.items()
            if v is not None and v != "" and v != [] and v != {}
        )
        return f"<table>{rows}</table>"
    return f"<table><tr>{_cell(value)}</tr></table>"


def stage_section(run_dir: Path, name: str) -> str:
    folder = run_dir / name
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        partial = " (an interrupted run is in progress)" if (run_dir / f"{name}.partial").exists() else ""
        return f'<h2>{name}</h2><p class="muted">Not run{partial}.</p>'
    manifest = json.loads(manifest_path.read_text())
    timings = manifest.get("timings", {})
    parts = [
        f"<h2>{name}</h2>",
        f"<p>{html.escape(manifest.get('description', ''))}<br>"
        f'<span class="muted">finished {html.escape(str(timings.get("finished", "?")))} '
        f"in {timings.get('seconds', 0):.1f} s; {manifest.get('outputs', {}).get('count', 0)} files</span></p>",
    ]
    pictures = sorted(p.relative_to(run_dir) for p in folder.glob("*.png"))
    pictures += [Path(name) / extra for extra in EXTRA_PICTURES if (folder / extra).exists()]
    for picture in pictures:
        parts.append(
            f'<figure><a href="{picture.as_posix()}"><img src="{picture.as_posix()}" loading="lazy"></a>'
            f"<figcaption>{html.escape(picture.as_posix())}</figcaption></figure>"
        )
    links = [f'<a href="{name}/{page}">{page}</a>' for page in PAGES if (folder / page).exists()]
    if links:
        parts.append("<p>Pages: " + " · ".join(links) + "</p>")
    summary = manifest.get("summary") or {}
    failed = summary.get("failed")
    if isinstance(failed, list) and failed:
        parts.append(f"<h3>{len(failed)} input{'s' if len(failed) > 1 else ''} failed (skipped)</h3><ul>"
                     + "".join(f"<li>{html.escape(str(f))}</li>" for f in failed) + "</ul>")
    if summary:
        parts.append("<h3>What it did</h3>" + render_value(summary))
    parts.append("<details><summary>Settings</summary>" + render_value(manifest.get("config", {})) + "</details>")
    parts.append("<details><summary>Timings and versions</summary>"
                 + render_value({"timings": timings, "versions": manifest.get("versions", {})}) + "</details>")
    return "\n".join(parts)


def _summary(run_dir: Path, name: str) -> dict:
    try:
        return json.loads((run_dir / name / MANIFEST).read_text()).get("summary") or {}
    except (OSError, json.JSONDecodeError):
        return {}


def _percent(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def headline_section(run_dir: Path) -> str:
    """The figures a reader came for, before the stage-by-stage detail: does the translation keep
    the expression (the judge on translated test images), and what each training set scores on
    FER's test split and on the person."""
    parts = ["<h2>Headline</h2>"]
    cyclegan, classify = _summary(run_dir, "cyclegan"), _summary(run_dir, "classify")
    facts = []
    swd = (cyclegan.get("swd") or {}).get("BtoA")
    if swd:
        facts.append(f"SWD FER &rarr; person x1e3: {swd['translated']:.1f} translated vs {swd['untranslated']:.1f} "
                     f"untranslated (step {cyclegan['swd']['step']})")
    facts += [html.escape(line) for line in cyclegan_translation_lines(cyclegan)]
    expression = cyclegan.get("expression_classifier")
    if expression:
        facts.append(f"expression-loss classifier: {_percent(expression.get('held_out_accuracy'))} on "
                     f"{html.escape(str(expression.get('held_out')))}")
    judge = (classify.get("translation_judge") or {}).get("splits") or {}
    for split, figures in judge.items():
        facts.append(
            f"judge on {figures['images']} translated {html.escape(split)} images: <b>agreement "
            f"{_percent(figures['judge_agreement']['overall'])}</b>, label preserved "
            f"{_percent(figures['label_preservation']['overall'])}, judge accuracy on the sources "
            f"{_percent(figures['source_accuracy']['overall'])}{html.escape(_person_note(figures))}")
    warning = ((classify.get("translation_judge") or {}).get("person_score") or {}).get("warning")
    if warning and not cyclegan.get("translation", {}).get("warning"):
        facts.append(f"<b>warning</b>: {html.escape(warning)}")
    if classify.get("gallery"):
        facts.append(f'<a href="classify/{classify["gallery"]}">translation gallery with the judge\'s figures</a>')
    if facts:
        parts.append("<ul>" + "".join(f"<li>{f}</li>" for f in facts) + "</ul>")
    sets = classify.get("train_sets") or {}
    if sets:
        person = any("person_accuracy" in row for row in sets.values())
        head = ["training set", "images", "FER test accuracy", "FER test macro-F1"]
        head += ["person accuracy", "person macro-F1"] if person else []
        parts.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
        for name, row in sets.items():
            cells = [row.get("train_images"), _percent(row.get("test_accuracy")), row.get("test_macro_f1")]
            if person:
                cells += [_percent(row.get("person_accuracy")), row.get("person_macro_f1")]
            parts.append(f"<tr><th>{html.escape(name)}</th>" + "".join(_cell(c) for c in cells) + "</tr>")
        parts.append("</table>")
    if len(parts) == 1:
        parts.append('<p class="muted">No results yet: run the stages.</p>')
    return "\n".join(parts)


def _person_note(figures: dict) -> str:
    """', person score X (untranslated sources Y)' when the judge's figures carry it."""
    if "person_score" not in figures:
        return ""
    return (f", person score {_percent(figures['person_score']['overall'])} (untranslated sources "
            f"{_percent(figures.get('person_score_on_sources'))})")


def cyclegan_translation_lines(cyclegan: dict) -> list[str]:
    """The cyclegan stage's own reading of its final generator on FER's test split: the person score
    with its controls (and judge agreement with [cyclegan] judge), or why it is missing."""
    translation = cyclegan.get("translation") or {}
    if translation.get("not_computed"):
        return [f"person score not computed: {translation['not_computed']}"]
    if "person_score" not in translation:
        return []
    controls = translation.get("controls") or {}
    line = (f"cyclegan on {translation['images']} translated {translation.get('split', 'test')} images: person score "
            f"{_percent(translation['person_score']['overall'])} (controls: untranslated "
            f"{_percent(controls.get('untranslated_sources'))}, {controls.get('held_out_person_crops_count')} held-out "
            f"person crops {_percent(controls.get('held_out_person_crops'))})")
    judge = translation.get("judge")
    if judge:
        line += f", judge agreement {_percent(judge['judge_agreement']['overall'])}"
    lines = [line]
    if translation.get("warning"):
        lines.append(f"warning: {translation['warning']}")
    return lines


def headline_text(run_dir: str | Path) -> list[str]:
    """The headline figures as plain lines, for the end of `pipeline run all` and `pipeline demo`."""
    classify = _summary(Path(run_dir), "classify")
    lines = cyclegan_translation_lines(_summary(Path(run_dir), "cyclegan"))
    for split, figures in ((classify.get("translation_judge") or {}).get("splits") or {}).items():
        lines.append(f"judge on {figures['images']} translated {split} images: agreement "
                     f"{_percent(figures['judge_agreement']['overall'])}, label preserved "
                     f"{_percent(figures['label_preservation']['overall'])} (judge accuracy on the sources "
                     f"{_percent(figures['source_accuracy']['overall'])}){_person_note(figures)}")
    for name, row in (classify.get("train_sets") or {}).items():
        person = f", person {_percent(row['person_accuracy'])}" if "person_accuracy" in row else ""
        lines.append(f"{name}: test accuracy {_percent(row.get('test_accuracy'))}{person}")
    return lines


def write_report(run_dir: str | Path) -> Path:
    """(Re)build `<run_dir>/report.html` from the stage folders; returns its path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    sections = [headline_section(run_dir), *(stage_section(run_dir, name) for name in STAGE_ORDER)]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>fertransfer run: {html.escape(run_dir.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>fertransfer run report</h1><p class='muted'>{html.escape(str(run_dir.resolve()))} · built {stamp}</p>"
        + "\n".join(sections)
        + "</body></html>"
    )
    target = run_dir / "report.html"
    atomic_write_text(target, page)
    return target
