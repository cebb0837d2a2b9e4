"""The `pipeline` command (also installed as `fertransfer`).

Errors a user can fix (bad config, bad data) print one line each
and exit non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

from fertransfer.data.datasets import DatasetError

from .config import DEFAULT_CONFIG, ConfigError, default_config_text, load_config
from .registry import STAGE_ORDER
from .stage import StageError

# Packages whose cli.add_commands adds commands: the stages, then tools built on them.
COMMAND_PACKAGES = (*STAGE_ORDER, "serve")

EXIT_CONFIG = 2
EXIT_FAILED = 1


def cmd_init(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DEFAULT_CONFIG
    if target.exists() and not args.force:
        print(f"error: {target} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_FAILED
    target.write_text(default_config_text())
    print(target)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .report import headline_text, write_report
    from .runner import run_pipeline

    config = load_config(args.config)
    statuses = run_pipeline(config, args.stage, force=args.force)
    print_failed_inputs(statuses)
    for line in headline_text(config.run_dir):
        print(line)
    print(f"run report: {write_report(config.run_dir)}")
    return 0


def print_failed_inputs(statuses: list) -> None:
    """Inputs a finished stage skipped, so that a partial success does not pass as a full one."""
    for status in statuses:
        failed = status.failed_inputs
        if failed:
            print(f"{status.name}: {len(failed)} input{'s' if len(failed) > 1 else ''} failed and skipped: "
                  + "; ".join(failed))


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.run_dir))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .lock import running_holder
    from .runner import stage_status

    config = load_config(args.config)
    print(f"run dir: {config.run_dir}")
    holder = running_holder(config.run_dir)
    if holder:
        print(f"  running now: pid {holder['pid']}, started {holder['started']} ({holder['command']})")
    known: dict = {}
    for name in STAGE_ORDER:
        status = stage_status(config, name, known)
        line = f"  {name:<9} {status.text}"
        if status.manifest and status.state != "interrupted":
            outputs = status.manifest.get("outputs", {})
            line += f"  {outputs.get('count', 0)} files in {config.run_dir / name}"
            line += f", finished {status.manifest['timings']['finished']}"
        print(line)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from fertransfer.data import FER, FERPLUS, class_set, load_dataset
    from fertransfer.data.inspect import format_summary, plot_class_distribution, summarise
    from fertransfer.paths import check_outputs_apart

    outputs = [(option, path) for option, path in (("--chart", args.chart), ("--json", args.json)) if path]
    check_outputs_apart(outputs, [("PATH", args.path), ("--ferplus", args.ferplus)])
    classes = class_set(args.classes, default=FERPLUS if args.labels == "ferplus" else FER)
    dataset = load_dataset(args.path, classes=classes, seed=args.seed, labels=args.labels, ferplus=args.ferplus)
    summary = summarise(dataset)
    print(format_summary(summary))
    if args.chart:  # files only where asked: no chart lands in the current folder by default
        chart = Path(args.chart)
        chart.parent.mkdir(parents=True, exist_ok=True)
        plot_class_distribution(summary, chart)
        print(f"class distribution chart: {chart}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo_overrides
    from .lock import run_folder_lock

    # Held while the demo data is written too: a second `demo` on the folder is refused before it rewrites them.
    with run_folder_lock(Path(args.dir) / demo_overrides()["run"]["dir"]):
        return _demo(args)


def _demo(args: argparse.Namespace) -> int:
    from .demo import write_demo
    from .runner import run_pipeline

    config_path = write_demo(args.dir)
    print(f"demo data and config written to {config_path}")
    if args.no_run:
        return 0
    from .report import headline_text, write_report

    config = load_config(config_path)
    print_failed_inputs(run_pipeline(config, "all", force=args.force))
    for line in headline_text(config.run_dir):
        print(line)
    print(f"demo finished; run report: {write_report(config.run_dir)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="write a commented pipeline.toml with every option")
    p.add_argument("dir", nargs="?", default=".")
    p.add_argument("--force", action="store_true", help="overwrite an existing pipeline.toml")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run one stage or all of them")
    p.add_argument("stage", choices=[*STAGE_ORDER, "all"])
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.add_argument("--force", action="store_true", help="run even if up to date")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="list each stage as done, stale, damaged, interrupted or missing")
    p.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="(re)build report.html of a run folder")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("inspect", help="counts per split and class of a labelled dataset")
    p.add_argument("path", help="a Kaggle CSV, or a folder in split or class layout")
    p.add_argument("--chart", help="write the bar chart PNG here (default: no chart)")
    p.add_argument("--json", help="also write the summary as JSON here")
    p.add_argument("--classes", nargs="+", help="class names, in label order (default: FER2013's)")
    p.add_argument("--seed", type=int, default=0, help="seed for splits the data lacks")
    p.add_argument("--labels", choices=("fer", "ferplus"), default="fer",
                   help="the data's own labels, or FER+'s majority vote (needs --ferplus)")
    p.add_argument("--ferplus", help="FER+ votes file (fer2013new.csv) for --labels ferplus")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("demo", help="write the built-in demo data and config, then run all stages")
    p.add_argument("dir", nargs="?", default="runs/demo")
    p.add_argument("--no-run", action="store_true", help="only write the data and config")
    p.add_argument("--force", action="store_true", help="re-run stages even if up to date")
    p.set_defaults(func=cmd_demo)

    # Stages add their own commands (translate, gallery, predict, ...) from <stage>/cli.py.
    for name in COMMAND_PACKAGES:
        try:
            module = importlib.import_module(f"fertransfer.{name}.cli")
        except ModuleNotFoundError as error:
            if error.name != f"fertransfer.{name}.cli":
                raise
            continue
        module.add_commands(sub)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """The chosen command; one that writes into a run folder (`writes_run_dir(args)` names it) holds
    that folder's lock, as `run` does, so that it never writes beside a run."""
    from .lock import run_folder_lock

    folder = getattr(args, "writes_run_dir", lambda args: None)(args)
    if folder is None or not Path(folder).is_dir():  # no run folder: the command says so itself
        return args.func(args)
    with run_folder_lock(Path(folder)):
        return args.func(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return run_command(args)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # The reader went away (`pipeline status | head`): not an error of ours.
        sys.stderr.close()
        return 0
    except (StageError, DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept, the interrupted one is not marked done", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
