"""The labeling layer through the CLI: apply, fault isolation, versions, diff, analyze, fit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA, cli_exe, run_cli, run_proc, snapshot

TEXTS = ["buy cheap pills http://a.b", "hello my friend", "win money now", "see you at lunch",
         "click http://x.y to win money", "thanks for the notes", "cheap money fast", "lunch at noon?"]
GOLD = [1, 0, 1, 0, 1, 0, 1, 0]
SPLIT = ["train", "train", "train", "train", "valid", "valid", "test", "test"]


@pytest.fixture
def lws(tmp_path):
    """Workspace with dataset `mail` (text, split, gold `label`, weak column `stars`)."""
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(pa.table({
        "text": TEXTS, "split": SPLIT, "label": pa.array(GOLD, pa.int8()),
        "stars": pa.array([1, -1, -1, 0, 1, 0, -1, -1], pa.int8()),
    }), tmp_path / "mail.parquet")
    assert run_cli("dataset", "add", "mail", tmp_path / "mail.parquet", "--gold-field", "label", ws=root).code == 0
    return root


SPEC = '''
from mothermodel import ABSTAIN, Column, KeywordLF, RegexLF, Task, labeling_function
task = Task(name="spam", dataset="mail", classes=["HAM", "SPAM"], sources=[Column("stars")])
link = RegexLF("link", r"https?://", label=1)
money = KeywordLF("money", ["money", "cheap"], label=1)

@labeling_function()
def greeting(x):
    return 0 if ("hello" in x.text or "thanks" in x.text) else ABSTAIN

@labeling_function()
def lunch(x):
    return 0 if "lunch" in x.text else ABSTAIN
'''


def submit(ws, tmp_path, text=SPEC, replace=False):
    p = tmp_path / "spam.py"
    p.write_text(text)
    r = run_cli("task", "submit", p, *(["--replace"] if replace else []), ws=ws)
    assert r.code == 0, r


def matrix(ws, task="spam"):
    """The latest label matrix as {(row, source): label}."""
    log = json.loads(run_cli("label", "log", task, "--json", ws=ws).out)
    path = ws / ".mothermodel" / log["label_matrices"][0]["path"]
    t = pq.read_table(path).to_pydict()
    return {(r, s): l for r, s, l in zip(t["row"], t["source"], t["label"])}


def test_apply_versions_reuse_and_diff(lws, tmp_path):
    submit(lws, tmp_path)
    r = run_cli("label", "apply", "--json", "-j", "1", ws=lws)
    assert r.code == 0, r
    out = json.loads(r.out)["tasks"][0]
    assert out["version"] == 1 and out["status"] == "created" and out["faults"] == []
    m = matrix(lws)
    expected = {}
    for i, t in enumerate(TEXTS):
        if "http" in t: expected[(i, "link")] = 1
        if "money" in t or "cheap" in t: expected[(i, "money")] = 1
        if "hello" in t or "thanks" in t: expected[(i, "greeting")] = 0
        if "lunch" in t: expected[(i, "lunch")] = 0
    for i, s in enumerate([1, -1, -1, 0, 1, 0, -1, -1]):
        if s >= 0: expected[(i, "stars")] = s
    assert m == expected
    # Nothing changed: the version is reused, not recomputed.
    out = json.loads(run_cli("label", "apply", "--json", ws=lws).out)["tasks"][0]
    assert out == {"task": "spam", "version": 1, "status": "up to date", "faults": []}
    # One LF changes: only it runs again; the others come from version 1.
    submit(lws, tmp_path, SPEC.replace('"lunch" in x.text', '"noon" in x.text'), replace=True)
    out = json.loads(run_cli("label", "apply", "--json", ws=lws).out)["tasks"][0]
    assert out["version"] == 2 and out["recomputed"] == ["lunch"]
    assert out["reused"] == ["greeting", "link", "money", "stars"]
    d = json.loads(run_cli("label", "diff", "spam", "1", "2", "--json", ws=lws).out)
    by = {s["source"]: s for s in d["sources"]}
    assert by["lunch"]["rows_changed"] == 1 and by["lunch"]["status"] == "changed"  # row 3 lost its label
    assert by["lunch"]["coverage_before"] == 2 / 8 and by["lunch"]["coverage_after"] == 1 / 8
    assert all(by[s]["rows_changed"] == 0 for s in ("link", "money", "greeting", "stars"))
    assert run_cli("label", "diff", "spam", "1", "9", ws=lws).code == 2
    # The label store is tracked with DVC.
    assert "path: labels" in (lws / ".mothermodel" / "labels.dvc").read_text()


FAULTY = SPEC + '''
@labeling_function()
def raises(x):
    if "win" in x.text:
        raise KeyError("boom")
    return 1 if "cheap" in x.text else ABSTAIN

@labeling_function()
def bad_type(x):
    return "SPAM" if "money" in x.text else ABSTAIN

@labeling_function()
def out_of_range(x):
    return 7 if "lunch" in x.text else 0

@labeling_function()
def hangs(x):
    if "friend" in x.text:
        import time
        time.sleep(30)
    return ABSTAIN
'''


def test_fault_isolation_and_strict(lws, tmp_path):
    submit(lws, tmp_path, FAULTY)
    before = snapshot(lws)
    r = run_cli("label", "apply", "--strict", "--timeout", "0.3", "-j", "1", ws=lws)
    assert r.code == 1 and "--strict" in r.err and r.err.count("\n") == 1
    assert snapshot(lws) == before
    t0 = time.time()
    r = run_cli("label", "apply", "--json", "--timeout", "0.3", ws=lws)
    assert r.code == 0, r
    assert time.time() - t0 < 20
    faults = {f["name"]: f for f in json.loads(r.out)["tasks"][0]["faults"]}
    assert set(faults) == {"raises", "bad_type", "out_of_range", "hangs"}
    assert faults["raises"]["raised"] == 2 and "KeyError: 'boom'" in faults["raises"]["first_error"]
    assert faults["bad_type"]["bad_type"] == 3 and faults["bad_type"]["first_row"] == 2
    assert faults["out_of_range"]["out_of_range"] == 2
    assert faults["hangs"]["timed_out"] == 1 and faults["hangs"]["first_row"] == 1
    m = matrix(lws)
    # Failed rows became abstains; every other output was kept.
    assert (6, "raises") in m and (2, "raises") not in m and (4, "raises") not in m
    assert not any(s == "bad_type" for _, s in m)
    assert m[(0, "out_of_range")] == 0 and (3, "out_of_range") not in m
    assert m[(0, "link")] == 1 and m[(1, "greeting")] == 0


def test_tampered_matrix_is_refused(lws, tmp_path):
    submit(lws, tmp_path)
    assert run_cli("label", "apply", ws=lws).code == 0
    log = json.loads(run_cli("label", "log", "spam", "--json", ws=lws).out)
    path = lws / ".mothermodel" / log["label_matrices"][0]["path"]
    t = pq.read_table(path)
    pq.write_table(t.set_column(2, "label", pa.array([0] * t.num_rows, pa.int16())), path)
    for cmd in (["label", "analyze", "spam"], ["label", "fit", "spam", "--model", "majority"]):
        r = run_cli(*cmd, ws=lws)
        assert r.code == 1 and "content hash mismatch" in r.err, (cmd, r)


def test_kill_and_interrupt_leave_no_version(lws, tmp_path):
    running = tmp_path / "lf-running"  # the slow LF marks that it runs: Ctrl-C comes while the LFs run
    submit(lws, tmp_path, SPEC + f'''
@labeling_function()
def slow(x):
    import time
    open({str(running)!r}, "a").close()
    time.sleep(0.5)
    return ABSTAIN
''')
    before = snapshot(lws)
    # SIGKILL inside the transaction that records the version.
    marker = tmp_path / "in_txn"
    p = subprocess.Popen(cli_exe() + ["-w", str(lws), "label", "apply"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "MOTHERMODEL_FAULT": f"before_commit:{marker}"})
    deadline = time.time() + 60
    while not marker.exists():
        assert p.poll() is None and time.time() < deadline, p.stderr.read()
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert snapshot(lws) == before
    # Ctrl-C while the LFs run: exit 130, nothing recorded.
    # Restore default SIGINT handling: a parent that ignores it (a background job) would pass that on.
    p = subprocess.Popen(cli_exe() + ["-w", str(lws), "label", "apply", "-j", "1"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    running.unlink(missing_ok=True)
    deadline = time.time() + 60
    while not running.exists():
        assert p.poll() is None and time.time() < deadline, p.communicate()
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert snapshot(lws) == before
    assert json.loads(run_cli("label", "log", "spam", "--json", ws=lws).out)["label_matrices"] == []


def test_analyze_matches_a_hand_count(lws, tmp_path):
    submit(lws, tmp_path)
    assert run_cli("label", "apply", ws=lws).code == 0
    r = run_cli("label", "analyze", "spam", "--json", ws=lws)
    assert r.code == 0, r
    res = json.loads(r.out)
    by = {lf["name"]: lf for lf in res["lfs"]}
    # money fires on rows 0, 2, 4, 6 (all SPAM, gold 1): coverage 4/8, all correct.
    assert by["money"]["coverage"] == 4 / 8 and by["money"]["polarity"] == ["SPAM"]
    assert by["money"]["correct"] == 4 and by["money"]["empirical_accuracy"] == 1.0
    # link (rows 0, 4) overlaps stars on both; conflicts nowhere (stars says SPAM there).
    assert by["link"]["overlaps"] == 2 / 8 and by["link"]["conflicts"] == 0
    # stars: rows 0 (1), 3 (0), 4 (1), 5 (0); row 3 overlaps lunch (0) with no conflict.
    assert by["stars"]["coverage"] == 4 / 8 and by["stars"]["polarity"] == ["HAM", "SPAM"]
    assert res["coverage"] == 1.0
    r = run_cli("label", "analyze", "spam", "--split", "valid", "--json", ws=lws)
    res = json.loads(r.out)
    assert res["num_rows"] == 2 and {lf["name"]: lf["coverage"] for lf in res["lfs"]}["money"] == 0.5
    assert run_cli("label", "analyze", "spam", "--split", "nope", ws=lws).code == 2


def test_fit_json_contract(lws, tmp_path):
    submit(lws, tmp_path)
    r = run_cli("label", "fit", "spam", "--model", "majority", "--json", ws=lws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["task"] == "spam" and res["version"] == 1
    assert set(res["metrics"]) == {"train", "valid", "test"}
    # Every row has votes here, and majority is right on all of them.
    for split in ("train", "valid", "test"):
        assert res["metrics"][split]["accuracy"] == 1.0 and res["metrics"][split]["macro_f1"] == 1.0
    r2 = run_cli("label", "fit", "spam", "--json", ws=lws)
    res2 = json.loads(r2.out)
    assert res2["version"] == 2 and res2["model"] == "label-model" and "uses_dev_labels" in res2
    log = json.loads(run_cli("label", "log", "spam", "--json", ws=lws).out)
    pl = pq.read_table(lws / ".mothermodel" / json.loads(run_cli("label", "log", "spam", "--json", ws=lws).out)
                       ["label_matrices"][0]["path"])
    assert pl.num_rows > 0 and [p["version"] for p in log["prob_labels"]] == [2, 1]
    st = json.loads(run_cli("status", "--json", ws=lws).out)
    assert st["tasks"][0]["labels"] == {"version": 2, "stale": False}


def test_task_output_source_runs_upstream_first(lws, tmp_path):
    submit(lws, tmp_path)
    (tmp_path / "urgent.py").write_text(
        "from mothermodel import ABSTAIN, Task, TaskOutput, labeling_function\n"
        "task = Task(name='urgent', dataset='mail', classes=['NO', 'YES'],"
        " sources=[TaskOutput('spam', map={'SPAM': 'YES'})])\n"
        "@labeling_function()\n"
        "def now(x):\n"
        "    return 1 if 'now' in x.text else ABSTAIN\n")
    assert run_cli("task", "submit", tmp_path / "urgent.py", ws=lws).code == 0
    r = run_cli("label", "apply", "urgent", "--json", ws=lws)
    assert r.code == 0, r
    tasks = [t["task"] for t in json.loads(r.out)["tasks"]]
    assert tasks == ["spam", "urgent"]
    m = matrix(lws, "urgent")
    # spam's majority vote says SPAM on rows 0, 2, 4, 6 -> YES; HAM maps to nothing (abstain).
    assert {r for (r, s) in m if s == "spam"} == {0, 2, 4, 6}
    assert all(l == 1 for (r, s), l in m.items() if s == "spam")
    # Refitting spam with another model changes urgent's input: urgent is re-applied.
    assert run_cli("label", "fit", "spam", "--model", "majority", ws=lws).code == 0
    out = json.loads(run_cli("label", "apply", "urgent", "--json", ws=lws).out)
    assert [t["status"] for t in out["tasks"] if t["task"] == "urgent"] == ["created"]


def test_old_registry_is_migrated(tmp_path):
    import duckdb

    from mothermodel.registry import schema

    home = tmp_path / "old" / ".mothermodel"
    home.mkdir(parents=True)
    con = duckdb.connect(str(home / "registry.duckdb"))
    for stmt in schema.MIGRATIONS[0]:
        con.execute(stmt)
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.close()
    r = run_cli("status", "--json", ws=tmp_path / "old")
    assert r.code == 0 and json.loads(r.out)["schema_version"] == schema.LATEST


needs_data = pytest.mark.skipif(not (SHARED_DATA / "youtube").is_dir(), reason="../shared/data absent")


# The targets on WRENCH test accuracy: youtube >= 0.865, trec >= 0.62, with
# `label fit --model label-model` as it comes (measured: 0.916 and 0.716; votes only,
# --no-text-view: 0.860 and 0.648). Snorkel 0.10's LabelModel with its defaults scores
# 0.840 and 0.560 here, majority vote 0.80 and 0.61.
@needs_data
@pytest.mark.parametrize("folder,target", [("youtube", 0.865), ("trec", 0.62)])
def test_real_data_through_apply_analyze_fit(tmp_path, folder, target):
    root = tmp_path / "w"
    assert run_proc("init", root).returncode == 0
    assert run_proc("import", "wrench", SHARED_DATA / folder, "--task", folder, ws=root).returncode == 0
    p = run_proc("label", "apply", ws=root)
    assert p.returncode == 0, p.stderr
    p = run_proc("label", "analyze", folder, "--split", "valid", "--json", ws=root)
    assert p.returncode == 0 and len(json.loads(p.stdout)["lfs"]) == {"youtube": 10, "trec": 68}[folder]
    p = run_proc("label", "fit", folder, "--model", "majority", "--json", ws=root)
    mv = json.loads(p.stdout)["metrics"]["test"]["accuracy"]
    # The default selects on valid (gold labels there); its pick is never below majority vote on valid.
    p = run_proc("label", "fit", folder, "--json", ws=root)
    assert p.returncode == 0, p.stderr
    sel = json.loads(p.stdout)
    assert sel["uses_dev_labels"] is True and sel["selected"]["automatic"] is True
    assert sel["metrics"]["valid"]["accuracy"] >= sel["selected"]["candidates"]["majority"]["accuracy"]
    assert sel["metrics_gold_free"]["test"]["n"] == sel["metrics"]["test"]["n"]
    # The gold-free default (--select-on none): the label model + the text view.
    p = run_proc("label", "fit", folder, "--model", "label-model", "--select-on", "none", "--json", ws=root)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert set(res["metrics"]) == {"train", "valid", "test"} and res["uses_dev_labels"] is False
    assert res["metrics"] == sel["metrics_gold_free"]
    assert res["metrics"]["test"]["n"] == {"youtube": 250, "trec": 500}[folder]  # every row predicted
    acc = res["metrics"]["test"]["accuracy"]
    assert acc >= target and acc > mv + 0.02, (res["metrics"], mv)
    # The text view read the text column and learned from covered train rows only.
    view = res["text_view"]
    assert view["used"] and view["text_field"] == "text"
    assert 0 < view["fit_rows"] <= {"youtube": 1586, "trec": 5033}[folder]
    votes_only = res["metrics_votes_only"]["test"]["accuracy"]
    assert acc > votes_only, (acc, votes_only)
    # --no-text-view is the votes-only model of the same run, and says so.
    p = run_proc("label", "fit", folder, "--no-text-view", "--select-on", "none", "--json", ws=root)
    plain = json.loads(p.stdout)
    assert plain["text_view"] == {"used": False, "reason": "off (--no-text-view)"}
    assert plain["metrics"]["test"]["accuracy"] == votes_only and "metrics_votes_only" not in plain


def test_hierarchical_fit_over_a_task_tree(tmp_path):
    """The demo world's ticket tree: one model, consistent labels for parent and child."""
    from mothermodel.demo import world

    root = tmp_path / "w"
    assert run_cli("init", root).code == 0
    pq.write_table(world.tickets(n=600), tmp_path / "t.parquet")
    assert run_cli("dataset", "add", "tickets", tmp_path / "t.parquet", ws=root).code == 0
    from importlib import resources

    bundled = resources.files("mothermodel.demo") / "tasks"
    for name in ("ticket_topic.py", "billing_kind.py"):
        (tmp_path / name).write_text((bundled / name).read_text())
        assert run_cli("task", "submit", tmp_path / name, ws=root).code == 0
    r = run_cli("label", "fit", "ticket_topic", "--model", "hierarchical", "--json", ws=root)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert [t["task"] for t in res["tree"]] == ["ticket_topic", "billing_kind"]
    kid = next(t for t in res["tree"] if t["task"] == "billing_kind")
    assert kid["metrics"]["test"]["accuracy"] > 0.6
    # Stored child labels: conditional probabilities that sum to 1, plus P(applicable).
    log = json.loads(run_cli("label", "log", "billing_kind", "--json", ws=root).out)
    assert log["prob_labels"][0]["model"] == "hierarchical"
    import duckdb

    con = duckdb.connect(str(root / ".mothermodel" / "registry.duckdb"), read_only=True)
    path = con.execute("SELECT path FROM prob_labels WHERE task = 'billing_kind' ORDER BY version DESC").fetchone()[0]
    con.close()
    pl = pq.read_table(root / ".mothermodel" / path).to_pydict()
    sums = np.array(pl["p_0"]) + np.array(pl["p_1"]) + np.array(pl["p_2"])
    assert np.allclose(sums, 1, atol=1e-4) and 0 <= min(pl["applicable"]) and max(pl["applicable"]) <= 1
    r = run_cli("label", "fit", "billing_kind", "--model", "hierarchical", "--json", ws=root)
    assert json.loads(r.out)["tree"][0]["task"] == "ticket_topic"  # the same tree from the child
    st = json.loads(run_cli("status", "--json", ws=root).out)
    assert all(not t["labels"]["stale"] for t in st["tasks"])
    r = run_cli("label", "fit", "nobody", "--model", "hierarchical", ws=root)
    assert r.code == 2


