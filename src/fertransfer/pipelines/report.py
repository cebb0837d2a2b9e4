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


def _points(figures: dict | None, signed: bool = False) -> str:
    """'61.2 ± 0.8 [58.0, 64.1]': mean ± std over seeds (points), the 95% clip interval; '-' when absent."""
    if not figures or figures.get("mean") is None:
        return "-"
    text = f"{100 * figures['mean']:{'+' if signed else ''}.1f}"
    if figures.get("std") is not None:
        text += f" ± {100 * figures['std']:.1f}"
    if figures.get("interval"):
        text += " [{:.1f}, {:.1f}]".format(*(100 * v for v in figures["interval"]))
    return text


def _sets_table(classify: dict) -> str:
    """Per training set: FER test and person accuracy as mean ± std over seeds, the person's per-clip
    figures with their 95% clip-bootstrap intervals, and each set's difference from `real`."""
    sets = classify["train_sets"]
    protocol = classify.get("protocol") or {}
    person = any("person_accuracy" in row for row in sets.values())
    clips = any("person_frames" in row for row in sets.values())
    head = ["training set", "images", "FER test accuracy", "&Delta; FER test", "FER test macro-F1"]
    if person:
        head += ["person accuracy (frames)", "&Delta; person (frames)"] if clips else ["person accuracy"]
        head += ["person (clips, majority)", "&Delta; person (clips, majority)", "person (clips, mean probability)"] \
            if clips else []
        head += ["person macro-F1"]
    rows = []
    for name, row in sets.items():
        cells = [_cell(row.get("train_images")),
                 _cell(_points({"mean": row.get("test_accuracy"), "std": row.get("test_accuracy_std")})),
                 _cell(_points(row.get("test_accuracy_vs_real"), signed=True)), _cell(row.get("test_macro_f1"))]
        if person and clips:
            cells += [_cell(_points(row.get("person_frames"))), _cell(_points(row.get("person_frames_vs_real"), True)),
                      _cell(_points(row.get("person_clips_majority"))),
                      _cell(_points(row.get("person_clips_majority_vs_real"), True)),
                      _cell(_points(row.get("person_clips_mean_probability")))]
        elif person:
            cells.append(_cell(_percent(row.get("person_accuracy"))))
        if person:
            cells.append(_cell(row.get("person_macro_f1")))
        rows.append(f"<tr><th>{html.escape(name)}</th>" + "".join(cells) + "</tr>")
    intro = ""
    if protocol.get("description"):
        seeds = protocol.get("seeds") or []
        intro = (f"<p>{html.escape(protocol['description'])}; seeds {html.escape(', '.join(map(str, seeds)))}. "
                 "Points: mean ± standard deviation over seeds, [95% interval resampling the person's clips], "
                 "&Delta;: the set minus <code>real</code>, paired by seed.</p>")
    intro += _pseudo_labels_text(classify.get("pseudo_labels"))
    warnings = (classify.get("person_clips") or {}).get("warnings") or []
    notes = "".join(f'<p class="muted">Warning: {html.escape(w)}</p>' for w in warnings)
    return (intro + "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
            + notes)


def _pseudo_labels_text(pseudo: dict | None) -> str:
    """What self-training read in the footage: the labels it kept per expression, and (where the
    footage sits in class folders) how often they agree with them."""
    if not pseudo:
        return ""
    kept = ", ".join(f"{c} {n}" for c, n in pseudo.get("kept_per_class", {}).items() if n)
    text = (f"Self-training: {pseudo.get('kept')} of {pseudo.get('footage_faces')} footage faces kept as labels, "
            f"read by {pseudo.get('labeller', 'the initial model')} ({kept}).")
    agreement = (pseudo.get("agreement") or {}).get("kept") or {}
    if agreement.get("faces"):
        text += (f" {_percent(agreement['accuracy'])} of the {agreement['faces']} kept faces whose video sits in a "
                 "class folder carry that folder's class (a check; folders are never trained on).")
    return f"<p>{html.escape(text)}</p>"


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
        parts.append(_sets_table(classify))
    parts += person_section(run_dir, classify)
    if len(parts) == 1:
        parts.append('<p class="muted">No results yet: run the stages.</p>')
    return "\n".join(parts)


MAX_TIMELINES = 12  # timelines shown on the page; the rest are linked


