"""The translation gallery: per class, FER originals | translations | cycled back, and real
faces of the person for reference; as one PNG mosaic and as a self-contained HTML page.

Everything here works on arrays; the page embeds its images as base64 PNGs, so it opens
offline from anywhere.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

import cv2
import numpy as np

from fertransfer.data.images import conform

ROW_NAMES = ("FER original", "translated", "cycled back")
LABEL_WIDTH = 170
GAP = 2


@dataclass
class GalleryClass:
    name: str
    original: np.ndarray  # (n, H, W, C) uint8
    translated: np.ndarray
    cycled: np.ndarray | None = None  # None when no reverse generator was given
    sources: list[str] | None = None
    agreement: float | None = None  # the judge's agreement for this class (see judge_split), when measured
    person: float | None = None  # the person score of this class's translations, when measured

    def rows(self) -> list[tuple[str, np.ndarray]]:
        rows = [(ROW_NAMES[0], self.original), (ROW_NAMES[1], self.translated)]
        if self.cycled is not None:
            rows.append((ROW_NAMES[2], self.cycled))
        return rows


def _figures(c: GalleryClass, agreement: str, person: str, wrap: str) -> str:
    """A class's measured figures (judge agreement, person score) for its heading; '' when none."""
    parts = [fmt.format(v) for fmt, v in ((agreement, c.agreement), (person, c.person)) if v is not None]
    return wrap.format(", ".join(parts)) if parts else ""


