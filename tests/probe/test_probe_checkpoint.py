"""Safe loading: every accepted format gives the same tensors; bad files get clear errors."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rankscope.probe import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_tensor_file,
)


class _Payload:
    """A pickle whose loading would create a marker file (the side effect we must not see)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _state(zoo) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in zoo.state_dict().items()}


def test_formats_give_identical_tensors(zoo, tmp_path):
    state = _state(zoo)
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "nested.ckpt")
    loaded = [
        load_checkpoint(zoo),
        load_checkpoint(state),
        load_checkpoint(tmp_path / "w.safetensors"),
        load_checkpoint(str(tmp_path / "w.pt")),
        load_checkpoint(tmp_path / "nested.ckpt"),
    ]
    assert [c.format for c in loaded] == ["module", "state_dict", "safetensors", "torch", "torch"]
    assert loaded[-1].ignored == ("epoch",)
    for ckpt in loaded:
        assert sorted(ckpt.tensors) == sorted(state)  # safetensors keeps no order
        for name, t in state.items():
            torch.testing.assert_close(ckpt.tensors[name], t, rtol=0, atol=0)


def test_safetensors_natural_order(tmp_path):
    names = [f"layers.{i}.w" for i in (0, 1, 2, 9, 10, 11)]
    save_file({n: torch.zeros(2, 2) for n in names}, str(tmp_path / "w.safetensors"))
    assert list(load_checkpoint(tmp_path / "w.safetensors").tensors) == names


@pytest.mark.parametrize("suffix", [".pt", ".bin"])
def test_malicious_pickle_refused_without_side_effect(tmp_path, suffix):
    marker = tmp_path / "pwned"
    path = tmp_path / f"evil{suffix}"
    torch.save({"w": torch.ones(2, 2), "x": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*evil.*system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_raw_pickle_and_whole_module_refused(tmp_path, zoo):
    marker = tmp_path / "pwned"
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Payload(str(marker)), protocol=4))
    with pytest.raises(UnsafeCheckpointError, match=r"raw\.pth"):
        load_checkpoint(raw)
    assert not marker.exists()
    whole = tmp_path / "module.pt"
    torch.save(zoo, whole)  # a pickled nn.Module needs its class: code, so refused
    with pytest.raises(UnsafeCheckpointError, match="state_dict"):
        load_checkpoint(whole)


def test_pickled_numpy_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeCheckpointError, match=r"obj\.npy"):
        load_tensor_file(path)


def test_missing_directory_extension_empty(tmp_path):
    with pytest.raises(
        CheckpointError, match=r"nope\.pt' does not exist; expected a \.safetensors"
    ):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "a.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"is a directory.*contains a\.safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unsupported weights file extension '\.onnx'"):
        load_checkpoint(tmp_path / "w.onnx")
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e\.pt' is empty"):
        load_checkpoint(tmp_path / "e.pt")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
def test_truncated_files(tmp_path, suffix):
    full = tmp_path / f"full{suffix}"
    tensors = {"w": torch.randn(40, 30, generator=torch.Generator().manual_seed(0))}
    if suffix == ".pt":
        torch.save(tensors, full)
    elif suffix == ".safetensors":
        save_file(tensors, str(full))
    else:
        np.savez(full, w=tensors["w"].numpy())
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    loader = load_tensor_file if suffix == ".npz" else load_checkpoint
    with pytest.raises(CheckpointError, match=r"cut.*truncated or corrupt"):
        loader(cut)


def test_bad_python_objects():
    with pytest.raises(TypeError, match="got int"):
        load_checkpoint(3)
    with pytest.raises(CheckpointError, match="contains no tensors"):
        load_checkpoint({"epoch": 1})


def test_data_files_round_trip(tmp_path):
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    np.save(tmp_path / "x.npy", x.numpy())
    torch.testing.assert_close(load_tensor_file(tmp_path / "x.npy"), x)
    torch.save((x, torch.arange(6)), tmp_path / "xy.pt")
    got = load_tensor_file(tmp_path / "xy.pt")
    torch.testing.assert_close(got[0], x)


@pytest.mark.parametrize(
    "content", [b"hello, this is a text file\n", bytes(range(200, 256)) * 4], ids=["text", "bytes"]
)
def test_garbage_bytes_are_corrupt_not_unsafe(tmp_path, content):
    """Bytes that are no pickle at all are a corrupt file (not code to refuse, not a KeyError)."""
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=r"garbage\.pt.*truncated or corrupt") as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
