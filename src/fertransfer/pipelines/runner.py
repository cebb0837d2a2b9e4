"""Running stages: skip what is up to date, work in a private folder, publish atomically.

A stage is *done* when ``<run dir>/<stage>/manifest.json`` exists, its fingerprint
(the stage's config section, the seed, the bytes of its input files and its upstream manifests)
matches the current one, its recorded outputs are intact and every upstream stage is done;
*damaged* when an output is missing or changed; *stale* when the fingerprint differs or an
upstream stage is not done; *interrupted* when a resumable stage's work folder would be
continued; *missing* otherwise. A stale stage whose config differs only in options its final
evaluation reads (`Stage.evaluation_options`) is evaluated again in a copy of its folder, not run again.
Work happens in ``<run dir>/<stage>.partial/``, which becomes ``<stage>/`` only after the
manifest is written, so an interrupted stage is never taken as done.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from fertransfer.atomic import atomic_write_json
from fertransfer.options import execution_options, field_default

from .config import Config, ConfigError, data_problems, default_note, missing_inputs, resolve
from .lock import run_folder_lock
from .options import out_of_range
from .registry import STAGE_ORDER, get_stage
from .stage import Stage, StageContext, StageError

log = logging.getLogger("fertransfer")

MANIFEST = "manifest.json"
FINGERPRINT_FILE = ".fingerprint.json"
OUTPUT_INDEX = ".outputs.json"
RECORDED_PACKAGES = (
    "fertransfer", "numpy", "opencv-python-headless", "pillow", "torch", "torchvision",
    "facenet-pytorch", "keras", "autokeras", "scikit-learn",
)


# --- fingerprints ---------------------------------------------------------------------


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _files_below(path: Path) -> list[tuple[str, str]]:
    """(relative name, full path) of a file, or of every file below a folder, in a stable order."""
    if path.is_file():
        return [(path.name, str(path))]
    files = []
    for directory, subdirs, names in os.walk(path):
        subdirs.sort()
        for name in sorted(names):
            full = os.path.join(directory, name)
            if not os.path.exists(full):  # a dangling symlink: no content to fingerprint (the data layer skips it too)
                log.warning("%s: a broken link, left out of the input's fingerprint", full)
                continue
            files.append((os.path.relpath(full, path), full))
    return files


def stat_fingerprint(path: Path) -> str:
    """Cheap identity: names, sizes and modification times of every file below."""
    entries = []
    for name, full in _files_below(path):
        st = os.stat(full)
        entries.append((name, st.st_size, st.st_mtime_ns))
    return _digest(entries)


def content_fingerprint(path: Path) -> str:
    """True identity: names and bytes of every file below (reads everything: ~1 s per 100 MB)."""
    entries = []
    for name, full in _files_below(path):
        sha = hashlib.sha256()
        with open(full, "rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
        entries.append((name, sha.hexdigest()))
    return _digest(entries)


class InputDigests:
    """Content fingerprints of input paths, cached in the run folder under their stat fingerprint.

    Inputs are identified by their bytes, so a dataset copied or unpacked again (new modification
    times, same files) does not make every stage stale; the cache keeps `status` and re-runs cheap:
    a path is read in full only when its names, sizes or times changed.
    """

    def __init__(self, run_dir: Path):
        self.file = run_dir / ".input-digests.json"
        self.entries: dict[str, dict] = _read_json(self.file) or {}

    def __call__(self, path: Path) -> str | None:
        if not path.exists():
            return None
        stat = stat_fingerprint(path)
        cached = self.entries.get(str(path))
        if cached and cached.get("stat") == stat:
            return cached["content"]
        content = content_fingerprint(path)
        self.entries[str(path)] = {"stat": stat, "content": content}
        if self.file.parent.is_dir():
            atomic_write_json(self.file, self.entries, indent=1)
        return content


def input_paths(config: Config, stage: Stage, options: Any = None) -> list[Path]:
    paths: list[Path] = []
    options = config.options(stage.name) if options is None else options
    patterns = [*stage.inputs(options), *config.data.input_paths(stage.data_keys)]
    for pattern in patterns:
        if not pattern:
            continue
        full = str(resolve(config.base_dir, pattern))
        matches = sorted(glob.glob(full, recursive=True)) if glob.has_magic(full) else [full]
        paths += [Path(m) for m in matches]
    return paths


def input_key(path: Path, base_dir: Path) -> str:
    """How the fingerprint names an input: relative to the config's folder when the config names it
    relatively (`data/smileys`, `../shared/data/fer2013`), so that a project copied or moved whole
    (`cp -a`) keeps its fingerprints; a path the config gives as absolute stays absolute."""
    text = str(path)
    return os.path.relpath(text, base_dir) if text.startswith(str(base_dir) + os.sep) else text


def read_manifest(stage_dir: Path) -> dict | None:
    try:
        return json.loads((stage_dir / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def fingerprinted_config(config: Config, stage: Stage, options: Any = None) -> dict:
    """The stage's section plus the [data] keys it reads: what its output depends on. Execution
    options (threads, compile) count at their default, whatever their value, so changing them
    leaves a finished stage done and a digest recorded before they were left out stays valid."""
    options = config.options(stage.name) if options is None else options
    values = dataclasses.asdict(options)
    defaults = {f.name: field_default(f) for f in dataclasses.fields(options)}
    values.update({name: defaults[name] for name in execution_options(options)})
    return {**values, **{key: getattr(config.data, key) for key in stage.data_keys}}


def fingerprint(config: Config, stage: Stage, options: Any = None) -> dict:
    """What the stage's output depends on, and its digest (with `options`: had its section been these)."""
    options = config.options(stage.name) if options is None else options
    upstream = {}
    for name in stage.upstream(options, config.data):
        manifest = read_manifest(config.run_dir / name)
        upstream[name] = manifest["fingerprint"]["digest"] if manifest else None
    digest = InputDigests(config.run_dir)
    inputs = {input_key(p, config.base_dir): digest(p) for p in input_paths(config, stage, options)}
    parts = {
        "config": fingerprinted_config(config, stage, options),
        "seed": config.run.seed,
        "inputs": inputs,
        "upstream": upstream,
    }
    return {**parts, "digest": _digest(parts)}