def pick_examples(labels: np.ndarray, num_classes: int, per_class: int, seed: int) -> list[np.ndarray]:
    """Up to `per_class` random indices of each class (sorted), the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [np.sort(rng.permutation(np.flatnonzero(labels == c))[:per_class]) for c in range(num_classes)]


def _tiles(images: np.ndarray, tile: int) -> list[np.ndarray]:
    return list(conform(images, tile, 3)) if len(images) else []


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.45, bold: bool = False) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 2 if bold else 1, cv2.LINE_AA)


def gallery_mosaic(classes: list[GalleryClass], faces: np.ndarray | None, tile: int = 64) -> np.ndarray:
    """One RGB image: a labelled block of rows per class, then a row of the person's faces."""
    columns = max([len(c.original) for c in classes] + [len(faces) if faces is not None else 0, 1])
    rows: list[tuple[str, list[np.ndarray], bool]] = []  # (label, tiles, starts a block)
    for c in classes:
        title = c.name + _figures(c, "judge agrees {:.0%}", "person {:.0%}", " ({})")
        if not len(c.original):
            rows.append((f"{c.name}: no images", [], True))
            continue
        for i, (row_name, images) in enumerate(c.rows()):
            rows.append((f"{title}|{row_name}" if i == 0 else f"|{row_name}", _tiles(images, tile), i == 0))
    if faces is not None and len(faces):
        rows.append(("person (real)|", _tiles(faces[:columns], tile), True))
    block_gap = 10
    height = sum(tile + GAP + (block_gap if start else 0) for _, _, start in rows) + block_gap
    width = LABEL_WIDTH + columns * (tile + GAP) + GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    y = 0
    for label, tiles, start in rows:
        y += block_gap if start else 0
        head, _, sub = label.partition("|")
        if head:
            _text(canvas, head, 4, y + 16, bold=True)
        if sub:
            _text(canvas, sub, 12, y + tile // 2 + 14, scale=0.4)
        for k, image in enumerate(tiles):
            x = LABEL_WIDTH + GAP + k * (tile + GAP)
            canvas[y : y + tile, x : x + tile] = image
        y += tile + GAP
    return canvas


def png_data_uri(image: np.ndarray) -> str:
    array = image[..., 0] if image.shape[-1] == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("could not encode an image as PNG")
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def _img(image: np.ndarray, title: str = "") -> str:
    return f'<img src="{png_data_uri(image)}" title="{html.escape(title)}" alt="{html.escape(title)}">'


def judge_split(judge: dict | None) -> tuple[str, dict] | None:
    """The split whose judge figures lead: test (never trained on by anyone) when measured."""
    splits = (judge or {}).get("splits") or {}
    if not splits:
        return None
    name = "test" if "test" in splits else next(iter(splits))
    return name, splits[name]


def _judge_html(judge: dict | None) -> list[str]:
    parts = ["<h2>Does the translation keep the expression?</h2>"]
    if not (judge or {}).get("splits"):
        return parts + ["<p>Not measured here: the classify stage's judge (its model trained on real FER) reads "
                        "the translations after this stage, and its copy of this gallery, "
                        "<code>classify/gallery/gallery.html</code>, shows the figures; so does "
                        "<code>pipeline gallery RUN_DIR</code> once classify has run.</p>"]
    parts.append(
        "<p>A judge, the CNN trained on real FER only (never the classifier inside the generator's loss), labels "
        "each translation and its untranslated source. <b>Judge agreement</b>: same label on both. <b>Label "
        f"preserved</b>: the translation gets the source's true label. Judge: {html.escape(str(judge.get('judge', '?')))}.</p>")
    person = judge.get("person_score") or {}
    if person.get("not_computed"):
        parts.append(f"<p>Person score: not computed ({html.escape(person['not_computed'])}).</p>")
    elif person:
        parts.append(
            "<p><b>Person score</b>: the share of translations that a domain classifier, trained on the person's "
            "held-out crops against FER validation faces (gray, resized alike) and never part of the generator's "
            f"training, takes for the person. Its controls: {_share(person.get('held_out_person_crops'))} on held-out "
            "person crops it did not train on (near 100%), and the untranslated sources' score below (near 0%)"
            + ("; hybrids of those crops' blur with the sources' fine lines (not translations, near 0%): "
               + ", ".join(f"{_share(share)} at {sigma} px" for sigma, share in person["blends"].items())
               if person.get("blends") else "") + ".</p>")
        if person.get("warning"):
            parts.append(f"<p><b>Warning</b>: {html.escape(person['warning'])}</p>")
    for split, figures in judge["splits"].items():
        columns = [("label_preservation", "label preserved"), ("judge_agreement", "judge agreement"),
                   ("source_accuracy", "judge accuracy on sources")]
        if "person_score" in figures:
            columns.append(("person_score", "person score"))
        note = ("" if "person_score_on_sources" not in figures else
                f"; person score of the untranslated sources {_share(figures['person_score_on_sources'])}")
        parts.append(f"<h3>{html.escape(split)} split ({figures['images']} images{note})</h3>"
                     "<table><tr><th>class</th>")
        parts += [f"<th>{title}</th>" for _, title in columns] + ["</tr>"]
        names = list(figures["judge_agreement"]["per_class"])
        for name in [*names, None]:
            cells = []
            for key, _ in columns:
                value = figures[key]["overall"] if name is None else figures[key]["per_class"].get(name)
                cells.append(f"<td>{'-' if value is None else f'{value:.1%}'}</td>")
            label = "<b>all</b>" if name is None else html.escape(name)
            parts.append(f"<tr><td>{label}</td>{''.join(cells)}</tr>")
        parts.append("</table>")
    return parts


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def gallery_html(
    classes: list[GalleryClass],
    faces: np.ndarray | None,
    title: str,
    facts: dict[str, str],
    set_counts: dict[str, dict[str, int]] | None = None,
    judge: dict | None = None,
    png_name: str = "gallery.png",
) -> str:
    """A page that opens offline: the judge's figures, per-class rows of images, set counts."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>",
        "body{font-family:sans-serif;margin:1.5em;color:#222} table{border-collapse:collapse;margin:0.5em 0 1.2em}",
        "td,th{padding:2px 6px;text-align:left;vertical-align:middle} th{background:#eee}",
        ".rows td:first-child{width:9em;color:#555} img{width:96px;height:96px;image-rendering:pixelated;margin:1px}",
        "</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table>",
    ]
    parts += [f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items()]
    parts.append("</table>")
    parts += _judge_html(judge)
    for c in classes:
        kept = _figures(c, "judge agreement {:.0%}", "person score {:.0%}", " &mdash; {}")
        parts.append(f"<h2>{html.escape(c.name)}{kept}</h2>")
        if not len(c.original):
            parts.append("<p>No images of this class.</p>")
            continue
        parts.append("<table class='rows'>")
        for row_name, images in c.rows():
            cells = "".join(_img(image, (c.sources or [""] * len(images))[k]) for k, image in enumerate(images))
            parts.append(f"<tr><td>{row_name}</td><td>{cells}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>The person (real faces, for reference)</h2>")
    if faces is not None and len(faces):
        parts.append("<p>" + "".join(_img(image) for image in faces) + "</p>")
    else:
        parts.append("<p>No person-domain faces were found for this run.</p>")
    if set_counts:
        names = list(next(iter(set_counts.values())))
        parts.append("<h2>Training sets (images per class)</h2><table><tr><th>set</th>")
        parts += [f"<th>{html.escape(n)}</th>" for n in names] + ["<th>total</th></tr>"]
        for set_name, counts in set_counts.items():
            cells = "".join(f"<td>{counts.get(n, 0)}</td>" for n in names)
            parts.append(f"<tr><td>{html.escape(set_name)}</td>{cells}<td>{sum(counts.values())}</td></tr>")
        parts.append("</table>")
    parts.append(f"<p>The same gallery as one picture: <a href='{html.escape(png_name)}'>{html.escape(png_name)}</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
