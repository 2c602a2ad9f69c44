"""Smoke presets of the three experiments give verdicts; figures draw; data helpers behave."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rankscope.experiments.base import VERDICTS, Result, RunContext
from rankscope.experiments.registry import get_experiment
from rankscope.experiments.summary import summary_from_dict, summary_to_dict
from rankscope.experiments.tensor_graph.data import (
    cluster_edges,
    graph_pair_features,
    planted_ht_tensor,
    same_class_canvas,
    same_class_pairs,
)
from rankscope.metrics.graph import as_edge_array
from rankscope.metrics.tensor import matricize
from rankscope.report.figures.tensor_graph import FIGURES

IDS = ("tensor-factorization", "htf-locality", "gnn-walk-index")


@pytest.fixture(scope="module", params=IDS)
def smoke(request) -> tuple[str, Result]:
    exp = get_experiment(request.param)
    return request.param, exp.run(exp.preset("smoke"), RunContext(seed=0))


def test_smoke_gives_verdicts_and_json_summary(smoke):
    exp_id, result = smoke
    exp = get_experiment(exp_id)
    assert isinstance(result.summary, exp.summary_cls)
    stored = json.loads(json.dumps(summary_to_dict(result.summary)))
    assert summary_from_dict(exp.summary_cls, stored) == result.summary
    for claim in exp.claims:
        verdict = claim.check(result) if claim.check else claim.across_seeds([result])
        assert verdict.verdict in VERDICTS, claim.id
        assert verdict.measured or verdict.note, claim.id
        assert verdict.headline, claim.id


def test_smoke_exact_parts(smoke):
    exp_id, result = smoke
    s = result.summary
    if exp_id == "gnn-walk-index":
        assert s.gnn0.figure_wi2 == 48 and s.gnn0.path_wi == (2, 6, 18)
        assert s.gnn0.one_wis_equal == s.gnn0.graphs
        assert s.gnn0.fast_equals_naive == s.gnn0.graphs
    elif exp_id == "htf-locality":
        assert abs(s.igc0.additive.igc - 1) < 1e-6
        assert abs(s.igc0.multiplicative.igc - 1) < 1e-6
        assert s.igc0.multiplicative.grid_rank == 1
        assert s.igc1.receptive_field >= s.igc1.widest_canvas
    else:
        assert s.tc0.target_estimate == 1


def test_figures_draw(smoke):
    exp_id, result = smoke
    for spec in FIGURES[exp_id]:
        fig, _ = spec.draw([result])
        assert fig.axes and all(ax.get_xlabel() for ax in fig.axes), spec.name


def test_cluster_edges_variants():
    both = as_edge_array(cluster_edges(4, "two_cliques"), 8)
    released = as_edge_array(cluster_edges(4, "as_released"), 8)
    assert len(both) == 6 + 6 + 1
    assert sorted(map(tuple, released.tolist())) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (0, 4),
        (1, 2),
        (1, 3),
        (2, 3),
    ]
    with pytest.raises(ValueError, match="variant"):
        cluster_edges(4, "star")


def test_pair_layouts_and_canvas():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    pairs = same_class_pairs(labels, 10, rng)
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert same.sum() == 5 and (pairs[:, 0] != pairs[:, 1]).all()
    images = rng.random((12, 8, 8)) * 16
    low = graph_pair_features(images, pairs, "low_walk")
    high = graph_pair_features(images, pairs, "high_walk")
    first = images[pairs[:, 0]].reshape(10, 4, 16) / 16
    np.testing.assert_allclose(low[:, :4], first, rtol=1e-6)
    np.testing.assert_allclose(high[:, [0, 2, 5, 7]], first, rtol=1e-6)  # image 1 spans both
    canvas = same_class_canvas(images, pairs, 8)
    assert canvas.shape == (10, 1, 8, 24)
    np.testing.assert_allclose(canvas[:, 0, :, 16:], images[pairs[:, 1]] / 16, rtol=1e-6)
    assert not canvas[:, 0, :, 8:16].any()


def test_planted_ht_target_has_root_rank_two():
    t = planted_ht_tensor([4] * 4, (2, 2), 16.0, torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(matricize(t, [0, 1]))
    assert float(t.norm()) == pytest.approx(16.0)
    assert float(s[1] / s[0]) == pytest.approx(0.5)
    assert float(s[2]) < 1e-10
