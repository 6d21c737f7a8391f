"""Typed stage outcomes (issue 25 item 1): `label fit` and `train` return dataclasses whose `to_json()` is the
documented `--json`, the metric key `task/dataset/split/metric` is built and read by `MetricKey` only, `watch`
repeats a fit's settings from a typed read, and distill checks one task's staleness with a read of that task."""

import json

import pytest
from conftest import run_cli
from test_labeling import SPEC, lws, submit  # noqa: F401  (fixture)

from mothermodel import Registry
from mothermodel.defaults import DEFAULT_SEED
from mothermodel.errors import UserError
from mothermodel.labeling.label_fit import TEXT_VIEW_OFF, FitOutcome, FitSettings, last_settings
from mothermodel.registry.metric_key import MetricKey, flatten, per_split
from mothermodel.registry.records import ModelTaskRecord
from mothermodel.trainer.outcome import TaskResult, TrainOutcome, TrainRun


def test_metric_key_builds_and_reads_the_one_name():
    k = MetricKey("spam", "mail", "valid", "accuracy")
    assert k.flat() == "spam/mail/valid/accuracy" and MetricKey.parse(k.flat()) == k
    odd = MetricKey("spam", "mail", "test (2024)/b", "served_accuracy")  # a split name may hold a slash
    assert MetricKey.parse(odd.flat()) == odd
    assert MetricKey.parse("train_seconds") is None and MetricKey.parse("a/b/c") is None
    assert list(flatten({k: 1.0, "bundle_bytes": 3})) == ["spam/mail/valid/accuracy", "bundle_bytes"]
    assert per_split("t", "d", {"valid": {"accuracy": 0.5, "n": 3}, "test": {"accuracy": 1, "macro_f1": 0.5}},
                     ("accuracy", "macro_f1"), prefix="served_") == {
        MetricKey("t", "d", "valid", "served_accuracy"): 0.5, MetricKey("t", "d", "test", "served_accuracy"): 1.0,
        MetricKey("t", "d", "test", "served_macro_f1"): 0.5}


def _old_metrics(lin, per_stage, served):
    """trainer/run.py `_metrics` as it was before the outcome was typed: the reference for the flat names."""
    metrics = {}
    for n, (dataset, label_metrics) in lin.items():
        c = served[n]
        for split, m in per_stage[c["stage"]].get(n, {}).items():
            for k in ("accuracy", "macro_f1"):
                if k in m:
                    metrics[f"{n}/{dataset}/{split}/{k}"] = float(m[k])
        if len(per_stage) > 1:
            for s, res in per_stage.items():
                for split, m in res.get(n, {}).items():
                    metrics[f"{n}/{dataset}/{split}/stage{s}_accuracy"] = float(m["accuracy"])
        for split, m in label_metrics.items():
            for k in ("accuracy", "macro_f1"):
                if k in m:
                    metrics[f"{n}/{dataset}/{split}/label_model_{k}"] = m[k]
        src = label_metrics if c["served_by"] == "labels" else per_stage[c["stage"]].get(n, {})
        for split, m in src.items():
            for k in ("accuracy", "macro_f1"):
                if k in m:
                    metrics[f"{n}/{dataset}/{split}/served_{k}"] = float(m[k])
    return metrics


