"""The registry store: typed records, version counters, lineage staleness, reading labels back,
and the `Registry` label twins of the CLI."""

import json
import multiprocessing as mp

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from test_labeling import SPEC, lws, submit  # noqa: F401  (fixture)

from mothermodel import Registry
from mothermodel.errors import IntegrityError, UserError
from mothermodel.registry.records import ModelTaskRecord, ProbLabelsRecord, TaskRecord
from mothermodel.registry.store import RegistryStore


def test_records_are_typed_and_match_the_cli(lws, tmp_path):
    submit(lws, tmp_path)
    store = RegistryStore(Registry.open(lws).ws)
    t = store.task("spam")
    assert isinstance(t, TaskRecord) and t.classes == ("HAM", "SPAM") and t.dataset == "mail"
    shown = json.loads(run_cli("task", "show", "spam", "--json", ws=lws).out)
    assert t.fingerprint == shown["fingerprint"] and t.version == shown["version"]
    assert {s.name: s.version for s in t.sources} == {s["name"]: s["version"] for s in shown["sources"]}
    assert {s.name: s.kind for s in t.sources} == {"stars": "column", "link": "lf", "money": "lf",
                                                    "greeting": "lf", "lunch": "lf"}
    snap = store.snapshot()
    assert set(snap.tasks) == {"spam"} and snap.datasets["mail"].gold_column("spam") == "label"
    assert snap.latest_matrix == {} and snap.latest_probs == {}
    with pytest.raises(UserError, match="unknown task 'nope'"):
        store.task("nope")


def test_task_tree_and_graph_come_from_one_builder(lws, tmp_path):
    submit(lws, tmp_path)
    kid = tmp_path / "kid.py"
    kid.write_text("from mothermodel import Task, TaskOutput\n"
                   "task = Task(name='kid', dataset='mail', classes=['A', 'B'], parent='spam', parent_class='SPAM')\n")
    user = tmp_path / "user.py"
    user.write_text("from mothermodel import Task, TaskOutput\n"
                    "task = Task(name='user', dataset='mail', classes=['HAM', 'SPAM'], sources=[TaskOutput('spam')])\n")
    for p in (kid, user):
        assert run_cli("task", "submit", p, ws=lws).code == 0
    store = Registry.open(lws).store
    assert store.task_tree("kid") == ["spam", "kid"] and store.task_tree("spam") == ["spam", "kid"]
    g = store.graph()
    assert {(u, v, d["kind"]) for u, v, d in g.edges(data=True)} == {("spam", "kid", "parent"),
                                                                      ("spam", "user", "task_output")}
    assert g.nodes["spam"]["n_sources"] == 5
    assert set(store.snapshot().graph(kinds=("task_output",)).edges) == {("spam", "user")}


def test_fit_writes_a_prob_labels_file_the_store_reads_back(lws, tmp_path):
    submit(lws, tmp_path)
    res = json.loads(run_cli("label", "fit", "spam", "--json", ws=lws).out)
    store = Registry.open(lws).store
    rec = store.latest_prob_labels("spam")
    assert isinstance(rec, ProbLabelsRecord) and rec.version == res["version"] and rec.model == "label-model"
    assert rec.config["seed"] == 123 and rec.metrics == res["metrics"]
    pl = store.read_prob_labels(rec, with_text=True)
    n = 8
    assert pl.probs.shape == (n, 2) and np.allclose(pl.probs.sum(axis=1), 1, atol=1e-5)
    assert sorted(pl.rows.tolist()) == list(range(n))
    # pred is the arg-max (ties broken by the seeded rule), split and gold are the dataset's own.
    top = pl.probs.max(axis=1, keepdims=True)
    assert all(pl.probs[i, pl.pred[i]] == top[i, 0] for i in range(n))
    assert pl.split.tolist() == ["train"] * 4 + ["valid"] * 2 + ["test"] * 2
    assert pl.gold.tolist() == [1, 0, 1, 0, 1, 0, 1, 0] and pl.texts[0] == "buy cheap pills http://a.b"
    # Rows with a vote in the label matrix are "covered"; row 3 ("see you at lunch") has the lunch LF.
    assert pl.covered.tolist() == [True] * 8
    # Metrics recomputed from the file equal what fit reported.
    test = pl.split == "test"
    assert (pl.pred[test] == pl.gold[test]).mean() == res["metrics"]["test"]["accuracy"]
    # The file is hash-checked.
    path = Registry.open(lws).ws.home / rec.path
    t = pq.read_table(path)
    pq.write_table(t.slice(1), path)
    with pytest.raises(IntegrityError, match="content hash mismatch"):
        store.read_prob_labels(rec)


def test_hierarchical_labels_carry_applicable(tmp_path):
    from test_labeling import test_hierarchical_fit_over_a_task_tree as build  # builds the demo-like tree

    build(tmp_path)
    store = Registry.open(tmp_path / "w").store
    child = "billing_kind"
    pl = store.read_prob_labels(store.latest_prob_labels(child))
    assert pl.applicable is not None and ((pl.applicable >= 0) & (pl.applicable <= 1)).all()
    assert pl.record.model == "hierarchical"


