"""Ensemble or loop? A two-constant cost model of one training step, per shape.

A per-network loop pays a fixed Python/autograd overhead c₀ per network and step, plus the
matmul work; an ensemble pays c₀ once per step for all E members:

    t_loop = E·(c₀ + F/r),   t_ens = c₀ + E·F/r,   F = 6·N·Σ_l n_l·n_{l−1}

(forward 2 and backward 4 flops per multiply-add; r the matmul rate; N the rows per step,
i.e. the batch size under SGD). The speedup t_loop/t_ens is ≈ E when F/r ≪ c₀ (small widths,
small batches) and → 1 when matmuls dominate (then the stacked activations also spill the
cache, and an ensemble can even be slower). ``benchmarks/bench_ensemble.py``, one thread on
the shared 2-core machine, measured: depth 4, N = 64, width 10: 20–31× (E = 64–256, model
29–44×); width 50: 3.0–4.9× (model 3.0×); MLP 64-64-64-64-10 on 1797 rows, 8 members:
full-batch Adam 0.8–1.3× (model 1.05×), SGD with B = 32: 3.7–4.4× (model 3.0×).
The defaults of ``overhead_s`` (a naive per-network step cost 460–1150 µs there under load)
and ``flops_per_s`` are from those runs; pass your own for other hardware.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from rankscope.models.linear import check_dims

__all__ = ["ensemble_speedup", "prefer_ensemble", "step_flops"]

OVERHEAD_S = 4e-4  # fixed cost of one per-network GD step (Python + autograd + optimizer)
FLOPS_PER_S = 2.0e10  # sustained single-core float32 matmul rate for these small shapes
_BATCHABLE = ("gd", "sgd", "adam")
_PER_MEMBER = ("lbfgs", "flow")  # the engine runs these on one model at a time


def step_flops(dims: Sequence[int], n_samples: int) -> float:
    """F = 6·N·Σ_l n_l·n_{l−1}: flops of one forward+backward pass over N samples."""
    dims = check_dims(dims)
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    return 6.0 * n_samples * sum(a * b for a, b in itertools.pairwise(dims))


def ensemble_speedup(
    n_members: int,
    dims: Sequence[int],
    n_samples: int,
    *,
    overhead_s: float = OVERHEAD_S,
    flops_per_s: float = FLOPS_PER_S,
) -> float:
    """Predicted t_loop / t_ens for E = ``n_members`` networks of shape ``dims`` that see
    ``n_samples`` rows per step (the batch size for SGD).

    >>> round(ensemble_speedup(64, [10] * 5, 64), 1)  # depth 4, width 10
    29.3
    >>> round(ensemble_speedup(8, [64, 64, 64, 64, 10], 1797), 2)  # digits, full batch
    1.05
    """
    if not isinstance(n_members, int) or n_members < 1:
        raise ValueError(f"n_members must be an int >= 1, got {n_members!r}")
    work = step_flops(dims, n_samples) / flops_per_s
    return n_members * (overhead_s + work) / (overhead_s + n_members * work)


def prefer_ensemble(
    n_members: int,
    dims: Sequence[int],
    n_samples: int,
    *,
    optimizer: str = "gd",
    min_speedup: float = 1.5,
    max_bytes: float = 2e9,
    bytes_per_float: int = 4,
    overhead_s: float = OVERHEAD_S,
    flops_per_s: float = FLOPS_PER_S,
) -> bool:
    """True when E same-shaped runs should train as one vectorized ensemble.

    False for a single member, for L-BFGS and the exact flow (no batched form), when the
    stacked activations (E·N·Σ n_l floats, kept for backward) exceed ``max_bytes``, or when
    the predicted speedup is below ``min_speedup``.
    """
    if optimizer not in (*_BATCHABLE, *_PER_MEMBER):
        raise ValueError(
            f"unknown optimizer {optimizer!r}; expected one of {(*_BATCHABLE, *_PER_MEMBER)}"
        )
    if optimizer in _PER_MEMBER or n_members < 2:
        return False
    dims = check_dims(dims)
    memory = n_members * n_samples * sum(dims) * bytes_per_float * 3
    if memory > max_bytes:
        return False
    speed = ensemble_speedup(
        n_members, dims, n_samples, overhead_s=overhead_s, flops_per_s=flops_per_s
    )
    return speed >= min_speedup
