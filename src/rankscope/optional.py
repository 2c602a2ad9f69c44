"""Optional dependencies: import one, or fail with the extra that provides it.

Every place that needs a package outside the core install (scikit-learn, Dask, transformers,
Lightning) calls :func:`require`, so the error a user sees always names what is missing, what
needs it and the one ``pip install`` line that fixes it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "require"]

# extra name -> what ``pip install 'rankscope[extra]'`` brings (pyproject.toml's extras)
EXTRAS = {
    "digits": "scikit-learn",
    "dask": "Dask distributed",
    "pandas": "pandas",
    "hf": "transformers",
    "lightning": "PyTorch Lightning",
}


def require(module: str, *, extra: str, needed_for: str, instead: str = "") -> ModuleType:
    """Import ``module``; if it is missing, raise ImportError naming ``extra``.

    ``needed_for`` says what needs it, e.g. ``"the digits experiments"``; ``instead``, if
    given, names a way to do without it. The error reads ``"<needed_for> needs <package>
    (module '<module>' is not installed): pip install 'rankscope[<extra>]'"``, then
    ``"; or <instead>"``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; rankscope's extras are {sorted(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{needed_for} needs {EXTRAS[extra]} (module {module!r} is not installed): "
            f"pip install 'rankscope[{extra}]'" + (f"; or {instead}" if instead else "")
        ) from exc
