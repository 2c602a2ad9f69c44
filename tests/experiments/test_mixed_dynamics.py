"""mixed-dynamics: GD on d×d statistics, the self-consistent step, the init law, the claims."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from rankscope.experiments.base import VERDICTS, Result, RunContext
from rankscope.experiments.linear import _mixed_claims as claims
from rankscope.experiments.linear._mixed_sim import (
    Point,
    SimSettings,
    early_stop_index,
    first_crossing,
    gram_spectrum,
    make_problem,
    sample_gram_init,
    sc_step,
    simulate,
)
from rankscope.experiments.linear.mixed_dynamics import (
    EXPERIMENT,
    Config,
    FastConfig,
    PointResult,
    Summary,
    TargetInfo,
)
from rankscope.experiments.summary import summary_from_dict, summary_to_dict
from rankscope.models.gram import FactorState, GramState
from rankscope.train import train
from rankscope.train.gram_gd import FactorGD, GramGD

F64 = {"dtype": torch.float64}


@pytest.fixture(scope="module")
def smoke_result() -> Result:
    ctx = RunContext(seed=0)
    return EXPERIMENT.run(EXPERIMENT.preset("smoke"), ctx)


def test_smoke_runs_and_every_claim_has_a_verdict(smoke_result):
    s = smoke_result.summary
    assert len(s.grid) == 4 and s.fast.d == 100
    stored = summary_to_dict(s)
    assert summary_to_dict(summary_from_dict(Summary, stored)) == stored
    for claim in EXPERIMENT.claims:
        c = claim.check(smoke_result)
        assert c.verdict in VERDICTS, claim.id
        assert c.measured, f"{claim.id} reports no measured numbers"
        assert c.headline, claim.id
        if c.verdict == "pass":  # perturbed the wrong way, a pass turns into a fail
            bad = dataclasses.replace(smoke_result, summary=claim.invert(s))
            assert claim.check(bad).verdict == "fail", claim.id
    # the fast check is computed at the d the papers file specifies, not a stand-in
    # the fast point is the real one (d = 100): reference 0.273 / 2.98, measured 0.28 / 2.9-3.3
    assert claims.fast_check(smoke_result).verdict == "pass", claims.fast_check(smoke_result)


def _half_sse(y):
    return lambda m: 0.5 * (m.product() - y).square().sum((-2, -1))


@pytest.mark.parametrize("update", ["sequential", "simultaneous"])
def test_gram_gd_equals_explicit_factor_gd(update):
    """GD written on (W₂W₁, W₂W₂ᵀ, W₁ᵀW₁) is exactly GD on the factors (float64), both trained
    through the engine; the factor GD is checked against the notebook's loop written here."""
    g = torch.Generator().manual_seed(3)
    d, w, eta, n = 4, 30, 0.05, 25
    w1 = 0.3 * torch.randn(w, d, generator=g, **F64)
    w2 = 0.3 * torch.randn(d, w, generator=g, **F64)
    y = torch.randn(d, d, generator=g, **F64)
    step = torch.full((1, 1, 1), eta, **F64)
    gram = GramState(*(x[None] for x in (w2 @ w1, w2 @ w2.T, w1.T @ w1)))
    train(gram, _half_sse(y), optimizer=lambda p: GramGD(p, eta=step, update=update), steps=n)
    factors = FactorState(w1[None], w2[None])
    fgd = lambda p: FactorGD(p, y=y, eta=step, update=update)  # noqa: E731
    train(factors, _half_sse(y), optimizer=fgd, steps=n)
    for _ in range(n):  # the notebook's loop
        gr = w2 @ w1 - y
        w1_new = w1 - eta * (w2.T @ gr)
        w2 = w2 - eta * (gr @ (w1_new if update == "sequential" else w1).T)
        w1 = w1_new
    f1, f2 = factors.w1.detach()[0], factors.w2.detach()[0]
    torch.testing.assert_close(f1, w1, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(f2, w2, rtol=1e-12, atol=1e-14)
    a, p, q = (x.detach()[0] for x in (gram.a, gram.p, gram.q))
    torch.testing.assert_close(a, w2 @ w1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(p, w2 @ w2.T, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(q, w1.T @ w1, rtol=1e-10, atol=1e-12)


def test_gram_gd_rejects_unknown_update():
    z = GramState(*(torch.zeros(1, 2, 2) for _ in range(3)))
    with pytest.raises(ValueError, match="sequential"):
        GramGD(z.parameters(), eta=torch.ones(1, 1, 1), update="jacobi")


def test_sc_step_matches_direct_matrix_square_roots():
    """One batched SC step against scipy.linalg.sqrtm of (BBᵀ + c²I) and (BᵀB + c²I)."""
    g = torch.Generator().manual_seed(1)
    b = torch.randn(3, 5, 5, generator=g, **F64)
    y = torch.randn(3, 5, 5, generator=g, **F64)
    c = torch.tensor([0.1, 1.0, 7.0], **F64).view(-1, 1, 1)
    eta = torch.tensor([0.01, 0.02, 0.03], **F64).view(-1, 1, 1)
    got, sv = sc_step(b, y, eta, c)
    for i in range(3):
        bi, gi, ci = b[i].numpy(), (b[i] - y[i]).numpy(), float(c[i])
        left = scipy.linalg.sqrtm(bi @ bi.T + ci**2 * np.eye(5)).real
        right = scipy.linalg.sqrtm(bi.T @ bi + ci**2 * np.eye(5)).real
        want = bi - float(eta[i]) * (left @ gi + gi @ right)
        torch.testing.assert_close(got[i], torch.from_numpy(want), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(sv[i], torch.from_numpy(scipy.linalg.svdvals(bi)))


def test_gram_spectrum_matches_svd():
    x = torch.randn(4, 6, 6, generator=torch.Generator().manual_seed(0), **F64)
    torch.testing.assert_close(gram_spectrum(x), torch.linalg.svdvals(x), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("w", [3, 12])  # w < 2d: explicit draw; w >= 2d: Bartlett
def test_gram_init_has_the_gaussian_law(w):
    """E[A] = 0, E[P] = σ²w·I, Var(A_ij) = σ⁴w, Var(P_ii) = 2σ⁴w for N(0, σ²) factors."""
    d, sigma2, n = 2, 0.5, 20000
    rng = np.random.default_rng(0)
    draws = [sample_gram_init(d, w, sigma2, rng) for _ in range(n)]
    a = np.stack([x[0] for x in draws])
    p = np.stack([x[1] for x in draws])
    q = np.stack([x[2] for x in draws])
    se = 5 / math.sqrt(n)  # five standard errors, in units of the standard deviation
    var_a = sigma2**2 * w
    assert abs(a.mean()) < se * math.sqrt(var_a)
    np.testing.assert_allclose(a.var(0), var_a, rtol=0.06)
    np.testing.assert_allclose(p.mean(0), sigma2 * w * np.eye(d), atol=5 * se * sigma2 * w)
    np.testing.assert_allclose(q[:, 0, 0].var(), 2 * sigma2**2 * w, rtol=0.06)
    np.testing.assert_allclose(p[:, 0, 1].var(), sigma2**2 * w, rtol=0.06)


def test_early_stop_index_follows_the_notebook_rules():
    test = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.61, 0.62, 0.63, 0.5])
    train = np.linspace(2.0, 1.0, test.size)
    assert early_stop_index(train, test) == 6  # test rose at 5 and 6 (i > 3)
    train2 = np.array([2.0, 1.0, 5e-4, 1e-4])
    assert early_stop_index(train2, np.ones(4)) == 2  # train < 1e-3
    flat = np.array([2.0, 1.5, 1.2, 1.1, 1.05, 1.0499, 1.0])
    assert early_stop_index(flat, -np.arange(7.0)) == 5  # |Δtrain| < 2e-4 after a drop
    assert early_stop_index(np.linspace(2, 1, 5), -np.arange(5.0)) == 4  # none fires


def test_first_crossing():
    traj = np.array([[0.0, 5.0], [1.0, 5.0], [9.5, 5.0], [10.0, 4.0]])
    np.testing.assert_array_equal(first_crossing(traj, 0.9), [2, 0])


def test_point_regions_and_eta_rule():
    p = Point.make(-1.85, 2.25, 100, target_op=50.0, eta_divisor=5.0)
    assert p.region == "active" and p.below_red and p.w == int(100**2.25)
    assert p.eta == pytest.approx(1 / (5 * 50.0))
    q = Point.make(-0.6, 2.0, 100, target_op=50.0, eta_divisor=50.0)
    assert q.region == "lazy" and not q.below_red
    assert q.eta == pytest.approx(1 / (50 * 100**2.0 * 100**-0.6))
    assert q.line_distance == pytest.approx((1.4 - 1) / math.sqrt(2))


def test_factors_mode_respects_the_memory_cap():
    prob = make_problem(10, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    pt = Point.make(-1.0, 3.0, 10, prob.target_op, 5.0)
    st = SimSettings(n_iters=2, gd_impl="factors", max_wd=1e3)
    with pytest.raises(ValueError, match="max_wd"):
        simulate([pt], prob, st, rng=np.random.default_rng(0), generator=torch.Generator())


def test_divergent_eta_is_halved_and_recorded():
    prob = make_problem(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    good = Point.make(-1.5, 1.8, 8, prob.target_op, 5.0)
    bad = dataclasses.replace(good, eta=good.eta * 40)  # far beyond stability
    st = SimSettings(n_iters=40, max_eta_halvings=8)
    out = simulate([good, bad], prob, st, rng=np.random.default_rng(1), generator=torch.Generator())
    assert out[0]["eta_halvings"] == 0 and not out[0]["diverged"]
    assert out[1]["eta_halvings"] > 0 and not out[1]["diverged"]
    assert out[1]["eta"] == pytest.approx(bad.eta / 2 ** out[1]["eta_halvings"])
    assert np.isfinite(out[1]["test"]).all()


# s_K(A*) = 36 (criterion 2 counts σ²w < 36/2.66 = 13.5 as active), s_{K+1}(Y)/s_K(Y) = 19/38
# (criterion 4: b = 0.5, active for σ²w < 19/2.66 = 7.1)
_TARGET = TargetInfo(
    d=100,
    stable_rank=3.0,
    op_norm=50.0,
    singular_values=(50.0, 45.0, 42.0, 40.0, 36.0, 0.0),
    observed_singular_values=(58.0, 47.0, 44.0, 41.0, 38.0, 19.0, 18.5, 18.0),
)


def _fake(points, fast=None, srank=3.0) -> Result:
    return Result(
        summary=Summary(
            d=100,
            fast_d=100,
            rank=5,
            margin=0.15,
            gd_update="sequential",
            twin_update="simultaneous",
            gd_impl="gram",
            grid=tuple(points),
            grid_target=_TARGET,
            fast=fast,
            fast_target=dataclasses.replace(_TARGET, stable_rank=srank),
            srank_target=srank,
        )
    )


def _pt(gs, gw, **kw) -> PointResult:
    sigma2, w = 100.0**gs, int(100.0**gw)
    base = {
        "gamma_sigma2": gs,
        "gamma_w": gw,
        "diverged": False,
        "region": "active" if gs + gw < 1 else "lazy",
        "below_red": 2 * gs + gw < 0,
        "line_distance": (gs + gw - 1) / math.sqrt(2),
        "min_test_error": 0.3,
        "stable_rank_at_min": 3.0,
        "max_gap": 0.05,
        "max_gap_over_y": 0.02,
        "iter_of_max_gap": 3,
        "t90_topk": 10,
        "t90_next": 30,
        "d": 100,
        "iter_of_min": 8,
        "twin_max_gap": 0.005,
    }
    rest = dict(sigma2=sigma2, w=w, eta=0.01, sigma2_w=sigma2 * w, eta_used=0.01,
                eta_halvings=0, n_iters=300, stop_iter=300, init_test_error=1.0,
                global_min_test_error=0.3, final_test_error=0.5, rank_at_min=5,
                max_gap_to_stop=0.05, width_fluctuation=math.sqrt(100 / w),
                twin_iter_of_max_gap=3, twin_diverged=False)  # fmt: skip
    return PointResult(**(rest | base | kw))


def test_claims_on_synthetic_summaries():
    active = _pt(-2.0, 2.0)  # σ²w = 1, w = 10⁴: √(d/w) = 0.1
    lazy = _pt(-1.4, 2.7, min_test_error=0.9, stable_rank_at_min=6.0)
    assert claims.active_beats_lazy(_fake([active, lazy])).verdict == "pass"
    assert claims.active_beats_lazy(_fake([active])).verdict == "inconclusive"
    worse = _pt(-2.0, 2.0, min_test_error=0.8)
    assert claims.active_beats_lazy(_fake([worse, lazy])).verdict == "fail"
    assert claims.stable_rank_by_region(_fake([active, lazy])).verdict == "pass"
    low = _pt(-1.4, 2.7, stable_rank_at_min=4.0)
    assert claims.stable_rank_by_region(_fake([active, low])).verdict == "fail"
    high = _pt(-1.9, 2.8, stable_rank_at_min=4.5)  # σ²w = 100^0.9 = 63: in the band
    assert claims.stable_rank_by_region(_fake([active, lazy, high])).verdict == "pass"
    high_active = _pt(-1.5, 2.0, stable_rank_at_min=4.5)  # σ²w = 10 < 13.5: active
    assert claims.stable_rank_by_region(_fake([high_active, lazy])).verdict == "fail"
    # criterion 3 reads the simultaneous twin, against √(d/w)
    assert claims.gd_matches_self_consistent(_fake([active])).verdict == "pass"
    seq_far = _pt(-2.0, 2.0, max_gap=0.2)  # the sequential main run is not what MD-3 tests
    assert claims.gd_matches_self_consistent(_fake([seq_far])).verdict == "pass"
    gap = _pt(-2.0, 2.0, twin_max_gap=0.11)  # 0.11 > √(100/10⁴) = 0.1
    assert claims.gd_matches_self_consistent(_fake([gap])).verdict == "fail"
    wide = _pt(-2.0, 1.5, twin_max_gap=0.11)  # w = 1000: √(d/w) = 0.32
    assert claims.gd_matches_self_consistent(_fake([wide])).verdict == "pass"
    twin_div = _pt(-2.0, 2.0, twin_diverged=True)
    assert claims.gd_matches_self_consistent(_fake([twin_div])).verdict == "fail"
    # criterion 4: speed-up fraction (1 − r)/(1 − b), b = 19/38 = 0.5
    assert claims.topk_converges_first(_fake([active])).verdict == "pass"  # r = 1/3
    slow = _pt(-2.0, 2.0, t90_topk=20, t90_next=30)  # r = 2/3: fraction 0.67 ≥ 0.64
    assert claims.topk_converges_first(_fake([slow])).verdict == "pass"
    slower = _pt(-2.0, 2.0, t90_topk=21, t90_next=30)  # r = 0.7: fraction 0.6 < 0.64
    assert claims.topk_converges_first(_fake([slower])).verdict == "fail"
    band = _pt(-1.5, 2.0, t90_topk=29, t90_next=30)  # σ²w = 10 > 7.1: not an active run
    check4 = claims.topk_converges_first(_fake([active, band]))
    assert check4.verdict == "pass" and check4.measured["n_runs"] == 1
    assert claims.topk_converges_first(_fake([band])).verdict == "inconclusive"
    fast = _pt(-1.85, 2.25, min_test_error=0.3, stable_rank_at_min=3.0)
    assert claims.topk_converges_first(_fake([band], fast)).measured["n_runs"] == 1
    assert claims.fast_check(_fake([], fast)).verdict == "pass"
    assert claims.fast_check(_fake([], dataclasses.replace(fast, d=40))).verdict == "inconclusive"
    low_rank = dataclasses.replace(fast, stable_rank_at_min=2.4)
    assert claims.fast_check(_fake([], low_rank)).verdict == "fail"


def test_topk_bound_is_the_ratio_of_the_scalar_active_flow():
    """The limit b = s_{K+1}/s_K of criterion 4 against an independent integration of the
    per-direction flow ṡ = −2√(s² + c²)(s − s*) (paper eq. (1) on one singular value): as
    c = σ²w → 0 the t90 ratio of two directions with s* = 38 and 19 tends to (slightly above)
    19/38, and it rises towards 1 as c grows past the smaller s* (the mixed regime)."""

    def t90(s_star, c, s0=1e-3, dt=1e-4):
        s, t = s0, 0.0
        while s < 0.9 * s_star:
            s += -2 * math.sqrt(s * s + c * c) * (s - s_star) * dt
            t += dt
        return t

    bound = claims._topk_bound(_TARGET, 5)
    assert bound == pytest.approx(0.5)
    active = t90(38.0, 0.0) / t90(19.0, 0.0)
    assert bound < active < bound * 1.1
    mixed = t90(38.0, 19.0) / t90(19.0, 19.0)
    assert mixed > active + 0.1


def test_config_validation():
    with pytest.raises(ValueError, match="rank"):
        EXPERIMENT.run(Config(rank=0), RunContext(seed=0))
    with pytest.raises(ValueError, match=r"fast\.n_iters"):
        EXPERIMENT.run(Config(fast=FastConfig(n_iters=1)), RunContext(seed=0))


def test_only_criterion_1_sets_aside_points_near_the_line():
    active, lazy = _pt(-2.0, 2.0), _pt(-1.4, 2.7, min_test_error=0.9, stable_rank_at_min=6.0)
    near = _pt(-1.0, 1.9, stable_rank_at_min=5.0, t90_topk=25, t90_next=30)  # 0.07 from the line
    assert near.region == "active" and abs(near.line_distance) < 0.15
    assert claims.active_beats_lazy(_fake([active, lazy, near])).measured["n_active"] == 1
    # criteria 2 and 4 use the effective lines instead (σ²w = 63 is above both cuts)
    check2 = claims.stable_rank_by_region(_fake([active, lazy, near]))
    assert check2.verdict == "pass" and check2.measured["n_band"] == 1
    assert claims.topk_converges_first(_fake([active, near])).measured["n_runs"] == 1


def test_effective_cuts_follow_the_margin():
    """Active for criterion 2 iff σ²w < s_K(A*)·d^(−√2·0.15) (= s_K/2.66 at d = 100); for
    criterion 4 iff σ²w < s_{K+1}(Y)·d^(−√2·0.15)."""
    s = _fake([]).summary
    assert 100 ** (math.sqrt(2) * 0.15) == pytest.approx(2.6562, rel=1e-4)
    assert claims._rank_cut(s) == pytest.approx(36.0 / 2.6562, rel=1e-4)
    assert claims._topk_cut(s, s.grid_target, 100) == pytest.approx(19.0 / 2.6562, rel=1e-4)


@pytest.mark.parametrize("cls", ["gram", "factors"])
def test_per_member_update_orders_match_single_order_runs(cls):
    """One batch with a sequential and a simultaneous member equals the two single-order runs
    (float64), for GramGD and FactorGD."""
    g = torch.Generator().manual_seed(5)
    d, w, n = 3, 9, 12
    w1 = 0.4 * torch.randn(w, d, generator=g, **F64)
    w2 = 0.4 * torch.randn(d, w, generator=g, **F64)
    y = torch.randn(d, d, generator=g, **F64)

    def make(e):
        if cls == "gram":
            stats = (w2 @ w1, w2 @ w2.T, w1.T @ w1)
            return GramState(*(x[None].expand(e, d, d).clone() for x in stats))
        return FactorState(w1[None].expand(e, w, d).clone(), w2[None].expand(e, d, w).clone())

    def opt(update, e):
        eta = torch.full((e, 1, 1), 0.04, **F64)
        if cls == "gram":
            return lambda p: GramGD(p, eta=eta, update=update)
        return lambda p: FactorGD(p, y=y, eta=eta, update=update)

    both = make(2)
    train(both, _half_sse(y), optimizer=opt(("sequential", "simultaneous"), 2), steps=n)
    for i, update in enumerate(("sequential", "simultaneous")):
        one = make(1)
        train(one, _half_sse(y), optimizer=opt(update, 1), steps=n)
        for x, x1 in zip(both.parameters(), one.parameters()):
            torch.testing.assert_close(x.detach()[i], x1.detach()[0], rtol=1e-12, atol=1e-14)
    a = both.product().detach()
    assert (a[0] - a[1]).abs().max() > 1e-6  # the two orders differ
    with pytest.raises(ValueError, match="one update order per member"):  # 3 names, 2 members
        train(make(2), _half_sse(y), optimizer=opt(("sequential",) * 3, 2), steps=1)


def test_twin_gap_equals_a_simultaneous_run_and_leaves_the_main_run_alone():
    """The simultaneous twin's gap is the gap of a separate simultaneous run from the same init,
    and adding the twin does not change the sequential run's trajectories."""
    prob = make_problem(8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pts = [Point.make(gs, 1.8, 8, prob.target_op, 5.0) for gs in (-1.5, -1.1)]

    def sim(**kw):
        st = SimSettings(n_iters=30, **kw)
        return simulate(pts, prob, st, rng=np.random.default_rng(2), generator=torch.Generator())

    twin = sim(gd_update="sequential", twin_update="simultaneous")
    seq = sim(gd_update="sequential")
    simul = sim(gd_update="simultaneous")
    for t, s1, s2 in zip(twin, seq, simul):
        for key in ("test", "gap", "sv"):
            np.testing.assert_allclose(t[key], s1[key], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(t["twin_gap"], s2["gap"], rtol=1e-10, atol=1e-14)
        np.testing.assert_array_equal(s1["twin_gap"], s1["gap"])  # no twin: the main gap
        assert not t["twin_diverged"]
        assert np.abs(t["twin_gap"] - t["gap"]).max() > 1e-8


def test_run_honours_the_context_device(monkeypatch):
    """The problem (and so every state and the SC iterate) is made on ctx.device."""
    import rankscope.experiments.linear.mixed_dynamics as md

    seen = []

    def spy(*args, **kw):
        prob = make_problem(*args, **kw)
        seen.append((kw.get("device"), prob.target.device, prob.observed.device))
        return prob

    monkeypatch.setattr(md, "make_problem", spy)
    cfg = Config(d=8, rank=2, gamma_sigma2=(-1.5,), gamma_w=(1.8,), n_iters=3,
                 fast=FastConfig(d=8, n_iters=3))  # fmt: skip
    dev = torch.device("cpu")
    result = EXPERIMENT.run(cfg, RunContext(seed=0, device=dev))
    assert [x[0] for x in seen] == [dev, dev]
    assert all(t == dev and o == dev for _, t, o in seen)
    assert result.summary.twin_update == "simultaneous"
