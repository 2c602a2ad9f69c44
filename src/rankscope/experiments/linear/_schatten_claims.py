"""Claims of `schatten-l2` (papers/linear.md, pass criteria 1-6); they read ``summary`` only."""

from __future__ import annotations

import math

import numpy as np

from rankscope.experiments.base import Check, Claim, Result, check, inconclusive

__all__ = ["CLAIMS"]

PAPER = "arXiv:2106.15933"
BALANCE_TOL = 1e-3  # criterion 1: ‖D_ℓ‖_F / ‖W_ℓ‖_F² < 1e-3
NORM_RTOL = 1e-3  # criterion 2
VALUE_ATOL = 1e-3  # criteria 3-5
FIT_TOL = 1e-8  # premise of criterion 6: the expansion fits reproduce A


def _fits(result: Result, depth=None) -> list[dict]:
    return [f for f in result.summary.get("fits", []) if depth is None or f["depth"] == depth]


def _balanced(result: Result) -> Check:
    fits = _fits(result)
    if not fits:
        return inconclusive("no penalized fit in the result")
    ratio = {f"L={f['depth']}": f["balance"] for f in fits}
    return check(all(v < BALANCE_TOL for v in ratio.values()), balance=ratio, tol=BALANCE_TOL)


def _schatten_identity(result: Result) -> Check:
    fits = _fits(result)
    if not fits:
        return inconclusive("no penalized fit in the result")
    unbalanced = {f"L={f['depth']}": f["balance"] for f in fits if f["balance"] >= BALANCE_TOL}
    if unbalanced:  # linear.md pitfall: the identity holds only at balanced factors
        return inconclusive("factors not balanced; compare only after they are", balance=unbalanced)
    rel = {
        f"L={f['depth']}": abs(f["param_norm2"] - f["schatten_cost"]) / f["schatten_cost"]
        for f in fits
    }
    norms = {f"L={f['depth']}": [f["param_norm2"], f["schatten_cost"]] for f in fits}
    return check(
        all(v < NORM_RTOL for v in rel.values()),
        rel_error=rel,
        theta_norm2_vs_schatten=norms,
        rtol=NORM_RTOL,
    )


def _soft_threshold(result: Result) -> Check:
    fits = _fits(result, 2)
    if not fits:
        return inconclusive("depth 2 is not in the config")
    f = fits[0]
    want = np.sort([max(y - 2 * f["lam"], 0.0) for y in f["y"]])[::-1]
    got = np.asarray(f["sv"])
    err = float(np.abs(got - want).max())
    return check(
        err <= VALUE_ATOL,
        learned=[round(x, 6) for x in got[:6]],
        soft_threshold=[round(x, 6) for x in want[:6]],
        max_abs_error=err,
    )


def _mode_error(a: float, roots: list[float]) -> float:
    """Distance of ``a`` to the nearest admissible value: 0 or a positive stationary point."""
    return min([abs(a), *[abs(a - r) for r in roots]])


def _stationary(result: Result) -> Check:
    fits = [f for f in _fits(result) if f["depth"] >= 3]
    if not fits:
        return inconclusive("no depth >= 3 in the config")
    measured, ok = {}, True
    for f in fits:
        errs = [_mode_error(a, r) for a, r in zip(f["projected"], f["stationary_points"])]
        worst = max(errs)
        ok &= worst <= VALUE_ATOL and f["offdiag"] <= VALUE_ATOL
        measured[f"L={f['depth']}"] = {
            "learned": [round(a, 6) for a in f["projected"][: len(result.summary["y"]) + 1]],
            "max_error": worst,
            "offdiag": f["offdiag"],
        }
    return check(ok, per_depth=measured, atol=VALUE_ATOL)


def _trapped(result: Result) -> Check:
    fits = _fits(result, 3)
    if not fits or len(result.summary["y"]) < 3:
        return inconclusive("needs depth 3 and at least three target values")
    f = fits[0]
    third, best = f["projected"][2], f["global_min"][2]
    others = f["projected"][:2]
    premise = all(
        _mode_error(a, r) <= VALUE_ATOL and a > VALUE_ATOL
        for a, r in zip(others, f["stationary_points"][:2])
    )
    measured = {
        "third_learned": third,
        "third_global_min": best,
        "first_two": others,
        "y3": f["y"][2],
        "lam": f["lam"],
    }
    if not premise:
        return inconclusive("the first two modes did not reach their nonzero minima", **measured)
    return check(abs(third) <= VALUE_ATOL and best > VALUE_ATOL, **measured)


def _expansion(result: Result) -> Check:
    rows = sorted(result.summary.get("expansion", []), key=lambda r: r["depth"])
    if len(rows) < 2:
        return inconclusive("needs at least two expansion depths")
    fit = {r["depth"]: r["fit_error"] for r in rows}
    if max(fit.values()) > FIT_TOL:
        return inconclusive("a deep fit did not reproduce A", fit_error=fit)
    depth = np.array([r["depth"] for r in rows], dtype=float)
    res = np.array([r["residual"] for r in rows])
    scaled = res * depth**2  # non-increasing iff residual falls at least like L^{-2}
    slope = float(np.polyfit(np.log(depth), np.log(res), 1)[0]) if (res > 0).all() else math.nan
    ok = bool(np.all(np.diff(scaled) <= 0))
    return check(
        ok,
        depths=depth.astype(int).tolist(),
        residual=res.tolist(),
        residual_times_L2=scaled.tolist(),
        loglog_slope=slope,
        residual_exact=[r["residual_exact"] for r in rows],
    )


CLAIMS = (
    Claim(
        id="SL2-1",
        paper=PAPER,
        check=_balanced,
        statement="After GD with λ‖θ‖² the factors are balanced: ‖D_ℓ‖_F/‖W_ℓ‖_F² < 1e-3.",
        expected="< 1e-3 at every depth",
    ),
    Claim(
        id="SL2-2",
        paper=PAPER,
        check=_schatten_identity,
        statement="Σ‖W_ℓ‖² = L·Σ s_i(A)^{2/L} (Schatten-2/L representation cost) at the end of "
        "training, to relative 1e-3.",
        expected="relative error < 1e-3 at every depth",
    ),
    Claim(
        id="SL2-3",
        paper=PAPER,
        check=_soft_threshold,
        statement="Depth 2 soft-thresholds: the learned singular values equal max(y − 2λ, 0) to "
        "absolute 1e-3.",
        expected="(4.4, 2.4, 0.9, 0, …) for λ = 0.3",
    ),
    Claim(
        id="SL2-4",
        paper=PAPER,
        check=_stationary,
        statement="Depth ≥ 3: every learned singular value (on Y's singular directions) is 0 or "
        "a positive stationary point of f(a) = ½(a − y)² + λL·a^{2/L}, to 1e-3.",
        expected="max distance ≤ 1e-3 at L = 3 and 4",
    ),
    Claim(
        id="SL2-5",
        paper=PAPER,
        check=_trapped,
        statement="Depth 3, λ = 0.3, y = (5, 3, 1.5, …): the third singular value is trapped "
        "at 0 while the scalar global minimum is 0.87 — a local minimum that is not global.",
        expected="third value ≤ 1e-3, global minimum 0.872",
    ),
    Claim(
        id="SL2-6",
        paper=PAPER,
        check=_expansion,
        statement="Deep fits of a known A: |‖θ‖² − (L·R0 + R1 + R2/L)| decreases at least like "
        "L^{-2} over L ∈ {4, 8, 16, 32} (residual·L² non-increasing).",
        expected="residual·L² non-increasing in L",
    ),
)
