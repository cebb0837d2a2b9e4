"""Where commands may write: never onto their inputs, never two outputs under one name.

Every command that writes files (`translate`, `predict`, `evaluate`, `gallery`, `inspect --chart`)
checks its output paths against its input paths first (`check_outputs_apart`): an output folder
equal to or inside an input folder, or holding one, would overwrite the inputs or be read back
as input by the next run. Output names are made from the whole source name, extension included,
so `a.jpg` and `a.png` do not land on one file (`unique_names` adds a counter where they still would).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from .errors import StageError


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))


def check_outputs_apart(
    outputs: Iterable[tuple[str, str | os.PathLike]],
    inputs: Iterable[tuple[str, str | os.PathLike | None]],
    may_hold_inputs: bool = False,
) -> None:
    """Raise StageError (one line naming both) when an output is an input, lies inside one, or
    (unless may_hold_inputs) holds one. Each path comes with what it is (`--out`, `DATASET`, ...);
    paths are compared after following symbolic links, so a link to an input is that input."""
    inputs = [(label, path, _real(path)) for label, path in inputs if path is not None and str(path) != ""]
    for out_label, out in outputs:
        real_out = _real(out)
        for in_label, given, real_in in inputs:
            if real_out == real_in:
                problem = "is"
            elif real_in in real_out.parents:
                problem = "is inside"
            elif real_out in real_in.parents and not may_hold_inputs:
                problem = "holds"
            else:
                continue
            raise StageError(f"{out_label} {out} {problem} the input {in_label} {given}: outputs never go "
                             f"where inputs are read; write them to another folder")


def unique_names(names: Sequence[str]) -> list[str]:
    """The names in order, each later duplicate given `~2`, `~3`, ... before its extension."""
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, count = name, 1
        while candidate in taken:
            count += 1
            path = PurePosixPath(name)
            candidate = str(path.with_name(f"{path.stem}~{count}{path.suffix}"))
        taken.add(candidate)
        unique.append(candidate)
    return unique


def with_suffix_kept(relative: str | os.PathLike, suffix: str) -> str:
    """A source's relative path as an output name with `suffix`, its own extension kept:
    `sub/a.jpg` -> `sub/a.jpg.png`; a name that already ends in `suffix` stays as it is."""
    name = PurePosixPath(Path(relative).as_posix())
    return str(name) if name.suffix.lower() == suffix.lower() else f"{name}{suffix}"