def same_fingerprint(current: dict, recorded: dict | None, options: Any) -> bool:
    """Whether a `recorded` fingerprint (a finished or interrupted run's) is the `current` one. An
    option the recorded config does not list (added to the stage since) counts only when it is set
    away from its default: upgrading fertransfer leaves finished runs done and continues interrupted ones."""
    if not recorded:
        return False
    if recorded.get("digest") == current["digest"]:
        return True
    return recorded.get("digest") == _digest({**_parts(current), "config": _like_recorded(current, recorded, options)})


def evaluation_changes(config: Config, stage: Stage, recorded: dict | None) -> list[str]:
    """The evaluation options (`Stage.evaluation_options`) in which the config differs from a
    finished run's `recorded` fingerprint, when they are all it differs in; else []: the stage
    must run again. Seed, upstream outputs and every other option and input must be the run's."""
    if not stage.evaluation_options or stage.evaluate is None or not isinstance((recorded or {}).get("config"), dict):
        return []
    options = config.options(stage.name)
    defaults = {f.name: field_default(f) for f in dataclasses.fields(options)}
    listed = recorded["config"]
    as_run = dataclasses.replace(options, **{name: listed.get(name, defaults[name]) for name in stage.evaluation_options})
    if not same_fingerprint(fingerprint(config, stage, as_run), recorded, options):
        return []
    return [name for name in stage.evaluation_options
            if _digest(getattr(options, name)) != _digest(getattr(as_run, name))]


def _parts(fingerprint_: dict) -> dict:
    return {key: value for key, value in fingerprint_.items() if key != "digest"}


def _like_recorded(current: dict, recorded: dict, options: Any) -> dict:
    """The current config less the options at their default that the recorded config does not list."""
    listed = recorded.get("config")
    if not isinstance(listed, dict):
        return current["config"]
    defaults = {f.name: field_default(f) for f in dataclasses.fields(options)}
    return {key: value for key, value in current["config"].items()
            if key in listed or key not in defaults or _digest(value) != _digest(defaults[key])}


