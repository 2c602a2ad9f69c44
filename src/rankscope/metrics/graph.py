"""Walk counts and walk indices of graphs with self-loops, in exact integers (definitions §18).

A graph is given as an undirected edge list of shape (E, 2) over vertices ``0..num_nodes-1``.
Conventions (definitions §18, ``noamrazin/gnn_interactions`` ``walk_index.py``):

- self-loops are always added (A = adjacency + I, so i ∈ N(i)); self-loops in the input are
  therefore ignored;
- duplicate edges, in either direction, are merged into one undirected edge;
- an out-of-range, negative or non-integer vertex id raises ``ValueError``.

Walk counts grow like (max degree)^length, so every count is exact: float64 BLAS when the
bound n·(max row sum)^length is below 2^53 (floats hold these integers exactly), int64 below
2^62, Python integers (numpy object arrays) beyond. Nothing here prints or draws randomness.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "adjacency_matrix",
    "as_edge_array",
    "cut_boundary",
    "exact_dtype",
    "vertex_walk_indices",
    "walk_count",
    "walk_index",
    "walk_matrix",
]

_FLOAT_EXACT = 2**53
_INT64_SAFE = 2**62


def as_edge_array(edges, num_nodes: int, *, name: str = "edges") -> np.ndarray:
    """Canonical undirected edge list: (E', 2) int64, rows (u, v) with u < v, sorted, unique.

    Accepts a sequence of pairs, a numpy array or a torch tensor of shape (E, 2). Self-loops are
    dropped (they are always added), duplicates and reversed duplicates are merged.

    >>> as_edge_array([(1, 0), (0, 1), (2, 2), (1, 2)], 3).tolist()
    [[0, 1], [1, 2]]
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int | np.integer) or num_nodes < 0:
        raise ValueError(f"num_nodes must be an int >= 0, got {num_nodes!r}")
    arr = _to_numpy(edges)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        hint = " (got (2, E)? pass edges.T)" if arr.ndim == 2 and arr.shape[0] == 2 else ""
        raise ValueError(f"{name} must have shape (E, 2), got {tuple(arr.shape)}{hint}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer vertex ids, got non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer vertex ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= num_nodes)
    if bad.any():
        row = int(np.nonzero(bad.any(axis=1))[0][0])
        raise ValueError(
            f"{name} row {row} = {arr[row].tolist()} has a vertex outside [0, {num_nodes - 1}] "
            f"(num_nodes={num_nodes}); {int(bad.any(axis=1).sum())} such row(s)"
        )
    arr = np.sort(arr, axis=1)
    arr = arr[arr[:, 0] != arr[:, 1]]
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(arr, axis=0)


def _to_numpy(edges) -> np.ndarray:
    if hasattr(edges, "detach"):
        return edges.detach().cpu().numpy()
    if isinstance(edges, np.ndarray):
        return edges
    if isinstance(edges, Iterable):
        rows = [tuple(e) for e in edges]
        return np.asarray(rows) if rows else np.zeros((0, 2), dtype=np.int64)
    raise TypeError(f"edges must be an array, tensor or sequence of pairs, got {type(edges)}")


def adjacency_matrix(edges, num_nodes: int, *, self_loops: bool = True) -> np.ndarray:
    """Symmetric 0/1 adjacency (n, n) int64; with ``self_loops`` the diagonal is 1 (A + I)."""
    e = as_edge_array(edges, num_nodes)
    a = np.zeros((num_nodes, num_nodes), dtype=np.int64)
    a[e[:, 0], e[:, 1]] = 1
    a[e[:, 1], e[:, 0]] = 1
    if self_loops:
        np.fill_diagonal(a, 1)
    return a


def exact_dtype(bound: int) -> type | np.dtype:
    """The cheapest dtype that holds non-negative integers up to ``bound`` exactly."""
    if bound < _FLOAT_EXACT:
        return np.float64
    if bound < _INT64_SAFE:
        return np.int64
    return object


def _power_bound(adjacency: np.ndarray, length: int) -> int:
    """n · (max row sum)^length ≥ every sum of entries of A^length over rows (Python int)."""
    n = adjacency.shape[0]
    row = int(max((int(x) for x in adjacency.sum(axis=1)), default=0))
    return max(n, 1) * max(row, 1) ** length


def _check_square(adjacency) -> np.ndarray:
    a = np.asarray(adjacency)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square (n, n) matrix, got shape {a.shape}")
    if a.size and (a.dtype.kind not in "iuO" or (a < 0).any()):
        raise ValueError(f"adjacency must hold non-negative integers, got dtype {a.dtype}")
    return a


def walk_matrix(adjacency, length: int) -> np.ndarray:
    """A^length in exact integers: int64 when it fits, else a numpy object array of Python ints.

    ``adjacency`` is a non-negative integer (n, n) matrix (include the self-loops yourself, as
    :func:`adjacency_matrix` does). The overflow check bounds the sum of every row of A^length
    by n·(max row sum)^length before multiplying.
    """
    a = _check_square(adjacency)
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
        raise ValueError(f"length must be an int >= 0, got {length!r}")
    n = a.shape[0]
    dt = exact_dtype(_power_bound(a, int(length)))
    base = a.astype(dt)
    out = np.eye(n, dtype=np.int64).astype(dt)
    for _ in range(int(length)):
        out = out @ base
    if dt is object:
        return out
    return np.rint(out).astype(np.int64) if dt is np.float64 else out.astype(np.int64)


def walk_count(adjacency, sources, targets, length: int) -> int:
    """ρ_length(S, T) = Σ_{s∈S, t∈T} (A^length)_{st}, the number of walks from S to T (§18)."""
    w = walk_matrix(adjacency, length)
    s = np.asarray(list(sources), dtype=np.int64)
    t = np.asarray(list(targets), dtype=np.int64)
    if s.size == 0 or t.size == 0:
        return 0
    return int(sum(int(x) for x in w[np.ix_(s, t)].ravel()))


def _check_subset(subset, num_nodes: int) -> np.ndarray:
    s = np.unique(np.asarray(list(subset), dtype=np.int64))
    if s.size and (s.min() < 0 or s.max() >= num_nodes):
        raise ValueError(f"subset {s.tolist()} has vertices outside [0, {num_nodes - 1}]")
    return s


def cut_boundary(edges, num_nodes: int, subset) -> np.ndarray:
    """C_I: vertices of I with a neighbour in Iᶜ and vertices of Iᶜ with a neighbour in I (§18).

    >>> cut_boundary([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], 6, [0, 1, 2]).tolist()
    [2, 3]
    """
    e = as_edge_array(edges, num_nodes)
    inside = np.zeros(num_nodes, dtype=bool)
    inside[_check_subset(subset, num_nodes)] = True
    crossing = inside[e[:, 0]] != inside[e[:, 1]]
    return np.unique(e[crossing].ravel())


def walk_index(edges, num_nodes: int, subset, walk_length: int, *, target: int | None = None):
    """The walk index of the partition (I, Iᶜ) for a GNN of depth L = ``walk_length`` + 1.

    Graph prediction: WI_{L−1}(I) = ρ_{L−1}(C_I, V); vertex prediction with ``target`` t:
    WI_{L−1,t}(I) = ρ_{L−1}(C_I, {t}) (definitions §18, self-loops added). Returns a Python int.

    >>> walk_index([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], 6, [0, 1, 2], 2)
    18
    """
    boundary = cut_boundary(edges, num_nodes, subset)
    if target is None:
        targets = range(num_nodes)
    else:
        if not 0 <= int(target) < num_nodes:
            raise ValueError(f"target {target} is outside [0, {num_nodes - 1}]")
        targets = [int(target)]
    return walk_count(adjacency_matrix(edges, num_nodes), boundary, targets, walk_length)


def vertex_walk_indices(edges, num_nodes: int, walk_length: int) -> np.ndarray:
    """The WIS tuple: s_t = WI_{L−1,t}({t}) for every vertex t, shape (n,) (int64 or object).

    s_t = Σ_{j∈N(t)∖{t}} (A^{L−1})_{jt} + (A^{L−1})_{tt}·[t has a neighbour]; with self-loops
    this equals (A^L)_{tt} for a vertex with a neighbour and 0 for an isolated vertex
    (``WalkIndexSparsifier`` in ``noamrazin/gnn_interactions``).
    """
    a = adjacency_matrix(edges, num_nodes)
    closed = walk_matrix(a, int(walk_length) + 1)
    has_neighbour = (a.sum(axis=1) - 1) > 0
    diag = np.array([closed[i, i] for i in range(num_nodes)], dtype=closed.dtype)
    return np.where(has_neighbour, diag, 0).astype(closed.dtype)
