"""Claims of `schatten-l2` (docs/results.md, pass criteria 1-6); they read the typed summary.

Each ``_invert_*`` perturbs a summary the wrong way so that its check fails.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rankscope.experiments.base import Check, Claim, Result, check, inconclusive

__all__ = ["CLAIMS"]

PAPER = "arXiv:2106.15933"
BALANCE_TOL = 1e-3  # criterion 1: ‖D_ℓ‖_F / ‖W_ℓ‖_F² < 1e-3
NORM_RTOL = 1e-3  # criterion 2
VALUE_ATOL = 1e-3  # criteria 3-5
FIT_TOL = 1e-8  # premise of criterion 6: the expansion fits reproduce A


def _fits(result: Result, depth=None) -> list:
    return [f for f in result.summary.fits if depth is None or f.depth == depth]


def _per_depth(values: dict, spec: str = ".2g") -> str:
    return ", ".join(f"{v:{spec}} ({k})" for k, v in values.items())


def _verdict(bad: list[str]) -> str:
    return f"fails at {', '.join(bad)}" if bad else "pass"


def _balanced(result: Result) -> Check:
    fits = _fits(result)
    if not fits:
        return inconclusive("no penalized fit in the result")
    ratio = {f"L={f.depth}": f.balance for f in fits}
    bad = [k for k, v in ratio.items() if v >= BALANCE_TOL]
    headline = f"‖D_ℓ‖/‖W_ℓ‖² {_per_depth(ratio)} vs < {BALANCE_TOL:g} → {_verdict(bad)}"
    return check(not bad, headline=headline, balance=ratio, tol=BALANCE_TOL)


def _schatten_identity(result: Result) -> Check:
    fits = _fits(result)
    if not fits:
        return inconclusive("no penalized fit in the result")
    unbalanced = {f"L={f.depth}": f.balance for f in fits if f.balance >= BALANCE_TOL}
    if unbalanced:  # docs/results.md pitfall: the identity holds only at balanced factors
        return inconclusive(
            "factors not balanced; compare only after they are",
            headline=f"factors not balanced ({_per_depth(unbalanced)} ≥ {BALANCE_TOL:g}): "
            "the identity is compared only at balanced factors",
            balance=unbalanced,
        )
    rel = {f"L={f.depth}": abs(f.param_norm2 - f.schatten_cost) / f.schatten_cost for f in fits}
    norms = {f"L={f.depth}": [f.param_norm2, f.schatten_cost] for f in fits}
    bad = [k for k, v in rel.items() if v >= NORM_RTOL]
    headline = (
        f"|‖θ‖² − L·Σs^(2/L)| / L·Σs^(2/L) {_per_depth(rel)} vs < {NORM_RTOL:g} → {_verdict(bad)}"
    )
    return check(
        not bad, headline=headline, rel_error=rel, theta_norm2_vs_schatten=norms, rtol=NORM_RTOL
    )


def _soft_threshold(result: Result) -> Check:
    fits = _fits(result, 2)
    if not fits:
        return inconclusive("depth 2 is not in the config")
    f = fits[0]
    want = np.sort([max(y - 2 * f.lam, 0.0) for y in f.y])[::-1]
    got = np.asarray(f.sv)
    err = float(np.abs(got - want).max())
    shown = ", ".join(f"{x:.3g}" for x in got[:4])
    theory = ", ".join(f"{x:.3g}" for x in want[:4])
    headline = (
        f"L = 2 singular values ({shown}, …) vs max(y − 2λ, 0) = ({theory}, …): max error "
        f"{err:.2g} vs ≤ {VALUE_ATOL:g} → {'pass' if err <= VALUE_ATOL else 'fail'}"
    )
    return check(
        err <= VALUE_ATOL,
        headline=headline,
        learned=[round(x, 6) for x in got[:6]],
        soft_threshold=[round(x, 6) for x in want[:6]],
        max_abs_error=err,
    )


def _mode_error(a: float, roots) -> float:
    """Distance of ``a`` to the nearest admissible value: 0 or a positive stationary point."""
    return min([abs(a), *[abs(a - r) for r in roots]])


def _stationary(result: Result) -> Check:
    fits = [f for f in _fits(result) if f.depth >= 3]
    if not fits:
        return inconclusive("no depth >= 3 in the config")
    measured, bad = {}, []
    for f in fits:
        errs = [_mode_error(a, r) for a, r in zip(f.projected, f.stationary_points)]
        worst = max(errs)
        if not (worst <= VALUE_ATOL and f.offdiag <= VALUE_ATOL):
            bad.append(f"L = {f.depth}")
        measured[f"L={f.depth}"] = {
            "learned": [round(a, 6) for a in f.projected[: len(result.summary.y) + 1]],
            "max_error": worst,
            "offdiag": f.offdiag,
        }
    parts = ", ".join(
        f"{m['max_error']:.2g} / {m['offdiag']:.2g} ({k})" for k, m in measured.items()
    )
    headline = (
        f"distance to 0 or a stationary point of f / off-diagonal {parts} vs ≤ {VALUE_ATOL:g} "
        f"→ {_verdict(bad)}"
    )
    return check(not bad, headline=headline, per_depth=measured, atol=VALUE_ATOL)


def _trapped(result: Result) -> Check:
    fits = _fits(result, 3)
    if not fits or len(result.summary.y) < 3:
        return inconclusive("needs depth 3 and at least three target values")
    f = fits[0]
    third, best = f.projected[2], f.global_min[2]
    others = list(f.projected[:2])
    premise = all(
        _mode_error(a, r) <= VALUE_ATOL and a > VALUE_ATOL
        for a, r in zip(others, f.stationary_points[:2])
    )
    measured = {
        "third_learned": third,
        "third_global_min": best,
        "first_two": others,
        "y3": f.y[2],
        "lam": f.lam,
    }
    if not premise:
        return inconclusive(
            "the first two modes did not reach their nonzero minima",
            headline=f"premise fails: the first two modes ({others[0]:.3g}, {others[1]:.3g}) "
            "did not reach their nonzero minima",
            **measured,
        )
    ok = abs(third) <= VALUE_ATOL and best > VALUE_ATOL
    headline = (
        f"L = 3, y_3 = {f.y[2]:g}: third value {third:.2g} (trapped if ≤ {VALUE_ATOL:g}) while "
        f"the scalar global minimum is {best:.3g} → {'pass' if ok else 'fail'}"
    )
    return check(ok, headline=headline, **measured)


def _expansion(result: Result) -> Check:
    rows = sorted(result.summary.expansion, key=lambda r: r.depth)
    if len(rows) < 2:
        return inconclusive("needs at least two expansion depths")
    fit = {r.depth: r.fit_error for r in rows}
    if max(fit.values()) > FIT_TOL:
        return inconclusive(
            "a deep fit did not reproduce A",
            headline=f"a deep fit did not reproduce A: fit error {max(fit.values()):.2g} > "
            f"{FIT_TOL:g}",
            fit_error=fit,
        )
    depth = np.array([r.depth for r in rows], dtype=float)
    res = np.array([r.residual for r in rows])
    scaled = res * depth**2  # non-increasing iff residual falls at least like L^{-2}
    slope = float(np.polyfit(np.log(depth), np.log(res), 1)[0]) if (res > 0).all() else math.nan
    ok = bool(np.all(np.diff(scaled) <= 0))
    headline = (
        f"residual·L² {' / '.join(f'{v:.3g}' for v in scaled)} at L = "
        f"{' / '.join(str(int(d)) for d in depth)} (log-log slope {slope:.2f}); must not "
        f"increase → {'pass' if ok else 'fail'}"
    )
    return check(
        ok,
        headline=headline,
        depths=depth.astype(int).tolist(),
        residual=res.tolist(),
        residual_times_L2=scaled.tolist(),
        loglog_slope=slope,
        residual_exact=[r.residual_exact for r in rows],
    )


# ----------------------------------------------------------------- wrong-way perturbations
def _map_fits(summary, fn, keep=lambda f: True):
    fits = tuple(fn(f) if keep(f) else f for f in summary.fits)
    return dataclasses.replace(summary, fits=fits)


def _invert_balanced(summary):
    return _map_fits(summary, lambda f: dataclasses.replace(f, balance=0.1))


def _invert_identity(summary):
    return _map_fits(summary, lambda f: dataclasses.replace(f, param_norm2=1.1 * f.schatten_cost))


def _invert_soft(summary):
    return _map_fits(
        summary,
        lambda f: dataclasses.replace(f, sv=(f.sv[0] + 0.01, *f.sv[1:])),
        lambda f: f.depth == 2,
    )


def _invert_stationary(summary):
    """The third direction halfway between 0 and its larger stationary point (or at 0.5)."""

    def move(f):
        roots = f.stationary_points[2]
        projected = list(f.projected)
        projected[2] = 0.5 * roots[-1] if roots else 0.5
        return dataclasses.replace(f, projected=tuple(projected))

    return _map_fits(summary, move, lambda f: f.depth >= 3 and len(f.projected) > 2)


def _invert_trapped(summary):
    """The third direction escaped to its global minimum."""

    def move(f):
        projected = list(f.projected)
        projected[2] = f.global_min[2]
        return dataclasses.replace(f, projected=tuple(projected))

    return _map_fits(summary, move, lambda f: f.depth == 3 and len(f.projected) > 2)


def _invert_expansion(summary):
    """Residuals that fall only like L^{-1}."""
    rows = sorted(summary.expansion, key=lambda r: r.depth)
    r0, d0 = rows[0].residual, rows[0].depth
    new = tuple(dataclasses.replace(r, residual=r0 * d0 / r.depth) for r in rows)
    return dataclasses.replace(summary, expansion=new)


CLAIMS = (
    Claim(
        id="SL2-1",
        paper=PAPER,
        check=_balanced,
        invert=_invert_balanced,
        statement="After GD with λ‖θ‖² the factors are balanced: ‖D_ℓ‖_F/‖W_ℓ‖_F² < 1e-3.",
        expected="< 1e-3 at every depth",
    ),
    Claim(
        id="SL2-2",
        paper=PAPER,
        check=_schatten_identity,
        invert=_invert_identity,
        statement="Σ‖W_ℓ‖² = L·Σ s_i(A)^{2/L} (Schatten-2/L representation cost) at the end of "
        "training, to relative 1e-3.",
        expected="relative error < 1e-3 at every depth",
    ),
    Claim(
        id="SL2-3",
        paper=PAPER,
        check=_soft_threshold,
        invert=_invert_soft,
        statement="Depth 2 soft-thresholds: the learned singular values equal max(y − 2λ, 0) to "
        "absolute 1e-3.",
        expected="(4.4, 2.4, 0.9, 0, …) for λ = 0.3",
    ),
    Claim(
        id="SL2-4",
        paper=PAPER,
        check=_stationary,
        invert=_invert_stationary,
        statement="Depth ≥ 3: every learned singular value (on Y's singular directions) is 0 or "
        "a positive stationary point of f(a) = ½(a − y)² + λL·a^{2/L}, to 1e-3.",
        expected="max distance ≤ 1e-3 at L = 3 and 4",
    ),
    Claim(
        id="SL2-5",
        paper=PAPER,
        check=_trapped,
        invert=_invert_trapped,
        statement="Depth 3, λ = 0.3, y = (5, 3, 1.5, …): the third singular value is trapped "
        "at 0 while the scalar global minimum is 0.87 — a local minimum that is not global.",
        expected="third value ≤ 1e-3, global minimum 0.872",
    ),
    Claim(
        id="SL2-6",
        paper=PAPER,
        check=_expansion,
        invert=_invert_expansion,
        statement="Deep fits of a known A: |‖θ‖² − (L·R0 + R1 + R2/L)| decreases at least like "
        "L^{-2} over L ∈ {4, 8, 16, 32} (residual·L² non-increasing).",
        expected="residual·L² non-increasing in L",
    ),
)
