"""The static report in a real browser: headless Chromium opens it from disk (file://).

Checks, on the index, an experiment page and a sweep page: every image loads
(naturalWidth > 0), nothing is logged as an error in the console, the claims table has a
verdict per claim, and the details toggle opens on a click. A full-page screenshot of each
page is kept in ``test-artifacts/browser/`` (git-ignored) for a person to look at.

Needs the system's ``chromium`` (``.ci/run`` installs Debian's package) and
``websocket-client`` (the ``test`` extra); without them the test is skipped, never
downloading a browser.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rankscope.cli import app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def browser():
    from _cdp import Browser, find_browser

    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives Chromium")
    binary = find_browser()
    if binary is None:
        pytest.skip("no chromium on PATH (apt-get install chromium); the browser test needs it")
    b = Browser(binary)
    yield b
    b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    store = tmp_path_factory.mktemp("browser") / "st"
    runner = CliRunner()
    common = ["--preset", "smoke", "--store", str(store), "--workers", "1"]
    out = runner.invoke(app, ["reproduce", "scalar-mode", *common], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    grid = ["--grid", "lr=2e-3,5e-3", "--metric", "half_fit_time_exact", "--seeds", "2"]
    out = runner.invoke(app, ["sweep", "scalar-mode", *grid, *common], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    from rankscope.store import Store

    st = Store(store, create=False)
    _, claims, _ = st.latest_verdicts("scalar-mode", "smoke")
    sweep_pages = sorted((store / "report" / "sweeps").glob("*/index.html"))
    return {
        "index": store / "report" / "index.html",
        "experiment": store / "report" / "scalar-mode" / "smoke" / "index.html",
        "sweep": sweep_pages[0],
        "claims": claims,
    }


def _check_page(browser, path: Path, name: str) -> None:
    assert path.exists(), path
    browser.open(path.as_uri())
    images = browser.eval(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    broken = [src for src, complete, width in images if not complete or width <= 0]
    assert not broken, f"{name}: images that did not load: {broken}"
    browser.screenshot(ARTIFACTS / f"{name}.png")
    errors = browser.console_errors()
    assert not errors, f"{name}: console errors: {errors}"
    return images


def test_index_page(browser, report):
    _check_page(browser, report["index"], "index")
    links = browser.eval(
        "Array.from(document.querySelectorAll('table.experiments a')).map(a => a.textContent)"
    )
    assert links == ["scalar-mode"]
    zero_fail = browser.eval(
        "getComputedStyle(document.querySelector('table.experiments td.zero')).color"
    )
    assert zero_fail == "rgb(136, 136, 136)"  # 0 failures are grey, not red
    assert browser.eval("document.querySelectorAll('table.sweeps a').length") == 1


def test_experiment_page(browser, report):
    images = _check_page(browser, report["experiment"], "experiment-scalar-mode")
    assert len(images) >= 1
    rows = browser.eval(
        "Array.from(document.querySelectorAll('table.claims tr.claim')).map(r => ["
        "r.cells[0].querySelector('b').textContent, r.querySelector('td.verdict').textContent,"
        "r.querySelector('.headline').textContent])"
    )
    stored = {c["id"]: c["verdict"] for c in report["claims"]}
    assert {r[0] for r in rows} == set(stored)
    for claim_id, verdict, headline in rows:
        assert verdict.startswith(stored[claim_id]), (claim_id, verdict)
        assert headline.strip() and len(headline) < 400
    # the details toggle: closed, a click opens it and shows the numbers
    state = "document.querySelector('table.claims details').open"
    shown = "document.querySelector('table.claims details table.meas').checkVisibility()"
    assert browser.eval(state) is False
    assert browser.eval(shown) is False
    browser.click("table.claims details summary")
    assert browser.eval(state) is True
    assert browser.eval(shown) is True
    browser.screenshot(ARTIFACTS / "experiment-scalar-mode-details-open.png")
    assert not browser.console_errors()


def test_sweep_page(browser, report):
    images = _check_page(browser, report["sweep"], "sweep-scalar-mode")
    assert [src for src, _, _ in images] == ["metric-half_fit_time_exact.png"]
    cells = browser.eval(
        "Array.from(document.querySelectorAll('table.sweep tr')).map(r => r.cells.length)"
    )
    assert len(cells) == 3  # header + one row per grid point
