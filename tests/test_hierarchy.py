"""Tests of the hierarchical multi-task label model (labeling/model/hierarchy.py).

Synthetic tree with known LF accuracies, propensities and non-applicable firing
rates: topic (4 classes) -> billing_kind (3, under class 0), tech_kind (2, under
class 1) -> bug_severity (2, under tech_kind class 0). Fast (< 20 s, 2 cores).
"""

from __future__ import annotations

import numpy as np
import pytest

from mothermodel.labeling.model.hierarchy import HierarchicalLabelModel, HierarchyConfig, TaskNode
from mothermodel.labeling.model.baselines import MajorityVoter
from mothermodel.labeling.model.label_model import LabelModel, LabelModelConfig

NODES = [TaskNode("topic", 4), TaskNode("billing_kind", 3, "topic", 0),
         TaskNode("tech_kind", 2, "topic", 1), TaskNode("bug_severity", 2, "tech_kind", 0)]
PRIORS = {"topic": [0.35, 0.3, 0.2, 0.15], "billing_kind": [0.5, 0.3, 0.2], "tech_kind": [0.6, 0.4],
          "bug_severity": [0.7, 0.3]}
# (accuracy when firing, P(fire | task applies), P(fire | task does not apply))
LFS = {
    "topic": [(0.85, 0.5, 0), (0.75, 0.4, 0), (0.65, 0.6, 0), (0.55, 0.5, 0)],
    "billing_kind": [(0.9, 0.5, 0.10), (0.7, 0.4, 0.2), (0.6, 0.5, 0.05)],
    "tech_kind": [(0.9, 0.5, 0.1), (0.8, 0.4, 0.2), (0.65, 0.5, 0.1)],
    "bug_severity": [(0.85, 0.6, 0.1), (0.75, 0.5, 0.1), (0.65, 0.5, 0.2)],
}
N = 20000


def make(n=N, seed=0):
    """Gold labels (-1 where a child does not apply) and label matrices. An LF
    fires with its propensity independently of the class, votes the true class
    with its accuracy, else a uniformly chosen wrong class; a child LF on a
    non-applicable row fires with its NA rate and votes a uniform class."""
    rng = np.random.default_rng(seed)
    Y = {"topic": rng.choice(4, size=n, p=PRIORS["topic"])}
    for nd in NODES[1:]:
        y = rng.choice(nd.cardinality, size=n, p=PRIORS[nd.name])
        y[Y[nd.parent] != nd.parent_class] = -1
        Y[nd.name] = y
    L = {}
    for nd in NODES:
        k, y = nd.cardinality, Y[nd.name]
        app = y >= 0
        cols = []
        for acc, prop, na in LFS[nd.name]:
            fire = np.where(app, rng.random(n) < prop, rng.random(n) < na)
            wrong = (y + rng.integers(1, k, size=n)) % k
            vote = np.where(rng.random(n) < acc, y, wrong)
            vote = np.where(app, vote, rng.integers(0, k, size=n))
            cols.append(np.where(fire, vote, -1))
        L[nd.name] = np.stack(cols, 1).astype(np.int8)
    return L, Y


def compose(flat_preds):
    """Top-down consistent labels from per-task predictions made independently."""
    out = {}
    for nd in NODES:
        p = flat_preds[nd.name].astype(np.int64).copy()
        if nd.parent is not None:
            p[out[nd.parent] != nd.parent_class] = -1
        out[nd.name] = p
    return out


def accuracies(pred, cond_pred, Y):
    """task -> (accuracy over all rows of the label incl. 'not applicable',
    accuracy of the conditional prediction on rows where the task applies)."""
    res = {}
    for nd in NODES:
        app = Y[nd.name] >= 0
        res[nd.name] = (float((pred[nd.name] == Y[nd.name]).mean()),
                        float((cond_pred[nd.name][app] == Y[nd.name][app]).mean()))
    return res


@pytest.fixture(scope="module")
def world():
    L, Y = make()
    hm = HierarchicalLabelModel(NODES, HierarchyConfig(device="cpu", seed=7)).fit(L)
    return L, Y, hm


def test_recovers_lf_parameters(world):
    L, Y, hm = world
    assert hm.n_iter_ >= 2
    for nd in NODES:
        true = np.array(LFS[nd.name])
        est = hm.lf_params_[nd.name]
        np.testing.assert_allclose(est["accuracy"], true[:, 0], atol=0.06, err_msg=nd.name)
        np.testing.assert_allclose(est["propensity"], true[:, 1], atol=0.03, err_msg=nd.name)
        if nd.parent is not None:
            np.testing.assert_allclose(est["na_fire_rate"], true[:, 2], atol=0.02, err_msg=nd.name)
        np.testing.assert_allclose(hm.class_balance_[nd.name], PRIORS[nd.name], atol=0.08, err_msg=nd.name)


def test_beats_independent_and_majority_vote(world):
    L, Y, hm = world
    cond = {t: P.argmax(1) for t, P in hm.predict_conditional(L).items()}
    hier = accuracies(hm.predict(L), cond, Y)
    flat = {nd.name: LabelModel(nd.cardinality, LabelModelConfig(device="cpu")).fit(L[nd.name]).predict(L[nd.name])
            for nd in NODES}
    indep = accuracies(compose(flat), flat, Y)
    mv_flat = {nd.name: MajorityVoter(nd.cardinality).predict(L[nd.name]) for nd in NODES}
    mv = accuracies(compose(mv_flat), mv_flat, Y)
    print("\ntask: (accuracy incl. NA, conditional accuracy where applicable)")
    for nd in NODES:
        print(f"{nd.name:13s} hierarchical {hier[nd.name]}  independent {indep[nd.name]}  majority {mv[nd.name]}")
    for nd in NODES:
        assert hier[nd.name][0] > mv[nd.name][0] + 0.01, nd.name
        assert hier[nd.name][1] > mv[nd.name][1] + 0.01, nd.name
        assert hier[nd.name][0] > indep[nd.name][0], nd.name  # every child has LFs firing on NA rows


