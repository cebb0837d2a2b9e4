"""The augment stage: FER images translated into the person's domain, new training sets
from them, and the translation gallery.

Modules: `core` (translating arrays through a generator function, the fit check, the
label-preservation hook), `transforms` (format conversion, crop/flip and classic augmentation),
`builders` (the training sets as recipes), `gallery` (mosaic PNG and offline HTML page),
`io` (files and folders), `build` (everything the stage writes, given a generator function),
`stage` / `cli` (the edge: config, the cyclegan Translator, `pipeline gallery`).
"""

# The training sets, by name; `real+synthetic` is written to the folder `real_synthetic`.
# The augment stage writes DEFAULT_SETS unless told; real+classic, real+synthetic's control, on request.
DEFAULT_SETS: tuple[str, ...] = ("real", "synthetic", "real+synthetic", "balanced", "classic")
SET_NAMES: tuple[str, ...] = (*DEFAULT_SETS, "real+classic")


def set_folder(name: str) -> str:
    """Folder name of a set under sets/: `real+synthetic` -> `real_synthetic`."""
    return name.replace("+", "_")