def _figure(path: str, caption: str) -> str:
    return (f'<figure><a href="{html.escape(path)}"><img src="{html.escape(path)}" loading="lazy"></a>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def person_section(run_dir: Path, classify: dict) -> list[str]:
    """The model to use for the person and, when the person's faces carry no labels, the plain
    statement that its accuracy cannot be measured, with what the model predicts over the footage."""
    parts = []
    sets = classify.get("train_sets") or {}
    measured = any("person_accuracy" in row for row in sets.values())
    product = classify.get("person_model")
    if product:
        parts.append(f"<p><b>Model for the person: <code>classify/{html.escape(product['path'])}</code></b> "
                     f"(training set <b>{html.escape(product['set'])}</b>; {html.escape(product['chosen'])}). "
                     f'Use it with <code>pipeline serve --run {html.escape(str(run_dir))}</code> or '
                     f"<code>pipeline predict VIDEO --run {html.escape(str(run_dir))} --out DIR</code>; "
                     f'<a href="classify/{html.escape(product["path"])}/README.md">its model card</a> gives the '
                     "evidence.</p>")
        if measured:  # how the person's test figures compare (they were not used to choose)
            parts += [f'<p class="muted">{html.escape(note)}</p>' for note in product.get("notes", [])]
    if not sets or measured:
        return parts
    parts.append("<p><b>Person accuracy cannot be measured</b>: this run has no labelled faces of the person "
                 "([classify] person_test is empty), so no figure on this page says how well a model reads this "
                 "person's expressions. The FER figures above are about FER2013's faces.</p>")
    footage = classify.get("footage")
    if not footage:
        parts.append('<p class="muted">Set [classify] footage = "extract" to see what the person model predicts '
                     "over the person's footage (the distribution of its answers and a timeline per video).</p>")
        return parts
    if not footage.get("faces"):
        parts.append(f'<p class="muted">No footage faces to predict: {html.escape(str(footage.get("note", "")))}</p>')
        return parts
    share = ", ".join(f"{name} {_percent(value)}" for name, value in
                      sorted(footage["share"].items(), key=lambda item: -item[1]))
    parts.append(f"<p>What the person model ({html.escape(footage['model'])}) predicts over "
                 f"{footage['faces']} faces of the footage: {html.escape(share)}. Without labels this shows what the "
                 "model sees, not whether it is right.</p>")
    pictures = [f"classify/{p}" for p in footage.get("pictures", [])]
    shown = [p for p in pictures if (run_dir / p).is_file()]
    parts.append(_figure(shown[0], "predicted expressions over the footage") if shown else "")
    timelines = shown[1:]
    parts += [_figure(p, Path(p).stem.removeprefix("timeline_")) for p in timelines[:MAX_TIMELINES]]
    if len(timelines) > MAX_TIMELINES:
        parts.append("<p>More timelines: " + " · ".join(
            f'<a href="{html.escape(p)}">{html.escape(Path(p).stem.removeprefix("timeline_"))}</a>'
            for p in timelines[MAX_TIMELINES:]) + "</p>")
    parts.append(f'<p class="muted">Per face: <a href="classify/{html.escape(footage["csv"])}">'
                 f"{html.escape(footage['csv'])}</a>.</p>")
    return parts


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
            f"person crops {_percent(controls.get('held_out_person_crops'))}"
            + (", hybrids of those crops with the sources' fine lines " + ", ".join(
                f"σ{sigma} {_percent(share)}" for sigma, share in controls["blends"].items())
               if controls.get("blends") else "") + ")")
    judge = translation.get("judge")
    if judge:
        line += f", judge agreement {_percent(judge['judge_agreement']['overall'])}"
        on_person = judge.get("person_accuracy")
        if on_person:  # the yardstick: how well the judge reads the person's own expressions
            line += (f" (the judge reads the person's own {on_person['images']} labelled faces at "
                     f"{_percent(on_person['overall'])})")
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
        if "person_frames" in row:  # mean ± std over seeds and the clip interval
            person = (f", person {_points(row['person_frames'])}%"
                      + (f" (vs real {_points(row['person_frames_vs_real'], True)})" if "person_frames_vs_real" in row
                         else ""))
        else:
            person = f", person {_percent(row['person_accuracy'])}" if "person_accuracy" in row else ""
        test = _points({"mean": row.get("test_accuracy"), "std": row.get("test_accuracy_std")})
        lines.append(f"{name}: test accuracy {test}%{person}")
    sets = classify.get("train_sets") or {}
    if sets and not any("person_accuracy" in row for row in sets.values()):
        lines.append("person accuracy: cannot be measured (no labelled faces of the person; [classify] person_test)")
        footage = classify.get("footage") or {}
        if footage.get("faces"):
            top = sorted(footage["share"].items(), key=lambda item: -item[1])[:3]
            lines.append(f"footage: {footage['faces']} faces predicted by the person model, most often "
                         + ", ".join(f"{name} {_percent(value)}" for name, value in top))
    product = classify.get("person_model")
    if product:
        folder = Path(run_dir) / "classify" / product["path"]
        lines.append(f"model for the person: {folder} (set {product['set']}; {product['chosen']})")
        lines.append(f"  use it: pipeline serve --run {run_dir}  |  pipeline predict VIDEO --run {run_dir} --out DIR")
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
