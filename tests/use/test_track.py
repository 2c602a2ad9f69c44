"""rankscope.track: values against numpy, CSV and store output, early stopping, Lightning."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from torch import nn

from rankscope.store import Store
from rankscope.track import RankPlateau, RankTracker


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def _np_metrics(w: np.ndarray) -> dict[str, float]:
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    tol = max(w.shape) * np.finfo(np.float32).eps * s[0]
    return {
        "stable_rank": float((s**2).sum() / s[0] ** 2),
        "effective_rank": float(np.exp(-(p * np.log(p)).sum())),
        "numerical_rank": float((s > tol).sum()),
    }


def test_weight_metrics_match_numpy_and_same_shapes_are_batched():
    model = _model()
    tracker = RankTracker(model, every=1)
    got = tracker.measure(0)
    for name in ("0", "2", "4"):
        want = _np_metrics(model.get_submodule(name).weight.detach().numpy())
        for k, v in want.items():
            assert got[k][name] == pytest.approx(v, rel=1e-4), (k, name)


def test_low_rank_weight_is_seen():
    model = _model()
    with torch.no_grad():
        u = torch.randn(16, 2)
        model[2].weight.copy_(u @ torch.randn(2, 16))
    got = RankTracker(model, every=1, metrics=["numerical_rank"]).measure(0)
    assert got["numerical_rank"]["2"] == 2


def test_representation_rank_from_a_batch():
    model = _model()
    x = torch.randn(40, 12)
    tracker = RankTracker(model, every=1, metrics=["rep_rank", "rep_stable_rank"], layers="2")
    got = tracker.measure(0, batch=x)
    h = model[:3](x).detach().numpy().astype(np.float64)
    h = h - h.mean(0)
    s = np.linalg.svd(h, compute_uv=False)
    assert got["rep_stable_rank"]["2"] == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-4)
    assert got["rep_rank"]["2"] == (s > max(h.shape) * np.finfo(np.float32).eps * s[0]).sum()


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def _loop(model, tracker, steps, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 12, generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    done = 0
    for step in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        done += 1
        if tracker.step(step):
            break
    return done


def test_csv_rows_in_a_plain_loop(tmp_path):
    model = _model()
    path = tmp_path / "ranks.csv"
    tracker = RankTracker(model, every=5, csv=path)
    _loop(model, tracker, 12)
    rows = _rows(path)
    assert {r["step"] for r in rows} == {"0", "5", "10"}
    assert {r["name"] for r in rows} == {"stable_rank", "effective_rank", "numerical_rank"}
    assert len(rows) == 3 * 3 * 3
    recs = tracker.records()
    assert len(recs) == len(rows)


def test_store_run_round_trip(tmp_path):
    model = _model()
    with RankTracker(model, every=4, store=tmp_path / "store", run_name="mine") as tracker:
        _loop(model, tracker, 9)
    st = Store(tmp_path / "store", create=False)
    (info,) = st.runs(experiment="track")
    assert info.preset == "mine" and info.run_id == tracker.run_id
    res = st.load_run(info.run_id)
    steps = sorted(set(res.records.step.tolist()))
    assert steps == [0, 4, 8]
    assert res.summary["steps"] == 9


def test_early_stopping_when_ranks_plateau():
    model = _model()
    stop = RankPlateau("stable_rank", rtol=1e-3, patience=2)
    tracker = RankTracker(model, every=1, stop_on=stop)
    done = _loop(model, tracker, 500, lr=1e-6)  # tiny steps: the ranks do not move
    assert done == 3  # measurements at 0, 1, 2: two calm changes
    assert tracker.should_stop
    moving = RankPlateau("stable_rank", rtol=1e-12, patience=2)
    tracker = RankTracker(_model(), every=1, stop_on=moving)
    assert _loop(tracker.model, tracker, 20, lr=0.5) == 20


def test_plateau_logic_on_given_values():
    p = RankPlateau("numerical_rank", rtol=0.1, patience=2, layers="a*")
    assert not p.update({"a1": 10.0, "b": 1.0})
    assert not p.update({"a1": 10.5, "b": 100.0})  # change 0.05 < 0.1: calm 1 (b ignored)
    assert p.update({"a1": 10.6, "b": 0.0})
    assert not p.update({"a1": 20.0, "b": 0.0})


def test_bad_arguments():
    model = _model()
    with pytest.raises(ValueError, match="every must be an int >= 1"):
        RankTracker(model, every=0)
    with pytest.raises(ValueError, match="unknown metrics"):
        RankTracker(model, metrics=["rank"])
    with pytest.raises(ValueError, match="matches no layer"):
        RankTracker(model, layers="enc*")
    with pytest.raises(ValueError, match="no Linear/Conv layers"):
        RankTracker(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="not in metrics"):
        RankTracker(model, metrics=["stable_rank"], stop_on=RankPlateau("numerical_rank"))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside lightning's own code
@pytest.mark.filterwarnings("ignore:.*does not have many workers")
def test_lightning_callback_with_a_real_trainer(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from rankscope.track.lightning import RankTrackerCallback

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _model()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(
        torch.randn(64, 12, generator=g), torch.randint(0, 3, (64,), generator=g)
    )
    loader = torch.utils.data.DataLoader(ds, batch_size=16)
    cb = RankTrackerCallback(every=2, csv=tmp_path / "r.csv")
    trainer = pl.Trainer(
        max_steps=6,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cb],
        default_root_dir=tmp_path,
    )
    trainer.fit(Module(), loader)
    rows = _rows(tmp_path / "r.csv")
    assert sorted({int(r["step"]) for r in rows}) == [2, 4, 6]
    assert {r["layer"] for r in rows} == {
        "net.0",
        "net.2",
        "net.4",
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tracker_measures_on_the_model_device():
    model = _model().cuda()
    got = RankTracker(model, every=1).measure(0, batch=torch.randn(8, 12, device="cuda"))
    cpu = RankTracker(_model(), every=1).measure(0)
    for k in ("stable_rank", "numerical_rank"):
        assert got[k]["2"] == pytest.approx(cpu[k]["2"], rel=1e-4)
