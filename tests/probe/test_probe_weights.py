"""Every ≥2-D parameter appears with its kind and matrix view; 1-D ones are listed as skipped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rankscope.probe import weight_matrices
from rankscope.probe.weights import infer_kind


def test_module_every_matrix_with_kind(zoo, expected_kinds):
    mats, skipped = weight_matrices(zoo)
    got = {w.name: (w.kind, tuple(w.matrix.shape)) for w in mats}
    assert got == expected_kinds
    n_matrix = sum(1 for p in zoo.state_dict().values() if p.ndim >= 2)
    assert len(mats) == n_matrix
    # nothing disappears: matrices + skipped = the whole state_dict
    assert sorted([w.name for w in mats] + [s.name for s in skipped]) == sorted(zoo.state_dict())
    assert all(len(s.shape) < 2 and s.reason for s in skipped)
    convs = {w.name: w.conv_mode for w in mats if w.kind.startswith("conv")}
    assert convs == {"conv1.weight": "flatten", "conv2.weight": "flatten"}


def test_matrix_view_is_row_major_flatten(zoo):
    mats = {w.name: w for w in weight_matrices(zoo)[0]}
    k = zoo.conv2.weight.detach()  # (4, 2, 3, 2)
    torch.testing.assert_close(mats["conv2.weight"].matrix, k.reshape(4, 12))
    torch.testing.assert_close(mats["conv2.weight"].matrix[1, 7], k[1, 1, 0, 1])


def test_state_dict_kinds_inferred(zoo, expected_kinds):
    mats, _ = weight_matrices(zoo.state_dict())
    got = {w.name: w.kind for w in mats}
    expected = {n: k for n, (k, _) in expected_kinds.items()}
    expected["raw"] = "other"  # a raw 3-D tensor not named *.weight stays 'other'
    assert got == expected
    assert {w.name: w.kind_source for w in mats}["fc.weight"] == "shape"


@pytest.mark.parametrize(
    ("name", "shape", "kind"),
    [
        ("model.layers.3.self_attn.q_proj.weight", (64, 64), "attention_in_proj"),
        ("h.0.attn.c_proj.weight", (64, 64), "attention_out_proj"),
        ("transformer.wte.weight", (100, 64), "embedding"),
        ("features.0.weight", (16, 3, 3, 3), "conv2d"),
        ("blocks.1.conv.weight", (16, 3, 5), "conv1d"),
        ("pos_embedding", (1, 10, 64), "other"),
        ("head.weight", (10, 64), "linear"),
    ],
)
def test_infer_kind_by_name_and_shape(name, shape, kind):
    assert infer_kind(name, shape)[0] == kind


def test_tied_weights_marked():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, head)
    mats, _ = weight_matrices(model)
    assert [(w.name, w.same_as) for w in mats] == [("0.weight", None), ("1.weight", "0.weight")]


def test_transposed_conv_and_buffers_noted():
    model = nn.Sequential(nn.ConvTranspose2d(3, 5, 2), nn.BatchNorm2d(5))
    model.register_buffer("mask", torch.ones(2, 3))
    mats, skipped = weight_matrices(model)
    notes = {w.name: (w.kind, w.note) for w in mats}
    assert notes["0.weight"] == ("conv2d", "transposed conv: rows are input channels")
    assert "buffer" in notes["mask"][1]
    assert {s.name for s in skipped} >= {"1.num_batches_tracked", "1.running_mean", "0.bias"}
