"""One run at a time per run folder: an advisory lock held for a command's whole life.

Two `pipeline run` on one run folder would train in the same `<stage>.partial/` and publish
each other's half-written outputs. The lock is `fcntl.flock` on `<run dir>/.lock`: the kernel
releases it when its holder exits, however it exits, so a killed run never blocks the next one.
The file holds the holder's pid, start time and command, so that the refusal names them; it is
emptied on a clean exit, so a non-empty file found by a run that did get the lock was left by a
process that died (`kill -9`, a crash), which is said in a warning. Readers (`status`, `report`)
take no lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from fertransfer.errors import StageError

log = logging.getLogger("fertransfer")

LOCK_FILE = ".lock"
_held: set[Path] = set()  # run folders this process holds (flock is per open file: re-taking it would block)


class RunFolderBusy(StageError):
    """Another live process holds the run folder's lock."""


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "another process (it has not written its pid yet)"
    return f"pid {holder.get('pid')} (started {holder.get('started')}: {holder.get('command')})"


def read_holder(run_dir: Path) -> dict | None:
    """What the lock file says of its last holder (None when empty or unreadable); takes no lock."""
    try:
        return json.loads((Path(run_dir) / LOCK_FILE).read_text() or "null")
    except (OSError, ValueError):
        return None


def running_holder(run_dir: Path) -> dict | None:
    """The holder of the lock when it is a live process, for `status`; takes no lock."""
    holder = read_holder(run_dir)
    if not holder or not isinstance(holder.get("pid"), int):
        return None
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    return holder


@contextmanager
def run_folder_lock(run_dir: Path, command: str | None = None) -> Iterator[None]:
    """Hold `<run_dir>/.lock` for the body; raises RunFolderBusy at once when a live process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _held:  # `demo` -> run_pipeline: the outer call holds it already
        yield
        return
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"{run_dir} is in use by {_holder_text(read_holder(run_dir))}; one run at a time "
                                f"per run folder: wait for it to end, or use another [run] dir") from None
        left = read_holder(run_dir)
        if left and left.get("pid") != os.getpid():
            log.warning("%s: taking over the lock left by %s, which ended without releasing it (killed or "
                        "crashed); its interrupted stage is continued or redone", path, _holder_text(left))
        holder = {"pid": os.getpid(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        _held.add(key)
        try:
            yield
        finally:
            _held.discard(key)
            os.ftruncate(fd, 0)  # a clean exit: the next holder finds nothing to warn about
    finally:
        os.close(fd)  # releases the flock


__all__ = ["LOCK_FILE", "RunFolderBusy", "read_holder", "run_folder_lock", "running_holder"]
