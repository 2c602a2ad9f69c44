"""The shipped demo model: deterministic, learns its task, round-trips through safetensors."""

from __future__ import annotations

import pytest
import torch

from rankscope.models.demo import (
    DemoConfig,
    load_demo_model,
    save_demo,
    train_demo_model,
)
from rankscope.probe import analyze, load_checkpoint

SMALL = DemoConfig(n_samples=256, steps=150)


def test_demo_is_deterministic_and_learns():
    m1, x, y = train_demo_model(SMALL, generator=torch.Generator().manual_seed(0))
    m2, _, _ = train_demo_model(SMALL, generator=torch.Generator().manual_seed(0))
    for (n, p1), p2 in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0, msg=n)
    with torch.no_grad():
        acc = (m1(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9
    # a rank-2 teacher: the last hidden representation concentrates on few directions
    a = analyze(m1, x, labels=y)
    last = next(r for r in a.representations if r["name"] == "6")
    assert last["rep_rank_rel1e-2"] < SMALL.width // 4


def test_save_and_rebuild(tmp_path):
    model_path, data_path = save_demo(tmp_path, SMALL, seed=1)
    ckpt = load_checkpoint(model_path)
    assert ckpt.metadata["rankscope_model"] == "demo-mlp"
    model = load_demo_model(ckpt.tensors, ckpt.metadata)
    data = load_checkpoint(data_path).tensors
    assert data["x"].shape == (SMALL.n_samples, SMALL.in_dim)
    ref, _, _ = train_demo_model(SMALL, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(data["x"]), ref(data["x"]))
    with pytest.raises(ValueError, match="not a rankscope demo checkpoint"):
        load_demo_model(ckpt.tensors, {})
