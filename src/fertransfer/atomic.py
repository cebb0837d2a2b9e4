"""Writing a file so that readers see the old version or the new one, never half of either.

Ground floor: imports no other fertransfer module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], *, binary: bool = True,
                 fsync: bool = False) -> None:
    """Call `write(handle)` on a temporary file beside `path`, then rename it over `path`.
    `fsync`: flush to disk first (checkpoints that must survive a power cut)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb" if binary else "w") as handle:
            write(handle)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text), binary=False)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps: Any) -> None:
    atomic_write_text(path, json.dumps(obj, **dumps))


__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text"]
