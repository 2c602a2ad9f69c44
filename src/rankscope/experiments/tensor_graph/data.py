"""Data for the tensor and graph family: planted tensors, digits tasks, graphs. No downloads.

Everything random takes a ``rng`` (numpy Generator) or ``generator`` (torch). Digits come from
scikit-learn's bundled ``load_digits`` (1797 8×8 images), imported lazily.
"""

from __future__ import annotations

import numpy as np
import torch

from rankscope.metrics.tensor import cp_to_tensor
from rankscope.optional import require

__all__ = [
    "binarized_digits",
    "cluster_edges",
    "digits",
    "graph_pair_features",
    "planted_cp_tensor",
    "planted_ht_tensor",
    "same_class_canvas",
    "same_class_pairs",
    "sbm_graph",
]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float in [0, 16], labels (1797,) int) from scikit-learn."""
    datasets = require("sklearn.datasets", extra="digits", needed_for="the digits experiments")
    data = datasets.load_digits()
    return data.images.astype(np.float64), data.target.astype(np.int64)


def binarized_digits(threshold: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Digits as index tuples in {0, 1}^64 (pixel > ``threshold``), and labels."""
    images, labels = digits()
    return (images.reshape(len(images), -1) > threshold).astype(np.int64), labels


def planted_cp_tensor(dims, rank: int, norm: float, generator: torch.Generator) -> torch.Tensor:
    """Σ_r of rank-1 terms with N(0, 1) factors, scaled to Frobenius norm ``norm`` (float64)."""
    factors = [torch.randn(d, rank, generator=generator, dtype=torch.float64) for d in dims]
    t = cp_to_tensor(factors)
    return t * (norm / t.norm())


def planted_ht_tensor(dims, widths, norm: float, generator: torch.Generator) -> torch.Tensor:
    """Dense tensor of a random, well-conditioned HT factorization (adjacent pooling).

    Leaf factors have orthonormal columns and internal matrices are orthogonal (QR of Gaussian
    draws from ``generator``); the output weights are 1, ½, ¼, … so the root matricization has
    distinct singular values in ratio 2 (a plain Gaussian HT is often numerically rank 1 at the
    root, since its components are products of random norms). Scaled to Frobenius ``norm``.
    """
    from rankscope.models.ht import HTFactorization

    ht = HTFactorization(dims, widths, init_std=1.0, generator=generator)
    with torch.no_grad():
        for layer in ht.layers:
            for j in range(layer.shape[0]):
                rows = dims[j] if layer is ht.layers[0] else layer.shape[1]
                q, _ = torch.linalg.qr(layer[j, :rows])  # orthonormal columns
                layer[j, :rows] = q
        ht.output.copy_(0.5 ** torch.arange(ht.output.numel(), dtype=ht.output.dtype))
        t = ht.full()
    return t * (norm / t.norm())


def same_class_pairs(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` index pairs (i, j), i ≠ j, half with equal labels and half with different labels."""
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    classes = np.array(sorted(by_class))
    out = np.empty((n, 2), dtype=np.int64)
    for k in range(n):
        if k % 2 == 0:
            c = rng.choice(classes)
            out[k] = rng.choice(by_class[c], size=2, replace=False)
        else:
            c1, c2 = rng.choice(classes, size=2, replace=False)
            out[k] = (rng.choice(by_class[c1]), rng.choice(by_class[c2]))
    return out[rng.permutation(n)]


def same_class_canvas(images: np.ndarray, pairs: np.ndarray, gap: int) -> np.ndarray:
    """Two 8×8 digits side by side in an 8 × (16 + gap) zero canvas: (n, 1, 8, 16 + gap) float32.

    Pixel values are scaled to [0, 1]. The left digit occupies columns [0, 8), the right one
    [8 + gap, 16 + gap).
    """
    n = len(pairs)
    canvas = np.zeros((n, 1, 8, 16 + gap), dtype=np.float32)
    canvas[:, 0, :, :8] = images[pairs[:, 0]] / 16.0
    canvas[:, 0, :, 8 + gap :] = images[pairs[:, 1]] / 16.0
    return canvas


def graph_pair_features(images: np.ndarray, pairs: np.ndarray, partition: str) -> np.ndarray:
    """Vertex features for the IsSameClass graph: (n, 8, 16) from two 8×8 digits.

    Each flattened image is split into 4 patches of 16 features. ``low_walk``: image 1 on
    vertices 0–3 (cluster 1) and image 2 on 4–7. ``high_walk``: half of each image per cluster,
    interleaved as in ``IsSameClassData`` of ``noamrazin/gnn_interactions``.
    """
    first = images[pairs[:, 0]].reshape(len(pairs), 4, 16) / 16.0
    second = images[pairs[:, 1]].reshape(len(pairs), 4, 16) / 16.0
    if partition == "low_walk":
        return np.concatenate([first, second], axis=1).astype(np.float32)
    if partition != "high_walk":
        raise ValueError(f"partition must be 'low_walk' or 'high_walk', got {partition!r}")
    x = np.zeros((len(pairs), 8, 16), dtype=np.float32)
    x[:, 0:4:2], x[:, 1:4:2] = first[:, :2], second[:, :2]
    x[:, 4::2], x[:, 5::2] = second[:, 2:], first[:, 2:]
    return x


def cluster_edges(cluster_size: int, variant: str) -> np.ndarray:
    """Two clusters of ``cluster_size`` vertices and one bridge (first vertex of each): (E, 2).

    ``two_cliques``: both clusters are cliques (the paper). ``as_released``: the released
    ``__populate_cluster_edges`` loops ``for j in cluster_indices[i + 1:]`` with i the absolute
    vertex id, so only the first cluster gets its clique edges.
    """
    if variant not in ("two_cliques", "as_released"):
        raise ValueError(f"variant must be 'two_cliques' or 'as_released', got {variant!r}")
    edges = []
    for cluster in (list(range(cluster_size)), list(range(cluster_size, 2 * cluster_size))):
        for pos, i in enumerate(cluster[:-1]):
            start = i + 1 if variant == "as_released" else pos + 1
            edges.extend((i, j) for j in cluster[start:])
    edges.append((0, cluster_size))
    return np.array(edges, dtype=np.int64)


def sbm_graph(
    sizes, p_in: float, p_out: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stochastic block model: (edges (E, 2) with u < v, labels (n,))."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    n = labels.size
    prob = np.where(labels[:, None] == labels[None, :], p_in, p_out)
    upper = np.triu(rng.random((n, n)) < prob, k=1)
    return np.argwhere(upper).astype(np.int64), labels
