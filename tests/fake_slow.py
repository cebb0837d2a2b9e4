"""A stage that holds its run until told to go on: for tests of two runs on one run folder.

It writes `first.txt`, waits until the file named by `release` exists (at most `wait_s`
seconds), then writes `second.txt` and a 300 KiB `weights.bin`, a stand-in for a checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fertransfer.pipelines import Stage, StageContext, option


@dataclass
class SlowOptions:
    source: str = option("input.txt", "A text file to copy.", kind="path")
    release: str = option("", "Wait for this file before finishing (empty: do not wait).")
    wait_s: float = option(30.0, "Longest wait for `release`.", ge=0)


def run_slow(ctx: StageContext) -> dict:
    text = ctx.path(ctx.options.source).read_text()
    (ctx.out_dir / "first.txt").write_text(text)
    deadline = time.monotonic() + ctx.options.wait_s
    while ctx.options.release and not ctx.path(ctx.options.release).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (ctx.out_dir / "second.txt").write_text(text + "!")
    (ctx.out_dir / "weights.bin").write_bytes(bytes(range(256)) * 1200)
    return {"characters": len(text)}


STAGE = Stage(name="extract", options=SlowOptions, run=run_slow, description="slow test stage",
              inputs=lambda o: [o.source], outputs=("second.txt",))
