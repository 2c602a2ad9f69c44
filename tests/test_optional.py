"""optional.require: a missing extra is named, with the one pip line that installs it."""

from __future__ import annotations

import sys

import pytest

from rankscope.optional import EXTRAS, require


def test_require_returns_the_module():
    import json

    assert require("json", extra="digits", needed_for="x") is json


def test_missing_module_names_extra_module_and_purpose(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # importing it now raises ImportError
    with pytest.raises(ImportError) as info:
        require("sklearn", extra="digits", needed_for="the digits experiments")
    msg = str(info.value)
    assert msg.startswith("the digits experiments needs scikit-learn")
    assert "'sklearn' is not installed" in msg and msg.endswith("pip install 'rankscope[digits]'")
    assert isinstance(info.value.__cause__, ImportError)


def test_instead_is_appended(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"rankscope\[pandas\]'; or use to_rows\(\)$"):
        require("pandas", extra="pandas", needed_for="f()", instead="use to_rows()")


def test_unknown_extra_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown extra 'sklearn'.*'digits'"):
        require("sklearn", extra="sklearn", needed_for="x")


def test_every_extra_is_declared_in_pyproject():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert set(EXTRAS) <= set(declared), sorted(set(EXTRAS) - set(declared))


@pytest.mark.parametrize(
    ("call", "blocked", "pattern"),
    [
        ("collapse", "sklearn.datasets", r"rankscope\[digits\]"),
        ("tensor_graph", "sklearn.datasets", r"rankscope\[digits\]"),
    ],
)
def test_digits_loaders_name_the_extra(monkeypatch, call, blocked, pattern):
    monkeypatch.setitem(sys.modules, blocked, None)
    if call == "collapse":
        from rankscope.experiments.collapse.data import load_digits_arrays as load
    else:
        from rankscope.experiments.tensor_graph.data import digits as load
    with pytest.raises(ImportError, match=pattern):
        load()
