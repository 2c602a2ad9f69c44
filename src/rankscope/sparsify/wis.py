"""Walk Index Sparsification: (L−1)-WIS (Algorithm 1) and the degree-based 1-WIS (Algorithm 2).

Razin, Verbin, Cohen, arXiv:2211.16494; official code ``noamrazin/gnn_interactions``
(``WalkIndexSparsifier``, ``EfficientOneWalkIndexSparsifier``). Edges are undirected; removing an
edge removes both directions. The per-vertex tuple after removing e is

    s(e)_t = WI_{L−1,t}({t}) in G∖e = (A'^L)_{tt}·[t has a neighbour in G∖e]

(see :func:`rankscope.metrics.graph.vertex_walk_indices`), and (L−1)-WIS removes the edge whose
ascending-sorted s(e) is lexicographically largest. Ties go to the lowest edge in the canonical
sorted edge order (both in the fast and in the naive implementation).

Speed. The official code recomputes A'^{L−1} by dense matrix powers for every candidate edge.
Here every candidate is evaluated at once from the powers of the current A: with
Δ = e_u e_vᵀ + e_v e_uᵀ, A'^k = A^k − Σ_{m<k} A'^m Δ A^{k−1−m}, so the two columns
g_k = A'^k[:, (u, v)] follow from a 2×2 recursion and the new diagonal is
diag(A^L) − Σ_m g_m ⊙ A^{L−1−m}[(v, u), :]. That is O(L²·n) per candidate instead of O(n³·L),
in exact integer arithmetic (float64 below 2^53, else int64, else Python ints).
"""

from __future__ import annotations

import numpy as np

from rankscope.metrics.graph import adjacency_matrix, as_edge_array, exact_dtype

__all__ = [
    "one_wis_removal_order",
    "wis_removal_order",
    "wis_removal_order_naive",
]

_BATCH_ELEMENTS = 1 << 22  # candidates × gathered vertices per batch (≈ 32 MB per array)


