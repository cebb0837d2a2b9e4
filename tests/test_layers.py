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
    source = PACKAGE / "augment" / "core.py"
    assert "fertransfer.augment.transforms" in imported_modules(source)
    assert "fertransfer.errors" in imported_modules(source)


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


def test_ground_floor_imports_no_other_fertransfer_module():
    for name in ("errors.py", "options.py", "progress.py"):
        found = [n for n in imported_modules(PACKAGE / name) if n.startswith("fertransfer")]
        assert not found, f"{name} imports {found}"


def test_old_import_paths_still_work():
    from fertransfer.errors import StageError
    from fertransfer.options import option
    from fertransfer.pipelines import StageError as RunnerStageError
    from fertransfer.pipelines import option as runner_option
    from fertransfer.pipelines.options import field_default, option as old_option
    from fertransfer.pipelines.stage import StageError as OldStageError

    assert StageError is RunnerStageError is OldStageError
    assert option is runner_option is old_option
    assert callable(field_default)
