"""DAG rendering, impact analysis and status."""

import json

from conftest import run_cli, write_spec


def build(ws, tmp_path):
    specs = {
        "root": dict(),
        "kid": dict(parent="root"),
        "user": dict(sources="TaskOutput('kid')"),
        "lone": dict(),
    }
    for name, kw in specs.items():
        assert run_cli("task", "submit", write_spec(tmp_path / f"{name}.py", name=name, **kw), ws=ws).code == 0


def test_impact_of_task_source_and_dataset(ws, tmp_path):
    build(ws, tmp_path)
    r = run_cli("dag", "impact", "root", "--json", ws=ws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["changed"] == {"kind": "task", "name": "root"}
    assert [(t["name"], t["depth"], t["via"], t["edge"]) for t in res["tasks"]] == [
        ("root", 0, None, None), ("kid", 1, "root", "parent"), ("user", 2, "kid", "task_output")]
    res = json.loads(run_cli("dag", "impact", "kid.has_link", "--json", ws=ws).out)
    assert res["changed"]["kind"] == "source" and [t["name"] for t in res["tasks"]] == ["kid", "user"]
    res = json.loads(run_cli("dag", "impact", "docs", "--json", ws=ws).out)
    assert res["changed"]["kind"] == "dataset" and {t["name"] for t in res["tasks"]} == {"root", "kid", "user", "lone"}
    res = json.loads(run_cli("dag", "impact", "lone", "--json", ws=ws).out)
    assert [t["name"] for t in res["tasks"]] == ["lone"]
    r = run_cli("dag", "impact", "nothing", ws=ws)
    assert r.code == 2 and "NAME: no task, TASK.SOURCE or dataset named 'nothing'" in r.err


def test_impact_lists_versions_models_and_deployables(ws, tmp_path):
    """Rows the later layers write (labels, models, deployables) show up as stale."""
    import duckdb

    build(ws, tmp_path)
    con = duckdb.connect(str(ws / ".mothermodel" / "registry.duckdb"))
    con.execute("INSERT INTO prob_labels (task, version, label_matrix_version, model, content_hash, path, task_fingerprint, created_at) VALUES ('kid', 1, 1, 'majority', 'h', 'p', 'fp', now())")
    con.execute("INSERT INTO models VALUES (1, 'p', 'enc', 'h', NULL, NULL, now())")
    con.execute("INSERT INTO model_tasks (model_version, task, task_fingerprint, prob_label_version) "
                "VALUES (1, 'user', 'fp', 1), (1, 'lone', 'fp', 1)")
    con.execute("INSERT INTO deployables VALUES ('user', 1, 1, 'fp', 'ngram', 'p', 'h', NULL, NULL, now())")
    con.close()
    res = json.loads(run_cli("dag", "impact", "root", "--json", ws=ws).out)
    assert res["label_versions"] == [{"task": "kid", "kind": "prob_labels", "version": 1}]
    assert res["models"] == [1]
    assert res["deployables"] == [{"task": "user", "version": 1, "model_version": 1, "student": "ngram"}]


def test_renderings(ws, tmp_path):
    build(ws, tmp_path)
    text = run_cli("dag", "show", ws=ws).out
    lines = text.splitlines()
    assert lines[0].startswith("lone [") and lines[1].startswith("root [docs, 2 classes, 2 sources, v1]")
    assert "└── (parent) kid" in text and "(task_output) user" in text
    dot = run_cli("dag", "show", "--format", "dot", ws=ws).out
    assert dot.startswith("digraph") and '"root" -> "kid" [label="parent"' in dot
    mer = run_cli("dag", "show", "--format", "mermaid", ws=ws).out
    assert mer.startswith("flowchart LR") and "-.->|task_output|" in mer
    png = tmp_path / "out" / "dag.png"
    r = run_cli("dag", "show", "--format", "png", "--out", png, ws=ws)
    assert r.code == 0, r
    import os
    import stat

    um = os.umask(0)
    os.umask(um)
    assert stat.S_IMODE(png.stat().st_mode) == 0o666 & ~um  # not mkstemp's 0600
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    r = run_cli("dag", "show", "--format", "png", ws=ws)
    assert r.code == 2 and "--out" in r.err


def test_status_json(ws, tmp_path):
    build(ws, tmp_path)
    r = run_cli("status", "--json", ws=ws)
    assert r.code == 0
    res = json.loads(r.out)
    assert res["mlflow_tracking_uri"].startswith("sqlite:///") and res["counts"]["tasks"] == 4
    t = {x["name"]: x for x in res["tasks"]}["root"]
    assert t["labels"]["stale"] and t["model"]["stale"] and t["deployable"]["stale"]
    # A model trained on the current fingerprint makes exactly that task's model fresh.
    import duckdb

    fp = t["fingerprint"]
    con = duckdb.connect(str(ws / ".mothermodel" / "registry.duckdb"))
    con.execute("INSERT INTO models VALUES (1, 'p', 'enc', 'h', NULL, NULL, now())")
    con.execute("INSERT INTO model_tasks (model_version, task, task_fingerprint, prob_label_version) VALUES (1, 'root', ?, 1), (1, 'kid', 'old', 1)", [fp])
    con.close()
    res = json.loads(run_cli("status", "--json", ws=ws).out)
    by = {x["name"]: x for x in res["tasks"]}
    assert not by["root"]["model"]["stale"] and by["kid"]["model"]["stale"]