class _WalkState:
    """The current A (with self-loops), its powers A^0..A^{p−1} and diag(A^p), p = L.

    Removing {u, v} changes diag(A^p)_t only for t within distance r = ⌊(p−1)/2⌋ of {u, v}
    (a closed walk of length p through the edge needs 2·dist + 1 ≤ p), and the degree only at
    u and v, so each candidate is evaluated on that ball T_e alone. All formulas are pointwise
    in t; the m = 0 term uses g_0 = (e_u, e_v), i.e. the masks [t = u], [t = v].
    """

    def __init__(self, edges: np.ndarray, num_nodes: int, p: int):
        a = adjacency_matrix(edges, num_nodes)
        row = int(a.sum(axis=1).max()) if num_nodes else 1
        self.dtype = exact_dtype(max(num_nodes, 1) * row**p)
        self.p, self.n, self.r = p, num_nodes, (p - 1) // 2
        self.a = a.astype(self.dtype)
        self.deg = a.sum(axis=1) - 1  # neighbours other than itself
        self.powers = [np.eye(num_nodes, dtype=np.int64).astype(self.dtype)]
        for _ in range(1, p):
            self.powers.append(self.powers[-1] @ self.a)
        self.closed = (self.powers[-1] * self.a).sum(axis=0)  # diag(A^p), A symmetric
        self._balls: tuple[np.ndarray, np.ndarray] | None = None

    def tuple(self) -> np.ndarray:
        return np.where(self.deg > 0, self.closed, 0).astype(self.dtype)

    def columns(self, us, vs, t) -> list:
        """g_k(t) = (A'^k[t, u], A'^k[t, v]) for 1 ≤ k < p at the gathered vertices t (c, w).

        Entry 0 is None (g_0 = (e_u, e_v) enters through masks). With C_j[a', a] = A^j[b', a]
        (crossing the edge from a' ∈ {u, v} lands on the other end b'):
        g_k = A^k[t, (u, v)] − Σ_{m<k} g_m C_{k−1−m}.
        """
        pw, u, v = self.powers, us[:, None], vs[:, None]
        at_u, at_v = t == u, t == v
        gs: list = [None]
        for k in range(1, self.p):
            j = k - 1
            gu = pw[k][u, t] - at_u * pw[j][v, u] - at_v * pw[j][u, u]
            gv = pw[k][v, t] - at_u * pw[j][v, v] - at_v * pw[j][u, v]
            for m in range(1, k):
                j = k - 1 - m
                mu, mv = gs[m]
                gu = gu - mu * pw[j][v, u] - mv * pw[j][u, u]
                gv = gv - mu * pw[j][v, v] - mv * pw[j][u, v]
            gs.append((gu, gv))
        return gs

    def closed_after(self, us, vs, t, gs: list) -> np.ndarray:
        """diag(A'^p)[t] after removing each candidate (c, w)."""
        u, v, last = us[:, None], vs[:, None], self.powers[self.p - 1]
        out = self.closed[t] - (t == u) * last[v, u] - (t == v) * last[u, v]
        for m in range(1, self.p):
            rows = self.powers[self.p - 1 - m]
            mu, mv = gs[m]
            out = out - mu * rows[v, t] - mv * rows[u, t]
        return out

    def _vertex_balls(self) -> tuple[np.ndarray, np.ndarray]:
        """Per vertex x, the vertices within distance r, padded: (n, W) indices and validity."""
        mask = self.powers[self.r] > 0
        rows, cols = np.nonzero(mask)
        counts = mask.sum(axis=1)
        pos = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
        pad = np.repeat(np.arange(self.n)[:, None], max(int(counts.max(initial=1)), 1), axis=1)
        valid = np.zeros(pad.shape, dtype=bool)
        pad[rows, pos] = cols
        valid[rows, pos] = True
        return pad, valid

    def ball(self, us, vs) -> tuple[np.ndarray, np.ndarray]:
        """T_e = ball(u) ∪ ball(v), padded (c, w), and its validity mask (no vertex twice)."""
        pad, valid = self._vertex_balls() if self._balls is None else self._balls
        self._balls = (pad, valid)
        tu, tv = pad[us], pad[vs]
        dup = self.powers[self.r][us[:, None], tv] > 0  # already in ball(u)
        return np.concatenate([tu, tv], 1), np.concatenate([valid[us], valid[vs] & ~dup], 1)

    def candidate_diffs(self, us, vs):
        """Sparse change of the tuple for each candidate: (candidate, vertex, old, new) arrays."""
        t, valid = self.ball(us, vs)
        closed = self.closed_after(us, vs, t, self.columns(us, vs, t))
        deg = self.deg[t] - (t == us[:, None]) - (t == vs[:, None])
        new = np.where(deg > 0, closed, 0)
        old = self.tuple()[t]
        keep = valid & (new != old)
        e_idx, _ = np.nonzero(keep)
        return e_idx, t[keep], old[keep], new[keep]

    def remove(self, u: int, v: int) -> None:
        """Remove edge {u, v}; powers are updated by the same rank-2 recursion (O(p²·n²))."""
        us, vs = np.array([u]), np.array([v])
        t = np.arange(self.n)[None, :]
        gs = self.columns(us, vs, t)
        self.closed = self.closed_after(us, vs, t, gs)[0]
        e_u = np.zeros(self.n, dtype=np.int64).astype(self.dtype)
        e_v = e_u.copy()
        e_u[u] = e_v[v] = 1
        cols = [(e_u, e_v)] + [(gu[0], gv[0]) for gu, gv in gs[1:]]
        old = self.powers
        new = [old[0]]
        for k in range(1, self.p):
            upd = old[k].copy()
            for m in range(k):
                j = k - 1 - m
                for col, row in ((cols[m][0], old[j][v]), (cols[m][1], old[j][u])):
                    nz = np.flatnonzero(col)  # g_m is supported near {u, v}
                    upd[nz] -= col[nz, None] * row[None, :]
            new.append(upd)
        self.powers = new
        self.a[u, v] = self.a[v, u] = 0
        self.deg[u] -= 1
        self.deg[v] -= 1
        self._balls = None