def test_outputs_are_consistent(world):
    L, Y, hm = world
    out = hm.predict_all(L)
    J = hm.joint_states
    joint = hm.predict_joint(L)
    np.testing.assert_allclose(joint.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["marginal"]["topic"].sum(1), 1.0, atol=1e-5)
    pred = hm.predict(L)
    for i, nd in enumerate(hm.nodes):
        np.testing.assert_allclose(out["conditional"][nd.name].sum(1), 1.0, atol=1e-5)
        # marginals are sums of the joint posterior
        for c in range(nd.cardinality):
            np.testing.assert_allclose(out["marginal"][nd.name][:, c], joint[:, J[:, i] == c].sum(1), atol=1e-5)
        if nd.parent is None:
            continue
        p_parent = out["marginal"][nd.parent][:, nd.parent_class]
        np.testing.assert_allclose(out["marginal"][nd.name].sum(1), p_parent, atol=1e-5)
        np.testing.assert_allclose(out["applicable"][nd.name], p_parent, atol=1e-5)
        np.testing.assert_allclose(out["marginal"][nd.name],
                                   out["conditional"][nd.name] * p_parent[:, None], atol=1e-5)
        applies = pred[nd.parent] == nd.parent_class
        assert (pred[nd.name][~applies] == -1).all(), nd.name
        assert (pred[nd.name][applies] >= 0).all(), nd.name
    # every joint state is consistent: a child is set iff its parent is its parent_class
    for i, nd in enumerate(hm.nodes):
        if nd.parent is not None:
            p = hm.task_names.index(nd.parent)
            assert ((J[:, i] >= 0) == (J[:, p] == nd.parent_class)).all()
    assert len(J) == 2 + 3 + 2 + 1 == len({tuple(r) for r in J})


def test_deterministic_with_seed(world):
    L, Y, hm = world
    sub = {t: v[:5000] for t, v in L.items()}
    cfg = HierarchyConfig(device="cpu", seed=7, max_fit_rows=3000)
    a = HierarchicalLabelModel(NODES, cfg).fit(sub)
    b = HierarchicalLabelModel(NODES, cfg).fit(sub)
    pa, pb = a.predict_proba(sub), b.predict_proba(sub)
    for t in pa:
        np.testing.assert_array_equal(pa[t], pb[t])
    ha, hb = a.predict(sub, tie_break_seed=3), b.predict(sub, tie_break_seed=3)
    for t in ha:
        np.testing.assert_array_equal(ha[t], hb[t])


def test_dev_labels_anchor(world):
    L, Y, hm = world
    dL = {t: v[:2000] for t, v in L.items()}
    dY = {t: v[:2000] for t, v in Y.items() if t != "bug_severity"}  # partial gold is fine
    m = HierarchicalLabelModel(NODES, HierarchyConfig(device="cpu")).fit(
        {t: v[2000:10000] for t, v in L.items()}, dev=(dL, dY))
    acc = (m.predict(L)["topic"] == Y["topic"]).mean()
    assert acc > 0.8


def test_bad_inputs_name_the_task(world):
    L, Y, hm = world
    with pytest.raises(ValueError, match="billing_kind"):
        HierarchicalLabelModel([TaskNode("topic", 4), TaskNode("billing_kind", 3, "topic", 4)])
    with pytest.raises(ValueError, match="billing_kind"):
        HierarchicalLabelModel([TaskNode("topic", 4), TaskNode("billing_kind", 3, "nope", 0)])
    with pytest.raises(ValueError, match="billing_kind"):
        HierarchicalLabelModel([TaskNode("topic", 4), TaskNode("billing_kind", 1, "topic", 0)])
    with pytest.raises(ValueError, match="single root"):
        HierarchicalLabelModel([TaskNode("topic", 4), TaskNode("other", 2)])
    with pytest.raises(ValueError, match=r"task 'a': not connected to the root 'r' \(cycle\?\)"):
        HierarchicalLabelModel([TaskNode("a", 2, "b", 0), TaskNode("b", 2, "a", 0), TaskNode("r", 2)])
    small = {t: v[:100] for t, v in L.items()}
    bad = dict(small, tech_kind=np.full((100, 3), 2))          # class 2 of a 2-class task
    with pytest.raises(ValueError, match="tech_kind"):
        HierarchicalLabelModel(NODES).fit(bad)
    bad = dict(small, bug_severity=small["bug_severity"][:50])  # row count mismatch
    with pytest.raises(ValueError, match="bug_severity"):
        HierarchicalLabelModel(NODES).fit(bad)
    with pytest.raises(ValueError, match="unknown_task"):
        HierarchicalLabelModel(NODES).fit(dict(small, unknown_task=small["topic"]))
    with pytest.raises(ValueError, match="billing_kind"):
        hm.predict(dict(small, billing_kind=small["billing_kind"][:, :2]))  # LF count differs from fit
    with pytest.raises(ValueError, match="topic"):
        HierarchicalLabelModel(NODES).fit(dict(small, topic=small["topic"].astype(float)))
    gold = {"topic": np.full(100, 2), "billing_kind": np.zeros(100, dtype=int)}  # child set, parent differs
    with pytest.raises(ValueError, match="billing_kind"):
        HierarchicalLabelModel(NODES).fit(small, dev=(small, gold))