# --- output checks --------------------------------------------------------------------
#
# A finished stage records every output file's size and, for a bounded number of files, a hash:
# of the whole file when it is at most WHOLE_FILE_BYTES or one of the stage's declared outputs
# (checkpoints, models, manifests, metrics: a changed byte is found), else of its first and last
# 64 KiB. Modification times are not used: a copied run folder is intact. Checking costs one stat
# per file plus at most HASH_ALL_UP_TO reads, so a 200k-file folder is checked in about a second
# (warm cache). Limits: an edit that keeps a file's size goes unnoticed when it lies in the middle
# of a file larger than WHOLE_FILE_BYTES that is not a declared output, or in a file outside the
# hashed sample of a folder with more than HASH_ALL_UP_TO files; files added after the run are not damage.

EDGE_BYTES = 64 * 1024
WHOLE_FILE_BYTES = 16 * 1024 * 1024
HASH_ALL_UP_TO = 1000  # folders with at most this many files: every file is hashed (and listed in the manifest)
HASH_SAMPLE = 256  # larger folders: this many files spread over the sorted names, plus the largest quarter as many
SCHEME_EDGES = "size + sha256 of the first and last 64 KiB"  # manifests written before whole-file hashing
SCHEME_WHOLE = "size + sha256 of the whole file up to whole_file_bytes (and of declared outputs), else of its first and last 64 KiB"


def quick_hash(path: str | Path, whole_up_to: int = 2 * EDGE_BYTES) -> str:
    """sha256 of the size and the whole file when at most `whole_up_to` bytes, else of its first and
    last 64 KiB: cheap, and catches truncation and rewrites."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        sha.update(str(size).encode())
        if size <= max(whole_up_to, 2 * EDGE_BYTES):
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
        else:
            sha.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            sha.update(handle.read(EDGE_BYTES))
    return sha.hexdigest()[:16]


def _output_sizes(folder: Path, rewritable: tuple[str, ...]) -> dict[str, int]:
    sizes = {}
    for directory, subdirs, names in os.walk(folder):
        subdirs.sort()
        for name in names:
            full = os.path.join(directory, name)
            rel = os.path.relpath(full, folder)
            if rel in (MANIFEST, FINGERPRINT_FILE, OUTPUT_INDEX) or any(fnmatch.fnmatch(rel, p) for p in rewritable):
                continue
            sizes[rel] = os.stat(full).st_size
    return dict(sorted(sizes.items()))


def _hashed(sizes: dict[str, int]) -> set[str]:
    """Every file of a small folder; of a large one an even spread plus the largest files."""
    names = list(sizes)
    if len(names) <= HASH_ALL_UP_TO:
        return set(names)
    step = len(names) / HASH_SAMPLE
    chosen = {names[int(i * step)] for i in range(HASH_SAMPLE)}
    return chosen | set(sorted(names, key=lambda n: -sizes[n])[: HASH_SAMPLE // 4])


def record_outputs(folder: Path, rewritable: tuple[str, ...] = (), declared: tuple[str, ...] = ()) -> dict:
    """The manifest's `output_check`: name -> [size, hash or null], inline for small folders, else
    in `<stage>/.outputs.json` (200k entries would bloat the manifest every status reads).
    `declared`: the stage's declared outputs, hashed whole whatever their size."""
    sizes = _output_sizes(folder, rewritable)
    hashed = _hashed(sizes) | (set(declared) & set(sizes))
    whole = sorted(set(declared) & set(sizes))
    table = {name: [size, quick_hash(folder / name, _whole_up_to(name, whole, WHOLE_FILE_BYTES)) if name in hashed
                    else None] for name, size in sizes.items()}
    check: dict[str, Any] = {"scheme": SCHEME_WHOLE, "whole_file_bytes": WHOLE_FILE_BYTES, "whole_files": whole,
                             "count": len(table), "hashed": len(hashed)}
    if len(table) <= HASH_ALL_UP_TO:
        check["files"] = table
    else:
        (folder / OUTPUT_INDEX).write_text(json.dumps(table, separators=(",", ":")))
        check["index"] = OUTPUT_INDEX
    return check


def _whole_up_to(name: str, whole_files: list[str], whole_file_bytes: int) -> int:
    """The size up to which `name` is hashed whole (any size for a declared output)."""
    return 1 << 62 if name in whole_files else whole_file_bytes


