"""Which code a run depends on: the static import closure of its experiment, hashed.

A run's id must change whenever code it runs changes, and only then. The closure is read
from the source, not from ``sys.modules``: starting at the experiment's module, every
``import rankscope.x`` / ``from rankscope.x import y`` / relative import anywhere in a file
(module level or inside a function, so lazy imports count) is followed, together with the
``__init__`` of every package on the way (Python runs those when it imports a submodule).
The hash covers the package version and, for each module in the closure, its dotted name and
the bytes of its source. Editing any helper or metric a run can reach changes the id; editing
the README, the CLI or the report does not (the layer rule keeps experiments from importing
them). ``importlib.import_module`` with a computed name cannot be followed; no module below
the CLI does that (tests/engine/test_code_identity.py checks the closure against what a run
really imports).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

import rankscope

__all__ = ["closure_hash", "module_closure", "package_root"]

_PKG = "rankscope"


def package_root() -> Path:
    """The directory holding the ``rankscope`` package sources."""
    return Path(rankscope.__file__).resolve().parent


def _module_file(root: Path, name: str) -> Path | None:
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    file = base.with_suffix(".py")
    return file if parts and file.is_file() else None


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imports(root: Path, name: str, path: Path) -> frozenset[str]:
    st = path.stat()
    return _imports_of(str(root), name, str(path), st.st_mtime_ns, st.st_size)


@cache
def _imports_of(root_s: str, name: str, path_s: str, mtime: int, size: int) -> frozenset[str]:
    """Dotted rankscope modules named by the imports of one file (submodules resolved);
    cached per file version (mtime and size)."""
    root, path = Path(root_s), Path(path_s)
    tree = ast.parse(path.read_bytes(), filename=path_s)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == _PKG)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != _PKG:
                continue
            out.add(mod)
            for a in node.names:  # `from pkg import submodule`
                if _module_file(root, f"{mod}.{a.name}") is not None:
                    out.add(f"{mod}.{a.name}")
    return frozenset(out)


def module_closure(name: str, root: Path | None = None) -> dict[str, Path]:
    """Every rankscope module ``name`` can import (transitively), with its source file."""
    root = package_root() if root is None else Path(root)
    seen: dict[str, Path] = {}
    todo = [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        path = _module_file(root, mod)
        if path is None:
            continue  # a name imported from a module, not a module itself
        seen[mod] = path
        todo.extend(_parents(mod))
        todo.extend(_imports(root, mod, path))
    return seen


def closure_hash(modules: tuple[str, ...] | list[str], root: Path | None = None) -> str:
    """Hash of the package version and the source of every module in the closure."""
    root = package_root() if root is None else Path(root)
    files: dict[str, Path] = {}
    for n in sorted(set(modules)):
        files.update(module_closure(n, root))
    h = hashlib.sha256(rankscope.__version__.encode())
    for mod in sorted(files):
        h.update(b"\0" + mod.encode() + b"\0")
        h.update(files[mod].read_bytes())
    return h.hexdigest()[:16]
