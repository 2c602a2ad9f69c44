"""Layers import only downward (DESIGN.md): checked on the source, module by module."""

from __future__ import annotations

import ast
from pathlib import Path

import rankscope

ROOT = Path(rankscope.__file__).parent
# lowest first; a module may import its own layer and any layer listed before it
ORDER = [
    "metrics",
    "regularizers",  # penalties and proximal steps over weights (metric-level)
    "probe",
    "sparsify",
    "models",
    "train",
    "store",
    "compress",  # the use layer: compress and track apply measurements to a user's model
    "track",
    "experiments",
    "sweep",
    "report",
    "cli",
]
LEAVES = {"optional", "records", "results", "threads"}  # importable from anywhere


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "rankscope" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def test_layers_import_only_downward():
    violations = []
    for layer in ORDER:
        folder = ROOT / layer
        if not folder.exists():
            continue
        allowed = set(ORDER[: ORDER.index(layer) + 1]) | LEAVES
        for path in folder.rglob("*.py"):
            for mod in _imports(path):
                target = _layer(mod)
                if target is not None and target not in allowed and target in ORDER:
                    violations.append(f"{path.relative_to(ROOT)} imports {mod}")
    assert not violations, "\n".join(violations)


def test_leaves_import_no_layer():
    for leaf in LEAVES:
        for mod in _imports(ROOT / f"{leaf}.py"):
            assert _layer(mod) in (None, *LEAVES), f"{leaf}.py imports {mod}"
