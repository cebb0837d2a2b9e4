"""Training checkpoints: written atomically, the last few kept, checked before use.

A checkpoint holds everything needed to continue exactly (models, optimisers, schedulers,
fake-image pools, RNG states, step) plus the model config it was made with. Files are
written to a temporary name, flushed and renamed, so a crash never leaves a half-written
``step_*.pt``; ``latest.pt`` is a generators-only export (what translation loads).
Loading uses ``weights_only=True``: everything stored is tensors and plain Python values.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from fertransfer.atomic import atomic_write

FORMAT = "fertransfer-cyclegan"
VERSION = 1
LATEST = "latest.pt"
STEP_FILE = re.compile(r"^step_(\d{8})\.pt$")
# Config keys that fix the shapes of the weights: a checkpoint must match them all.
ARCHITECTURE_KEYS = ("model", "generator", "ngf", "ndf", "n_layers", "a_channels", "b_channels", "image_size", "bottleneck")
# What a checkpoint made before a key existed was made with.
ARCHITECTURE_DEFAULTS = {"model": "cyclegan"}

log = logging.getLogger("fertransfer.cyclegan")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


def step_path(folder: Path, step: int) -> Path:
    return Path(folder) / f"step_{step:08d}.pt"


def atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda handle: torch.save(obj, handle), fsync=True)


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every step_*.pt in the folder, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / name) for name in os.listdir(folder) if (m := STEP_FILE.match(name))]
    return sorted(found)


def export_generators(state: dict) -> dict:
    """The part of a training checkpoint that translation needs."""
    return {
        "format": FORMAT, "version": VERSION, "step": state["step"], "config": state["config"],
        "models": {k: state["models"][k] for k in ("G_AB", "G_BA")},
    }


def save_checkpoint(folder: Path, state: dict, keep: int = 2) -> Path:
    """Write step_<step>.pt and latest.pt atomically; delete all but the newest `keep` step files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    path = step_path(folder, state["step"])
    atomic_save(state, path)
    atomic_save(export_generators(state), folder / LATEST)
    for _, old in step_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Read and sanity-check one checkpoint file; CheckpointError when it is unusable."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:  # truncated zip, bad pickle, ...: all mean "corrupt"
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fertransfer CycleGAN checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')}, this code reads {VERSION}")
    for key in ("step", "config", "models"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    return state


def check_architecture(state: dict, expected: dict, path: Path | str) -> None:
    """Raise CheckpointError naming every architecture setting that differs from `expected`."""
    made = state["config"]
    diffs = [
        f"{k}: checkpoint {made.get(k, ARCHITECTURE_DEFAULTS.get(k))!r}, config {expected.get(k)!r}"
        for k in ARCHITECTURE_KEYS
        if k in expected and made.get(k, ARCHITECTURE_DEFAULTS.get(k)) != expected.get(k)
        and not (k == "bottleneck" and expected.get("model") != "autoencoder")  # only the autoencoder has one
    ]
    if diffs:
        raise CheckpointError(f"{path}: made with another architecture ({'; '.join(diffs)})")


def load_newest_valid(folder: Path, expected: dict, map_location: str | torch.device = "cpu") -> dict | None:
    """The newest step checkpoint that loads and fits `expected`; corrupt ones are skipped with a
    warning (and kept on disk). None when there is none. An architecture mismatch is an error."""
    for step, path in reversed(step_checkpoints(folder)):
        try:
            state = load_checkpoint(path, map_location)
        except CheckpointError as error:
            log.warning("%s; falling back to an older checkpoint", error)
            continue
        if not {"optimizers", "schedulers", "rng"} <= state.keys():
            log.warning("%s: incomplete training checkpoint; falling back to an older one", path)
            continue
        check_architecture(state, expected, path)
        return state
    return None
