"""The web app behind `pipeline serve`: a static page and a JSON API over `predict_image`.

The page (static/index.html, static/app.js) sends camera frames or an uploaded photo to
`POST /api/predict`; the answer is computed by `fertransfer.classify.predict.predict_image`,
the same function `pipeline predict` uses, so the page and the command agree on every face.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from fertransfer.classify.predict import Face, FacePrediction, predict_image
from fertransfer.data.images import MAX_PIXELS, ImageTooLarge, UnreadableImage, decode_image
from fertransfer.expression.models import Classifier

from .guard import Guard

MAX_BYTES = 10 * 1024 * 1024  # an upload larger than this is refused (413)
MAX_SIDE = 4000  # an image with a longer side is downscaled to it before detection
# The run pages the page links to. What of a run folder is served: these pages, the gallery page
# classify rebuilds, and what they link to that is a page or a picture (RunPages); nothing else.
RUN_PAGES = {"report": "report.html", "gallery": "augment/gallery.html"}
ENTRY_PAGES = (*RUN_PAGES.values(), "classify/gallery/gallery.html")
PAGE_SUFFIXES = frozenset({".html", ".md"})
PICTURE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp"})


class BadImage(Exception):
    """An upload the API refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value]


def page_links(page: str, text: str) -> list[str]:
    """The run-folder paths (posix, relative to the run folder) a page at `page` links to."""
    parser = _Links()
    parser.feed(text)
    found = []
    for link in parser.links:
        parts = urlsplit(link)
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            continue  # data: pictures, other sites, absolute paths, #anchors
        path = posixpath.normpath(posixpath.join(posixpath.dirname(page), unquote(parts.path)))
        if path != ".." and not path.startswith("../"):
            found.append(path)
    return found


def served_run_files(run_dir: Path) -> frozenset[str]:
    """The allow-list of a run folder: the entry pages, and the pages and pictures they link to, followed."""
    allowed: set[str] = set()
    queue = [page for page in ENTRY_PAGES if (run_dir / page).is_file()]
    while queue:
        page = queue.pop()
        if page in allowed:
            continue
        allowed.add(page)
        if not page.endswith(".html"):
            continue
        try:
            text = (run_dir / page).read_text(errors="replace")
        except OSError:
            continue
        for path in page_links(page, text):
            suffix = posixpath.splitext(path)[1].lower()
            if suffix in PICTURE_SUFFIXES:
                allowed.add(path)
            elif suffix in PAGE_SUFFIXES and path not in allowed:
                queue.append(path)
    return frozenset(allowed)


class RunPages(StaticFiles):
    """A run folder's pages and the pictures they show, read-only (GET and HEAD); everything else 404.

    The allow-list is read from the pages themselves (served_run_files), again whenever one of the
    entry pages changes (`pipeline report` or `gallery` while serving)."""

    def __init__(self, run_dir: Path):
        super().__init__(directory=run_dir)
        self.run_dir = run_dir
        self._stamp: tuple = ()
        self._allowed: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def allowed(self) -> frozenset[str]:
        stamp = tuple(os.stat(p).st_mtime_ns if p.is_file() else None for p in (self.run_dir / e for e in ENTRY_PAGES))
        with self._lock:
            if stamp != self._stamp:
                self._allowed, self._stamp = served_run_files(self.run_dir), stamp
            return self._allowed

    async def get_response(self, path: str, scope: Scope):
        if posixpath.normpath(path.replace(os.sep, "/")) not in await run_in_threadpool(self.allowed):
            raise HTTPException(404)
        return await super().get_response(path, scope)


