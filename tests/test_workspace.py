"""Workspace creation and discovery (--workspace, $MOTHERMODEL_HOME, parent folders)."""

import json

from conftest import run_cli, run_proc


def test_init_layout_and_schema_version(tmp_path):
    r = run_cli("init", tmp_path / "w")
    assert r.code == 0
    home = tmp_path / "w" / ".mothermodel"
    assert (home / "registry.duckdb").is_file() and (home / "data").is_dir() and (home / "labels").is_dir()
    import duckdb

    con = duckdb.connect(str(home / "registry.duckdb"), read_only=True)
    from mothermodel.registry import schema

    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == schema.LATEST
    con.close()
    # init is idempotent and keeps what is there.
    assert run_cli("init", tmp_path / "w").code == 0


def test_discovery_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("init", a).code == 0 and run_cli("init", b).code == 0
    sub = a / "deep" / "er"
    sub.mkdir(parents=True)
    monkeypatch.delenv("MOTHERMODEL_HOME", raising=False)
    p = run_proc("status", "--json", cwd=sub)
    assert p.returncode == 0 and json.loads(p.stdout)["workspace"] == str(a)
    p = run_proc("status", "--json", cwd=sub, env={"MOTHERMODEL_HOME": str(b)})
    assert json.loads(p.stdout)["workspace"] == str(b)
    p = run_proc("-w", a, "status", "--json", cwd=sub, env={"MOTHERMODEL_HOME": str(b)})
    assert json.loads(p.stdout)["workspace"] == str(a)


def test_not_a_workspace(tmp_path, monkeypatch):
    monkeypatch.delenv("MOTHERMODEL_HOME", raising=False)
    p = run_proc("task", "list", cwd=tmp_path)
    assert p.returncode == 2 and "not inside a mothermodel workspace" in p.stderr
    assert p.stderr.count("\n") == 1
    r = run_cli("-w", tmp_path / "none", "task", "list")
    assert r.code == 2 and "--workspace" in r.err
    monkeypatch.setenv("MOTHERMODEL_HOME", str(tmp_path / "none"))
    r = run_cli("task", "list")
    assert r.code == 2 and "MOTHERMODEL_HOME" in r.err


def test_dataset_errors(tmp_path):
    root = tmp_path / "w"
    run_cli("init", root)
    (tmp_path / "d.csv").write_text("body,y\nhello,1\n")
    r = run_cli("dataset", "add", "d", tmp_path / "d.csv", "--text-field", "text", ws=root)
    assert r.code == 2 and "--text-field: column 'text' not in" in r.err
    r = run_cli("dataset", "add", "d", tmp_path / "d.txt", ws=root)
    assert r.code == 2 and "d.txt: a dataset file must be .parquet, .csv or .jsonl" in r.err
    r = run_cli("dataset", "add", "Bad", tmp_path / "d.csv", ws=root)
    assert r.code == 2 and "NAME:" in r.err
    r = run_cli("dataset", "add", "d", tmp_path / "d.csv", "--text-field", "body", "--json", ws=root)
    assert r.code == 0 and json.loads(r.out)["num_rows"] == 1
    (tmp_path / "e.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    r = run_cli("dataset", "add", "e", tmp_path / "e.jsonl", "--json", ws=root)
    assert r.code == 0 and json.loads(r.out)["text_field"] == "text"


def test_dataset_add_on_a_taken_name_writes_nothing(tmp_path):
    root = tmp_path / "w"
    run_cli("init", root)
    (tmp_path / "d.csv").write_text("text,y\nhello,1\n")
    (tmp_path / "d2.csv").write_text("text,y\nother,0\nrows,1\n")
    assert run_cli("dataset", "add", "d", tmp_path / "d.csv", ws=root).code == 0
    data = root / ".mothermodel" / "data"
    before = sorted(p.name for p in data.iterdir())
    r = run_cli("dataset", "add", "d", tmp_path / "d2.csv", ws=root)
    assert r.code == 2 and "NAME: dataset 'd' already exists" in r.err
    assert sorted(p.name for p in data.iterdir()) == before  # the new file was never written
    r = run_cli("dataset", "add", "d", tmp_path / "d2.csv", "--replace", "--json", ws=root)
    assert r.code == 0 and json.loads(r.out)["num_rows"] == 2
