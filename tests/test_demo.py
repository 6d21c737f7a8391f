"""`mothermodel demo` runs end to end in a fresh folder and leaves a real workspace."""

import json

from conftest import run_cli, run_proc

TASKS = {"ticket_topic", "billing_kind", "refund_reason", "urgency", "sentiment", "review_aspect"}


def test_demo(tmp_path):
    """The whole demo with a tiny random encoder (CI's README step runs it with the real MiniLM)."""
    from mothermodel.demo import world
    from mothermodel.trainer.encoder import write_tiny_encoder

    words = sorted({w.lower().strip(",.!?") for r in world.tickets(n=200).column("text").to_pylist() for w in r.split()})
    enc = write_tiny_encoder(tmp_path / "enc", words=words)
    d = tmp_path / "demo"
    p = run_proc("demo", "--workspace", d, "--encoder", enc, "--distill-epochs", "2")
    assert p.returncode == 0, p.stderr
    assert (d / "dag.png").read_bytes()[:4] == b"\x89PNG"
    res = json.loads(run_cli("status", "--json", ws=d).out)
    assert {t["name"] for t in res["tasks"]} == TASKS

    # A three-level task tree, fitted by one hierarchical label model.
    tasks = {n: json.loads(run_cli("task", "show", n, "--json", ws=d).out) for n in TASKS}
    assert (tasks["refund_reason"]["parent"], tasks["refund_reason"]["parent_class"]) == ("billing_kind", "REFUND")
    assert (tasks["billing_kind"]["parent"], tasks["billing_kind"]["parent_class"]) == ("ticket_topic", "BILLING")
    assert tasks["ticket_topic"]["parent"] is None
    log = json.loads(run_cli("label", "log", "refund_reason", "--json", ws=d).out)
    assert "hierarchical" in json.dumps(log)

    # Every kind of source is in the registry: Python LFs, declarative keyword and regex LFs
    # (from YAML and from Python), a weak-label column, another task's output.
    from mothermodel import Registry

    store = Registry.open(d).store
    # the LF edit: a new version of ticket_topic and of its source mentions_money (v3: slice heads, step 10)
    assert store.task("ticket_topic").version == 3
    assert {s.name: s.version for s in store.task("ticket_topic").sources}["mentions_money"] == 2
    kinds = {(t, s.kind) for t in TASKS for s in store.task(t).sources}
    codes = {t: {s.name: s.code or "" for s in store.task(t).sources} for t in TASKS}
    assert ("sentiment", "column") in kinds and ("urgency", "task_output") in kinds
    assert '"kind": "keyword"' in codes["refund_reason"]["mentions_cancelling"]
    assert '"kind": "regex"' in codes["refund_reason"]["paid_twice"]
    assert '"kind": "regex"' in codes["review_aspect"]["talks_shipping"]
    assert "def mentions_money" in codes["ticket_topic"]["mentions_money"]

    # The watch tick relabelled exactly what the LF edit made stale (the ticket tree and urgency, not the
    # review tasks), retrained, and redistilled every student (the new model supersedes them all): nothing
    # is left stale, and every task has a deployable exported as a bundle. Read from the registry, not from
    # the demo's prose (its report of the tick is only looked for).
    stale = {"billing_kind", "refund_reason", "ticket_topic", "urgency"}
    impact = json.loads(run_cli("dag", "impact", "ticket_topic.mentions_money", "--json", ws=d).out)
    assert {t["name"] for t in impact["tasks"]} == stale
    v1, v2, v3, v4 = store.models()
    assert {t for t in TASKS if v1.tasks[t].task_fingerprint != v2.tasks[t].task_fingerprint} == stale
    for t in TASKS:
        pl = store.latest_prob_labels(t, fresh=False)
        assert pl.task_fingerprint == store.task(t).fingerprint, t  # refit wherever the fingerprint moved
        if t != "review_aspect":  # model v2 learned refit labels exactly where the LF edit reached
            assert (v2.tasks[t].prob_label_version != v1.tasks[t].prob_label_version) == (t in stale), t
        assert v4.tasks[t].prob_label_version == pl.version, t  # and the latest model learned the latest
    assert res["latest_model_version"] == 4
    # The hand labels (step 9): a source of review_aspect alone; its labels refit, model v3 learned them,
    # and none of those rows is scored.
    hand = store.task("review_aspect").hand_source
    assert hand is not None and store.hand_labels("review_aspect")[0].num_rows == 24
    assert {t for t in TASKS if v2.tasks[t].task_fingerprint != v3.tasks[t].task_fingerprint} == {"review_aspect"}
    pl = store.read_prob_labels(store.latest_prob_labels("review_aspect"))
    assert ((pl.hand >= 0).sum(), int((pl.gold[pl.hand >= 0] >= 0).sum())) == (24, 0)
    assert "review_aspect, test accuracy before and after 24 hand labels" in p.stdout
    emb = {s.name: s for s in store.task("review_aspect").sources}["like_the_hand_labels"]
    assert emb.kind == "embedding" and json.loads(emb.code)["seed_rows"]
    # applied without a fault, its embeddings cached (a tiny random encoder's similarities reach no threshold:
    # the README's demo, with the real MiniLM, shows its votes)
    assert store.label_matrix("review_aspect").faults == [] and list((d / ".mothermodel" / "embeddings").glob("*.parquet"))
    an = json.loads(run_cli("label", "analyze", "review_aspect", "--json", ws=d).out)
    assert "like_the_hand_labels" in {lf["name"] for lf in an["lfs"]}
    assert "What the watch tick rebuilt:" in p.stdout
    assert not any(t["labels"]["stale"] or t["model"]["stale"] or t["deployable"]["stale"] for t in res["tasks"])
    # The slice (step 10): ticket_topic's slicing function short_ticket, measured in every model, then slice
    # heads: they moved ticket_topic's model fingerprint alone (not its labels' fingerprint, nor any task
    # downstream); its Python LFs kept their versions (a statement on the Task is not code they read).
    t = store.task("ticket_topic")
    assert [x.name for x in t.slices] == ["short_ticket"] and t.slice_heads
    assert {s.name: s.version for s in t.sources}["mentions_failure"] == 1
    assert {n for n in TASKS if v3.tasks[n].task_fingerprint != v4.tasks[n].task_fingerprint} == {"ticket_topic"}
    assert v4.tasks["ticket_topic"].task_fingerprint == t.model_fingerprint != t.fingerprint
    assert all(v3.tasks[n].prob_label_version == v4.tasks[n].prob_label_version for n in TASKS)  # nothing refit
    key = "ticket_topic/tickets/test/slice:short_ticket/accuracy"
    assert key in v3.metrics and key in v4.metrics and v4.metrics[key.replace("accuracy", "n")] > 0
    assert "short_ticket" in json.dumps(json.loads((d / ".mothermodel" / v4.path / "manifest.json").read_text()))
    assert "inside the slice short_ticket" in p.stdout
    for task in TASKS:
        assert store.latest_deployable(task).version == 4
        assert (d / "bundles" / task / "model.onnx").is_file() and (d / "bundles" / task / "manifest.json").is_file()
    assert "student acc." in p.stdout and "student ms/text" in p.stdout
    assert "mother model acc." in p.stdout and "train: model v2 trained" in p.stdout
    assert "train: model v3 trained" in p.stdout and "train: model v4 trained" in p.stdout
    assert f"mothermodel -w {d} ui" in p.stdout and "mlflow ui --backend-store-uri" in p.stdout
    # Running it again rebuilds the demo folder (--dir: the option's old name); a non-demo folder is refused.
    assert run_proc("demo", "--dir", d, "--epochs", "0.05", "--distill-epochs", "0.5", "--encoder", enc).returncode == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    p = run_proc("demo", "--workspace", other)
    assert p.returncode == 2 and (other / "keep.txt").exists()
    assert p.stderr.startswith("error: --workspace: ") and p.stderr.count("\n") == 1