def _best_by_sorted_tuple(num: int, e_idx, old, new) -> int:
    """Index of the candidate whose ascending-sorted tuple is lexicographically largest.

    Candidate e's tuple is the base tuple with entries ``old`` replaced by ``new`` (rows of
    ``e_idx``). Compare cumulative counts F_e(k) = #{t: s(e)_t ≤ k}: at the first value k where
    the candidates differ, the one with the smallest F wins; exact ties go to the lowest index.
    """
    vals = np.concatenate([old, new])
    sign = np.concatenate([-np.ones(old.size, np.int64), np.ones(new.size, np.int64)])
    who = np.concatenate([e_idx, e_idx])
    order = np.argsort(vals, kind="stable")
    vals, sign, who = vals[order], sign[order], who[order]
    d_f = np.zeros(num, dtype=np.int64)
    alive = np.ones(num, dtype=bool)
    if vals.size == 0:
        return 0
    starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
    ends = np.r_[starts[1:], vals.size]
    for s, e in zip(starts, ends):
        grp = who[s:e]
        if not alive[grp].any():
            continue
        np.add.at(d_f, grp, sign[s:e])
        alive &= d_f == d_f[alive].min()
        if alive.sum() == 1:
            break
    return int(np.flatnonzero(alive)[0])


def _order_by_sorted_tuple(num: int, base: np.ndarray, e_idx, t_idx, new) -> np.ndarray:
    """All candidates by descending lexicographic ascending-sorted tuple (stable on ties)."""
    rows = np.broadcast_to(base, (num, base.size)).copy()
    rows[e_idx, t_idx] = new
    rows = np.sort(rows, axis=1)
    if rows.dtype == object:
        keys = [tuple(r) for r in rows]
        return np.array(sorted(range(len(keys)), key=lambda i: keys[i], reverse=True), np.int64)
    # np.lexsort: the last key is primary; negate for descending, index last (ascending ties).
    return np.lexsort((np.arange(rows.shape[0]), *(-rows[:, ::-1].T)))


def _check_count(num_remove, total: int) -> int:
    if num_remove is None:
        return total
    if isinstance(num_remove, bool) or not isinstance(num_remove, int | np.integer):
        raise ValueError(f"num_remove must be an int or None, got {num_remove!r}")
    if not 0 <= num_remove <= total:
        raise ValueError(
            f"num_remove must be in [0, {total}] (the number of edges), got {num_remove}"
        )
    return int(num_remove)


def _check_walk_length(walk_length) -> int:
    if isinstance(walk_length, bool) or not isinstance(walk_length, int) or walk_length < 1:
        raise ValueError(f"walk_length (= L − 1) must be an int >= 1, got {walk_length!r}")
    return walk_length


