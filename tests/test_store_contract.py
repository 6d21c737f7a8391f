"""The store's contract (issue 25 item 2): an abstract store whose reads return records, the DuckDB store
one implementation of it, rows mapped to records by column name, JSON made only at the CLI."""

import inspect
import json
from datetime import datetime

import duckdb
import pytest
from conftest import run_cli
from test_labeling import lws, submit  # noqa: F401  (fixture)

from mothermodel import Registry
from mothermodel.errors import UserError
from mothermodel.registry import records as R
from mothermodel.registry import store as store_mod
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.records import ModelTaskRecord
from mothermodel.registry.store import RegistryStore

# The DuckDB store's connection helpers: how it opens its file, not part of what a store offers.
CONNECTION_HELPERS = {"read", "write"}


def test_the_duckdb_store_implements_the_whole_contract():
    assert issubclass(RegistryStore, AbstractStore) and not RegistryStore.__abstractmethods__
    public = {n for n, v in vars(RegistryStore).items() if callable(v) and not n.startswith("_")}
    declared = set(AbstractStore.__abstractmethods__)
    assert public - CONNECTION_HELPERS == declared, "every public store method is declared in AbstractStore"
    for name in sorted(declared):
        want = inspect.signature(getattr(AbstractStore, name)).parameters
        got = inspect.signature(getattr(RegistryStore, name)).parameters
        for p in want.values():  # the implementation may add optional parameters (a connection to reuse)
            assert p.name in got and got[p.name].kind == p.kind and got[p.name].default == p.default, (name, p)
        assert all(q.default is not inspect.Parameter.empty or q.kind is q.VAR_KEYWORD
                   for n, q in got.items() if n not in want), name
    with pytest.raises(TypeError):
        AbstractStore()  # a backend must implement everything


def test_rows_become_records_by_column_name():
    con = duckdb.connect()
    assert store_mod._rows(con.execute("SELECT 2 AS b, 1 AS a UNION ALL SELECT 4, 3 ORDER BY 1")) == [
        {"b": 2, "a": 1}, {"b": 4, "a": 3}]
    assert store_mod._row(con.execute("SELECT 1 AS a WHERE false")) is None
    # A SELECT's column order does not matter: each field comes from its own column.
    row = {"source_file": None, "columns": ["text", "_row"], "name": "d", "num_rows": 3, "path": "p",
           "content_hash": "h", "gold_field": None, "split_field": "split", "text_field": "text"}
    d = store_mod._dataset(row)
    assert (d.name, d.path, d.num_rows, d.text_field, d.split_field, d.columns) == ("d", "p", 3, "text", "split",
                                                                                   ("text", "_row"))
    src = inspect.getsource(store_mod)
    assert "r[0]" not in src and "r[1]" not in src


def _workspace(lws, tmp_path):
    submit(lws, tmp_path)
    kid = tmp_path / "kid.py"
    kid.write_text("from mothermodel import Task\n"
                   "task = Task(name='kid', dataset='mail', classes=['A', 'B'], parent='spam', parent_class='SPAM')\n")
    assert run_cli("task", "submit", kid, ws=lws).code == 0
    reg = Registry.open(lws)
    reg.label_fit("spam", model="majority")
    v = reg.store.latest_prob_labels("spam").version
    t = reg.store.task("spam")
    m = reg.store.record_model(path="models/v1", encoder="tiny", content_hash="h", metrics={}, mlflow_run_id=None,
                               tasks=[ModelTaskRecord("spam", t.fingerprint, v, "labels", None, None,
                                                      {"stage": 1, "final_stage": 1, "margin": -2.0, "split": "valid",
                                                       "below_labels": True, "cause": "few rows"})])
    reg.store.record_deployable(task=t, model_version=m.version, student="ngram", path="d/1", content_hash="h",
                                mlflow_model_version="1", metrics={})
    reg.store.set_task_faults("label fit", [{"task": "kid", "reason": "broken", "fix": "fix it"}])
    return reg


