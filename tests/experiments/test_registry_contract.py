"""The shared experiment tester: one suite over the whole registry (as torchmetrics'
MetricTester does for metrics). A new experiment needs its module, one registry line and its
figures, and is covered here with no new test code.

For every registered experiment: the presets are valid configs with a typed summary; the
smoke preset runs; every claim gets a verdict with a one-line headline; every figure draws
from stored records; every config field round-trips through ``--set``; the summary round-trips
through the store's JSON strictly; the same seed gives identical records; and every claim that
declares ``invert`` turns into a fail on a result perturbed the wrong way.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from rankscope.experiments.base import VERDICTS, RunContext
from rankscope.experiments.claims import evaluate_claims
from rankscope.experiments.config import (
    apply_overrides,
    config_from_dict,
    config_keys,
    config_to_dict,
)
from rankscope.experiments.registry import all_experiments
from rankscope.experiments.summary import SummaryError, summary_from_dict
from rankscope.report.figures import figures_for
from rankscope.report.html import render_figures
from rankscope.results import summary_to_dict
from rankscope.store import Store
from rankscope.sweep.runner import run_experiment

EXPERIMENTS = sorted(all_experiments())
SRC = Path(__file__).resolve().parents[2] / "src" / "rankscope" / "experiments"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Smoke runs of each experiment, computed once per module, stored, read back typed."""
    store = Store(tmp_path_factory.mktemp("registry-store"))
    cache: dict[str, tuple] = {}

    def get(exp_id: str):
        if exp_id not in cache:
            exp = all_experiments()[exp_id]
            ids = run_experiment(exp, preset="smoke", seeds=exp.default_seeds("smoke"), store=store)
            results = [store.load_run(r) for r in ids]
            cache[exp_id] = (exp, results, [exp.typed(r) for r in results], store)
        return cache[exp_id]

    return get


def _cli_text(value) -> str:
    """How a user would type ``value`` after ``--set key=``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps(config_to_dict_value(value))
    return repr(value) if isinstance(value, float) else str(value)


def config_to_dict_value(v):
    if dataclasses.is_dataclass(v):
        return config_to_dict(v)
    if isinstance(v, tuple | list):
        return [config_to_dict_value(x) for x in v]
    return v


def _get(config, dotted: str):
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_presets_and_typed_summary(exp_id):
    exp = all_experiments()[exp_id]
    assert dataclasses.is_dataclass(exp.summary_cls), f"{exp_id}: declare summary_cls="
    for name in ("smoke", "default", "paper"):
        cfg = exp.preset(name)
        assert isinstance(cfg, exp.config_cls)
        assert config_from_dict(exp.config_cls, config_to_dict(cfg)) == cfg
    fields = {f.name for f in dataclasses.fields(exp.config_cls)}
    prefixed = {f.split("_")[0] for f in fields if "_" in f}
    crowded = [p for p in prefixed if sum(f.startswith(p + "_") for f in fields) >= 5]
    assert not crowded, f"{exp_id}: sub-studies as prefixed fields {crowded}; nest a config"


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_every_config_field_round_trips_through_set(exp_id):
    exp = all_experiments()[exp_id]
    cfg = exp.preset("smoke")
    keys = config_keys(cfg)
    assert keys
    for key in keys:
        value = _get(cfg, key)
        again = apply_overrides(cfg, [f"{key}={_cli_text(value)}"])
        assert again == cfg, f"{exp_id}: --set {key}={_cli_text(value)} changed the config"
    with pytest.raises(ValueError, match="unknown config key"):
        apply_overrides(cfg, ["no_such_field=1"])


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_smoke_runs_and_every_claim_gets_a_verdict(exp_id, smoke):
    exp, stored, typed, _ = smoke(exp_id)
    assert [r.status for r in stored] == ["ok"] * len(stored), [r.error for r in stored]
    assert all(isinstance(r.summary, exp.summary_cls) for r in typed)
    verdicts = evaluate_claims(exp, stored)
    assert [v.claim_id for v in verdicts] == [c.id for c in exp.claims]
    for v in verdicts:
        assert v.verdict in VERDICTS
        assert v.headline.strip(), f"{exp_id} {v.claim_id}: no headline"
        assert "\n" not in v.headline and len(v.headline) <= 300, v.headline


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_summary_round_trips_strictly(exp_id, smoke):
    exp, _, typed, _ = smoke(exp_id)
    s = typed[0].summary
    as_json = json.loads(json.dumps(summary_to_dict(s)))
    again = summary_from_dict(exp.summary_cls, as_json)
    assert _same(summary_to_dict(again), summary_to_dict(s))
    first = dataclasses.fields(exp.summary_cls)[0].name
    broken = dict(as_json)
    broken[first + "_renamed"] = broken.pop(first)
    with pytest.raises(SummaryError, match="does not match"):
        summary_from_dict(exp.summary_cls, broken)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_every_figure_draws_from_stored_records(exp_id, smoke, tmp_path):
    _, stored, _, _ = smoke(exp_id)
    specs = figures_for(exp_id)
    assert specs, f"{exp_id}: no figures registered"
    made = render_figures(exp_id, stored, tmp_path)
    for entry in made:
        assert "error" not in entry, f"{exp_id} figure {entry['name']}: {entry.get('error')}"
        assert (tmp_path / entry["png"]).stat().st_size > 1000


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_same_seed_gives_identical_records(exp_id, smoke):
    exp, stored, _, _ = smoke(exp_id)
    again = exp.run(exp.preset("smoke"), RunContext(seed=stored[0].seed))
    a, b = _rows(stored[0].records), _rows(again.records)
    assert len(a) == len(b) and _same(a, b), f"{exp_id}: records differ for the same seed"
    assert _same(summary_to_dict(again.summary), summary_to_dict(_typed_summary(exp, stored[0])))


def _typed_summary(exp, result):
    return exp.typed(result).summary


def _rows(records) -> list:
    return sorted((list(r) for r in records.rows()), key=lambda r: tuple(r[:4]))


@pytest.mark.parametrize("exp_id", EXPERIMENTS)
def test_inverted_results_fail(exp_id, smoke):
    exp, _, typed, _ = smoke(exp_id)
    inverted = [c for c in exp.claims if c.invert is not None]
    for claim in inverted:
        assert claim.check is not None, f"{claim.id}: invert= needs a per-seed check="
        bad = dataclasses.replace(typed[0], summary=claim.invert(typed[0].summary))
        got = claim.check(bad)
        assert got.verdict == "fail", f"{exp_id} {claim.id}: inverted result gave {got.verdict}"


def test_no_hand_written_training_step_under_experiments():
    """Experiments train through the engine only (grep for the tell-tale calls)."""
    pattern = re.compile(
        r"\.backward\(|\bopt(imizer)?\.step\(|\.step\(closure|torch\.optim\.[A-Z]"
        r"|\b\w+\s*-=\s*\w*\s*\*\s*\w*grad|\.sub_\(\s*\w*\s*\*|gd_step\("
    )
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                hits.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not hits, "hand-written training steps:\n" + "\n".join(hits)
