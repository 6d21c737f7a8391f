"""`import wrench` on the real WRENCH data in ../shared/data (skipped where absent)."""

import json

import pytest
from conftest import SHARED_DATA, run_cli, snapshot

needs_data = pytest.mark.skipif(not (SHARED_DATA / "youtube").is_dir(), reason="../shared/data absent")


@pytest.fixture
def empty_ws(tmp_path):
    root = tmp_path / "w"
    assert run_cli("init", root).code == 0
    return root


@needs_data
@pytest.mark.parametrize("folder,n_sources,classes,rows", [
    ("youtube", 10, ["HAM", "SPAM"], 1586 + 120 + 250),
    ("trec", 68, ["DESC", "ENTY", "HUM", "ABBR", "LOC", "NUM"], 5033 + 500 + 500),
])
def test_import_real_wrench(empty_ws, folder, n_sources, classes, rows):
    r = run_cli("import", "wrench", SHARED_DATA / folder, "--task", folder, ws=empty_ws)
    assert r.code == 0, r
    t = json.loads(run_cli("task", "show", folder, "--json", ws=empty_ws).out)
    assert t["classes"] == classes
    assert [s["name"] for s in t["sources"]] == [f"lf_{i}" for i in range(n_sources)]
    assert {s["kind"] for s in t["sources"]} == {"column"} and {s["version"] for s in t["sources"]} == {1}
    ds = json.loads(run_cli("dataset", "list", "--json", ws=empty_ws).out)[0]
    assert ds["num_rows"] == rows and ds["gold_field"] == "label" and ds["split_field"] == "split"
    # The stored weak labels match the WRENCH file, row for row.
    import pyarrow.parquet as pq

    tbl = pq.read_table(empty_ws / ".mothermodel" / ds["path"]).to_pydict()
    first_valid = json.loads((SHARED_DATA / folder / "valid.json").read_text())
    key, ex = next(iter(first_valid.items()))
    i = next(i for i, (k, s) in enumerate(zip(tbl["id"], tbl["split"])) if k == key and s == "valid")
    assert [tbl[f"lf_{j}"][i] for j in range(n_sources)] == ex["weak_labels"]
    assert tbl["label"][i] == ex["label"]


@needs_data
def test_spec_example_from_the_issue_with_cli_process(tmp_path):
    """The issue's own check: as a new user would type it, in real processes."""
    from conftest import run_proc

    root = tmp_path / "w"
    assert run_proc("init", root).returncode == 0
    p = run_proc("import", "wrench", SHARED_DATA / "youtube", "--task", "spam", cwd=root)
    assert p.returncode == 0, p.stderr
    p = run_proc("task", "show", "spam", "--json", cwd=root)
    t = json.loads(p.stdout)
    assert len(t["sources"]) == 10 and t["classes"] == ["HAM", "SPAM"]
    for key in ("name", "classes", "parent", "dataset", "version", "fingerprint", "sources"):
        assert key in t
    assert set(t["sources"][0]) >= {"name", "kind", "version"}


@needs_data
def test_reimport_needs_replace_and_is_stable(empty_ws):
    assert run_cli("import", "wrench", SHARED_DATA / "youtube", "--task", "spam", ws=empty_ws).code == 0
    before = snapshot(empty_ws)
    r = run_cli("import", "wrench", SHARED_DATA / "youtube", "--task", "spam", ws=empty_ws)
    assert r.code == 2 and "already exists" in r.err
    assert snapshot(empty_ws) == before
    r = run_cli("import", "wrench", SHARED_DATA / "youtube", "--task", "spam", "--replace", "--json", ws=empty_ws)
    assert r.code == 0
    out = json.loads(r.out)
    assert out["dataset"]["status"] == "unchanged" and out["task"]["status"] == "unchanged"


def test_bad_wrench_folders(empty_ws, tmp_path):
    before = snapshot(empty_ws)
    r = run_cli("import", "wrench", tmp_path / "nope", "--task", "x", ws=empty_ws)
    assert r.code == 2 and "nope: no such directory" in r.err
    d = tmp_path / "half"
    d.mkdir()
    (d / "label.json").write_text('{"0": "A", "1": "B"}')
    (d / "train.json").write_text('{"0": {"label": 0, "weak_labels": [0, -1], "data": {"text": "a"}}}')
    r = run_cli("import", "wrench", d, "--task", "x", ws=empty_ws)
    assert r.code == 2 and "valid.json: missing" in r.err
    (d / "valid.json").write_text('{"0": {"label": 0, "weak_labels": [0], "data": {"text": "a"}}}')
    (d / "test.json").write_text("{not json")
    r = run_cli("import", "wrench", d, "--task", "x", ws=empty_ws)
    assert r.code == 2 and "valid.json: example '0': 1 weak labels, expected 2" in r.err
    (d / "valid.json").write_text('{"0": {"label": 0, "weak_labels": [0, 1], "data": {"text": "a"}}}')
    r = run_cli("import", "wrench", d, "--task", "x", ws=empty_ws)
    assert r.code == 2 and "test.json: not valid JSON" in r.err
    assert snapshot(empty_ws) == before
    assert list((empty_ws / ".mothermodel" / "data").iterdir()) == []
