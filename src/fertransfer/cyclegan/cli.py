"""`pipeline translate`: a folder of images through one generator of a checkpoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("fertransfer.cyclegan")

CHUNK = 512  # images read, translated and written at a time


def cmd_translate(args: argparse.Namespace) -> int:
    from fertransfer.data import DatasetError, read_images, write_png
    from fertransfer.data.images import is_image_file
    from fertransfer.errors import StageError
    from fertransfer.paths import check_outputs_apart, unique_names, with_suffix_kept
    from fertransfer.progress import progress

    from .checkpoint import CheckpointError
    from .translate import Translator

    source, target = Path(args.input), Path(args.output)
    if not source.is_dir():
        raise DatasetError(f"{source}: no such folder")
    check_outputs_apart([("OUTPUT", target)], [("INPUT", source), ("--checkpoint", args.checkpoint)])
    files = sorted(str(p) for p in source.rglob("*") if p.is_file() and is_image_file(p) and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{source}: no images found")
    # a.jpg -> a.jpg.png, a.png -> a.png: a.jpg and a.png in one folder stay two files
    outputs = unique_names([with_suffix_kept(Path(f).relative_to(source), ".png") for f in files])
    try:
        translator = Translator.from_checkpoint(args.checkpoint, direction=args.direction, device=args.device)
    except CheckpointError as error:
        raise StageError(str(error)) from None
    failed: list[str] = []
    written = 0
    with progress(total=len(files), desc=f"translate {args.direction}", unit="img") as bar:
        for start in range(0, len(files), CHUNK):
            chunk = files[start : start + CHUNK]
            images, ok, errors = read_images(chunk, channels=translator.in_channels, size=translator.image_size)
            failed += errors
            if ok:
                for i, image in zip(ok, translator.translate(images, batch_size=args.batch_size)):
                    out = target / outputs[start + i]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    write_png(out, image)
                    written += 1
            bar.update(len(chunk))
    print(f"translated {written} image(s) {args.direction} into {target}")
    if failed:
        for message in failed:
            log.warning("skipped: %s", message)
        raise DatasetError(f"{len(failed)} unreadable image(s), first: {failed[0]}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("translate", help="translate a folder of images with a CycleGAN checkpoint")
    p.add_argument("input", help="folder of images (searched recursively)")
    p.add_argument("output", help="folder for the translated PNGs (same relative paths, the source's extension "
                                  "kept: a.jpg -> a.jpg.png, a.png -> a.png); not inside INPUT, nor holding it")
    p.add_argument("--checkpoint", required=True, help="e.g. runs/x/cyclegan/checkpoints/latest.pt")
    p.add_argument("--direction", choices=("AtoB", "BtoA"), required=True,
                   help="AtoB: person -> FER style; BtoA: FER -> the person")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_translate)
