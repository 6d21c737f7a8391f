"""The regimes of issue 11 on tiny hand-made label matrices: shrinkage, the text view's gate,
near-duplicate LFs, `label fit --select-on valid` and the figures `label analyze` adds."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import run_cli

from mothermodel.labeling.analysis import regime_figures
from mothermodel.labeling.model.dependencies import near_duplicate_groups
from mothermodel.labeling.model.baselines import MajorityVoter
from mothermodel.labeling.model.label_model import LabelModel, LabelModelConfig
from mothermodel.labeling.model.selection import select_on_valid
from mothermodel.labeling.model.textview import TextViewConfig, combine, view_gate


def _tiny_lfs(seed=0, n=600, k=3, m=60):
    """m one-class LFs that each fire on ~n/m rows, one vote per row (no overlaps) except a few conflicts."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, n, p=[0.6, 0.25, 0.15])
    lf_class = np.arange(m) % k
    L = np.full((n, m), -1, np.int8)
    for c in range(k):
        js = np.flatnonzero(lf_class == c)
        rows = np.flatnonzero(y == c)
        L[rows, rng.choice(js, len(rows))] = c
    conflict = rng.choice(n, 60, replace=False)  # a second, wrong vote of another class
    other = (y[conflict] + rng.integers(1, k, len(conflict))) % k
    L[conflict, np.array([rng.choice(np.flatnonzero(lf_class == c)) for c in other])] = other
    return L, y


def test_shrinkage_gives_sparse_lfs_one_weight_and_the_class_prior_breaks_their_ties():
    L, y = _tiny_lfs()
    lm = LabelModel(3).fit(L)
    assert np.median(lm.overlaps_) < 20  # the regime shrinkage is for
    w = lm.weights_[lm.voters_]
    assert w.std() < 0.25 * abs(lm.shared_weight_)  # near one shared weight
    # A 1-vs-1 conflict goes to the more frequent class (0), as a vote with class-balance ties would.
    row = np.full((1, L.shape[1]), -1, np.int8)
    row[0, 1], row[0, 2] = 1, 2  # LF 1 votes 1, LF 2 votes 2
    row2 = row.copy()
    row2[0, 1], row2[0, 0] = -1, 0  # LF 0 votes 0, LF 2 votes 2
    assert lm.predict(row)[0] == 1 and lm.predict(row2)[0] == 0
    off = LabelModel(3, LabelModelConfig(shrink_strength=0)).fit(L)
    assert off.weights_[off.voters_].std() > 2 * w.std()


def test_shrinkage_is_off_where_lfs_overlap_plentifully():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    acc = np.array([0.9, 0.8, 0.7, 0.65, 0.6])
    fire = rng.random((3000, 5)) < 0.5
    right = rng.random((3000, 5)) < acc
    L = np.where(fire, np.where(right, y[:, None], 1 - y[:, None]), -1).astype(np.int8)
    a = LabelModel(2).fit(L)
    b = LabelModel(2, LabelModelConfig(shrink_strength=0)).fit(L)
    assert np.median(a.overlaps_) > 20
    np.testing.assert_allclose(a.weights_, b.weights_, atol=1e-6)


