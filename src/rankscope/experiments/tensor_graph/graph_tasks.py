"""Pieces of ``gnn-walk-index``: exact walk-index checks, separation-rank grids, GCN training."""

from __future__ import annotations

import numpy as np
import torch

from rankscope.experiments.tensor_graph.data import cluster_edges, graph_pair_features
from rankscope.metrics.graph import (
    adjacency_matrix,
    as_edge_array,
    vertex_walk_indices,
    walk_index,
)
from rankscope.models.gnn import DenseGCN, normalized_adjacency
from rankscope.records import RecordLog
from rankscope.sparsify import (
    one_wis_removal_order,
    removal_order,
    wis_removal_order,
    wis_removal_order_naive,
)
from rankscope.train import train

__all__ = [
    "FIGURE_EDGES",
    "dcsbm_graph",
    "gnn0_summary",
    "gnn1_grid_ranks",
    "kept_edge_stats",
    "seeded_wis_order",
    "sparse_normalized_adjacency",
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
    """GNN-0: unit walk indices, 1-WIS vs (L−1)-WIS at L = 2, fast vs naive 2-WIS order.

    ``cfg``: graphs, nodes, p (random G(nodes, p) graphs drawn from ``rng``).
    """
    agree = same_order = 0
    n = cfg.nodes
    for _ in range(cfg.graphs):
        upper = np.triu(rng.random((n, n)) < cfg.p, k=1)
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
        "graphs": cfg.graphs,
        "one_wis_equal": int(agree),
        "fast_equals_naive": int(same_order),
    }


GF_PRIME = 2_147_483_647  # 2^31 − 1: residues < 2^31, so a product of two fits in int64


def _mulmod(a: np.ndarray, b) -> np.ndarray:
    return (a * b) % GF_PRIME


def product_gnn_mod_p(x: np.ndarray, weights, out: np.ndarray, edges, n: int) -> np.ndarray:
    """Graph output of the product-aggregation GNN (``ProductGNN``, target None) over GF(p).

    x (B, n, D_x) residues; ``weights`` W^{(1)} (D_h, D_x), W^{(l)} (D_h, D_h); ``out`` (1, D_h).
    h^{(l,i)} = ⊙_{j ∈ N(i) ∪ {i}} W^{(l)} h^{(l−1,j)}, output W^{(o)} ⊙_i h^{(L,i)}; every
    operation is reduced mod p = ``GF_PRIME``, so this is f of the integer network, mod p.
    """
    adj = adjacency_matrix(edges, n).astype(bool) | np.eye(n, dtype=bool)
    h = np.ascontiguousarray(np.moveaxis(np.asarray(x, np.int64) % GF_PRIME, 1, 0))  # (n, B, D)
    for w in weights:
        w = np.asarray(w, np.int64) % GF_PRIME
        msg = np.zeros((*h.shape[:2], w.shape[0]), np.int64)
        for k in range(w.shape[1]):
            msg = (msg + _mulmod(h[:, :, k : k + 1], w[:, k])) % GF_PRIME
        h = np.ones_like(msg)
        for v in range(n):
            for u in np.flatnonzero(adj[v]):
                h[v] = _mulmod(h[v], msg[u])
    pooled = h[0]
    for v in range(1, n):
        pooled = _mulmod(pooled, h[v])
    o = np.asarray(out, np.int64) % GF_PRIME
    res = np.zeros(pooled.shape[0], np.int64)
    for k in range(o.shape[1]):
        res = (res + _mulmod(pooled[:, k], o[0, k])) % GF_PRIME
    return res


def rank_mod_p(g: np.ndarray) -> int:
    """Rank of an integer matrix over GF(p), p = ``GF_PRIME`` (Gaussian elimination, exact).

    rank over GF(p) ≤ rank over Q: an r×r minor that is nonzero mod p is a nonzero integer.
    """
    g = np.array(g, dtype=np.int64) % GF_PRIME
    rows, cols = g.shape
    r = 0
    for c in range(cols):
        if r == rows:
            break
        nz = np.flatnonzero(g[r:, c])
        if nz.size == 0:
            continue
        piv = r + int(nz[0])
        if piv != r:
            g[[r, piv]] = g[[piv, r]]
        g[r, c:] = _mulmod(g[r, c:], pow(int(g[r, c]), GF_PRIME - 2, GF_PRIME))
        f = g[r + 1 :, c]
        if f.any():
            g[r + 1 :, c:] = (g[r + 1 :, c:] - _mulmod(f[:, None], g[r, c:][None])) % GF_PRIME
        r += 1
    return r


