"""`pipeline gallery RUN_DIR`: the translation gallery again, from a finished augment stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fertransfer.errors import StageError

from .io import GALLERY_MARKER


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def gallery_for_run(run_dir: Path, out: Path, examples: int = 8, checkpoint: str | None = None,
                    faces: str | None = None, cycle: bool = True, device: str = "auto") -> dict:
    """gallery.html / gallery.png of a run's finished augment stage, written into `out`, with the
    judge's figures from the run's classify manifest when there is one.

    A command over a whole run folder: it reads the stages' manifests, which stages never do."""
    from .build import Translations, load_faces, rebuild_gallery
    from .generators import load_generator
    from .io import LABELS_CSV

    stage_dir = run_dir / "augment"
    manifest = _read_json(stage_dir / "manifest.json")
    if not manifest:
        raise StageError(f"{stage_dir}: no finished augment stage here (manifest.json missing or unreadable)")
    summary, seed = manifest.get("summary", {}), int(manifest.get("run", {}).get("seed", 0))
    class_names = tuple(next(iter(summary.get("translated", {}).values()), {}).keys())
    if not class_names:
        raise StageError(f"{stage_dir / 'manifest.json'}: no translated classes recorded")
    checkpoint_path = Path(checkpoint or summary.get("checkpoint") or run_dir / "cyclegan" / "checkpoints" / "latest.pt")
    backward = load_generator(checkpoint_path, "AtoB", device, "auto") if cycle else None
    generator = summary.get("generator", {})
    faces_dir = next((Path(p).expanduser() for p in (faces, summary.get("faces"), run_dir / "extract" / "faces")
                      if p and Path(p).expanduser().is_dir()), None)
    face_images = None
    if faces_dir is not None:
        face_images = load_faces(faces_dir, examples, int(generator.get("image_size", 64)),
                                 int(generator.get("out_channels", 3)), seed)
    judge = (_read_json(run_dir / "classify" / "manifest.json") or {}).get("summary", {}).get("translation_judge")
    translations = Translations(
        stage_dir / LABELS_CSV, class_names, summary.get("fer"), seed, int(generator.get("in_channels", 1)),
        (summary.get("gallery") or {}).get("split"),
        {name: s["counts"] for name, s in summary.get("sets", {}).items()}, summary.get("checkpoint", "?"))
    return rebuild_gallery(translations, out, run_dir, examples, backward, face_images, judge)


def check_output_dir(out: Path, source_run: Path, force: bool) -> None:
    """Refuse a folder that holds another run's data unless `force`.

    Allowed: a missing or empty folder, the augment stage folder of `source_run` itself, or a
    folder whose earlier gallery came from `source_run`.
    """
    if force or not out.exists() or not any(out.iterdir()):
        return
    if not out.is_dir():
        raise StageError(f"{out}: exists and is not a folder")
    if out.resolve() == (source_run / "augment").resolve():
        return
    marker = out / GALLERY_MARKER
    if marker.is_file():
        try:
            if Path(json.loads(marker.read_text())["run_dir"]).resolve() == source_run.resolve():
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
    manifest = out / "manifest.json"
    holds = "a stage's output (manifest.json)" if manifest.exists() else f"{sum(1 for _ in out.iterdir())} other entries"
    raise StageError(f"{out}: holds another run's data ({holds}); use --force to write there anyway")


def cmd_gallery(args: argparse.Namespace) -> int:
    from fertransfer.paths import check_outputs_apart

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "augment"
    # The gallery belongs in augment/ beside what it shows, never among the images it reads.
    inputs = [(f"RUN_DIR/{part}", run_dir / part) for part in ("augment/translated", "augment/sets", "extract",
                                                               "cyclegan", "classify")]
    check_outputs_apart([("--out", out)], [*inputs, ("--faces", args.faces), ("--checkpoint", args.checkpoint)],
                        may_hold_inputs=True)
    check_output_dir(out, run_dir, args.force)
    result = gallery_for_run(run_dir, out, args.examples, args.checkpoint, args.faces, not args.no_cycle, args.device)
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
    # Writing into RUN_DIR/augment: `pipeline` holds the run folder's lock (one writer at a time).
    p.set_defaults(func=cmd_gallery, writes_run_dir=lambda args: None if args.out else args.run_dir)
