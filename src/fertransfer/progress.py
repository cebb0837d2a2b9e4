"""Progress reports that read well both in a terminal and in a log file.

In a terminal a tqdm bar redraws itself in place. Written to a file (CI, nohup, `2> log`)
the same redraws become kilobytes of carriage returns, so there `progress` logs a plain
line every ~10% instead (every `interval` seconds when the total is unknown), and no more
often than every `min_gap` seconds, so a loop of a second or two reports once, when it ends.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger("fertransfer.progress")


def stderr_is_terminal() -> bool:
    """Whether bars can redraw in place (tqdm writes to stderr)."""
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             initial: float = 0, disable: bool = False, leave: bool = True, every: float | None = 0.1,
             interval: float = 30.0, min_gap: float = 5.0, **bar_options: Any) -> Any:
    """A tqdm bar on a terminal, otherwise a `LineProgress` with the interface the code uses
    (iteration, `with`, `.update`, `.set_postfix`, `.close`, `.n`, `.total`).

    `every`: fraction of `total` between log lines; None logs nothing (for loops that log their
    own line, e.g. per epoch). `bar_options` (mininterval, dynamic_ncols, ...) go to tqdm only."""
    if stderr_is_terminal():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, leave=leave,
                    **bar_options)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                        quiet=disable or every is None, every=every or 0.1, interval=interval, min_gap=min_gap)


class LineProgress:
    """Counts like tqdm but reports as log lines: at each `every` fraction of the total (or each
    `interval` seconds without one), at least `min_gap` seconds apart, and once when closed."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, quiet: bool = False, every: float = 0.1,
                 interval: float = 30.0, min_gap: float = 5.0) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.initial = initial
        self.quiet, self.interval, self.min_gap, self.closed = quiet, interval, min_gap, False
        self.postfix: dict[str, Any] = {}
        self.started = self.last_line = time.monotonic()
        self.step = max(1, math.ceil(total * every)) if total else None
        self.next_line = (initial // self.step + 1) * self.step if self.step else None

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LineProgress without an iterable: use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __bool__(self) -> bool:  # as tqdm: a bar is true even with no total
        return True

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.quiet or self.closed:
            return
        since = time.monotonic() - self.last_line
        if self.step is not None:
            if self.n >= self.next_line and self.n < self.total:  # the last line comes from close()
                self.next_line = (self.n // self.step + 1) * self.step
                if since >= self.min_gap:
                    self._line()
        elif since >= max(self.interval, self.min_gap):
            self._line()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.quiet and self.n > self.initial:
            self._line(done=True)

    def line(self, done: bool = False) -> str:
        """The report as it stands, e.g. `cyclegan: 300/3000 step (10%), 12.5 step/s, 24 s, ~3.6 min left`."""
        elapsed = time.monotonic() - self.started
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        count = f"{self.n:g}/{self.total:g} {self.unit}" if self.total else f"{self.n:g} {self.unit}"
        parts = [count + (f" ({100 * self.n / self.total:.0f}%)" if self.total else "")]
        if rate:
            parts.append(f"{rate:.3g} {self.unit}/s" if rate < 1000 else f"{rate:.0f} {self.unit}/s")
        parts.append(_duration(elapsed) + (" in all" if done else ""))
        if not done and self.total and rate:
            parts.append(f"~{_duration((self.total - self.n) / rate)} left")
        text = f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)
        if self.postfix:
            text += "; " + " ".join(f"{k}={v}" for k, v in self.postfix.items())
        return text

    def _line(self, done: bool = False) -> None:
        self.last_line = time.monotonic()
        log.info("%s", self.line(done))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = ["LineProgress", "progress", "stderr_is_terminal"]