def grid_rank_mod_p(weights, out, subset, t_in: np.ndarray, t_out: np.ndarray) -> int:
    """Exact rank over GF(p) of G_pq = f(x_I = t_in[p], x_Iᶜ = t_out[q]) on the path of 6."""
    subset = [int(i) for i in subset]
    rest = [i for i in range(6) if i not in subset]
    a, b = t_in.shape[0], t_out.shape[0]
    x = np.zeros((a, b, 6, t_in.shape[2]), np.int64)
    x[:, :, subset] = t_in[:, None]
    x[:, :, rest] = t_out[None, :]
    g = product_gnn_mod_p(x.reshape(a * b, 6, -1), weights, out, PATH6, 6).reshape(a, b)
    return rank_mod_p(g)


def gnn1_grid_ranks(cfg, rng: np.random.Generator) -> list[dict]:
    """GNN-1: exact template-grid ranks of a product GNN on a path of 6, alternating vs
    contiguous I.

    ``cfg``: depths, templates (grid side per depth), hidden (D_x = D_h). Weights and template
    entries are integers drawn uniformly from [0, p), p = 2^31 − 1; the grid is computed and
    ranked exactly over GF(p). rank_p(G) ≤ rank_Q(G) ≤ sep(f; I) for this integer network, and
    for the polynomial r×r minor of degree ≤ deg, rank_p reaches the generic rank with
    probability ≥ 1 − deg/p (Schwartz–Zippel). ``saturated``: the contiguous rank reached the
    grid side, so the grid cannot tell the two partitions apart.
    """
    if len(cfg.templates) != len(cfg.depths):
        raise ValueError(f"templates {cfg.templates} needs one grid side per depth {cfg.depths}")
    d = cfg.hidden
    rows = []
    for depth, side in zip(cfg.depths, cfg.templates):
        t_in = rng.integers(0, GF_PRIME, (side, 3, d))
        t_out = rng.integers(0, GF_PRIME, (side, 3, d))
        weights = [rng.integers(0, GF_PRIME, (d, d)) for _ in range(depth)]
        out = rng.integers(0, GF_PRIME, (1, d))
        row = {"depth": depth, "side": side}
        for name, subset in (("alternating", [0, 2, 4]), ("contiguous", [0, 1, 2])):
            row[name] = grid_rank_mod_p(weights, out, subset, t_in, t_out)
            row[f"wi_{name}"] = int(walk_index(PATH6, 6, subset, depth - 1))
        rows.append(row)
    return rows


def _bce_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float(((logits > 0).float() == y).double().mean())


def train_same_class_graph(
    images,
    labels,
    train_pairs,
    test_pairs,
    variant: str,
    partition: str,
    cfg,
    depth: int,
    gen: torch.Generator,
    log: RecordLog,
    device: torch.device | None = None,
) -> dict:
    """GNN-2: dense GCN on IsSameClass graphs (two 4-vertex clusters + a bridge).

    ``cfg``: width, epochs, lr. Full-batch Adam through :func:`train`; the BCE loss is logged
    every 50 epochs as ``gnn2_train_loss``.
    """
    device = torch.device("cpu") if device is None else device
    edges = cluster_edges(4, variant)
    a_hat = normalized_adjacency(torch.from_numpy(adjacency_matrix(edges, 8)).float()).to(device)
    x_tr = torch.from_numpy(graph_pair_features(images, train_pairs, partition)).to(device)
    x_te = torch.from_numpy(graph_pair_features(images, test_pairs, partition)).to(device)
    y_tr = torch.from_numpy(labels[train_pairs[:, 0]] == labels[train_pairs[:, 1]]).float()
    y_te = torch.from_numpy(labels[test_pairs[:, 0]] == labels[test_pairs[:, 1]]).float()
    y_tr, y_te = y_tr.to(device), y_te.to(device)
    model = DenseGCN(16, cfg.width, depth, 1, generator=gen).to(device)
    bce = torch.nn.BCEWithLogitsLoss()
    label = f"{variant},{partition}"

    def log_loss(state) -> None:
        state.log.log("gnn2_train_loss", state.loss, step=state.step, layer=label)

    train(
        model,
        lambda m: bce(m(x_tr, a_hat)[:, 0], y_tr),
        optimizer="adam",
        lr=cfg.lr,
        steps=cfg.epochs,
        log_at=range(0, cfg.epochs, 50),
        callbacks=[log_loss],
        log=log,
    )
    with torch.no_grad():
        test_acc = _bce_accuracy(model(x_te, a_hat)[:, 0], y_te)
        train_acc = _bce_accuracy(model(x_tr, a_hat)[:, 0], y_tr)
    log.log("gnn2_test_accuracy", test_acc, step=cfg.epochs, layer=label)
    image1 = [0, 1, 2, 3] if partition == "low_walk" else [0, 2, 5, 7]
    return {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "walk_index": int(walk_index(edges, 8, image1, depth - 1)),
    }