def _trained_outcome():
    per_stage = {0: {"spam": {"valid": {"accuracy": 0.8, "macro_f1": 0.7, "n": 10}, "test": {"accuracy": 0.75,
                                                                                           "macro_f1": 0.7, "n": 8}},
                     "topic": {"valid": {"accuracy": 0.5, "macro_f1": 0.4, "n": 10}}},
                 1: {"spam": {"valid": {"accuracy": 0.9, "macro_f1": 0.85, "n": 10}, "test": {"accuracy": 0.8,
                                                                                            "macro_f1": 0.8, "n": 8}},
                     "topic": {"valid": {"accuracy": 0.4, "macro_f1": 0.3, "n": 10}}}}
    lin = {"spam": ("mail", {"train": {"accuracy": 0.7}, "valid": {"accuracy": 0.85, "macro_f1": 0.8, "n": 10}}),
           "topic": ("news", {"valid": {"accuracy": 0.6, "macro_f1": 0.55, "n": 10}})}
    served = {"spam": {"served_by": "model", "stage": 1, "final_stage": 1, "margin": 5.0, "reason": "r"},
              "topic": {"served_by": "labels", "stage": 0, "final_stage": 1, "margin": -10.0, "reason": "r2"}}
    tasks = {n: TaskResult(n, d, per_stage[served[n]["stage"]].get(n, {}), lm,
                           {s: r.get(n, {}) for s, r in per_stage.items()}, served[n])
             for n, (d, lm) in lin.items()}
    run = TrainRun(path="models/run-x/stage-1/step-4", mlflow_run_id="abc", mlflow_tracking_uri="sqlite:///x",
                   seconds=1.5, examples_per_s=10.0, steps=4, stages=2)
    return TrainOutcome(3, True, {"new": ["spam", "topic"], "changed": [], "unchanged": [], "removed": []},
                        tasks=tasks, run=run), _old_metrics(lin, per_stage, served), served


def test_train_outcome_gives_the_same_names_and_json():
    out, old, served = _trained_outcome()
    flat = flatten(out.metrics)
    assert flat == old and list(flat) == list(old)  # the same figures under the same names, in the same order
    assert all(isinstance(k, MetricKey) for k in out.metrics)
    j = out.to_json()
    assert list(j) == ["model_version", "trained", "metrics", "changes", "guard", "warm_start", "focus", "path",
                       "mlflow_run_id", "mlflow_tracking_uri", "seconds", "examples_per_s", "steps", "stages",
                       "resumed_from", "failed"]
    assert j["guard"] == served and j["metrics"] == old
    assert out.tasks["topic"].served_by == "labels" and out.tasks["topic"].served_metrics["valid"]["accuracy"] == 0.6
    json.dumps(j)
    up = TrainOutcome(2, False, {"new": []}, status="up to date", recorded_metrics={"a/b/c/accuracy": 1.0})
    assert up.to_json() == {"model_version": 2, "trained": False, "status": "up to date", "changes": {"new": []},
                            "metrics": {"a/b/c/accuracy": 1.0}, "failed": []}
    assert list(TrainOutcome(None, False, {}, status="failed").to_json()) == [
        "model_version", "trained", "status", "changes", "metrics", "failed"]


def test_fit_outcome_json_and_settings(lws, tmp_path):
    submit(lws, tmp_path)
    reg = Registry.open(lws)
    res = reg.label_fit("spam", text_view=False, select_on="none")
    assert isinstance(res, FitOutcome) and res.text_view is False and res.view == {"used": False,
                                                                                   "reason": TEXT_VIEW_OFF}
    cli = json.loads(run_cli("label", "fit", "spam", "--no-text-view", "--select-on", "none", "--json", ws=lws).out)
    assert list(res.to_json()) == list(cli) and res.to_json()["metrics"] == cli["metrics"]
    with pytest.raises(TypeError):  # a record, read by attribute: no dict-style reads of the --json shape left
        res["version"]
    # watch repeats the last fit's settings, read back as a record, not by matching the report's wording
    s = last_settings(reg.store, "spam")
    assert (s.model, s.seed, s.text_view, s.select_on) == ("label-model", DEFAULT_SEED, False, "none")
    reg.label_fit("spam", model="majority", seed=7)
    assert last_settings(reg.store, "spam") == FitSettings("majority", seed=7, use_dev=False)
    assert last_settings(reg.store, "spam").kwargs() == {"model": "majority", "seed": 7, "use_dev": False,
                                                         "text_view": True, "select_on": None}


