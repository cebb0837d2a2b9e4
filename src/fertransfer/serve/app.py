"""The web app behind `pipeline serve`: a static page and a JSON API over `predict_image`.

The page (static/index.html, static/app.js) sends camera frames or an uploaded photo to
`POST /api/predict`; the answer is computed by `fertransfer.classify.predict.predict_image`,
the same function `pipeline predict` uses, so the page and the command agree on every face.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from fertransfer.classify.models import Classifier
from fertransfer.classify.predict import Face, FacePrediction, predict_image
from fertransfer.data.images import UnreadableImage, decode_image

MAX_BYTES = 10 * 1024 * 1024  # an upload larger than this is refused (413)
MAX_SIDE = 4000  # an image with a longer side is downscaled to it before detection
# Refused before decoding: a small compressed file can expand to gigabytes of pixels.
MAX_PIXELS = 60_000_000
# The run pages the page links to, and what of a run folder is served (pages and pictures,
# not models or data).
RUN_PAGES = {"report": "report.html", "gallery": "augment/gallery.html"}
RUN_SUFFIXES = frozenset({".html", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".md", ".csv"})


class BadImage(Exception):
    """An upload the API refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class RunFiles(StaticFiles):
    """A run folder, read-only (GET and HEAD only), limited to its pages and pictures."""

    async def get_response(self, path: str, scope: Scope):
        if Path(path).suffix.lower() not in RUN_SUFFIXES:
            raise HTTPException(404)
        return await super().get_response(path, scope)


def image_from_bytes(data: bytes, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float, list[str]]:
    """(RGB image for detection, its scale to the original, notes for the response); raises BadImage."""
    from PIL import Image

    if not data:
        raise BadImage(400, "empty upload: send an image (JPEG, PNG, ...) as the body or the form field 'image'")
    try:  # the header alone gives the size, before any pixel is decoded
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Exception:  # noqa: BLE001 - not every format OpenCV reads is known to Pillow; decoding decides
        width = height = 0
    if width * height > MAX_PIXELS:
        raise BadImage(413, f"image is {width}x{height} px, over the {MAX_PIXELS // 1_000_000} megapixel limit")
    try:
        rgb = decode_image(data, channels=3, name="upload")
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
) -> Starlette:
    """The app: the page at /, `POST /api/predict`, `GET /api/info`, and with run_dir its pages under /run/.

    allowed_hosts limits the Host header (against DNS rebinding of a loopback server); None allows any.
    """
    classes = list(classifier.classes)
    lock = threading.Lock()  # one prediction at a time: torch already uses every thread it is given

    def predict_bytes(data: bytes) -> dict:
        started = time.perf_counter()
        rgb, scale, notes = image_from_bytes(data, max_side)
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
            "limits": {"max_bytes": max_bytes, "max_side": max_side},
            "run": pages,
        })

    routes = [
        Route("/api/predict", api_predict, methods=["POST"]),
        Route("/api/info", api_info, methods=["GET"]),
    ]
    if run_dir is not None:
        routes.append(Mount("/run", RunFiles(directory=run_dir)))
    routes.append(Mount("/", StaticFiles(packages=[("fertransfer.serve", "static")], html=True)))
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)
