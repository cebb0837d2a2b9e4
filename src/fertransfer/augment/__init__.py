"""The augment stage: FER images translated into the person's domain, new training sets
from them, and the translation gallery.

Modules: `core` (translating arrays through a generator function, the fit check, the
label-preservation hook), `transforms` (format conversion, crop/flip and classic augmentation),
`builders` (the training sets as recipes), `gallery` (mosaic PNG and offline HTML page),
`io` (files and folders), `build` (everything the stage writes, given a generator function),
`stage` / `cli` (the edge: config, the cyclegan Translator, `pipeline gallery`).
"""

# The training sets, by name; `real+synthetic` is written to the folder `real_synthetic`.
SET_NAMES: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "balanced", "classic", "real+classic")
# What the augment stage writes unless told: real+classic, the control of real+synthetic, on request.
DEFAULT_SETS: tuple[str, ...] = SET_NAMES[:5]


def set_folder(name: str) -> str:
    """Folder name of a set under sets/: `real+synthetic` -> `real_synthetic`."""
    return name.replace("+", "_")