def test_last_settings_of_a_fit_recorded_before_the_setting_was(lws, tmp_path):
    """A fit recorded before `text_view_enabled` existed: its report's reason still says --no-text-view."""
    submit(lws, tmp_path)
    reg = Registry.open(lws)
    reg.label_fit("spam", model="majority")
    store = reg.store
    t, m = store.task("spam"), store.label_matrix("spam")
    pl = store.latest_prob_labels("spam")
    store.record_prob_labels(t, label_matrix_version=m.version, model="label-model", path=pl.path,
                             content_hash=pl.content_hash, metrics={},
                             config={"model": "label-model", "seed": 3, "label_model_uses_dev": True,
                                     "text_view": {"used": False, "reason": TEXT_VIEW_OFF}})
    assert last_settings(store, "spam") == FitSettings("label-model", seed=3, use_dev=True, text_view=False)
    assert last_settings(store, "nope") == FitSettings()  # never fit: the defaults


def _status_tasks(reg):
    st = reg.store.status()
    st = st.to_json() if hasattr(st, "to_json") else st
    return {t["name"]: t for t in st["tasks"]}


def test_staleness_of_one_task_is_what_status_says(lws, tmp_path):
    submit(lws, tmp_path)
    reg = Registry.open(lws)
    store = reg.store

    def same():
        want = _status_tasks(reg)
        got = store.staleness()
        assert list(got) == list(want)
        for n, s in got.items():
            assert {k: v.to_dict() for k, v in s.items()} == {k: want[n][k] for k in ("labels", "model", "deployable")}
            assert store.staleness([n]) == {n: s}

    same()
    v1 = reg.label_fit("spam", model="majority").version
    t = store.task("spam")
    m1 = store.record_model(path="models/v1", encoder="tiny", content_hash="h", metrics={}, mlflow_run_id=None,
                            tasks=[ModelTaskRecord("spam", t.fingerprint, v1)])
    same()
    store.record_deployable(task=t, model_version=m1.version, student="ngram", path="d/1", content_hash="h",
                            mlflow_model_version="1", metrics={})
    reg.label_fit("spam", model="majority")  # labels refit: the model stale, so its deployable
    same()
    assert store.staleness(["spam"])["spam"]["model"].stale
    with pytest.raises(UserError, match="TASK: unknown task 'nope'"):
        store.staleness(["nope"])


def test_distill_refuses_a_stale_model_from_one_tasks_read(lws, tmp_path):
    from mothermodel.distill.config import DistillConfig

    submit(lws, tmp_path)
    reg = Registry.open(lws)
    store = reg.store
    v1 = reg.label_fit("spam", model="majority").version
    store.record_model(path="models/v1", encoder="tiny", content_hash="h", metrics={}, mlflow_run_id=None,
                       tasks=[ModelTaskRecord("spam", store.task("spam").fingerprint, v1)])
    reg.label_fit("spam", model="majority")
    with pytest.raises(UserError, match=r"TASK: cannot distill spam: the mother model is stale for it \(labels refit"):
        reg.distill("spam", config=DistillConfig())


def test_train_text_and_json_read_the_outcome(tmp_path):
    """`train`'s table reads the outcome's per-task fields (no parsing of metric names); `--json` as documented."""
    from test_train import TINY, fitted_mail_workspace

    ws = fitted_mail_workspace(tmp_path)
    args = ("train", "--encoder", ws.parent / "enc", "--max-steps", 10, "--batch-size", 16, "--max-length", 16,
            "--self-train-rounds", 0, *TINY)
    r = run_cli(*args, ws=ws)
    assert r.code == 0, r
    row = next(line for line in r.out.splitlines() + r.err.splitlines() if line.split()[:2] == ["spam", "test"])
    res = Registry.open(ws).store.model()
    want = res.metrics[MetricKey("spam", "mail", "test", "accuracy").flat()]
    assert f"{want:.4f}" in row and ("model" in row or "labels" in row)
    j = json.loads(run_cli(*args, "--if-changed", "--json", ws=ws).out)
    assert j["status"] == "up to date" and j["metrics"] == res.metrics