def _record_matrix(ws_root, i):
    store = Registry.open(ws_root).store
    t = store.task("spam")
    return store.record_label_matrix(t, path=f"p{i}", content_hash=f"h{i}", dataset_hash="d", source_versions={},
                                     num_rows=8, inputs_key=f"k{i}", num_entries=0, faults=[]).version


def test_version_counters_are_safe_across_processes(lws, tmp_path):
    submit(lws, tmp_path)
    with mp.get_context("spawn").Pool(4) as pool:
        versions = pool.starmap(_record_matrix, [(str(lws), i) for i in range(8)])
    assert sorted(versions) == list(range(1, 9))


def test_staleness_follows_lineage(lws, tmp_path):
    """Labels, model and deployable go stale exactly when what they were built from moves, with a reason."""
    submit(lws, tmp_path)
    reg = Registry.open(lws)
    store = reg.store

    def state():
        return {t["name"]: t for t in reg.status().to_json()["tasks"]}["spam"]

    s = state()
    assert s["labels"]["stale"] and s["labels"]["reason"] == "no probabilistic labels yet"
    assert s["model"]["reason"] == "no model yet" and s["deployable"]["reason"] == "no deployable yet"
    v1 = reg.label_fit("spam", model="majority").version
    t = store.task("spam")
    m1 = store.record_model(path="models/v1", encoder="tiny", content_hash="h", metrics={}, mlflow_run_id=None,
                            tasks=[ModelTaskRecord("spam", t.fingerprint, v1)])
    s = state()
    assert not s["labels"]["stale"] and not s["model"]["stale"] and "reason" not in s["model"]
    store.record_deployable(task=t, model_version=m1.version, student="ngram", path="d/1", content_hash="h",
                            mlflow_model_version="1", metrics={})
    assert not state()["deployable"]["stale"]

    # Refitting the labels (another label model) makes the model stale, and so its deployable.
    v2 = reg.label_fit("spam", model="label-model").version
    s = state()
    assert not s["labels"]["stale"]
    assert s["model"]["stale"] and s["model"]["reason"] == (f"labels refit: model v1 learned labels v{v1}, "
                                                            f"the newest are v{v2}")
    assert s["deployable"]["stale"] and s["deployable"]["reason"].startswith("its model is stale")

    # A new model trained on them: the model is fresh, the old deployable superseded.
    m2 = store.record_model(path="models/v2", encoder="tiny", content_hash="h", metrics={}, mlflow_run_id="r",
                            tasks=[ModelTaskRecord("spam", t.fingerprint, v2)])
    s = state()
    assert not s["model"]["stale"]
    assert s["deployable"]["reason"] == "superseded: distilled from model v1, the latest is v2"
    assert [m.version for m in store.models()] == [1, 2] and store.model().mlflow_run_id == "r"
    assert store.model(1).tasks["spam"].prob_label_version == v1

    # An LF edit changes the fingerprint: labels, model and deployable all stale, each saying why.
    submit(lws, tmp_path, SPEC.replace('"cheap"]', '"cheap", "free"]'), replace=True)
    s = state()
    assert s["labels"]["reason"] == f"task changed since labels v{v2} were fit"
    assert s["model"]["reason"] == f"task changed since model v{m2.version} was trained"
    assert s["deployable"]["stale"]
    assert store.latest_prob_labels("spam") is None and store.latest_prob_labels("spam", fresh=False).version == v2
    imp = reg.impact("spam.money").to_json()
    assert imp["models"] == [2] and imp["reasons"]["models"] == {"2": "trained on spam"}  # the current one only
    assert imp["reasons"]["deployables"] == {"spam v1": "distilled for spam from model v1"}


def test_label_twins_equal_the_cli(lws, tmp_path):
    submit(lws, tmp_path)
    reg = Registry.open(lws)
    from mothermodel.labeling.apply.config import ApplyConfig

    api_apply = reg.label_apply(["spam"], ApplyConfig(progress=False))
    cli_apply = json.loads(run_cli("label", "apply", "spam", "--json", ws=lws).out)
    assert api_apply["tasks"][0]["status"] == "created" and cli_apply["tasks"][0]["status"] == "up to date"
    assert reg.label_analyze("spam", "train") == json.loads(run_cli("label", "analyze", "spam", "--split", "train",
                                                                    "--json", ws=lws).out)
    api_fit = reg.label_fit("spam", model="majority")
    cli_fit = json.loads(run_cli("label", "fit", "spam", "--model", "majority", "--json", ws=lws).out)
    assert api_fit.to_json()["metrics"] == cli_fit["metrics"] and cli_fit["version"] == api_fit.version + 1
    assert reg.label_log("spam") == json.loads(run_cli("label", "log", "spam", "--json", ws=lws).out)
    submit(lws, tmp_path, SPEC.replace('"cheap"]', '"cheap", "free"]'), replace=True)
    reg.label_apply()
    assert reg.label_diff("spam", 1, 2) == json.loads(run_cli("label", "diff", "spam", "1", "2", "--json", ws=lws).out)
    with pytest.raises(UserError, match="V2: task 'spam' has no label-matrix version 9"):
        reg.label_diff("spam", 1, 9)
