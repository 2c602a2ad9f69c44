"""Engine callbacks for ranks and collapse: values equal direct computations; ensemble members
log exactly what independent runs log."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankscope.models import MLP
from rankscope.records import RecordLog
from rankscope.train import (
    LogCollapse,
    LogRanks,
    MLPEnsemble,
    cross_entropy,
    train,
)

DIMS = [6, 12, 12, 3]


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centres = torch.randn(3, DIMS[0], generator=g, dtype=torch.float64)
    x = centres[y] + 0.3 * torch.randn(n, DIMS[0], generator=g, dtype=torch.float64)
    return x, y


def _loss(net, batch):
    x, y = batch
    return cross_entropy(net(x), y)


def test_log_ranks_and_collapse_match_direct_numpy():
    x, y = _data()
    net = MLP(DIMS, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    log = RecordLog()
    train(
        net,
        _loss,
        optimizer="gd",
        lr=0.1,
        steps=5,
        data=(x, y),
        log_at=[5],
        callbacks=[LogRanks(), LogCollapse(x, y, 3)],
        log=log,
    )
    recs = log.freeze()
    for l, w in enumerate(
        net.weights if hasattr(net, "weights") else [p for p in net.parameters() if p.ndim == 2],
        start=1,
    ):
        s = np.linalg.svd(w.detach().numpy(), compute_uv=False)
        expect_gal = int((s > 1e-3 * np.sqrt((s**2).sum())).sum())
        expect_rel = int((s > 1e-2 * s[0]).sum())
        assert recs.series("rank_galanti", layer=f"W{l}")[1][-1] == expect_gal
        assert recs.series("rank_relative", layer=f"W{l}")[1][-1] == expect_rel
        np.testing.assert_allclose(
            recs.series("stable_rank", layer=f"W{l}")[1][-1], (s**2).sum() / s[0] ** 2, rtol=1e-12
        )
    # collapse of h_1 by hand (numpy): tcv2 = sqrt(tr Σ_W), quotient = tr Σ_W / tr Σ_B
    _, hs, _ = net.forward_with_hidden(x)
    h = hs[1].detach().numpy()
    yn = y.numpy()
    mus = np.stack([h[yn == c].mean(0) for c in range(3)])
    within = h - mus[yn]
    tr_w = (within**2).sum() / len(h)
    tr_b = ((mus - h.mean(0)) ** 2).sum() / 3
    np.testing.assert_allclose(recs.series("tcv2", layer="h1")[1][-1], np.sqrt(tr_w), rtol=1e-10)
    np.testing.assert_allclose(
        recs.series("tcv1", layer="h1")[1][-1], np.linalg.norm(within, axis=1).mean(), rtol=1e-10
    )
    np.testing.assert_allclose(
        recs.series("nc1_quotient", layer="h1")[1][-1], tr_w / tr_b, rtol=1e-10
    )
    assert recs.layers("nc1") == ["h1", "h2"]


def test_ensemble_members_log_what_independent_runs_log():
    x, y = _data()
    seeds, lams = [3, 4], [0.0, 1e-2]
    ens = MLPEnsemble(
        DIMS, generators=[torch.Generator().manual_seed(s) for s in seeds], dtype=torch.float64
    )
    cbs = [LogRanks(), LogCollapse(x, y, 3)]
    res = train(
        ens,
        _loss,
        optimizer="gd",
        lr=0.1,
        steps=4,
        data=(x, y),
        l2=lams,
        log_at=[0, 4],
        callbacks=cbs,
    )
    for e, (seed, lam) in enumerate(zip(seeds, lams)):
        net = MLP(DIMS, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        log = RecordLog()
        train(
            net,
            _loss,
            optimizer="gd",
            lr=0.1,
            steps=4,
            data=(x, y),
            l2=lam,
            log_at=[0, 4],
            callbacks=cbs,
            log=log,
        )
        solo, member = log.freeze(), res.logs[e].freeze()
        for name in ("rank_galanti", "stable_rank", "nc1", "tcv1"):
            for layer in solo.layers(name):
                np.testing.assert_allclose(
                    member.series(name, layer=layer)[1],
                    solo.series(name, layer=layer)[1],
                    rtol=1e-9,
                )


def test_log_collapse_rejects_mismatched_lengths():
    x, y = _data()
    with pytest.raises(ValueError, match="60 inputs but 59 labels"):
        LogCollapse(x, y[:-1], 3)