def find_damage(folder: Path, check: dict | None) -> list[str]:
    """Recorded outputs that are missing or changed, one phrase each (none when nothing was recorded)."""
    if not check:
        return []  # a manifest from before outputs were recorded
    table = check.get("files")
    if table is None:
        table = _read_json(folder / check.get("index", OUTPUT_INDEX))
        if table is None:
            return [f"{check.get('index', OUTPUT_INDEX)} (the list of outputs) missing or unreadable"]
    damage = []
    whole_file_bytes = int(check.get("whole_file_bytes", 0))  # 0: a manifest of the edges-only scheme
    whole_files = check.get("whole_files") or []
    base = str(folder) + os.sep  # plain strings: Path joins would double the time of 200k stats
    for name, (size, digest) in table.items():
        try:
            actual = os.stat(base + name).st_size
        except OSError:
            damage.append(f"{name} missing")
            continue
        if actual != size:
            damage.append(f"{name} changed ({size} -> {actual} bytes)")
        elif digest and quick_hash(base + name, _whole_up_to(name, whole_files, whole_file_bytes)) != digest:
            damage.append(f"{name} changed")
    return damage


# --- status ---------------------------------------------------------------------------


@dataclass
class StageStatus:
    name: str
    state: str  # done, stale, damaged, interrupted, missing
    manifest: dict | None = None
    reason: str = ""
    # stale only in these `Stage.evaluation_options`: `run` evaluates the finished run again
    evaluate_only: tuple[str, ...] = ()

    @property
    def failed_inputs(self) -> list[str]:
        """Inputs the stage could not process (its summary's `failed`), each naming the input."""
        failed = ((self.manifest or {}).get("summary") or {}).get("failed")
        return failed if isinstance(failed, list) else []

    @property
    def text(self) -> str:
        """The words `pipeline status` prints, e.g. `stale (upstream extract)`."""
        if self.state in ("damaged", "interrupted"):
            return f"{self.state}{': ' if self.state == 'damaged' else ', '}{self.reason}"
        text = self.state
        if self.reason:
            text += f" ({self.reason})"
        if self.state == "done" and self.failed_inputs:
            count = len(self.failed_inputs)
            text += f", {count} input{'s' if count > 1 else ''} failed"
        return text


def _resume_point(config: Config, stage: Stage, current: dict) -> str | None:
    """What `status` says of a work folder `run` would continue (same fingerprint, resumable stage)."""
    work = config.run_dir / f"{stage.name}.partial"
    if not stage.resumable or not work.is_dir():
        return None
    previous = _read_json(work / FINGERPRINT_FILE)
    if not same_fingerprint(current, previous, config.options(stage.name)):
        return None
    point = stage.resume_point(work)
    return f"resumes from {point}" if point else "resumable"


def finished_work(config: Config, stage: Stage, current: dict) -> dict | None:
    """The manifest in `<stage>.partial/` of a run that finished but was not published (stopped
    between the two renames of publishing), when it is for the current fingerprint and intact."""
    work = config.run_dir / f"{stage.name}.partial"
    manifest = read_manifest(work)
    if not manifest or not same_fingerprint(current, manifest.get("fingerprint"), config.options(stage.name)):
        return None
    return None if find_damage(work, manifest.get("output_check")) else manifest


def _short_list(items: list[str], limit: int = 3) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def stage_status(config: Config, name: str, known: dict[str, StageStatus] | None = None) -> StageStatus:
    """A stage's state; `known` caches statuses across calls (`status` asks for every stage,
    and each stage looks at its upstream ones)."""
    known = {} if known is None else known
    if name not in known:
        known[name] = _stage_status(config, name, known)
    return known[name]


def _stage_status(config: Config, name: str, known: dict[str, StageStatus]) -> StageStatus:
    stage = get_stage(name)
    folder = config.run_dir / name
    manifest = read_manifest(folder)
    work = config.run_dir / f"{name}.partial"
    if manifest is None and not (work / MANIFEST).is_file() and not (stage.resumable and work.is_dir()):
        return StageStatus(name, "missing")
    current = fingerprint(config, stage)
    recorded = (manifest or {}).get("fingerprint", {})
    same = same_fingerprint(current, recorded, config.options(name))
    if not same and finished_work(config, stage, current):
        return StageStatus(name, "interrupted", None, "finished but not published: `pipeline run` publishes it")
    if not same:
        resume = _resume_point(config, stage, current)
        if resume:
            kept = " (the older finished output is kept until then)" if manifest else ""
            return StageStatus(name, "interrupted", manifest, resume + kept)
        if manifest is None:
            return StageStatus(name, "missing")
        evaluation = evaluation_changes(config, stage, recorded)
        if evaluation:
            return StageStatus(name, "stale", manifest, f"changed: {', '.join(evaluation)} (only the final evaluation "
                               "runs again)", tuple(evaluation))
        compared = {**current, "config": _like_recorded(current, recorded, config.options(name))}
        changed = [k for k in ("config", "seed", "inputs", "upstream") if recorded.get(k) != compared[k]]
        return StageStatus(name, "stale", manifest, "changed: " + ", ".join(changed))
    damage = find_damage(folder, manifest.get("output_check"))
    if damage:
        return StageStatus(name, "damaged", manifest, _short_list(damage))
    for up in stage.upstream(config.options(name), config.data):
        if stage_status(config, up, known).state != "done":
            return StageStatus(name, "stale", manifest, f"upstream {up}")
    return StageStatus(name, "done", manifest)