def wis_removal_order(
    edges,
    num_nodes: int,
    num_remove: int | None = None,
    *,
    walk_length: int,
    chunk_size: int = 1,
    batch_elements: int = _BATCH_ELEMENTS,
) -> np.ndarray:
    """(L−1)-WIS removal order, ``walk_length`` = L − 1: the removed edges (k, 2), first to last.

    ``chunk_size`` = 1 (default) is the paper's Algorithm 1; the official code's default of 100
    recomputes the tuples once per chunk and removes the top ``chunk_size`` at once, which
    changes the order. Edges are canonicalized by :func:`rankscope.metrics.graph.as_edge_array`.
    """
    e = as_edge_array(edges, num_nodes)
    k = _check_count(num_remove, len(e))
    p = _check_walk_length(walk_length) + 1
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    state = _WalkState(e, num_nodes, p)
    remaining = e.copy()
    removed: list[np.ndarray] = []
    batch = max(1, batch_elements // max(num_nodes, 1))
    while len(removed) < k:
        parts = [
            state.candidate_diffs(remaining[i : i + batch, 0], remaining[i : i + batch, 1])
            for i in range(0, len(remaining), batch)
        ]
        offsets = range(0, len(remaining), batch)
        e_idx = np.concatenate([d[0] + off for d, off in zip(parts, offsets)])
        t_idx, old, new = (np.concatenate([d[j] for d in parts]) for j in (1, 2, 3))
        take = min(chunk_size, k - len(removed))
        if take == 1:
            picks = [_best_by_sorted_tuple(len(remaining), e_idx, old, new)]
        else:
            picks = _order_by_sorted_tuple(len(remaining), state.tuple(), e_idx, t_idx, new)[
                :take
            ].tolist()
        for i in picks:
            u, v = (int(x) for x in remaining[i])
            removed.append(remaining[i])
            state.remove(u, v)
        remaining = np.delete(remaining, picks, axis=0)
    return np.array(removed, dtype=np.int64).reshape(-1, 2)


def wis_removal_order_naive(
    edges, num_nodes: int, num_remove: int | None = None, *, walk_length: int, chunk_size: int = 1
) -> np.ndarray:
    """Reference (L−1)-WIS as in the official code: a dense A'^{L−1} per candidate edge.

    Exact (float64 BLAS while every count is below 2^53, else int64 or Python ints), and the
    choice uses Python tuple comparison, independent of
    :func:`wis_removal_order`. O(|E|·n³·log L) per removal; for tests and benchmarks.
    """
    e = as_edge_array(edges, num_nodes)
    k = _check_count(num_remove, len(e))
    ell = _check_walk_length(walk_length)
    a = adjacency_matrix(e, num_nodes)
    a = a.astype(exact_dtype(max(num_nodes, 1) * int(a.sum(axis=1).max(initial=1)) ** (ell + 1)))
    eye = np.eye(num_nodes, dtype=np.int64).astype(a.dtype)
    remaining = [tuple(int(x) for x in r) for r in e]
    removed: list[tuple[int, int]] = []
    while len(removed) < k:
        keys = []
        for u, v in remaining:
            a[u, v] = a[v, u] = 0
            w = eye
            for _ in range(ell):
                w = w @ a
            b = a - eye
            s = (w * b).sum(axis=0) + np.diagonal(w) * (b.sum(axis=0) > 0)
            keys.append(tuple(sorted(int(x) for x in s)))
            a[u, v] = a[v, u] = 1
        order = sorted(range(len(keys)), key=lambda i: (keys[i], -i), reverse=True)
        for i in order[: min(chunk_size, k - len(removed))]:
            u, v = remaining[i]
            removed.append((u, v))
            a[u, v] = a[v, u] = 0
        taken = set(removed)
        remaining = [r for r in remaining if r not in taken]
    return np.array(removed, dtype=np.int64).reshape(-1, 2)


def one_wis_removal_order(edges, num_nodes: int, num_remove: int | None = None) -> np.ndarray:
    """1-WIS (Algorithm 2): remove the edge maximizing min(deg u, deg v), ties by max(deg u, deg v).

    Remaining ties go to the lowest edge in canonical order. Degrees exclude self-loops.
    Returns the removed edges (k, 2) in removal order.
    """
    e = as_edge_array(edges, num_nodes)
    k = _check_count(num_remove, len(e))
    deg = np.bincount(e.ravel(), minlength=num_nodes).astype(np.int64)
    alive = np.ones(len(e), dtype=bool)
    out = np.empty((k, 2), dtype=np.int64)
    for step in range(k):
        du, dv = deg[e[:, 0]], deg[e[:, 1]]
        lo = np.where(alive, np.minimum(du, dv), -1)
        hi = np.where(lo == lo.max(), np.maximum(du, dv), -1)
        i = int(np.argmax(hi))
        out[step] = e[i]
        alive[i] = False
        deg[e[i]] -= 1
    return out