def test_reads_return_records_with_datetimes(lws, tmp_path):
    reg = _workspace(lws, tmp_path)
    tasks = reg.list_tasks()
    assert all(isinstance(t, R.TaskSummary) and isinstance(t.updated_at, datetime) for t in tasks)
    assert [(t.name, t.classes, t.num_sources) for t in tasks] == [("kid", ("A", "B"), 0),
                                                                  ("spam", ("HAM", "SPAM"), 5)]
    shown = reg.show_task("spam")
    assert isinstance(shown, R.TaskDetail) and isinstance(shown.task, R.TaskRecord)
    assert isinstance(shown.task.created_at, datetime)
    assert [s.kind for s in shown.sources][0] == "column" and {s.name for s in shown.sources} == set(
        shown.task.source_names())
    assert shown.downstream == (R.Edge("spam", "kid", "parent"),) and shown.upstream == ()

    st = reg.status()
    assert isinstance(st, R.StatusReport) and isinstance(st.registry, R.RegistryStatus)
    spam, kid = st.registry.task("spam"), st.registry.task("kid")
    assert isinstance(spam, R.TaskStatus) and not spam.labels.stale and not spam.deployable.stale
    assert spam.serving == R.Serving("labels", 1, 1, -2.0, "valid", True, None, None, cause="few rows")
    assert kid.labels.reason == "no probabilistic labels yet" and kid.serving is None
    (fault,) = kid.faults
    assert isinstance(fault, R.TaskFault) and isinstance(fault.at, datetime) and fault.stage == "label fit"
    assert st.registry.failed == [fault] and reg.task_faults() == [fault]
    assert st.registry.stale == {"labels": 1, "model": 1, "deployable": 1}
    assert reg.store.task_status("kid") == kid and reg.store.task_status("spam") == spam
    with pytest.raises(UserError, match="unknown task 'nope'"):
        reg.store.task_status("nope")

    imp = reg.impact("spam")
    assert isinstance(imp, R.ImpactReport) and (imp.kind, imp.name) == ("task", "spam")
    assert [(t.name, t.depth, t.via, t.edge) for t in imp.tasks] == [("spam", 0, None, None),
                                                                     ("kid", 1, "spam", "parent")]
    assert imp.models == (R.ImpactedModel(1, ("spam",)),) and imp.models[0].reason == "trained on spam"
    assert imp.deployables == (R.ImpactedDeployable("spam", 1, 1, "ngram"),)


def test_the_cli_json_is_each_records_to_json(lws, tmp_path):
    """JSON is made at the edge: every `--json` is exactly the record's `to_json()` (datetimes as ISO strings)."""
    reg = _workspace(lws, tmp_path)

    def cli(*args):
        r = run_cli(*args, "--json", ws=lws)
        assert r.code == 0, r
        return json.loads(r.out)

    assert cli("task", "list") == [t.to_json() for t in reg.list_tasks()]
    assert cli("dataset", "list") == [d.to_json() for d in reg.list_datasets()]
    assert list(cli("dataset", "list")[0]) == ["name", "path", "num_rows", "content_hash", "text_field",
                                               "split_field", "gold_field", "columns"]
    assert cli("task", "show", "spam") == reg.show_task("spam").to_json()
    assert cli("dag", "impact", "spam") == reg.impact("spam").to_json()
    assert cli("dag", "impact", "mail") == reg.impact("mail").to_json()
    assert cli("status") == reg.status().to_json()
    shown = cli("task", "show", "kid")
    assert shown["created_at"] == reg.show_task("kid").task.created_at.isoformat()
    assert shown["upstream"] == [{"task": "spam", "kind": "parent"}]
    st = cli("status")
    assert st["failed"] == [{"task": "kid", "stage": "label fit", "reason": "broken", "fix": "fix it",
                             "at": reg.task_faults()[0].at.isoformat()}]
    assert [t["name"] for t in st["tasks"]] == ["kid", "spam"]
    assert st["tasks"][0]["faults"] == [{k: v for k, v in st["failed"][0].items() if k != "task"}]
    assert st["tasks"][1]["serving"]["cause"] == "few rows" and "encoder_fit" not in st["tasks"][1]["serving"]