def test_apply_on_dask_gives_the_same_matrix(lws, tmp_path):
    pytest.importorskip("distributed")
    submit(lws, tmp_path)
    assert run_cli("label", "apply", ws=lws).code == 0
    local = matrix(lws)
    r = run_cli("label", "apply", "--force", "--engine", "dask", "-j", "2", "--json", ws=lws)
    assert r.code == 0, r
    assert json.loads(r.out)["tasks"][0]["version"] == 2
    assert matrix(lws) == local
    r = run_cli("label", "apply", "--scheduler", "tcp://127.0.0.1:1", ws=lws)
    assert r.code == 2 and "--scheduler" in r.err


def git_workspace(tmp_path, ignored=False):
    """A git repo holding workspace `ws` (git-ignored if asked) with dataset `mail` and task spam."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    if ignored:
        (repo / ".gitignore").write_text("ws/\n")
    root = repo / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(pa.table({"text": TEXTS, "stars": pa.array([1, -1, -1, 0, 1, 0, -1, -1], pa.int8())}),
                   tmp_path / "m.parquet")
    assert run_cli("dataset", "add", "mail", tmp_path / "m.parquet", ws=root).code == 0
    submit(root, tmp_path)
    return repo, root


@pytest.mark.parametrize("ignored", [False, True])
def test_dvc_tracking_inside_a_git_repo(tmp_path, ignored):
    """A workspace inside git uses DVC with git; one that git ignores falls back to --no-scm."""
    _, root = git_workspace(tmp_path, ignored)
    r = run_cli("label", "apply", "--json", ws=root)
    assert r.code == 0 and "dvc" not in json.loads(r.out), r.out
    assert "path: labels" in (root / ".mothermodel" / "labels.dvc").read_text()


def _dvc(*args, cwd):
    """The dvc CLI installed beside this interpreter."""
    exe = Path(sys.executable).parent / "dvc"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True)


def test_dvc_push_and_diff_between_label_versions(tmp_path):
    """What docs/labeling.md promises: commit labels.dvc with git, `dvc diff` two commits
    (one new matrix file between them), and `dvc push` the store to a remote."""
    repo, root = git_workspace(tmp_path)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    assert run_cli("label", "apply", ws=root).code == 0
    home = root / ".mothermodel"
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "labels v1"], check=True)
    submit(root, tmp_path, SPEC.replace('"cheap"]', '"cheap", "win"]'), replace=True)
    assert run_cli("label", "apply", ws=root).code == 0
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "labels v2"], check=True)
    p = _dvc("diff", "--json", "HEAD~1", "HEAD", cwd=home)
    assert p.returncode == 0, p.stderr
    diff = json.loads(p.stdout)
    added = [e["path"] for e in diff["added"]]
    v2 = json.loads(run_cli("label", "log", "spam", "--json", ws=root).out)["label_matrices"][0]["path"]
    assert any(v2.endswith(Path(a).name) for a in added), (added, v2)
    assert not diff["deleted"]  # every version stays in the store
    remote = tmp_path / "remote"
    assert _dvc("remote", "add", "-d", "store", str(remote), cwd=home).returncode == 0
    p = _dvc("push", cwd=home)
    assert p.returncode == 0, p.stderr
    pushed = [f for f in remote.rglob("*") if f.is_file()]
    stored = [f for f in (home / "labels").rglob("*") if f.is_file()]
    assert len(pushed) >= len(stored) >= 2
