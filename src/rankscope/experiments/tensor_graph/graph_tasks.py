"""Pieces of ``gnn-walk-index``: exact walk-index checks, separation-rank grids, GCN training."""

from __future__ import annotations

import numpy as np
import torch

from rankscope.experiments.base import Diverged
from rankscope.experiments.tensor_graph.data import cluster_edges, graph_pair_features
from rankscope.metrics.graph import adjacency_matrix, vertex_walk_indices, walk_index
from rankscope.metrics.tensor import separation_rank_lower_bound
from rankscope.models.gnn import DenseGCN, ProductGNN, normalized_adjacency
from rankscope.records import RecordLog
from rankscope.sparsify import one_wis_removal_order, wis_removal_order, wis_removal_order_naive

__all__ = [
    "FIGURE_EDGES",
    "gnn0_summary",
    "gnn1_grid_ranks",
    "sparsification_accuracy",
    "train_same_class_graph",
]

# The 7-vertex graph of the official README figure (definitions §18): WI_2({0,1,2,3}) = 48.
FIGURE_EDGES = [(0, 2), (2, 4), (4, 6), (1, 3), (3, 5), (0, 1), (2, 5), (5, 6)]
PATH6 = [(i, i + 1) for i in range(5)]


def _tuples_agree(edges: np.ndarray, n: int, a: np.ndarray, b: np.ndarray) -> bool:
    """Sorted walk-index tuples (walk length 1) equal after every removal of orders a and b."""
    left, right = {tuple(e) for e in edges.tolist()}, {tuple(e) for e in edges.tolist()}
    for ea, eb in zip(a.tolist(), b.tolist()):
        left.discard(tuple(ea))
        right.discard(tuple(eb))
        ta = np.sort(vertex_walk_indices(sorted(left), n, 1))
        tb = np.sort(vertex_walk_indices(sorted(right), n, 1))
        if not np.array_equal(ta, tb):
            return False
    return True


def gnn0_summary(cfg, rng: np.random.Generator) -> dict:
    """GNN-0: unit walk indices, 1-WIS vs (L−1)-WIS at L = 2, fast vs naive 2-WIS order."""
    agree = same_order = 0
    n = cfg.gnn0_nodes
    for _ in range(cfg.gnn0_graphs):
        upper = np.triu(rng.random((n, n)) < cfg.gnn0_p, k=1)
        edges = np.argwhere(upper).astype(np.int64)
        k = len(edges) // 2
        one = one_wis_removal_order(edges, n, k)
        general = wis_removal_order(edges, n, k, walk_length=1)
        agree += _tuples_agree(edges, n, one, general)
        fast = wis_removal_order(edges, n, k, walk_length=2)
        same_order += bool(
            np.array_equal(fast, wis_removal_order_naive(edges, n, k, walk_length=2))
        )
    return {
        "figure_wi2": int(walk_index(FIGURE_EDGES, 7, [0, 1, 2, 3], 2)),
        "path_wi": [int(walk_index(PATH6, 6, [0, 1, 2], ell)) for ell in (0, 1, 2)],
        "graphs": cfg.gnn0_graphs,
        "one_wis_equal": int(agree),
        "fast_equals_naive": int(same_order),
    }


def gnn1_grid_ranks(cfg, gen: torch.Generator) -> list[dict]:
    """GNN-1: template-grid ranks of a product GNN on a path of 6, alternating vs contiguous I."""
    adj = torch.from_numpy(adjacency_matrix(PATH6, 6)).to(torch.float64)
    p = cfg.gnn1_templates
    t_in = 1 + cfg.gnn1_noise * torch.randn(p, 3, 3, generator=gen, dtype=torch.float64)
    t_out = 1 + cfg.gnn1_noise * torch.randn(p, 3, 3, generator=gen, dtype=torch.float64)
    rows = []
    for depth in cfg.gnn1_depths:
        model = ProductGNN(3, 3, depth, init_mean=1.0, init_std=cfg.gnn1_noise, generator=gen)
        row = {"depth": depth}

        def f(x, model=model):
            return model(x, adj)[:, 0]

        for name, subset in (("alternating", [0, 2, 4]), ("contiguous", [0, 1, 2])):
            grid = separation_rank_lower_bound(f, subset, t_in, t_out)
            row[name] = grid.rank
            row[f"wi_{name}"] = int(walk_index(PATH6, 6, subset, depth - 1))
        rows.append(row)
    return rows


