"""The cyclegan generators as augment uses them: one direction of a checkpoint, as a `build.Generator`.

Used by the stage, by `pipeline gallery` and by classify's copy of the gallery; torch is imported
inside the functions so that the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path

from fertransfer.errors import StageError


def _autocast_bf16_on_cpu(translator) -> None:
    """Run the Translator's generator under CPU bf16 autocast (it autocasts only on CUDA)."""
    import torch

    plain = translator.generator.forward

    def forward(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return plain(x).float()

    translator.generator.forward = forward


def load_generator(path: Path, direction: str, device: str, precision: str = "fp32"):
    """The cyclegan Translator for one direction, as a build.Generator."""
    from fertransfer.cyclegan.translate import Translator
    from fertransfer.devices import use_bf16

    from .build import callable_generator

    if not path.is_file():
        raise StageError(f"{path}: generator checkpoint not found")
    try:
        translator = Translator.from_checkpoint(path, direction=direction, device=device)
    except (OSError, RuntimeError, KeyError, ValueError) as error:
        raise StageError(f"{path}: cannot load the {direction} generator: {error}") from None
    on_cpu = translator.device.type == "cpu"
    bf16 = on_cpu and use_bf16(precision, translator.device)
    if bf16:
        _autocast_bf16_on_cpu(translator)
    generator = callable_generator(translator, f"{path} ({direction})")
    generator.precision = "bf16" if bf16 or not on_cpu else "fp32"
    return generator
