"""`pipeline gallery RUN_DIR`: the translation gallery again, from a finished augment stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fertransfer.pipelines.stage import StageError


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def cmd_gallery(args: argparse.Namespace) -> int:
    from .build import load_faces, rebuild_gallery
    from .io import check_output_dir
    from .stage import load_generator, person_faces_dir

    run_dir = Path(args.run_dir)
    stage_dir = run_dir / "augment"
    manifest = _read_json(stage_dir / "manifest.json")
    if not manifest:
        raise StageError(f"{stage_dir}: no finished augment stage here (manifest.json missing or unreadable)")
    summary, seed = manifest.get("summary", {}), int(manifest.get("run", {}).get("seed", 0))
    out = Path(args.out) if args.out else stage_dir
    check_output_dir(out, run_dir, args.force)

    checkpoint = Path(args.checkpoint or summary.get("checkpoint") or run_dir / "cyclegan" / "checkpoints" / "latest.pt")
    backward = None if args.no_cycle else load_generator(checkpoint, "AtoB", args.device, "auto")
    generator = summary.get("generator", {})
    faces_option = args.faces or summary.get("faces") or ""
    faces_dir = person_faces_dir(faces_option, checkpoint, lambda value: Path(value).expanduser())
    faces = None
    if faces_dir is not None:
        faces = load_faces(
            faces_dir, args.examples, int(generator.get("image_size", 64)), int(generator.get("out_channels", 3)), seed
        )
    # Label preservation is measured by classify (a classifier trained on real FER), after augment.
    classify = _read_json(run_dir / "classify" / "manifest.json").get("summary", {})
    agreement = classify.get("label_preservation")
    result = rebuild_gallery(stage_dir, out, run_dir, args.examples, backward, faces, agreement)
    print(out / result["html"])
    print(out / result["png"])
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("gallery", help="rebuild the translation gallery of a run (augment stage)")
    p.add_argument("run_dir", help="a run folder holding a finished augment/ stage")
    p.add_argument("--out", help="folder for gallery.html / gallery.png (default: RUN_DIR/augment)")
    p.add_argument("--examples", type=int, default=8, help="examples per class (default 8)")
    p.add_argument("--checkpoint", help="generator checkpoint for the cycled-back row (default: the one recorded)")
    p.add_argument("--faces", help="folder of the person's real faces (default: the one recorded)")
    p.add_argument("--no-cycle", action="store_true", help="leave out the cycled-back row (no checkpoint needed)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--force", action="store_true", help="write into a folder that holds other data")
    p.set_defaults(func=cmd_gallery)
