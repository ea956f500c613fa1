"""The static import closure of a script or module: the files of the ``dainet`` package that
running it may execute, found by reading the source (no import happens).

Two users: ``tests/test_dvc_deps.py`` checks that each stage's ``dvc.yaml`` deps cover the
closure of its script, and :func:`dainet.training.runstate.code_digest` hashes the closure of
the `train` stage's code into the run fingerprint.

Every import form counts, at any depth (inside functions and ``if`` blocks too): ``import x``,
``from x import y`` (and ``x.y`` when ``y`` is a module), relative imports; importing a module
runs each package ``__init__.py`` on the way.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "dainet"
ROOT = Path(__file__).resolve().parents[2]   # the checkout: holds dainet/ and stages/


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """``dainet.a.b`` -> dainet/a/b.py or dainet/a/b/__init__.py (None if neither exists)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def files_run_by_import(module: str, root: Path = ROOT) -> list[Path]:
    """The files ``import <module>`` executes: each package's ``__init__.py`` on the way, then it."""
    parts, out = module.split("."), []
    for i in range(1, len(parts) + 1):
        f = module_file(".".join(parts[:i]), root)
        if f is not None:
            out.append(f)
    return out


def module_name(path: Path, root: Path = ROOT) -> tuple[str, bool]:
    """(dotted module name, is a package) of a file under ``root``."""
    rel = path.relative_to(root).with_suffix("")
    if rel.name == "__init__":
        return ".".join(rel.parent.parts), True
    return ".".join(rel.parts), False


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module the file ``path`` may import, by dotted name."""
    tree = ast.parse(path.read_text(), str(path))
    is_script = root / PACKAGE not in path.parents
    name, is_pkg = ("", False) if is_script else module_name(path, root)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if is_pkg else name.split(".")[:-1]
                if node.level > 1:
                    package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module
            found.add(base)
            for alias in node.names:
                if module_file(f"{base}.{alias.name}", root) is not None:   # from pkg import submodule
                    found.add(f"{base}.{alias.name}")
    return found


def import_closure(script: Path, root: Path = ROOT) -> dict[Path, Path]:
    """The files of ``root/dainet`` that running ``script`` may execute, each mapped to a file
    that imports it (``script`` itself is not in it unless something imports it). An import of
    a ``dainet`` module that is no file raises LookupError (it would hide the files it meant)."""
    seen: dict[Path, Path] = {}
    todo = [script]
    while todo:
        current = todo.pop()
        for module in sorted(imported_modules(current, root)):
            if module != PACKAGE and not module.startswith(PACKAGE + "."):
                continue
            if module_file(module, root) is None:
                raise LookupError(f"{current}: imports {module}, which is no file of {PACKAGE}/")
            for f in files_run_by_import(module, root):
                if f not in seen:
                    seen[f] = current
                    todo.append(f)
    return seen