# --- running --------------------------------------------------------------------------


def machine_description() -> str:
    """CPU model and core count, for manifests and benchmark results."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} cores"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def list_outputs(folder: Path, limit: int = 200) -> dict:
    """Files a stage wrote: all of them when few, else counts per top-level entry."""
    files = sorted(
        os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder) for n in names
    )
    files = [f for f in files if f not in (MANIFEST, FINGERPRINT_FILE, OUTPUT_INDEX)]
    if len(files) <= limit:
        return {"files": files, "count": len(files)}
    per_top: dict[str, int] = {}
    for f in files:
        top = f.split(os.sep, 1)[0]
        per_top[top] = per_top.get(top, 0) + 1
    return {"folders": per_top, "count": len(files)}


@contextmanager
def process_state():
    """Save and restore what a stage may set for the whole process: torch's thread count and
    deterministic mode, cuDNN's flags, float32 matmul precision, environment variables. Without
    it, extract's `threads = 1` would also hold for every later stage of `pipeline run all`."""
    import torch

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.get_float32_matmul_precision(), dict(os.environ))
    try:
        yield
    finally:
        threads, deterministic, warn_only, benchmark, cudnn_deterministic, matmul, environ = saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_deterministic
        torch.set_float32_matmul_precision(matmul)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)


def resolve_artifacts(config: Config, stage: Stage) -> dict[str, Path | None]:
    """Each artifact the stage consumes: the config path that stands in for it, else where its
    producer wrote it (None for an optional one whose producer is not done)."""
    resolved: dict[str, Path | None] = {}
    for need in stage.consumes(config.options(stage.name), config.data):
        if need.override:
            resolved[need.artifact] = resolve(config.base_dir, need.override)
            continue
        producer = get_stage(need.producer)
        if need.name not in producer.produces:
            raise StageError(f"stage '{stage.name}' consumes '{need.artifact}', which '{producer.name}' does not produce")
        done = stage_status(config, producer.name).state == "done"
        resolved[need.artifact] = config.run_dir / producer.name / producer.produces[need.name] if done else None
    return resolved


def refuse_without_outputs(stage: Stage, work: Path) -> None:
    """A stage that ended without its declared outputs is not published as done (its work folder stays)."""
    missing = [name for name in stage.outputs if not (work / name).is_file()]
    if missing:
        raise StageError(f"{stage.name}: ended without {', '.join(missing)} in {work}; not marked done")


def _publish(work: Path, final: Path) -> None:
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    work.rename(final)
    if old.exists():
        shutil.rmtree(old)


