"""The layering: stage cores and data never import the runner.

`fertransfer.pipelines` imports every stage, so a stage module other than `stage.py` that
imports it ties the stage's core to the runner (and risks import cycles). Shared errors and
option declarations live on the ground floor (`fertransfer.errors`, `fertransfer.options`).
Imports are read with `ast`, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fertransfer

PACKAGE = Path(fertransfer.__file__).parent
STAGE_PACKAGES = ("extract", "cyclegan", "augment", "classify", "demo")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved to absolute names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def imports_any(path: Path, packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imported_modules(path) if any(n == p or n.startswith(p + ".") for p in packages))


def test_imported_modules_resolves_relative_imports():
    source = PACKAGE / "augment" / "builders.py"
    assert "fertransfer.augment.transforms" in imported_modules(source)
    assert "fertransfer.data.datasets" in imported_modules(source)


def test_only_stage_modules_import_the_runner():
    offenders = {}
    for name in STAGE_PACKAGES:
        for path in sorted((PACKAGE / name).rglob("*.py")):
            if path.relative_to(PACKAGE / name) == Path("stage.py"):
                continue
            found = imports_any(path, ("fertransfer.pipelines",))
            if found:
                offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, f"only <stage>/stage.py may import fertransfer.pipelines: {offenders}"


def test_data_imports_neither_the_runner_nor_a_stage():
    banned = ("fertransfer.pipelines",) + tuple(f"fertransfer.{name}" for name in STAGE_PACKAGES)
    offenders = {str(p.relative_to(PACKAGE)): imports_any(p, banned) for p in sorted((PACKAGE / "data").rglob("*.py"))}
    assert not any(offenders.values()), offenders


def test_expression_classifier_imports_neither_the_runner_nor_a_stage():
    """`fertransfer.expression` (the FER classifier, its saved models and the judge of translations)
    is shared by cyclegan, augment and classify, so it sits below all of them."""
    banned = ("fertransfer.pipelines",) + tuple(f"fertransfer.{name}" for name in STAGE_PACKAGES)
    offenders = {str(p.relative_to(PACKAGE)): imports_any(p, banned)
                 for p in sorted((PACKAGE / "expression").rglob("*.py"))}
    assert not any(offenders.values()), offenders


STAGE_ORDER = ("extract", "cyclegan", "augment", "classify")


def test_stages_import_only_the_stages_that_run_before_them():
    """The package graph follows the pipeline: classify may use augment's and cyclegan's code,
    never the reverse, so no package-level cycle can form."""
    offenders = {}
    for position, name in enumerate(STAGE_ORDER):
        later = tuple(f"fertransfer.{o}" for o in STAGE_ORDER[position + 1:])
        for path in sorted((PACKAGE / name).rglob("*.py")):
            found = imports_any(path, later)
            if found:
                offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, offenders


def test_ground_floor_imports_no_other_fertransfer_module():
    for name in ("errors.py", "options.py", "progress.py", "devices.py", "atomic.py", "paths.py"):
        found = [n for n in imported_modules(PACKAGE / name)
                 if n.startswith("fertransfer") and not n.startswith("fertransfer.errors")]
        assert not found, f"{name} imports {found}"


def test_old_import_paths_still_work():
    from fertransfer.errors import StageError
    from fertransfer.options import option
    from fertransfer.pipelines import StageError as RunnerStageError
    from fertransfer.pipelines import option as runner_option
    from fertransfer.pipelines.options import field_default
    from fertransfer.pipelines.options import option as old_option
    from fertransfer.pipelines.stage import StageError as OldStageError

    assert StageError is RunnerStageError is OldStageError
    assert option is runner_option is old_option
    assert callable(field_default)


# --- stages pass artifacts, not folders ---------------------------------------------------


def _stage_modules():
    for name in ("extract", "cyclegan", "augment", "classify"):
        for path in sorted((PACKAGE / name).rglob("*.py")):
            if path.name != "cli.py":  # commands take a whole run folder; stages never do
                yield name, path


def test_stages_never_open_another_stages_folder_or_manifest():
    """A stage reads other stages' outputs only as the artifacts the runner hands it
    (`ctx.artifact(...)`): no manifest names, no run-folder paths, no upstream folders."""
    offenders = []
    for name, path in _stage_modules():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Constant) and node.value == "manifest.json":
                offenders.append(f"{where} names manifest.json")
            elif isinstance(node, ast.Attribute) and node.attr in ("upstream_dirs", "upstream"):
                offenders.append(f"{where} uses .{node.attr}")
            elif (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                  and isinstance(node.left, (ast.Attribute, ast.Name))
                  and getattr(node.left, "attr", getattr(node.left, "id", "")) == "run_dir"):
                offenders.append(f"{where} builds a path inside the run folder")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                others = [o for o in ("extract", "cyclegan", "augment", "classify") if o != name]
                if any(node.value.startswith(f"{o}/") or node.value == f"{o}.partial" for o in others):
                    offenders.append(f"{where} names another stage's folder: {node.value!r}")
    assert not offenders, offenders


def test_stage_packages_import_no_other_stages_runner_glue():
    """Another stage's `stage.py` (runner glue) or `cli.py` (commands) is never imported by a stage."""
    offenders = {}
    for name, path in _stage_modules():
        others = tuple(f"fertransfer.{o}.{m}" for o in ("extract", "cyclegan", "augment", "classify") if o != name
                       for m in ("stage", "cli"))
        found = imports_any(path, others)
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert not offenders, offenders


def test_no_import_cycle_between_stage_modules():
    """The modules of the stage packages (imports inside functions included) form no cycle, so
    any of them can be imported first; ground-floor helpers (devices, atomic) are what they share."""
    graph = {}
    for _, path in _stage_modules():
        graph[module_name(path)] = {n for n in imported_modules(path) if n.startswith("fertransfer.")}
    modules = set(graph)

    def targets(module: str) -> set[str]:
        found = set()
        for name in graph[module]:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
        return found

    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(targets(module)):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(target):] + [target]))
            if target not in state:
                visit(target, trail + [target])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])


def test_device_bf16_and_atomic_writes_live_in_one_place_each():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("devices.py", "atomic.py"):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("resolve_device", "pick_device", "cpu_has_native_bf16",
                                                                   "use_bf16"):
                if path.name != "stage.py" or node.name != "resolve_device":  # extract's wraps it in a StageError
                    offenders.append(f"{path.relative_to(PACKAGE)} defines {node.name}")
            if isinstance(node, ast.Constant) and node.value in ("amx_bf16", "/proc/cpuinfo") and "runner" not in path.name:
                offenders.append(f"{path.relative_to(PACKAGE)} reads CPU flags itself")
    assert not offenders, offenders


def test_one_bf16_rule_reads_both_spellings_of_the_setting(monkeypatch):
    """classify's bf16 (auto, on, off) and cyclegan's precision (auto, bf16, fp32) go through one rule."""
    import pytest
    import torch

    from fertransfer import devices

    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda native=native: native)
        assert devices.use_bf16("auto", cpu) is native
        assert devices.use_bf16("on", cpu) and devices.use_bf16("bf16", cpu)
        assert not devices.use_bf16("off", cpu) and not devices.use_bf16("fp32", cpu)
    with pytest.raises(ValueError, match="bf16 must be auto, on or off"):
        devices.use_bf16("half", cpu)
