"""One task's fault never stops the others (registry/faults.py), and gold labels are validated per task
(registry/gold.py): label apply, label fit, train and watch over many tasks go on with every healthy task,
report and record each failed one (table, --json, status) and exit 1; gold is class indices or class names,
checked when it enters; a task may name its own gold column. Tiny random encoders only."""

import json

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, snapshot
from test_train import TINY, WORDS

SPAM = '''
from mothermodel import KeywordLF, Task
task = Task(name="spam", dataset="mail", classes=["HAM", "SPAM"])
money = KeywordLF("money", ["money", "cheap", "win"], label=1)
friendly = KeywordLF("friendly", ["hello", "thanks", "lunch"], label=0)
'''

# A Python LF: apply re-runs the stored module text (tasks.spec_source).
NOCODE = '''
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="nocode", dataset="mail", classes=["HAM", "SPAM"])

@labeling_function()
def cheap(x):
    return 1 if "cheap" in x.text else ABSTAIN
'''

CYC = '''
name: cyc_a
dataset: mail2
classes: [NEG, POS]
gold: label
sources:
  - {kind: keyword, name: money, keywords: [money, cheap, win], label: POS}
  - {kind: keyword, name: friendly, keywords: [hello, thanks, lunch], label: NEG}
'''


def mail_table(n=240, seed=0, four=False):
    """text, split, gold `label` (0/1; 0..3 with `four`), the same gold as class names `name`, and a 4-class
    column `topic4`."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(WORDS[int(c)], 4)) + " " + " ".join(rng.choice(WORDS[1 - int(c)], 1)) for c in y]
    split = np.where(np.arange(n) < n * 0.6, "train", np.where(np.arange(n) < n * 0.8, "valid", "test"))
    topic4 = (np.arange(n) % 4).astype(np.int64)
    label = np.where(np.arange(n) % 7 == 0, 3, y) if four else y
    return pa.table({"text": texts, "split": split, "label": pa.array(label, pa.int8()),
                     "name": pa.array(np.where(y == 1, "SPAM", "HAM")), "topic4": pa.array(topic4)})


def workspace(tmp_path, datasets=(("mail", "label"),)):
    from mothermodel.trainer.encoder import write_tiny_encoder

    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(mail_table(), tmp_path / "mail.parquet")
    for name, gold in datasets:
        r = run_cli("dataset", "add", name, tmp_path / "mail.parquet", *(["--gold-field", gold] if gold else []),
                    ws=root)
        assert r.code == 0, r
    write_tiny_encoder(tmp_path / "enc", words=sum(WORDS.values(), []))
    return root


def submit(ws, path, text, *extra):
    path.write_text(text)
    return run_cli("task", "submit", path, *extra, ws=ws)


def drop_stored_code(ws, task):
    """A task registered from Python whose LF code was not stored: its LF sources' code and the spec module
    text are NULL (what `reg.submit(Task)` left before it stored them)."""
    con = duckdb.connect(str(ws / ".mothermodel" / "registry.duckdb"))
    try:
        con.execute("UPDATE tasks SET spec_source = NULL WHERE name = ?", [task])
        con.execute("UPDATE sources SET code = NULL WHERE task = ? AND kind = 'lf'", [task])
    finally:
        con.close()


def one_line(r):
    return len(r.err.strip().splitlines()) == 1


def status(ws):
    r = run_cli("status", "--json", ws=ws)
    assert r.code == 0, r
    return json.loads(r.out)


def test_label_apply_goes_on_past_a_task_whose_lf_code_is_missing(tmp_path):
    ws = workspace(tmp_path)
    assert submit(ws, tmp_path / "spam.py", SPAM).code == 0
    assert submit(ws, tmp_path / "nocode.py", NOCODE).code == 0
    drop_stored_code(ws, "nocode")

    r = run_cli("label", "apply", "--json", ws=ws)
    assert r.code == 1, r
    res = json.loads(r.out)
    assert [(t["task"], t["status"], t["version"]) for t in res["tasks"]] == [("spam", "created", 1)]
    (f,) = res["failed"]
    assert f["task"] == "nocode" and f["stage"] == "label apply"
    assert "code is not in the registry" in f["reason"] and "--replace" in f["fix"]
    assert one_line(r) and "1 task(s) failed" in r.err and "nocode" in r.err

    # the human table names it too; the healthy task is up to date
    r = run_cli("label", "apply", ws=ws)
    assert r.code == 1 and "spam: label matrix v1 is up to date" in r.out
    assert "nocode" in r.out and "label apply" in r.out and "--replace" in r.out

    st = status(ws)
    assert [(x["task"], x["stage"]) for x in st["failed"]] == [("nocode", "label apply")]
    by = {t["name"]: t for t in st["tasks"]}
    assert by["spam"]["faults"] == [] and by["nocode"]["faults"][0]["fix"] == f["fix"]
    human = run_cli("status", ws=ws)
    assert human.code == 0 and "failed task" in human.out and "code is not in the registry" in human.out

    # named alone, it fails as before: one line, exit 2
    r = run_cli("label", "apply", "nocode", ws=ws)
    assert r.code == 2 and one_line(r) and "code is not in the registry" in r.err

    # the fix clears the fault
    assert run_cli("task", "submit", tmp_path / "nocode.py", "--replace", ws=ws).code == 0
    r = run_cli("label", "apply", "--json", ws=ws)
    assert r.code == 0, r
    assert json.loads(r.out)["failed"] == [] and status(ws)["failed"] == []


def test_upstream_failure_leaves_out_its_downstream_tasks(tmp_path):
    ws = workspace(tmp_path)
    assert submit(ws, tmp_path / "spam.py", SPAM).code == 0
    assert submit(ws, tmp_path / "nocode.py", NOCODE).code == 0
    down = ('from mothermodel import Task, TaskOutput\n'
            'task = Task(name="down", dataset="mail", classes=["HAM", "SPAM"], sources=[TaskOutput("nocode")])\n')
    assert submit(ws, tmp_path / "down.py", down).code == 0
    drop_stored_code(ws, "nocode")
    r = run_cli("label", "apply", "--json", ws=ws)
    assert r.code == 1, r
    res = json.loads(r.out)
    assert [t["task"] for t in res["tasks"]] == ["spam"]
    failed = {f["task"]: f for f in res["failed"]}
    assert set(failed) == {"nocode", "down"} and "nocode" in failed["down"]["reason"]


def test_gold_out_of_range_fails_its_task_only_in_label_fit_train_and_watch(tmp_path):
    ws = workspace(tmp_path, datasets=(("mail", "label"), ("mail2", "label")))
    assert submit(ws, tmp_path / "spam.py", SPAM).code == 0
    assert submit(ws, tmp_path / "cyc.yaml", CYC).code == 0
    for t in ("spam", "cyc_a"):
        assert run_cli("label", "fit", t, "--model", "majority", ws=ws).code == 0
    # The dataset's owner replaces its file: cyc_a's own gold column now holds a 3 (2 classes).
    pq.write_table(mail_table(four=True), tmp_path / "mail4.parquet")
    assert run_cli("dataset", "add", "mail2", tmp_path / "mail4.parquet", "--gold-field", "label", "--replace",
                   ws=ws).code == 0

    r = run_cli("label", "fit", "cyc_a", "--model", "majority", ws=ws)
    assert r.code == 2 and one_line(r), r
    for word in ("'mail2'", "'label'", "'cyc_a'", "out of range"):
        assert word in r.err, (word, r.err)
    assert run_cli("label", "apply", "cyc_a", ws=ws).code == 0
    r = run_cli("label", "analyze", "cyc_a", ws=ws)
    assert r.code == 2 and one_line(r) and "'label'" in r.err and "internal error" not in r.err

    # plain train: spam trains, cyc_a (stale labels) is left out and reported, exit 1
    enc = tmp_path / "enc"
    tr = ["--encoder", enc, "--max-steps", 6, "--batch-size", 16, "--max-length", 16, "--self-train-rounds", 0, *TINY]
    r = run_cli("train", *tr, "--json", ws=ws)
    assert r.code == 1, r
    res = json.loads(r.out)
    assert res["trained"] and res["model_version"] == 1 and res["changes"]["new"] == ["spam"]
    (f,) = res["failed"]
    assert f["task"] == "cyc_a" and f["stage"] == "train" and "stale" in f["reason"]
    assert "--task" in f["reason"] and "label fit cyc_a" in f["fix"]
    assert [x["task"] for x in status(ws)["failed"]] == ["cyc_a"]
    # named alone it is refused as before, suggesting the fix
    r = run_cli("train", *tr, "--task", "cyc_a", ws=ws)
    assert r.code == 2 and one_line(r) and "label fit cyc_a" in r.err

    # watch --once: spam changed, so its new label matrix, labels and model land; cyc_a is reported
    assert submit(ws, tmp_path / "spam.py", SPAM.replace('"win"]', '"win", "pills"]'), "--replace").code == 0
    r = run_cli("watch", "--once", *tr, "--student", "ngram", "--distill-epochs", 1, "--json", ws=ws)
    assert r.code == 1, r
    tick = json.loads(r.out)
    assert "spam" in tick["label_apply"] and [x["task"] for x in tick["label_fit"]] == ["spam"]
    assert tick["train"]["trained"] and tick["train"]["model_version"] == 2
    stages = {(x["task"], x["stage"]) for x in tick["failed"]}
    assert ("cyc_a", "label fit") in stages and ("cyc_a", "train") in stages and tick["errors"] == []
    fit_fault = next(x for x in tick["failed"] if x["stage"] == "label fit")
    assert "out of range" in fit_fault["reason"] and "gold" in fit_fault["fix"]
    st = status(ws)
    assert {(x["task"], x["stage"]) for x in st["failed"]} == {("cyc_a", "label fit"), ("cyc_a", "train")}
    spam = next(t for t in st["tasks"] if t["name"] == "spam")
    assert not spam["labels"]["stale"] and not spam["model"]["stale"] and spam["faults"] == []

    # fixed (the task no longer names the column; the dataset's gold field, inherited, does not fit its
    # classes, so it goes without gold labels): the faults clear as each stage succeeds again
    assert submit(ws, tmp_path / "cyc.yaml", CYC.replace("gold: label\n", ""), "--replace").code == 0
    r = run_cli("watch", "--once", *tr, "--student", "ngram", "--distill-epochs", 1, "--json", ws=ws)
    assert r.code == 0, r
    tick = json.loads(r.out)
    assert tick["failed"] == [] and [x["task"] for x in tick["label_fit"]] == ["cyc_a"] and tick["train"]["trained"]
    assert status(ws)["failed"] == []


def test_one_task_failing_a_tick_never_exits_0(tmp_path):
    """A one-task registry: its failure is still reported by the tick and `watch --once` exits 1."""
    ws = workspace(tmp_path)
    assert submit(ws, tmp_path / "nocode.py", NOCODE).code == 0
    drop_stored_code(ws, "nocode")
    before = snapshot(ws)
    r = run_cli("label", "apply", ws=ws)  # the only task: its own one-line error, as before
    assert r.code == 2 and one_line(r) and snapshot(ws) == before
    r = run_cli("watch", "--once", "--encoder", tmp_path / "enc", "--json", ws=ws)
    assert r.code == 1, r
    tick = json.loads(r.out)
    assert ("nocode", "label apply") in {(f["task"], f["stage"]) for f in tick["failed"]}
    assert not tick["train"]["trained"]


def test_class_name_gold_and_a_task_gold_column(tmp_path):
    # mail: gold field `label` (0/1); mail4: gold field `topic4` (4 classes)
    ws = workspace(tmp_path, datasets=(("mail", "label"), ("mail4", "topic4")))
    assert submit(ws, tmp_path / "spam.py", SPAM).code == 0
    named = SPAM.replace('name="spam"', 'name="named"').replace('classes=["HAM", "SPAM"]',
                                                                'classes=["HAM", "SPAM"], gold="name"')
    assert submit(ws, tmp_path / "named.py", named).code == 0
    fits = {}
    for t in ("spam", "named"):
        r = run_cli("label", "fit", t, "--model", "majority", "--json", ws=ws)
        assert r.code == 0, r
        fits[t] = json.loads(r.out)
    # class names map to indices: the same accuracy as the index column holding the same labels
    assert fits["named"]["metrics"]["test"]["accuracy"] == fits["spam"]["metrics"]["test"]["accuracy"] > 0.5
    r = run_cli("label", "analyze", "named", "--json", ws=ws)
    assert r.code == 0 and json.loads(r.out)["gold"] is True
    assert sum(lf["correct"] for lf in json.loads(r.out)["lfs"]) > 0

    # a 2-class task on a dataset whose gold field has 4 classes is not scored against it
    four = SPAM.replace('name="spam", dataset="mail"', 'name="four", dataset="mail4"')
    assert submit(ws, tmp_path / "four.py", four).code == 0
    r = run_cli("label", "fit", "four", "--model", "majority", "--json", ws=ws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["metrics"] == {} and "topic4" in res["warnings"][0] and "gold:" in res["warnings"][0]
    r = run_cli("label", "fit", "four", "--model", "majority", ws=ws)
    assert r.code == 0 and "warning:" in r.out and "topic4" in r.out
    # ... and one that names its own gold column on that dataset is scored against it
    own = four.replace('name="four"', 'name="own"').replace('classes=["HAM", "SPAM"]',
                                                            'classes=["HAM", "SPAM"], gold="label"')
    assert submit(ws, tmp_path / "own.py", own).code == 0
    res = json.loads(run_cli("label", "fit", "own", "--model", "majority", "--json", ws=ws).out)
    assert res["metrics"]["test"]["accuracy"] == fits["spam"]["metrics"]["test"]["accuracy"]
    assert "warnings" not in res
    # `gold:` is part of the task: in `task show`'s spec hash and the fingerprint, only when set
    from mothermodel.registry import fingerprint as fp

    base = dict(name="t", dataset="d", classes=["A", "B"], parent=None, sources=[], dataset_hash="h", upstream={})
    assert fp.compute(**base) == fp.compute(**base, gold=None) != fp.compute(**base, gold="g")


def test_gold_is_checked_when_it_enters(tmp_path):
    ws = workspace(tmp_path, datasets=(("mail", "label"),))
    cases = {
        'gold="topic4"': ("'topic4'", "out of range"),           # a 4-class column for a 2-class task
        'gold="nope"': ("'nope'", "no column"),
        'gold=3': ("gold", "column name"),
    }
    before = snapshot(ws)
    for gold, words in cases.items():
        text = SPAM.replace('classes=["HAM", "SPAM"]', f'classes=["HAM", "SPAM"], {gold}')
        r = submit(ws, tmp_path / "spam.py", text)
        assert r.code == 2 and one_line(r), (gold, r)
        assert all(w in r.err for w in words), (gold, r.err)
        assert snapshot(ws) == before
    # class names that are not the task's classes
    r = submit(ws, tmp_path / "spam.py", SPAM.replace('classes=["HAM", "SPAM"]',
                                                      'classes=["ham", "spam"], gold="name"'))
    assert r.code == 2 and "'SPAM'" in r.err and "not one of the task's classes (ham, spam)" in r.err
    # YAML, and a gold_<task> column, are checked the same way
    bad_yaml = CYC.replace("dataset: mail2", "dataset: mail").replace("gold: label", "gold: topic4")
    r = submit(ws, tmp_path / "cyc.yaml", bad_yaml)
    assert r.code == 2 and one_line(r) and "cyc.yaml" in r.err and "'topic4'" in r.err
    t = mail_table().append_column("gold_spam", pa.array(np.arange(240) % 3))
    pq.write_table(t, tmp_path / "g.parquet")
    assert run_cli("dataset", "add", "mail", tmp_path / "g.parquet", "--replace", ws=ws).code == 0
    r = submit(ws, tmp_path / "spam.py", SPAM)
    assert r.code == 2 and "'gold_spam'" in r.err
    # a dataset's --gold-field of a type that can never hold labels
    t = mail_table().append_column("meta", pa.array([{"a": 1}] * 240))
    pq.write_table(t, tmp_path / "m.parquet")
    r = run_cli("dataset", "add", "meta", tmp_path / "m.parquet", "--gold-field", "meta", ws=ws)
    assert r.code == 2 and one_line(r) and "--gold-field" in r.err and "'meta'" in r.err


def test_gold_indices_rule():
    from mothermodel.registry.gold import GoldError, indices

    kw = dict(dataset="d", column="c", task="t")
    cls = ["NEG", "POS"]
    assert indices(pa.array([0, 1, None, -1]), cls, **kw).tolist() == [0, 1, -1, -1]
    assert indices(pa.array([0.0, 1.0, float("nan")]), cls, **kw).tolist() == [0, 1, -1]
    assert indices(pa.array(["POS", None, "NEG", ""]).dictionary_encode(), cls, **kw).tolist() == [1, -1, 0, -1]
    for bad, word in (([0, 2], "out of range"), ([0.5], "whole number"), ([-2], "out of range"),
                      (["pos"], "'pos'"), ([[1]], "type")):
        with pytest.raises(GoldError, match=word) as e:
            indices(pa.array(bad), cls, **kw)
        assert "'d'" in str(e.value) and "'c'" in str(e.value) and "'t'" in str(e.value)


def test_label_fit_without_sources_exits_2(tmp_path):
    ws = workspace(tmp_path)
    (tmp_path / "empty.yaml").write_text("name: empty\ndataset: mail\nclasses: [HAM, SPAM]\n")
    assert run_cli("task", "submit", tmp_path / "empty.yaml", ws=ws).code == 0
    before = snapshot(ws)
    r = run_cli("label", "fit", "empty", ws=ws)
    assert r.code == 2 and one_line(r) and "no sources" in r.err and "internal error" not in r.err
    assert snapshot(ws) == before


def test_label_fit_without_a_task_fits_every_stale_one_and_goes_on_past_a_failure(tmp_path):
    ws = workspace(tmp_path, datasets=(("mail", "label"), ("mail2", "label")))
    assert submit(ws, tmp_path / "spam.py", SPAM).code == 0
    assert submit(ws, tmp_path / "cyc.yaml", CYC).code == 0
    assert run_cli("label", "apply", ws=ws).code == 0
    pq.write_table(mail_table(four=True), tmp_path / "mail4.parquet")  # cyc_a's gold now holds a 3
    assert run_cli("dataset", "add", "mail2", tmp_path / "mail4.parquet", "--gold-field", "label", "--replace",
                   ws=ws).code == 0
    r = run_cli("label", "fit", "--json", ws=ws)
    assert r.code == 1, r
    res = json.loads(r.out)
    assert [t["task"] for t in res["tasks"]] == ["spam"] and res["tasks"][0]["version"] == 1
    (f,) = res["failed"]
    assert f["task"] == "cyc_a" and f["stage"] == "label fit" and "out of range" in f["reason"]
    assert [x["task"] for x in status(ws)["failed"]] == ["cyc_a"]
    # nothing stale but the failing task: spam is not refitted, cyc_a is reported again
    r = run_cli("label", "fit", "--json", ws=ws)
    assert r.code == 1 and json.loads(r.out)["tasks"] == [], r
