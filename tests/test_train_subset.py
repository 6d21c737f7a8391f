"""`train --task A` trains A only: the other tasks' heads, their lineage in the recorded model and their
deployables stay as they were (issue 25, item 6). Tiny random encoder, two tasks on one dataset."""

import json

from conftest import run_cli
from test_train import SPEC, TINY, fitted_mail_workspace, train


def _heads(folder, task):
    from safetensors.numpy import load_file

    return {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if k.startswith(f"heads.{task}.")}


def _status(ws):
    return {t["name"]: t for t in json.loads(run_cli("status", "--json", ws=ws).out)["tasks"]}


def test_training_a_subset_keeps_the_other_tasks_heads_lineage_and_deployables(tmp_path):
    from mothermodel.api import Registry

    ws = fitted_mail_workspace(tmp_path)
    (tmp_path / "links.py").write_text(SPEC.replace('name="spam"', 'name="links"'))
    assert run_cli("task", "submit", tmp_path / "links.py", ws=ws).code == 0
    assert run_cli("label", "fit", "links", "--model", "majority", ws=ws).code == 0
    r = train(ws)
    assert r.code == 0, r
    assert json.loads(r.out)["changes"]["new"] == ["links", "spam"]
    r = run_cli("distill", "links", "--student", "ngram", "--epochs", 2, "--json", ws=ws)
    assert r.code == 0, r
    store = Registry.open(ws).store
    v1 = store.model()
    assert not _status(ws)["links"]["deployable"]["stale"]

    # spam's labels move; `train --task spam` trains spam only.
    assert run_cli("label", "fit", "spam", "--model", "label-model", ws=ws).code == 0
    r = train(ws, "--task", "spam", "--if-changed")
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["trained"] and res["model_version"] == 2
    assert res["changes"] == {"new": [], "changed": ["spam"], "unchanged": [], "removed": []}
    assert res["warm_start"]["removed"] == [] and "links" in res["warm_start"]["kept"]
    v2 = store.model()
    # links is still in the model, with the lineage and the guard's choice it had, served as before
    assert set(v2.tasks) == {"spam", "links"}
    old, new = v1.tasks["links"], v2.tasks["links"]
    assert (new.task_fingerprint, new.prob_label_version, new.served_by) == \
        (old.task_fingerprint, old.prob_label_version, old.served_by)
    assert {k: v for k, v in new.guard.items() if k != "trained_in"} == old.guard
    assert new.guard["trained_in"] == 1
    assert (new.checkpoint, new.checkpoint_hash) == (old.checkpoint or v1.path, old.checkpoint_hash or v1.content_hash)
    assert all(v2.metrics[k] == x for k, x in v1.metrics.items() if k.startswith("links/"))
    # its head in the new model's folder is the old one, bit for bit (it was not trained)
    a, b = _heads(ws / ".mothermodel" / v1.path, "links"), _heads(ws / ".mothermodel" / v2.path, "links")
    assert a and a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    st = _status(ws)
    assert not st["links"]["model"]["stale"] and not st["links"]["deployable"]["stale"], st["links"]
    assert not st["spam"]["model"]["stale"]
    p = run_cli("predict", "links", "--json", ws=ws)
    assert p.code == 0, p
    v = run_cli("verify", "--json", ws=ws)  # the carried checkpoint is checked; nothing is an orphan
    assert v.code == 0 and json.loads(v.out)["ok"], v

    # Nothing changed since: both a subset and the whole set are up to date.
    for extra in (("--task", "spam"), ("--task", "links"), ()):
        again = json.loads(train(ws, *extra, "--if-changed").out)
        assert again["trained"] is False and again["status"] == "up to date", (extra, again)

    # Training links now warm-starts it from its carried head; spam is carried in turn.
    assert run_cli("label", "fit", "links", "--model", "label-model", ws=ws).code == 0
    r = train(ws, "--task", "links", "--if-changed")
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["changes"]["changed"] == ["links"] and res["changes"]["removed"] == []
    v3 = store.model()
    assert set(v3.tasks) == {"spam", "links"} and v3.tasks["spam"].guard["trained_in"] == 2
    st = _status(ws)
    assert not st["spam"]["model"]["stale"] and st["links"]["deployable"]["stale"]


def test_reconcile_keeps_heads_it_does_not_train_unless_their_parent_no_longer_fits(tmp_path):
    import torch
    from trainer_util import tiny_encoder

    from mothermodel.trainer.encoder import load_encoder
    from mothermodel.trainer.model import HeadSpec, MotherModel, reconcile_heads

    enc, _ = load_encoder(tiny_encoder(tmp_path / "enc"))
    old = [HeadSpec("a", ("x", "y")), HeadSpec("b", ("x", "y")), HeadSpec("gone", ("x", "y"))]
    model = MotherModel(enc, old, seed=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ws = reconcile_heads(model, [HeadSpec("a", ("x", "y"))], changed={"a"}, keep={"b"})
    assert ws.to_dict() == {"kept": ["b"], "finetuned": ["a"], "reinitialized": [], "added": [], "removed": ["gone"]}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items() if k.startswith("heads.b."))
    # hierarchical: a kept child whose parent's head was rebuilt with other classes cannot be kept
    tree = [HeadSpec("p", ("x", "y")), HeadSpec("c", ("u", "v"), parent="p", parent_class=1)]
    model = MotherModel(enc, tree, layout="hierarchical", seed=3)
    ws = reconcile_heads(model, [HeadSpec("p", ("x", "y", "z"))], keep={"c"})
    assert ws.reinitialized == ["p"] and ws.removed == ["c"] and model.task_names == ["p"]
    model = MotherModel(enc, tree, layout="hierarchical", seed=3)
    ws = reconcile_heads(model, [HeadSpec("p", ("x", "y"))], changed={"p"}, keep={"c"})
    assert ws.kept == ["c"] and model.task_names == ["p", "c"]


def test_a_model_that_carried_a_task_supersedes_only_older_deployables():
    from mothermodel.registry import lineage
    from mothermodel.registry.records import DeployableRecord, ModelRecord, ModelTaskRecord, Staleness

    def model(version, trained_in=None):
        guard = {"trained_in": trained_in} if trained_in else {}
        mt = ModelTaskRecord("t", "fp", 1, served_by="model", checkpoint="c", checkpoint_hash="h", guard=guard)
        return ModelRecord(version=version, path=f"m{version}", encoder=None, content_hash=None, metrics={},
                           mlflow_run_id=None, tasks={"t": mt})

    def dep(model_version):
        return DeployableRecord(task="t", version=1, model_version=model_version, task_fingerprint="fp",
                                student="ngram", path="d", content_hash=None, mlflow_model_version=None, metrics={})

    fresh = Staleness(3, False)
    assert not lineage.deployable_staleness("fp", dep(2), model(3, trained_in=2), fresh).stale
    assert not lineage.deployable_staleness("fp", dep(1), model(3, trained_in=1), fresh).stale
    assert lineage.deployable_staleness("fp", dep(1), model(3, trained_in=2), fresh).reason.startswith("superseded")
    assert lineage.deployable_staleness("fp", dep(2), model(3), fresh).stale  # trained in v3 itself
