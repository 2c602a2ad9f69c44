"""Neural-collapse statistics: by hand on a tiny set, streaming == one-shot, bad labels (§14)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from _metrics_helpers import gen
from torch.testing import assert_close

from rankscope.metrics import (
    ClassStatsAccumulator,
    cdnv,
    nc1,
    nc2_equinorm,
    nc2_etf_error,
    nc3,
    nc4,
    tcv1,
    tcv2,
)

F64 = torch.float64

# Tiny set in 2-D: class 0 at (±1, 0) + (2, 0); class 1 at (0, ±1) + (0, 2); N = 4, K = 2.
H = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 1.0]], dtype=F64)
Y = torch.tensor([0, 0, 1, 1])


def test_nc1_and_friends_by_hand():
    # μ0 = (2, 0), μ1 = (0, 2), μ_G = (1, 1).
    # Σ_W = (1/4)·[(1,0)(1,0)ᵀ·2 + (0,1)(0,1)ᵀ·2] = diag(1/2, 1/2).
    # Σ_B = (1/2)·[(1,−1)(1,−1)ᵀ + (−1,1)(−1,1)ᵀ] = [[1, −1], [−1, 1]]: eigenvalue 2 on (1,−1)/√2.
    # tr(Σ_W Σ_B^†) = (1/2)/2 = 1/4, NC1 = (1/K)·1/4 = 1/8; quotient = 1/2.
    assert_close(nc1(H, Y), torch.tensor(0.125, dtype=F64))
    assert_close(nc1(H, Y, variant="svd"), torch.tensor(0.125, dtype=F64))
    assert_close(nc1(H, Y, variant="quotient"), torch.tensor(0.5, dtype=F64))
    assert_close(tcv1(H, Y), torch.tensor(1.0, dtype=F64))  # every point is 1 from its mean
    assert_close(tcv2(H, Y), torch.tensor(1.0, dtype=F64))  # sqrt(tr Σ_W)
    # Var_c = 1, ‖μ0 − μ1‖² = 8: CDNV = (1 + 1)/(2·8) = 1/8
    assert_close(cdnv(H, Y), torch.tensor(0.125, dtype=F64))
    # two centred means ±(1, −1): G = [[2, −2], [−2, 2]] is exactly the K = 2 simplex ETF
    assert_close(nc2_etf_error(H, Y), torch.tensor(0.0, dtype=F64), atol=1e-12, rtol=0)
    assert_close(nc2_equinorm(H, Y), torch.tensor(0.0, dtype=F64), atol=1e-12, rtol=0)


def _reference(h: np.ndarray, y: np.ndarray, k: int) -> dict[str, float]:
    """A direct numpy transcription of definitions §14 (Papyan et al.'s NC1 with pinv)."""
    mu = np.stack([h[y == c].mean(0) for c in range(k)])
    mg = h.mean(0)
    hm = h - mu[y]
    sw = hm.T @ hm / len(h)
    sb = (mu - mg).T @ (mu - mg) / k
    var = np.array([((h[y == c] - mu[c]) ** 2).sum(1).mean() for c in range(k)])
    pairs = list(itertools.combinations(range(k), 2))
    cd = np.mean([(var[a] + var[b]) / (2 * ((mu[a] - mu[b]) ** 2).sum()) for a, b in pairs])
    g = (mu - mg) @ (mu - mg).T
    etf = (np.eye(k) - 1 / k) / math.sqrt(k - 1)
    return {
        "nc1": float(np.trace(sw @ np.linalg.pinv(sb)) / k),
        "tcv1": float(np.linalg.norm(hm, axis=1).mean()),
        "tcv2": float(np.sqrt(np.trace(sw))),
        "cdnv": float(cd),
        "etf": float(np.linalg.norm(g / np.linalg.norm(g) - etf)),
    }


def _labelled(n=90, d=6, k=4, seed=0):
    g = gen(seed)
    y = torch.arange(n) % k
    means = 4 * torch.randn(k, d, generator=g, dtype=F64) + 10.0
    return torch.randn(n, d, generator=g, dtype=F64) + means[y], y


def test_one_shot_matches_numpy_reference():
    h, y = _labelled()
    ref = _reference(h.numpy(), y.numpy(), 4)
    assert math.isclose(float(nc1(h, y)), ref["nc1"], rel_tol=1e-10)
    assert math.isclose(float(tcv1(h, y)), ref["tcv1"], rel_tol=1e-12)
    assert math.isclose(float(tcv2(h, y)), ref["tcv2"], rel_tol=1e-12)
    assert math.isclose(float(cdnv(h, y)), ref["cdnv"], rel_tol=1e-12)
    assert math.isclose(float(nc2_etf_error(h, y)), ref["etf"], rel_tol=1e-10)


def test_streaming_equals_one_shot_including_merge():
    h, y = _labelled(seed=1)
    batches = [(h[i : i + 13], y[i : i + 13]) for i in range(0, 90, 13)]
    a, b = ClassStatsAccumulator(4), ClassStatsAccumulator(4)
    for i, (hb, yb) in enumerate(batches):
        (a if i % 2 else b).update(hb.float() if i == 3 else hb, yb)
    b.update(h[:0], y[:0])
    stream = a.merge(b)
    one = ClassStatsAccumulator(4).update(h, y)
    h_used = torch.cat([hb.float().double() if i == 3 else hb for i, (hb, _) in enumerate(batches)])
    for fn in (nc1, tcv2, cdnv, nc2_etf_error, nc2_equinorm):
        assert_close(fn(stream), fn(h_used, y), rtol=1e-10, atol=1e-12)
    assert_close(nc1(stream, variant="quotient"), nc1(one, variant="quotient"), rtol=1e-6, atol=0)
    assert_close(tcv1(stream, batches=batches), tcv1(h, y), rtol=1e-6, atol=0)
    assert_close(stream.within_covariance(), one.within_covariance(), rtol=1e-6, atol=1e-9)


def test_nc1_pinv_is_unstable_when_means_are_nearly_degenerate():
    h, y = _labelled(k=3, seed=2)
    means = torch.stack([h[y == c].mean(0) for c in range(3)])
    # squash the class means onto a line (plus a tiny offset) while keeping the noise
    line = means[0] + torch.linspace(0, 1, 3, dtype=F64)[:, None] * (means[1] - means[0])
    squashed = h - means[y] + line[y] + 1e-6 * torch.randn(3, 6, generator=gen(3), dtype=F64)[y]
    assert nc1(squashed, y) > 1e3 * nc1(squashed, y, variant="quotient")
    assert tcv2(squashed, y) < 2 * tcv2(h, y)  # the within-class spread did not change


def test_nc3_nc4_with_an_ncc_classifier():
    h, y = _labelled(seed=4)
    st = ClassStatsAccumulator(4).update(h, y)
    mu, mg = st.class_means(), st.global_mean()
    w = mu - mg  # a classifier aligned with the centred means: NC3 = 0
    assert_close(nc3(h, y, weight=w), torch.tensor(0.0, dtype=F64), atol=1e-12, rtol=0)
    # NCC as a linear rule: argmin ‖h − μ_c‖² = argmax (μ_cᵀh − ‖μ_c‖²/2)
    b = -(mu**2).sum(1) / 2
    assert float(nc4(h, y, weight=mu, bias=b)) == 0.0
    assert float(nc4(st, weight=mu, bias=b, batches=[(h, y)])) == 0.0
    assert float(nc4(h, y, weight=-mu)) > 0.5
    with pytest.raises(ValueError, match=r"shape \(K, d\) = \(4, 6\), got \(3, 6\)"):
        nc3(h, y, weight=w[:3])


def test_global_mean_variants():
    h = torch.cat([H, H[:2]])  # class 0 has twice as many samples
    y = torch.cat([Y, Y[:2]])
    st = ClassStatsAccumulator(2).update(h, y)
    assert_close(st.global_mean("class_balanced"), torch.tensor([1.0, 1.0], dtype=F64))
    assert_close(st.global_mean("sample"), torch.tensor([8 / 6, 4 / 6], dtype=F64))
    with pytest.raises(ValueError, match="unknown global_mean 'median'"):
        st.global_mean("median")


def test_bad_labels_raise_clear_errors():
    with pytest.raises(ValueError, match=r"got values in \[0, 5\]"):
        nc1(H, torch.tensor([0, 1, 5, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"got values in \[-1, 1\]"):
        nc1(H, torch.tensor([0, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"at least 2 classes.*1 distinct"):
        nc1(H, torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) = \(4,\).*got \(3,\)"):
        tcv2(H, Y[:3])
    with pytest.raises(TypeError, match=r"integer tensor, got dtype torch\.float32"):
        cdnv(H, Y.float())
    with pytest.raises(ValueError, match=r"shape \(N, d\), got \(4,\)"):
        nc1(H[:, 0], Y)
    acc = ClassStatsAccumulator(3).update(H, Y)
    with pytest.raises(ValueError, match=r"num_classes=3"):
        acc.update(H, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="batches="):
        tcv1(acc)
    with pytest.raises(ValueError, match=r"labels \[2\] never seen in the first pass"):
        tcv1(acc, batches=[(H, torch.tensor([0, 1, 2, 2]))])
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        ClassStatsAccumulator(1)
    with pytest.raises(ValueError, match="at least 2 classes with samples"):
        nc1(ClassStatsAccumulator(3).update(H[:2], Y[:2]))