def _one_lf_per_class(seed=2, n=4000, k=5):
    """One LF per class, each firing on 20-35% of rows at precision 0.3-0.65: plenty of overlaps, every one a conflict."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    other = np.linspace(0.08, 0.3, k)[None, :]  # precisions from ~0.65 down to ~0.3
    fire = rng.random((n, k)) < np.where(np.arange(k)[None, :] == y[:, None], 0.6, other)
    return np.where(fire, np.arange(k)[None, :], -1).astype(np.int8), y


def test_lfs_that_are_never_confirmed_keep_their_own_weights_and_analyze_says_so():
    for k in (2, 3, 5):
        L, y = _one_lf_per_class(k=k)
        lm = LabelModel(k).fit(L)
        assert np.median(lm.overlaps_) > 20 and lm.confirmations_.max() == 0  # overlaps, but all conflicts
        assert not lm.balance_fallback_ and lm.overruled_ < 0.01
        # one shared weight here fell below the class prior's log-ratio and overruled lone votes (0.47 at k=2)
        assert (lm.predict(L) == y).mean() >= (MajorityVoter(k, seed=1).predict(L) == y).mean()
    f = regime_figures(lm.overlaps_.astype(int), len(L), 100, 100, confirm_rows=lm.confirmations_.astype(int))
    assert f["median_confirm_rows"] == 0 and len(f["warnings"]) == 1 and "same label" in f["warnings"][0]
    L2 = np.concatenate([L, L], axis=1)  # a second LF per class: confirmations
    L2[np.random.default_rng(0).random(L2.shape) < 0.5] = -1
    lm2 = LabelModel(k, LabelModelConfig(near_duplicates=False)).fit(L2)
    assert np.median(lm2.confirmations_) >= 1


def _lopsided(seed=0, n=1600):
    """Binary: 7 precise SPAM LFs, 3 weaker HAM LFs (one broad); on half the rows of a class at most one
    of its LFs fires (keyword LFs matching different phrasings): the independence assumption breaks
    and EM's class balance drifts toward SPAM."""
    rng = np.random.default_rng(seed)
    y = rng.choice(2, n, p=[0.48, 0.52])
    cls = np.array([1] * 7 + [0] * 3)
    cov = np.array([0.151, 0.082, 0.069, 0.249, 0.269, 0.115, 0.185, 0.134, 0.182, 0.34])
    prec = np.array([0.888, 0.97, 0.858, 0.972, 0.779, 0.943, 0.97, 0.673, 0.618, 0.727])
    beta = np.where(cls == 1, 0.52, 0.48)
    a, b = np.clip(cov * prec / beta, 0, 1), np.clip(cov * (1 - prec) / (1 - beta), 0, 1)
    own = y[:, None] == cls[None, :]
    indep = rng.random(n) >= 0.5
    fire = np.where(own, indep[:, None] & (rng.random((n, 10)) < a), rng.random((n, 10)) < b)
    for c in (0, 1):
        js, rows = np.flatnonzero(cls == c), np.flatnonzero((y == c) & ~indep)
        p = np.append(a[js] / max(1.0, a[js].sum()), max(0.0, 1.0 - a[js].sum()))
        pick = rng.choice(len(js) + 1, size=len(rows), p=p / p.sum())
        fire[rows[pick < len(js)], js[pick[pick < len(js)]]] = True
    return np.where(fire, cls[None, :], -1).astype(np.int8), y


def test_a_model_that_overrules_unanimous_rows_refits_with_the_majority_vote_class_shares():
    L, y = _lopsided()
    off = LabelModel(2, LabelModelConfig(overrule_limit=1.0)).fit(L)
    lm = LabelModel(2).fit(L)
    mv = (MajorityVoter(2, seed=1).predict(L) == y).mean()
    assert off.overruled_ > 0.05 and not off.balance_fallback_
    assert (off.predict(L) == y).mean() < mv - 0.03  # what the guard prevents
    assert lm.balance_fallback_ and lm.overruled_ == off.overruled_
    assert (lm.predict(L) == y).mean() >= mv - 0.005
    assert abs(lm.class_prior_[1] - 0.5) < abs(off.class_prior_[1] - 0.5)
    fixed = LabelModel(2, LabelModelConfig(class_balance=[0.3, 0.7])).fit(L)  # a given balance is kept
    assert not fixed.balance_fallback_ and np.allclose(fixed.class_prior_, [0.3, 0.7])
    healthy = LabelModel(2).fit(_one_lf_per_class(k=2)[0])
    assert healthy.overruled_ == 0 and not healthy.balance_fallback_


def test_gate_closes_on_a_view_that_only_echoes_the_class_mix_and_opens_on_one_that_agrees():
    rng = np.random.default_rng(2)
    k, n = 4, 400
    top = rng.integers(0, k, n)
    P = np.full((n, k), 0.1)
    P[np.arange(n), top] = 0.7
    mix = P.mean(0)
    cfg = TextViewConfig()
    noise = rng.dirichlet(np.ones(k), n)
    assert view_gate(noise, P, mix, cfg)["gate"] == 0.0
    agree = 0.2 * noise
    agree[np.arange(n), top] += 0.8
    g = view_gate(agree, P, mix, cfg)
    assert g["gate"] == 1.0 and g["kappa"] > 0.7
    # Gate 0: the view moves a row only as far as the votes are undecided there.
    sure = np.array([[0.97, 0.01, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25]])
    Q = np.array([[0.01, 0.97, 0.01, 0.01]] * 2)
    out = combine(sure, Q, np.full(k, 0.25), cfg.weight, True, gate=0.0)
    assert out[0].argmax() == 0 and out[1].argmax() == 1
    assert combine(sure, Q, np.full(k, 0.25), cfg.weight, True, gate=1.0)[0].argmax() == 1


def test_near_duplicate_lfs_do_not_outvote_independent_ones():
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 2, n)
    # Two independent LFs (precision ~0.85, both classes) and 4 copies of one poor LF voting class 1.
    good = [np.where(rng.random(n) < 0.6, np.where(rng.random(n) < 0.85, y, 1 - y), -1) for _ in range(2)]
    poor = rng.random(n) < 0.15
    copies = [np.where(poor & (rng.random(n) < 0.97), 1, -1) for _ in range(4)]
    L = np.stack(good + copies, axis=1).astype(np.int8)
    assert near_duplicate_groups(L, 2) == [[2, 3, 4, 5]]
    lm = LabelModel(2).fit(L)
    assert lm.lf_groups_ == [[2, 3, 4, 5]]
    # Where both independent LFs say 0 and the copies say 1, the copies' four votes do not win.
    row = np.array([[0, 0, 1, 1, 1, 1]], np.int8)
    assert MajorityVoter(2).predict(row)[0] == 1 and lm.predict(row)[0] == 0
    assert (lm.predict(L) == y).mean() > (MajorityVoter(2).predict(L) == y).mean()


