"""Test-suite policy: one intra-op thread per process (see rankscope.threads)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch

from rankscope.threads import set_threads

set_threads(int(os.environ.get("RANKSCOPE_THREADS", "1")))
torch.use_deterministic_algorithms(False)
