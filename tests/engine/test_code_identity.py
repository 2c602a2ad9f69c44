"""Run ids follow the code: the import closure of an experiment, and its hash."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from rankscope.experiments.registry import all_experiments, get_experiment
from rankscope.sweep import runner
from rankscope.sweep.code_identity import closure_hash, module_closure, package_root

S2S = "rankscope.experiments.linear.saddle_to_saddle"
NRC = "rankscope.experiments.collapse.neural_rank_collapse"


@pytest.fixture
def tree(tmp_path):
    """A private copy of the package sources (and a README beside it) to edit."""
    root = tmp_path / "src" / "rankscope"
    shutil.copytree(package_root(), root, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "README.md").write_text("# readme\n")
    return tmp_path, root


def _append(path, text="\n# an edit\n"):
    path.write_text(path.read_text() + text)


def test_editing_a_metric_or_helper_changes_the_hash(tree):
    _, root = tree
    before_s2s, before_nrc = closure_hash([S2S], root), closure_hash([NRC], root)
    _append(root / "metrics" / "ranks.py")
    after_s2s = closure_hash([S2S], root)
    assert after_s2s != before_s2s
    nrc_mid = closure_hash([NRC], root)
    assert nrc_mid != before_nrc
    _append(root / "experiments" / "collapse" / "bounds.py")  # a helper of one family
    assert closure_hash([NRC], root) != nrc_mid
    assert closure_hash([S2S], root) == after_s2s  # the linear family does not import it


def test_editing_readme_cli_or_report_keeps_the_hash(tree):
    base, root = tree
    before = {m: closure_hash([m], root) for m in (S2S, NRC)}
    _append(base / "README.md", "more words\n")
    _append(root / "cli" / "app.py")
    _append(root / "report" / "html.py")
    assert {m: closure_hash([m], root) for m in (S2S, NRC)} == before


def test_closure_follows_lazy_relative_and_package_imports(tmp_path):
    pkg = tmp_path / "rankscope"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import helper\n")
    (pkg / "sub" / "helper.py").write_text("X = 1\n")
    (pkg / "lazy.py").write_text("Y = 2\n")
    (pkg / "unused.py").write_text("Z = 3\n")
    (pkg / "entry.py").write_text(
        textwrap.dedent(
            """
            from rankscope.sub import helper

            def f():
                from rankscope import lazy
                return lazy.Y
            """
        )
    )
    got = set(module_closure("rankscope.entry", pkg))
    assert got == {
        "rankscope",
        "rankscope.entry",
        "rankscope.sub",
        "rankscope.sub.helper",
        "rankscope.lazy",
    }


def test_closure_covers_what_a_run_really_imports():
    code = textwrap.dedent(
        """
        import json, sys
        from rankscope.experiments.registry import get_experiment
        from rankscope.experiments.base import RunContext
        exp = get_experiment("scalar-mode")
        exp.run(exp.preset("smoke"), RunContext(seed=0))
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("rankscope"))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
    exp = get_experiment("scalar-mode")
    closure = set(module_closure(exp.run.__module__))
    # the registry imports every experiment by name (importlib); those are not the run's code
    runtime = {m for m in imported if not m.startswith("rankscope.experiments.")}
    runtime |= {m for m in imported if m.startswith("rankscope.experiments.") and "." not in
                m.removeprefix("rankscope.experiments.")}  # fmt: skip
    missing = runtime - closure - {"rankscope.experiments.registry"} - set(_registry_modules())
    assert not missing, f"imported at run time but not hashed: {sorted(missing)}"


def _registry_modules():
    from rankscope.experiments import registry

    out = set()
    for path in registry._MODULES:
        out |= set(module_closure(path))
    return out - set(module_closure("rankscope.experiments.scalar_mode"))


def test_run_ids_change_with_the_code_version(monkeypatch):
    exp = get_experiment("scalar-mode")
    cfg = exp.preset("smoke")
    before = runner.make_jobs(exp, cfg, [0], "smoke")[0].run_id
    assert runner.make_jobs(exp, cfg, [0], "smoke")[0].run_id == before
    monkeypatch.setattr(runner, "code_version", lambda e: "0.0+edited")
    assert runner.make_jobs(exp, cfg, [0], "smoke")[0].run_id != before


def test_run_ids_cover_device_and_dtype():
    exp = get_experiment("scalar-mode")
    cfg = exp.preset("smoke")
    cpu = runner.make_jobs(exp, cfg, [0], "smoke", device="cpu")[0].run_id
    cuda = runner.make_jobs(exp, cfg, [0], "smoke", device="cuda")[0].run_id
    assert cpu != cuda


def test_every_experiment_has_a_code_version():
    versions = {e.id: runner.code_version(e) for e in all_experiments().values()}
    assert all("+" in v for v in versions.values())
