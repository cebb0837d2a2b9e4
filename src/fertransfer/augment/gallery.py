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

from .transforms import conform

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
    agreement: float | None = None  # label preservation for this class, when known

    def rows(self) -> list[tuple[str, np.ndarray]]:
        rows = [(ROW_NAMES[0], self.original), (ROW_NAMES[1], self.translated)]
        if self.cycled is not None:
            rows.append((ROW_NAMES[2], self.cycled))
        return rows


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
        title = c.name if c.agreement is None else f"{c.name} ({c.agreement:.0%} kept)"
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


def gallery_html(
    classes: list[GalleryClass],
    faces: np.ndarray | None,
    title: str,
    facts: dict[str, str],
    set_counts: dict[str, dict[str, int]] | None = None,
    agreement: dict | None = None,
    png_name: str = "gallery.png",
) -> str:
    """A page that opens offline: facts, per-class rows of images, set counts, label preservation."""
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
    for c in classes:
        kept = "" if c.agreement is None else f" &mdash; {c.agreement:.0%} keep their label"
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
    parts.append("<h2>Label preservation</h2>")
    if agreement:
        parts.append(
            f"<p>Share of translated images that a classifier trained on real FER gives their source label: "
            f"{agreement['overall']:.1%} of {agreement['images']}.</p><table><tr><th>class</th><th>kept</th></tr>"
        )
        for name, share in agreement["per_class"].items():
            parts.append(f"<tr><td>{html.escape(name)}</td><td>{'-' if share is None else f'{share:.1%}'}</td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>Not measured (no classifier trained on real FER was available).</p>")
    parts.append(f"<p>The same gallery as one picture: <a href='{html.escape(png_name)}'>{html.escape(png_name)}</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts)