def sparse_normalized_adjacency(edges, num_nodes: int) -> torch.Tensor:
    """Â = D^{−1/2}(A + I)D^{−1/2} as a sparse COO float32 tensor (n, n), self-loops added; equal
    to :func:`rankscope.models.gnn.normalized_adjacency` of the dense adjacency."""
    e = as_edge_array(edges, num_nodes)
    loops = np.arange(num_nodes, dtype=np.int64)
    rows = np.concatenate([e[:, 0], e[:, 1], loops])
    cols = np.concatenate([e[:, 1], e[:, 0], loops])
    deg = np.bincount(rows, minlength=num_nodes).astype(np.float64)  # degree + 1 (self-loop)
    vals = 1.0 / np.sqrt(deg[rows] * deg[cols])
    idx = torch.from_numpy(np.stack([rows, cols]))
    a = torch.sparse_coo_tensor(
        idx, torch.from_numpy(vals).float(), (num_nodes, num_nodes), check_invariants=True
    )
    return a.coalesce()


class _BestValidation:
    """Callback after every update: test accuracy (%) at the best validation accuracy so far."""

    def __init__(self, feats, a_hat, y, va, te) -> None:
        self.feats, self.a_hat, self.y, self.va, self.te = feats, a_hat, y, va, te
        self.best_val, self.best_test = -1.0, float("nan")

    def __call__(self, state) -> None:
        with torch.no_grad():
            pred = state.model(self.feats, self.a_hat).argmax(1)
            val = float((pred[self.va] == self.y[self.va]).float().mean())
            if val > self.best_val:
                test = (pred[self.te] == self.y[self.te]).double().mean()
                self.best_val, self.best_test = val, 100.0 * float(test)


def sparsification_accuracy(
    edges, removed, feats, labels, split, cfg, depth: int, gen, device=None
) -> float:
    """GNN-3: test accuracy (%) at the best validation epoch of a GCN on the kept edges.

    ``split``: a permutation of the vertices, cut 60/20/20 into train/validation/test. Â is a
    sparse tensor (:func:`sparse_normalized_adjacency`), so the cost is linear in the edges.
    ``cfg``: width, epochs, lr, weight_decay. Full-batch Adam through :func:`train`; torch's
    ``weight_decay`` λ (on every parameter) is the explicit penalty l2 = λ/2 on all parameters.
    """
    device = torch.device("cpu") if device is None else device
    n = labels.size
    gone = {tuple(e) for e in np.asarray(removed).tolist()}
    kept = [e for e in np.asarray(edges).tolist() if tuple(e) not in gone]
    a_hat = sparse_normalized_adjacency(kept, n).to(device)
    y = torch.from_numpy(labels).to(device)
    feats = feats.to(device)
    tr, va, te = np.split(split, [int(0.6 * n), int(0.8 * n)])
    model = DenseGCN(
        feats.shape[1],
        cfg.width,
        depth,
        int(labels.max()) + 1,
        readout="none",
        generator=gen,
    ).to(device)
    best = _BestValidation(feats, a_hat, y, va, te)
    train(
        model,
        lambda m: torch.nn.functional.cross_entropy(m(feats, a_hat)[tr], y[tr]),
        optimizer="adam",
        lr=cfg.lr,
        steps=cfg.epochs,
        l2=cfg.weight_decay / 2,
        l2_params="all",
        log_at=range(1, cfg.epochs + 1),
        callbacks=[best],
    )
    return best.best_test