def test_select_on_valid_picks_by_valid_gold_and_says_so():
    gold = np.array([0, 1, 1, 0, 1, 0])
    split = np.array(["train", "train", "valid", "valid", "test", "test"])
    right = np.eye(2)[gold]
    wrong = np.eye(2)[1 - gold]
    res = select_on_valid({"majority": wrong, "label-model": right, "label-model+text-view": right}, gold, split, 1)
    assert res["chosen"] == "label-model+text-view" and res["uses_dev_labels"] is True  # ties: the default first
    assert res["selected_on"] == {"split": "valid", "rows": 2}
    assert res["candidates"]["majority"]["accuracy"] == 0.0
    assert select_on_valid({"majority": right, "label-model": wrong}, gold, split, 1)["chosen"] == "majority"


def test_regime_figures_warn_when_most_lfs_barely_overlap():
    f = regime_figures([0, 3, 5, 40], num_rows=100, overlapped=10, conflicted=4)
    assert f["conflict_rate"] == 0.04 and f["overlap_rate"] == 0.1 and f["lfs_with_few_overlaps"] == 3
    assert len(f["warnings"]) == 1 and "fewer than 20" in f["warnings"][0]
    assert regime_figures([30, 40, 5], 100, 10, 0)["warnings"] == []


def test_label_fit_select_on_valid_and_analyze_figures_through_the_cli(tmp_path):
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    n = 120
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, n)
    texts = [("cheap pills now" if c else "see you at lunch") + f" w{i}" for i, c in enumerate(y)]
    a = np.where(rng.random(n) < 0.8, y, 1 - y)
    b = np.where(rng.random(n) < 0.5, np.where(rng.random(n) < 0.7, y, 1 - y), -1)
    pq.write_table(pa.table({"text": texts, "split": (["train"] * 60) + (["valid"] * 30) + (["test"] * 30),
                             "label": pa.array(y, pa.int8()), "a": pa.array(a, pa.int8()),
                             "b": pa.array(b, pa.int8())}), tmp_path / "d.parquet")
    assert run_cli("dataset", "add", "d", tmp_path / "d.parquet", "--gold-field", "label", ws=root).code == 0
    spec = tmp_path / "t.py"
    spec.write_text("from mothermodel import Column, Task\n"
                    "task = Task(name='t', dataset='d', classes=['HAM', 'SPAM'], sources=[Column('a'), Column('b')])\n")
    assert run_cli("task", "submit", spec, ws=root).code == 0
    r = run_cli("label", "fit", "t", "--select-on", "valid", "--json", ws=root)
    assert r.code == 0, r
    res = json.loads(r.out)
    sel = res["selected"]
    assert res["uses_dev_labels"] is True and sel["uses_dev_labels"] is True
    assert set(sel["candidates"]) == {"majority", "label-model", "label-model+text-view"}
    best = max(c["accuracy"] for c in sel["candidates"].values())
    assert sel["candidates"][sel["chosen"]]["accuracy"] == best
    assert res["metrics"]["valid"]["accuracy"] == best
    auto = json.loads(run_cli("label", "fit", "t", "--json", ws=root).out)  # the default selects too
    assert auto["uses_dev_labels"] is True and auto["selected"]["automatic"] is True
    assert auto["selected"]["chosen"] == sel["chosen"] and auto["metrics"] == res["metrics"]
    plain = json.loads(run_cli("label", "fit", "t", "--select-on", "none", "--json", ws=root).out)
    assert plain["uses_dev_labels"] is False and "selected" not in plain
    assert auto["metrics_gold_free"] == plain["metrics"]
    assert plain["label_model_fit"]["balance_fallback"] is False and plain["label_model_fit"]["overruled"] < 0.05
    assert run_cli("label", "fit", "t", "--model", "majority", "--select-on", "valid", ws=root).code == 2
    an = json.loads(run_cli("label", "analyze", "t", "--json", ws=root).out)
    assert an["conflict_rate"] > 0 and all(lf["overlap_rows"] > 20 for lf in an["lfs"]) and an["warnings"] == []
    both = ((a == b) & (b >= 0))[:len(a)]  # the two columns agree on these rows: each confirms the other there
    assert [lf["confirm_rows"] for lf in an["lfs"]] == [int(both.sum())] * 2
    assert an["median_confirm_rows"] == both.sum()
