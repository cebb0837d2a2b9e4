"""Decoding image files into uint8 arrays, fast and in every common mode.

OpenCV decodes JPEG and PNG several times faster than Pillow and releases the GIL, so
folders of tens of thousands of small images load in a thread pool within seconds.
Pillow is the fallback for formats and modes OpenCV does not read.

Every image is measured before it is decoded: its width and height come from the header
(PNG and JPEG read here, other formats by Pillow's lazy open, which reads only the header), and
an image over MAX_PIXELS is refused, so a file of a few kilobytes that claims 30000x30000 pixels
(a decompression bomb) never reaches a decoder. A file whose size no header gives is refused too.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"})

# Images with more pixels than this are refused before decoding: 60 megapixels is above any
# phone or camera photo (8000x7500), and decoding one takes about 180 MB (RGB).
MAX_PIXELS = 60_000_000

# Transparent pixels are composited onto this grey level (white), as an image viewer shows them.
ALPHA_BACKGROUND = 255


class UnreadableImage(Exception):
    """An image file that cannot be decoded, or that ends before its data does."""


class ImageTooLarge(UnreadableImage):
    """An image whose header claims more pixels than the limit; refused before decoding."""

    def __init__(self, message: str, width: int, height: int):
        super().__init__(message)
        self.width, self.height = width, height


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...): not DHT (C4), JPG (C8), DAC (CC).
JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's first start-of-frame segment, walking the segments' lengths."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in JPEG_FRAME_MARKERS:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker == 0xDA or length < 2:  # image data before any frame header: not a JPEG we read
            return None
        at += 2 + length
    return None


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(width, height) from the header alone, decoding no pixel; raises UnreadableImage naming `name`."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    size = _jpeg_size(data) if data[:2] == b"\xff\xd8" else None
    if size is not None:
        return size
    try:  # every other format: Pillow's lazy open reads the header only
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit, far over ours
        raise ImageTooLarge(f"{name}: {str(error).rstrip('.')} (refused before decoding)", 0, 0) from None
    except UnidentifiedImageError:
        raise UnreadableImage(f"{name}: not a known image format") from None
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for bad headers
        raise UnreadableImage(f"{name}: unreadable image header ({error})") from None


def check_image_size(data: bytes, name: str = "image", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """The header's (width, height); raises ImageTooLarge above max_pixels, UnreadableImage without a size."""
    width, height = image_size(data, name)
    if width <= 0 or height <= 0:
        raise UnreadableImage(f"{name}: the header gives no size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLarge(f"{name}: {width}x{height} px is over the limit of {max_pixels:,} pixels "
                            f"(fertransfer.data.images.MAX_PIXELS); refused before decoding", width, height)
    return width, height


