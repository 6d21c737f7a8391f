"""Tests of the label models (labeling/model/: label_model.py, baselines.py, design.py). Fast: < 20 s on 2 cores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mothermodel.labeling.model import design
from mothermodel.labeling.model.base import DEFAULT_USE_DEV
from mothermodel.labeling.model.baselines import MajorityVoter
from mothermodel.labeling.model.label_model import LabelModel, LabelModelConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_synthetic(n=20000, accs=(0.9, 0.8, 0.75, 0.7, 0.65, 0.6, 0.85, 0.55), coverage=0.5, k=2,
                   balance=None, seed=0):
    """LF j fires with prob `coverage` (independent of y) and then votes y with
    prob accs[j], else a uniformly chosen wrong class."""
    rng = np.random.default_rng(seed)
    accs = np.asarray(accs)
    m = len(accs)
    y = rng.choice(k, size=n, p=balance)
    fire = rng.random((n, m)) < coverage
    right = rng.random((n, m)) < accs[None, :]
    wrong = (y[:, None] + rng.integers(1, k, size=(n, m))) % k
    L = np.where(fire, np.where(right, y[:, None], wrong), -1).astype(np.int8)
    return L, y, accs


def acc(pred, y):
    return float((np.asarray(pred) == np.asarray(y)).mean())


# ----------------------------------------------------------------- majority vote
def test_majority_vote_ties_and_all_abstain():
    L = np.array([[0, 0, 1], [0, 1, -1], [-1, -1, -1], [2, -1, 2], [1, 2, 0]], dtype=np.int16)
    P = MajorityVoter(3).predict_proba(L)
    assert P.dtype == np.float32 and P.shape == (5, 3)
    np.testing.assert_allclose(P[0], [1, 0, 0])
    np.testing.assert_allclose(P[1], [0.5, 0.5, 0])
    np.testing.assert_allclose(P[2], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(P[3], [0, 0, 1])
    np.testing.assert_allclose(P[4], [1 / 3] * 3, rtol=1e-6)
    P2 = MajorityVoter(3, class_balance=[0.2, 0.5, 0.3]).predict_proba(L)
    np.testing.assert_allclose(P2[2], [0.2, 0.5, 0.3], rtol=1e-6)


def test_majority_vote_tie_break_deterministic():
    L = np.array([[0, 1]] * 200, dtype=np.int8)
    mv = MajorityVoter(2)
    a, b = mv.predict(L, tie_break_seed=7), mv.predict(L, tie_break_seed=7)
    np.testing.assert_array_equal(a, b)
    assert 0.3 < a.mean() < 0.7  # random, not always the first class
    assert not np.array_equal(a, mv.predict(L, tie_break_seed=8))


# ------------------------------------------------------------------ label model
def test_recovers_lf_accuracies():
    L, y, accs = make_synthetic(n=30000)
    model = LabelModel(2, LabelModelConfig(device="cpu")).fit(L)
    est = model.lf_accuracies()
    assert np.abs(est - accs).max() < 0.03, (est, accs)
    assert abs(model.class_balance_[1] - y.mean()) < 0.02


def test_recovers_multiclass_accuracies_and_balance():
    L, y, accs = make_synthetic(n=30000, k=4, accs=(0.85, 0.7, 0.6, 0.75, 0.5, 0.9), coverage=0.4,
                                balance=[0.4, 0.3, 0.2, 0.1], seed=3)
    model = LabelModel(4, LabelModelConfig(device="cpu")).fit(L)
    assert np.abs(model.lf_accuracies() - accs).max() < 0.04
    np.testing.assert_allclose(model.class_balance_, [0.4, 0.3, 0.2, 0.1], atol=0.03)


def test_beats_majority_vote_with_varied_accuracies():
    accs = (0.95, 0.9, 0.6, 0.58, 0.56, 0.55, 0.55, 0.6, 0.57)
    L, y, _ = make_synthetic(n=20000, accs=accs, coverage=0.6, seed=1)
    model = LabelModel(2, LabelModelConfig(device="cpu")).fit(L)
    ours = acc(model.predict(L), y)
    mv = acc(MajorityVoter(2).predict(L), y)
    assert ours > mv + 0.03, (ours, mv)


def test_deterministic_with_fixed_seed_and_row_sampling():
    L, _, _ = make_synthetic(n=8000, seed=2)
    cfg = LabelModelConfig(device="cpu", max_fit_rows=3000, seed=5)
    p1 = LabelModel(2, cfg).fit(L).predict_proba(L)
    p2 = LabelModel(2, LabelModelConfig(device="cpu", max_fit_rows=3000, seed=5)).fit(L).predict_proba(L)
    np.testing.assert_array_equal(p1, p2)
    p3 = LabelModel(2, LabelModelConfig(device="cpu", max_fit_rows=3000, seed=6)).fit(L).predict_proba(L)
    assert not np.array_equal(p1, p3)  # another sample, another (close) fit
    assert np.abs(p1 - p3).mean() < 0.03


def test_all_abstain_rows_get_a_uniform_posterior_or_the_class_prior_and_a_prediction():
    L, _, _ = make_synthetic(n=5000, seed=4)
    L[:100] = -1
    model = LabelModel(2, LabelModelConfig(device="cpu")).fit(L)
    P = model.predict_proba(L)
    assert P.dtype == np.float32 and P.shape == (5000, 2)
    np.testing.assert_allclose(P[:100], 0.5, rtol=1e-6)  # default: no vote, no evidence
    pred = model.predict(L[:100])
    assert 0.3 < pred.mean() < 0.7  # ties broken per row, as majority vote does
    prior = LabelModel(2, LabelModelConfig(device="cpu", uncovered="model")).fit(L)
    np.testing.assert_allclose(prior.predict_proba(L)[:100], np.tile(prior.class_prior_, (100, 1)), rtol=1e-5)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)
    pred = model.predict(L)
    assert set(np.unique(pred)) <= {0, 1} and len(pred) == 5000
    # A matrix where every row abstains still fits and predicts.
    empty = np.full((50, 3), -1, dtype=np.int8)
    m2 = LabelModel(2, LabelModelConfig(device="cpu")).fit(empty)
    assert m2.predict(empty).shape == (50,)


def test_tie_break_is_seeded():
    # Two LFs of identical behaviour voting opposite classes -> exact ties.
    L = np.array([[0, 1], [1, 0], [0, -1], [-1, 1]] * 100, dtype=np.int8)
    model = LabelModel(2, LabelModelConfig(device="cpu", class_balance=[0.5, 0.5])).fit(L)
    P = model.predict_proba(L[:1])
    assert abs(float(P[0, 0]) - 0.5) < 1e-5
    a = model.predict(L, tie_break_seed=1)
    np.testing.assert_array_equal(a, model.predict(L, tie_break_seed=1))
    assert not np.array_equal(a, model.predict(L, tie_break_seed=2))
    np.testing.assert_array_equal(model.predict(L), model.predict(L))  # default: config.seed


def test_input_forms_and_validation():
    L, _, _ = make_synthetic(n=3000, seed=5)
    model = LabelModel(2, LabelModelConfig(device="cpu")).fit(L.astype(np.int32))
    p_dense = model.predict_proba(L.astype(np.int16))
    r, c = np.nonzero(L != -1)
    p_sparse = model.predict_proba((r, c, L[r, c], L.shape[0], L.shape[1]))
    np.testing.assert_array_equal(p_dense, p_sparse)
    with pytest.raises(ValueError):
        model.predict_proba(np.full((3, L.shape[1]), 2))  # class out of range
    with pytest.raises(ValueError):
        model.predict_proba(L[:, :3])  # wrong number of LFs
    with pytest.raises(ValueError):
        LabelModelConfig(prior_precision=1.5)
    with pytest.raises(RuntimeError):
        LabelModel(2).predict_proba(L)


def test_dev_labels_and_round_trip():
    L, y, _ = make_synthetic(n=5000, seed=6)
    model = LabelModel(2, LabelModelConfig(device="cpu")).fit(L[:4000], L_dev=L[4000:], Y_dev=y[4000:])
    clone = LabelModel.from_dict(json.loads(json.dumps(model.to_dict())))
    np.testing.assert_allclose(clone.predict_proba(L), model.predict_proba(L), rtol=1e-6)


def test_dev_modes_and_correction():
    assert DEFAULT_USE_DEV is False and LabelModelConfig().dev_mode == "anchor"
    L, y, _ = make_synthetic(n=6000, seed=8)
    Ld, yd = L[5000:], y[5000:]
    base = LabelModel(2, LabelModelConfig(device="cpu")).fit(L[:5000])
    ign = LabelModel(2, LabelModelConfig(device="cpu", dev_mode="ignore")).fit(L[:5000], L_dev=Ld, Y_dev=yd)
    np.testing.assert_array_equal(base.predict_proba(L), ign.predict_proba(L))
    assert base.dev_lambda_ is None
    # 'correct': lambda picked by CV from the grid; inf means EM unchanged.
    cor = LabelModel(2, LabelModelConfig(device="cpu", dev_mode="correct")).fit(L[:5000], L_dev=Ld, Y_dev=yd)
    assert cor.dev_lambda_ in LabelModelConfig().dev_l2_grid and 0 <= cor.dev_cv_accuracy_ <= 1
    if np.isinf(cor.dev_lambda_):
        np.testing.assert_allclose(cor.predict_proba(L), base.predict_proba(L), rtol=1e-5, atol=1e-6)
    # A fixed finite lambda moves the weights; a huge one keeps them at EM.
    fx = LabelModel(2, LabelModelConfig(device="cpu", dev_mode="correct", dev_l2_grid=(1.0,))).fit(L[:5000], L_dev=Ld, Y_dev=yd)
    assert fx.dev_lambda_ == 1.0 and not np.allclose(fx.weights_, base.weights_)
    np.testing.assert_allclose(fx.weights_em_, base.weights_, rtol=1e-5, atol=1e-6)
    big = LabelModel(2, LabelModelConfig(device="cpu", dev_mode="correct", dev_l2_grid=(1e9,))).fit(L[:5000], L_dev=Ld, Y_dev=yd)
    np.testing.assert_allclose(big.weights_, base.weights_, atol=1e-4)
    assert acc(fx.predict(L[:5000]), y[:5000]) > acc(base.predict(L[:5000]), y[:5000]) - 0.01
    clone = LabelModel.from_dict(json.loads(json.dumps(fx.to_dict())))
    np.testing.assert_allclose(clone.predict_proba(L), fx.predict_proba(L), rtol=1e-6)
    # Tiny dev sets do not break the fit.
    LabelModel(2, LabelModelConfig(device="cpu", dev_mode="correct")).fit(L[:5000], L_dev=Ld[:1], Y_dev=yd[:1])
    with pytest.raises(ValueError):
        LabelModelConfig(dev_mode="bogus")
    with pytest.raises(ValueError):
        LabelModelConfig(dev_l2_grid=(0.0,))


def test_chunked_predict_matches_single_chunk():
    L, _, _ = make_synthetic(n=4000, seed=7)
    model = LabelModel(2, LabelModelConfig(device="cpu")).fit(L)
    model2 = LabelModel(2, LabelModelConfig(device="cpu", chunk_rows=333)).fit(L)
    np.testing.assert_allclose(model.predict_proba(L), model2.predict_proba(L), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("abstain_evidence", ["none", "class"])
def test_streamed_fit_matches_one_block(monkeypatch, abstain_evidence):
    """EM over many blocks of patterns, with the indicators rebuilt per pass (not cached), fits
    the same model as one cached block; a copied LF exercises the near-duplicate pass too."""
    L, _, _ = make_synthetic(n=6000, k=3, coverage=0.4, seed=11)
    L = np.hstack([L, L[:, :1]])
    cfg = LabelModelConfig(device="cpu", abstain_evidence=abstain_evidence)
    one = LabelModel(3, cfg).fit(L)
    monkeypatch.setattr(design, "BLOCK_CELLS", 600)  # blocks of a few dozen patterns
    monkeypatch.setattr(design, "CACHE_CELLS", 0)
    many = LabelModel(3, cfg).fit(L)
    assert one.lf_groups_ == many.lf_groups_ and [0, 8] in one.lf_groups_
    assert one.n_iter_ == many.n_iter_
    np.testing.assert_allclose(one.weights_, many.weights_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one.overlaps_, many.overlaps_)
    np.testing.assert_allclose(one.predict_proba(L), many.predict_proba(L), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------- real data
def _load_wrench(name, split):
    d = json.loads((DATA / name / f"{split}.json").read_text())
    L = np.array([v["weak_labels"] for v in d.values()], dtype=np.int8)
    y = np.array([v["label"] for v in d.values()])
    return L, y


@pytest.mark.skipif(not (DATA / "trec" / "train.json").exists(), reason="../shared/data (WRENCH) absent")
@pytest.mark.parametrize("name,k,floor", [("youtube", 2, 0.85), ("trec", 6, 0.62)])
def test_wrench_test_accuracy(name, k, floor):
    Ltr, _ = _load_wrench(name, "train")  # gold train labels are never used
    Lte, yte = _load_wrench(name, "test")
    model = LabelModel(k, LabelModelConfig(device="cpu")).fit(Ltr)
    ours = acc(model.predict(Lte), yte)
    mv = acc(MajorityVoter(k).predict(Lte), yte)
    assert ours >= floor and ours > mv, (ours, mv)


@pytest.mark.skipif(not (DATA / "trec" / "train.json").exists(), reason="../shared/data (WRENCH) absent")
@pytest.mark.parametrize("name,k,floor", [("youtube", 2, 0.85), ("trec", 6, 0.64)])
def test_wrench_test_accuracy_default_with_dev(name, k, floor):
    Ltr, _ = _load_wrench(name, "train")  # gold train labels are never used
    Lva, yva = _load_wrench(name, "valid")  # valid gold as dev anchors (default dev_mode)
    Lte, yte = _load_wrench(name, "test")
    model = LabelModel(k, LabelModelConfig(device="cpu")).fit(Ltr, L_dev=Lva, Y_dev=yva)
    assert acc(model.predict(Lte), yte) >= floor


def test_vote_indicators_numpy_and_device_paths_agree():
    """The CPU path compares in numpy, a GPU's in torch: the same bits, class-major."""
    import torch

    L = np.random.default_rng(0).integers(-1, 4, (37, 5)).astype(np.int8)
    a = design._vote_bits(L, 4, torch.device("cpu"))
    b = design._vote_bits_torch(torch.from_numpy(L), 4)
    assert torch.equal(a, b) and a.dtype == torch.bool and a.shape == (37, 20)
    assert bool(a[3, 2 * 5 + 1]) == (L[3, 1] == 2)
    np.testing.assert_array_equal(design.vote_indicators(L, 4).numpy(), a.numpy().astype(np.float32))