def _bce_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float(((logits > 0).float() == y).double().mean())


def train_same_class_graph(
    images,
    labels,
    train,
    test,
    variant: str,
    partition: str,
    cfg,
    gen: torch.Generator,
    log: RecordLog,
) -> dict:
    """GNN-2: dense GCN on IsSameClass graphs (two 4-vertex clusters + a bridge)."""
    edges = cluster_edges(4, variant)
    a_hat = normalized_adjacency(torch.from_numpy(adjacency_matrix(edges, 8)).float())
    x_tr = torch.from_numpy(graph_pair_features(images, train, partition))
    x_te = torch.from_numpy(graph_pair_features(images, test, partition))
    y_tr = torch.from_numpy(labels[train[:, 0]] == labels[train[:, 1]]).float()
    y_te = torch.from_numpy(labels[test[:, 0]] == labels[test[:, 1]]).float()
    model = DenseGCN(16, cfg.gnn2_width, cfg.depth, 1, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.gnn2_lr)
    bce = torch.nn.BCEWithLogitsLoss()
    label = f"{variant},{partition}"
    for epoch in range(cfg.gnn2_epochs):
        opt.zero_grad()
        loss = bce(model(x_tr, a_hat)[:, 0], y_tr)
        if not torch.isfinite(loss):
            raise Diverged(epoch, f"GNN-2 loss ({label})", loss.item())
        loss.backward()
        opt.step()
        if epoch % 50 == 0:
            log.log("gnn2_train_loss", loss.item(), step=epoch, layer=label)
    with torch.no_grad():
        test_acc = _bce_accuracy(model(x_te, a_hat)[:, 0], y_te)
        train_acc = _bce_accuracy(model(x_tr, a_hat)[:, 0], y_tr)
    log.log("gnn2_test_accuracy", test_acc, step=cfg.gnn2_epochs, layer=label)
    image1 = [0, 1, 2, 3] if partition == "low_walk" else [0, 2, 5, 7]
    return {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "walk_index": int(walk_index(edges, 8, image1, cfg.depth - 1)),
    }


def sparsification_accuracy(edges, removed, feats, labels, split, cfg, gen) -> float:
    """GNN-3: test accuracy (%) at the best validation epoch of a GCN on the kept edges.

    ``split``: a permutation of the vertices, cut 60/20/20 into train/validation/test.
    """
    n = labels.size
    gone = {tuple(e) for e in np.asarray(removed).tolist()}
    kept = [e for e in np.asarray(edges).tolist() if tuple(e) not in gone]
    a_hat = normalized_adjacency(torch.from_numpy(adjacency_matrix(kept, n)).float())
    y = torch.from_numpy(labels)
    tr, va, te = np.split(split, [int(0.6 * n), int(0.8 * n)])
    model = DenseGCN(
        feats.shape[1],
        cfg.gnn3_width,
        cfg.depth,
        int(labels.max()) + 1,
        readout="none",
        generator=gen,
    )
    opt = torch.optim.Adam(model.parameters(), lr=cfg.gnn3_lr, weight_decay=cfg.gnn3_weight_decay)
    best_val, best_test = -1.0, float("nan")
    for epoch in range(cfg.gnn3_epochs):
        opt.zero_grad()
        out = model(feats, a_hat)
        loss = torch.nn.functional.cross_entropy(out[tr], y[tr])
        if not torch.isfinite(loss):
            raise Diverged(epoch, "GNN-3 loss", loss.item())
        loss.backward()
        opt.step()
        with torch.no_grad():
            pred = model(feats, a_hat).argmax(1)
            val = float((pred[va] == y[va]).float().mean())
            if val > best_val:
                best_val, best_test = val, 100.0 * float((pred[te] == y[te]).double().mean())
    return best_test