def image_from_bytes(data: bytes, max_side: int = MAX_SIDE, max_pixels: int = MAX_PIXELS,
                     ) -> tuple[np.ndarray, float, list[str]]:
    """(RGB image for detection, its scale to the original, notes for the response); raises BadImage.

    The header's size is checked before any pixel is decoded (decode_image): over max_pixels is 413."""
    if not data:
        raise BadImage(400, "empty upload: send an image (JPEG, PNG, ...) as the body or the form field 'image'")
    try:
        rgb = decode_image(data, channels=3, name="upload", max_pixels=max_pixels)
    except ImageTooLarge as error:
        raise BadImage(413, str(error).replace(" (fertransfer.data.images.MAX_PIXELS)", "")) from None
    except UnreadableImage as error:
        raise BadImage(400, f"not an image: {error}") from None
    notes = []
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        notes.append(f"downscaled from {width}x{height} to {size[0]}x{size[1]} px for detection "
                     f"(limit {max_side} px); boxes are in the original's pixels")
    return rgb, scale, notes


def face_json(face: FacePrediction, classes: list[str], scale: float) -> dict:
    return {
        "box": [round(v / scale) for v in face.box],
        "score": round(face.score, 4),
        "label": classes[face.label],
        "probabilities": {name: round(float(p), 4) for name, p in zip(classes, face.probabilities)},
    }


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The image bytes of a raw body or of a multipart form's file; raises BadImage when too large."""
    too_large = BadImage(413, f"upload is over the {max_bytes // (1024 * 1024)} MB limit")
    declared = request.headers.get("content-length")
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    # A multipart body carries boundaries and headers beside the file: allow for them here,
    # the file itself is checked below.
    if declared and declared.isdigit() and int(declared) > max_bytes + (64 * 1024 if multipart else 0):
        raise too_large
    if multipart:
        form = await request.form(max_files=1, max_fields=20)
        files = [value for value in form.values() if isinstance(value, UploadFile)]
        if not files:
            raise BadImage(400, "no file in the form: send the image as the form field 'image'")
        data = await files[0].read(max_bytes + 1)
    else:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large
            chunks.append(chunk)
        data = b"".join(chunks)
    if len(data) > max_bytes:
        raise too_large
    return data


def create_app(
    classifier: Classifier,
    detector: Callable[[np.ndarray], list[Face]],
    run_dir: Path | None = None,
    max_bytes: int = MAX_BYTES,
    max_side: int = MAX_SIDE,
    allowed_hosts: list[str] | None = None,
    port: int = 80,
    max_pixels: int = MAX_PIXELS,
) -> Starlette:
    """The app: the page at /, `POST /api/predict`, `GET /api/info`, and with run_dir its pages under /run/.

    allowed_hosts limits the Host header (`name` or `name:port`; a bare name means `port`), against DNS
    rebinding; None allows any. The API answers only its own page's browser requests (serve.guard).
    """
    classes = list(classifier.classes)
    lock = threading.Lock()  # one prediction at a time: torch already uses every thread it is given

    def predict_bytes(data: bytes) -> dict:
        started = time.perf_counter()
        rgb, scale, notes = image_from_bytes(data, max_side, max_pixels)
        with lock:
            faces = predict_image(classifier, rgb, detector)
        return {
            "faces": [face_json(face, classes, scale) for face in faces],
            "width": round(rgb.shape[1] / scale),
            "height": round(rgb.shape[0] / scale),
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "notes": notes,
        }

    async def api_predict(request: Request) -> JSONResponse:
        try:
            data = await read_upload(request, max_bytes)
            return JSONResponse(await run_in_threadpool(predict_bytes, data))
        except BadImage as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)

    async def api_info(request: Request) -> JSONResponse:
        pages = {key: f"/run/{page}" for key, page in RUN_PAGES.items() if run_dir and (run_dir / page).is_file()}
        return JSONResponse({
            "classes": classes,
            "engine": classifier.engine,
            "input": {"channels": classifier.channels, "size": classifier.size},
            "limits": {"max_bytes": max_bytes, "max_side": max_side, "max_pixels": max_pixels},
            "run": pages,
        })

    routes = [
        Route("/api/predict", api_predict, methods=["POST"]),
        Route("/api/info", api_info, methods=["GET"]),
    ]
    if run_dir is not None:
        routes.append(Mount("/run", RunPages(run_dir)))
    routes.append(Mount("/", StaticFiles(packages=[("fertransfer.serve", "static")], html=True)))
    return Starlette(routes=routes, middleware=[Middleware(Guard, allowed_hosts=allowed_hosts, port=port)])
