"""`pipeline gallery RUN_DIR`: the translation gallery again, from a finished augment stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fertransfer.errors import StageError


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def gallery_for_run(run_dir: Path, out: Path, examples: int = 8, judge: dict | None = None,
                    checkpoint: str | None = None, faces: str | None = None, cycle: bool = True,
                    device: str = "auto") -> dict:
    """gallery.html / gallery.png of a run's finished augment stage, written into `out`.

    `judge`: the classify stage's `translation_judge`, when it is measured after augment (classify
    passes its own; `pipeline gallery` reads it from classify's manifest)."""
    from .build import load_faces, rebuild_gallery
    from .stage import load_generator, person_faces_dir

    stage_dir = run_dir / "augment"
    manifest = _read_json(stage_dir / "manifest.json")
    if not manifest:
        raise StageError(f"{stage_dir}: no finished augment stage here (manifest.json missing or unreadable)")
    summary, seed = manifest.get("summary", {}), int(manifest.get("run", {}).get("seed", 0))
    checkpoint_path = Path(checkpoint or summary.get("checkpoint") or run_dir / "cyclegan" / "checkpoints" / "latest.pt")
    backward = load_generator(checkpoint_path, "AtoB", device, "auto") if cycle else None
    generator = summary.get("generator", {})
    faces_dir = person_faces_dir(faces or summary.get("faces") or "", checkpoint_path, lambda v: Path(v).expanduser())
    face_images = None
    if faces_dir is not None:
        face_images = load_faces(faces_dir, examples, int(generator.get("image_size", 64)),
                                 int(generator.get("out_channels", 3)), seed)
    if judge is None:
        judge = (_read_json(run_dir / "classify" / "manifest.json") or {}).get("summary", {}).get("translation_judge")
    return rebuild_gallery(stage_dir, out, run_dir, examples, backward, face_images, judge)


def cmd_gallery(args: argparse.Namespace) -> int:
    from .io import check_output_dir

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "augment"
    check_output_dir(out, run_dir, args.force)
    result = gallery_for_run(run_dir, out, args.examples, None, args.checkpoint, args.faces, not args.no_cycle,
                             args.device)
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