def is_image_file(path: str | os.PathLike) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def _looks_truncated(data: bytes) -> bool:
    # Decoders fill the missing rows of a cut-off JPEG with grey and only warn; catch it here.
    if data[:2] == b"\xff\xd8":
        return not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in data[-16:]
    return False


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def _composite(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return (rgb.astype(np.float32) * a + ALPHA_BACKGROUND * (1.0 - a) + 0.5).astype(np.uint8)


def _decode_opencv(data: bytes) -> np.ndarray | None:
    """RGB or gray (H, W[, 3]) uint8, or None when OpenCV cannot decode it."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    array = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if array is None:
        return None
    array = _to_uint8(array)
    if array.ndim == 2:
        return array
    if array.shape[2] == 1:
        return array[..., 0]
    if array.shape[2] == 4:
        return _composite(cv2.cvtColor(array, cv2.COLOR_BGRA2RGB), array[..., 3])
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def _decode_pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image)
            return _to_uint8(array.astype(np.uint16) if array.max() > 255 else array)
        if image.mode in ("L", "RGB"):
            return np.asarray(image)
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode in ("RGBA", "LA", "PA"):
            rgba = np.asarray(image.convert("RGBA"))
            return _composite(rgba[..., :3], rgba[..., 3])
        return np.asarray(image.convert("RGB"))


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """(H, W[, C]) -> (H, W, channels): gray by ITU-R 601 luma, or gray repeated to RGB."""
    if array.ndim == 2:
        array = array[..., None]
    have = array.shape[2]
    if have == channels:
        return array
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_RGB2GRAY)[..., None]
    if channels == 3:
        return np.repeat(array, 3, axis=2)
    raise ValueError(f"channels must be 1 or 3, got {channels}")


def fit_square(array: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to size x size (area filter when shrinking)."""
    h, w = array.shape[:2]
    if h != w:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        array = array[top : top + side, left : left + side]
    if array.shape[0] != size:
        interpolation = cv2.INTER_AREA if array.shape[0] > size else cv2.INTER_LINEAR
        channels = array.shape[2] if array.ndim == 3 else None
        array = cv2.resize(array, (size, size), interpolation=interpolation)
        if channels == 1:
            array = array[..., None]
    return array


def read_image(path: str | os.PathLike, channels: int = 3, size: int | None = None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One image file as (H, W, channels) uint8; raises UnreadableImage with the path."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        if os.path.islink(path) and not os.path.exists(path):
            raise UnreadableImage(f"{path}: a symbolic link to a missing file ({os.readlink(path)})") from None
        raise UnreadableImage(f"{path}: {error.strerror or error}") from None
    return decode_image(data, channels, size, name=str(path), max_pixels=max_pixels)


def decode_image(data: bytes, channels: int = 3, size: int | None = None, name: str = "image",
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Encoded image bytes (a file's, an upload's) as (H, W, channels) uint8; raises UnreadableImage
    naming `name` (ImageTooLarge, before any decoding, for more than max_pixels)."""
    if not data:
        raise UnreadableImage(f"{name}: empty file")
    check_image_size(data, name, max_pixels)
    if _looks_truncated(data):
        raise UnreadableImage(f"{name}: truncated image")
    array = _decode_opencv(data)
    if array is None:
        try:
            array = _decode_pillow(data)
        except UnidentifiedImageError:
            raise UnreadableImage(f"{name}: not a known image format") from None
        except Exception as error:  # Pillow raises many types for bad files
            raise UnreadableImage(f"{name}: {error}") from None
    array = to_channels(array, channels)
    if size is not None:
        array = fit_square(array, size)
    return array


def read_images(
    paths: Sequence[str | os.PathLike],
    channels: int = 3,
    size: int | None = None,
    workers: int | None = None,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode many files in parallel.

    Returns (images (N, H, W, C), indices of the paths that decoded, messages for those that
    did not). Without `size`, every image must share the first one's size; others are resized.
    """
    if workers is None:
        # Threads only pay off for larger files: on 48x48 JPEGs the per-file Python work
        # dominates and a second thread slows loading down (measured on 2 cores).
        sample = [os.path.getsize(p) for p in paths[:32] if os.path.exists(p)]
        small = not sample or sum(sample) / len(sample) < 16_000
        workers = 1 if small else min(8, os.cpu_count() or 1)
    chunk = max(64, len(paths) // (workers * 4) + 1)
    starts = range(0, len(paths), chunk)

    def decode_chunk(start: int) -> list[tuple[int, np.ndarray | str]]:
        out: list[tuple[int, np.ndarray | str]] = []
        for i in range(start, min(start + chunk, len(paths))):
            try:
                out.append((i, read_image(paths[i], channels, size)))
            except UnreadableImage as error:
                out.append((i, str(error)))
        return out

    results: list[tuple[int, np.ndarray | str]] = []
    if workers == 1:
        for start in starts:
            results.extend(decode_chunk(start))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(decode_chunk, starts):
                results.extend(part)

    good = [(i, a) for i, a in results if not isinstance(a, str)]
    errors = [a for _, a in results if isinstance(a, str)]
    if not good:
        return np.zeros((0, size or 0, size or 0, channels), np.uint8), [], errors
    target = good[0][1].shape[:2]
    if size is None and any(a.shape[:2] != target for _, a in good):
        good = [(i, fit_square(a, target[0]) if a.shape[:2] != target else a) for i, a in good]
    images = np.stack([a for _, a in good])
    return images, [i for i, _ in good], errors


def write_jpeg(path: str | os.PathLike, image: np.ndarray, quality: int = 95) -> None:
    """Write an (H, W, 1|3) RGB or gray uint8 array as JPEG."""
    array = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"{path}: could not write image")


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    array = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), array):
        raise OSError(f"{path}: could not write image")


def conform(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """Images as (N, size, size, channels): centre-cropped square, resized, gray <-> RGB."""
    if images.shape[1:] == (size, size, channels):
        return images
    out = np.empty((len(images), size, size, channels), np.uint8)
    for i, image in enumerate(images):
        converted = to_channels(image, channels)
        out[i] = fit_square(converted, size).reshape(size, size, channels)
    return out
