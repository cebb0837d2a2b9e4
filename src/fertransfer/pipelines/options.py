"""The [run] section's options; `option` and `field_default` are re-exported from the ground floor.

Options are declared with `fertransfer.options.option`; it is importable from here too so that
older imports keep working.
"""

from __future__ import annotations

from dataclasses import dataclass

from fertransfer.options import field_default, option


@dataclass
class RunOptions:
    """The [run] section: settings every stage shares."""

    dir: str = option("runs/default", "Folder the stages write into, one subfolder per stage.", kind="path")
    seed: int = option(0, "Seed for every random choice (splits, initialisation, sampling).")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda or cuda:N.")


__all__ = ["RunOptions", "field_default", "option"]