def run_stage(config: Config, name: str, force: bool = False) -> StageStatus:
    """Run one stage unless it is up to date; returns its status afterwards."""
    stage = get_stage(name)
    status = stage_status(config, name)
    if status.state == "done" and not force:
        log.info("%s: up to date, skipped (use --force to run it again)", name)
        return status
    if status.state == "damaged":
        log.warning("%s: damaged (%s); running it again", name, status.reason)
    options = config.options(name)
    for up in stage.upstream(options, config.data):
        up_status = stage_status(config, up)
        if up_status.state != "done":
            raise StageError(f"stage '{name}' needs '{up}', which is {up_status.state}: run `pipeline run {up}` first")
    artifacts = resolve_artifacts(config, stage)

    work = config.run_dir / f"{name}.partial"
    current = fingerprint(config, stage)
    finished = None if force else finished_work(config, stage, current)
    if finished:
        log.info("%s: the run in %s finished but was not published; publishing it", name, work)
        _publish(work, config.run_dir / name)
        return StageStatus(name, "done", finished)
    evaluation = () if force else status.evaluate_only
    resuming = False
    if work.exists():
        point = None if force or evaluation else _resume_point(config, stage, current)
        if point:
            resuming = True
            log.info("%s: continuing the interrupted run in %s (%s)", name, work, point)
        else:
            shutil.rmtree(work)
    if evaluation:  # the finished run's folder, copied, is evaluated again: nothing is trained
        shutil.copytree(config.run_dir / name, work, symlinks=True)
        (work / MANIFEST).unlink()  # and no fingerprint file: an evaluation cut short is not resumed, but redone
    else:
        work.mkdir(parents=True, exist_ok=True)
        (work / FINGERPRINT_FILE).write_text(json.dumps(current, indent=1))

    context = StageContext(
        name=name,
        options=options,
        run=config.run,
        run_dir=config.run_dir,
        out_dir=work,
        artifacts=artifacts,
        config_dir=config.base_dir,
        log=logging.getLogger(f"fertransfer.{name}"),
        resuming=resuming,
        data=config.data,
    )
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    with process_state():
        if evaluation:
            log.info("%s: %s changed, which only the final evaluation reads: evaluating the finished run again "
                     "-> %s", name, ", ".join(evaluation), config.run_dir / name)
            previous = status.manifest
            summary = {**stage.evaluate(context, previous.get("summary") or {}),
                       "evaluated_again": {"changed": {key: getattr(options, key) for key in evaluation},
                                           "run_timings": previous.get("timings")}}
        else:
            log.info("%s: running -> %s", name, config.run_dir / name)
            summary = stage.run(context) or {}
    seconds = time.perf_counter() - t0
    refuse_without_outputs(stage, work)
    manifest = {
        "stage": name,
        "description": stage.description,
        "config": dataclasses.asdict(options),
        "data": {key: getattr(config.data, key) for key in stage.data_keys},
        "run": dataclasses.asdict(config.run),
        "fingerprint": current,
        "summary": summary,
        "outputs": list_outputs(work),
        "output_check": record_outputs(work, stage.rewritable, stage.outputs),
        "timings": {
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            **{k: round(v, 3) for k, v in context.timings.items()},
        },
        "versions": package_versions(),
        "machine": machine_description(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    (work / FINGERPRINT_FILE).unlink(missing_ok=True)
    _publish(work, config.run_dir / name)
    status = StageStatus(name, "done", manifest)
    failed = status.failed_inputs
    if failed:
        log.warning("%s: done in %.1f s, but %d input(s) failed: %s", name, seconds, len(failed), _short_list(failed))
    else:
        log.info("%s: done in %.1f s", name, seconds)
    return status


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def check_before_run(config: Config, names: list[str]) -> None:
    """Input paths, option ranges and rules of all stages about to run, checked up front."""
    problems = missing_inputs(config, names)
    problems += [f"[run].{problem}" for problem in out_of_range(config.run)]
    if any(get_stage(name).data_keys for name in names):
        problems += [f"[data].{p}" for p in data_problems(config.data)]
        problems += [f"[data].{p}" for p in out_of_range(config.data)]
    for name in names:
        own = get_stage(name).check(config.options(name), config.base_dir, config.data)
        flagged = {problem.split(":", 1)[0] for problem in own}  # the stage's own words win: one line a key
        problems += [f"[{name}].{p}" for p in out_of_range(config.options(name)) if p.split(":", 1)[0] not in flagged]
        for problem in own:
            problem += default_note(config.options(name), problem.split(":", 1)[0], name)
            problems.append(f"[{name}].{problem}")
    if problems:
        raise ConfigError([f"{config.path}: {p}" for p in problems])


def run_pipeline(config: Config, target: str, force: bool = False) -> list[StageStatus]:
    """`target` is a stage name or "all" (every stage, in order)."""
    if target == "all":
        names = list(STAGE_ORDER)
    else:
        get_stage(target)  # an unknown name raises KeyError, naming the stages
        names = [target]
    check_before_run(config, names)
    with run_folder_lock(config.run_dir):  # one run at a time: taken after the checks, held to the end
        return [run_stage(config, name, force=force) for name in names]