def dcsbm_graph(
    sizes, mean_degree: float, homophily: float, exponent: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Degree-corrected SBM with power-law degree weights: (edges (E, 2), u < v; labels (n,)).

    Vertices are numbered by class (labels 0,0,…,1,1,…). Each vertex gets a weight
    θ_i = (1 − U_i)^{−1/(exponent − 1)} (Pareto, density ∝ θ^{−exponent} on θ ≥ 1), rescaled to
    mean 1 within its class, and edge {i, j} is present independently with probability
    min(1, θ_i θ_j ω), ω = mean_degree·homophily / n_c inside a class and
    mean_degree·(1 − homophily) / (n − n_c) across, so the expected degree of i is about
    θ_i·mean_degree and about ``homophily`` of the edges join same-class vertices (the cap at 1
    lowers both slightly for hub pairs). A heavy-tailed stand-in for citation graphs (Cora:
    mean degree 3.9, edge homophily 0.81).
    """
    sizes = tuple(int(c) for c in sizes)
    if len(sizes) < 2 or len(set(sizes)) != 1 or sizes[0] < 2:
        raise ValueError(f"sizes must be >= 2 equal class sizes >= 2, got {sizes}")
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"homophily must be in [0, 1], got {homophily}")
    if not exponent > 2.0:
        raise ValueError(f"exponent must be > 2 (a finite mean degree), got {exponent}")
    if not mean_degree > 0:
        raise ValueError(f"mean_degree must be > 0, got {mean_degree}")
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n, nc = labels.size, sizes[0]
    theta = (1.0 - rng.random(n)) ** (-1.0 / (exponent - 1.0))
    theta /= np.repeat(theta.reshape(len(sizes), nc).mean(axis=1), nc)
    same = labels[:, None] == labels[None, :]
    omega = np.where(same, mean_degree * homophily / nc, mean_degree * (1 - homophily) / (n - nc))
    prob = np.minimum(1.0, theta[:, None] * theta[None, :] * omega)
    upper = np.triu(rng.random((n, n)) < prob, k=1)
    return np.argwhere(upper).astype(np.int64), labels


def seeded_wis_order(
    method: str, edges, num_nodes: int, num_remove: int, rng: np.random.Generator
) -> np.ndarray:
    """A WIS removal order (``1-wis`` or ``2-wis``) whose ties are broken by ``rng``.

    :func:`rankscope.sparsify.removal_order` sends ties to the lowest edge in canonical
    (u < v, sorted) order, so its result depends on how the vertices are numbered; on a graph
    numbered by class it strips intra-class edges first. Here the vertices are renumbered by a
    permutation drawn from ``rng``, the order is computed on the renumbered graph and mapped
    back: the tie-break is the lowest edge of a random numbering, and the distribution of the
    order does not depend on the input numbering (the official ``EfficientOneWalkIndex
    Sparsifier`` takes the first tied edge in the data set's edge order). Rows are canonical.
    """
    if method not in ("1-wis", "2-wis"):
        raise ValueError(f"method must be '1-wis' or '2-wis', got {method!r}")
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    perm = rng.permutation(num_nodes)
    order = removal_order(method, perm[e], num_nodes, num_remove=num_remove)
    return np.sort(np.argsort(perm)[order], axis=1).reshape(-1, 2)


def kept_edge_stats(edges, removed, labels: np.ndarray) -> tuple[float, float]:
    """(share of kept edges joining same-class vertices, share of vertices with no kept edge)."""
    gone = {tuple(e) for e in np.asarray(removed).reshape(-1, 2).tolist()}
    kept = np.array([e for e in np.asarray(edges).tolist() if tuple(e) not in gone], np.int64)
    kept = kept.reshape(-1, 2)
    same = float(np.mean(labels[kept[:, 0]] == labels[kept[:, 1]])) if len(kept) else float("nan")
    deg = np.bincount(kept.ravel(), minlength=labels.size)
    return same, float(np.mean(deg == 0))
