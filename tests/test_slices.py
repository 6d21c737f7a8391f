"""Slices (labeling/lf/slicing.py, labeling/slices.py): declared in YAML and .py specs, stored and versioned
with the sources but never voting, membership computed by `label apply`, and per-slice figures in label
analyze, label fit, train --json and MLflow."""

import json
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, snapshot
from test_train import fitted_mail_workspace, train

YAML = """
name: spam
dataset: mail
classes: [HAM, SPAM]
sources:
  - {{kind: keyword, name: money, keywords: [money, cheap, win], label: SPAM}}
  - {{kind: keyword, name: friendly, keywords: [hello, thanks, lunch], label: HAM}}
slices:
  - {{kind: keyword, name: pills, keywords: [pills]}}
  - {{kind: regex, name: starts_free, pattern: "{pattern}"}}
"""

PY = '''
from mothermodel import ABSTAIN, KeywordLF, Task, slicing_function
task = Task(name="spam_py", dataset="mail", classes=["HAM", "SPAM"],
            slices=[KeywordLF("meeting", ["meeting"], label=1)])
money = KeywordLF("money", ["money", "cheap", "win"], label=1)

@slicing_function()
def short(x):
    return len(x.text.split()) <= {words}

@slicing_function()
def picky(x):
    if "notes" in x.text:
        raise ValueError("cannot read notes")
    return "click" in x.text
'''


@pytest.fixture
def sws(tmp_path):
    """The trainer tests' mail workspace (task `spam` fitted, tiny encoder beside it), spam resubmitted with
    two slices, and a .py task with three."""
    ws = fitted_mail_workspace(tmp_path)
    (tmp_path / "spam.yaml").write_text(YAML.format(pattern="^free"))
    assert run_cli("task", "submit", tmp_path / "spam.yaml", "--replace", ws=ws).code == 0
    (tmp_path / "spam_py.py").write_text(PY.replace("{words}", "5"))
    assert run_cli("task", "submit", tmp_path / "spam_py.py", ws=ws).code == 0
    return ws


def texts(ws):
    from mothermodel.api import Registry

    reg = Registry.open(ws)
    table = reg.store.read_dataset(reg.store.dataset("mail"))
    return table.column("text").to_pylist(), np.array(table.column("split").to_pylist()), \
        np.array(table.column("label").to_pylist())


def members(ws, task):
    log = json.loads(run_cli("label", "log", task, "--json", ws=ws).out)
    t = pq.read_table(ws / ".mothermodel" / log["slice_memberships"][0]["path"]).to_pydict()
    out = {}
    for r, s in zip(t["row"], t["slice"]):
        out.setdefault(s, set()).add(r)
    return out


def js(ws, *args):
    r = run_cli(*args, "--json", ws=ws)
    assert r.code == 0, r
    return json.loads(r.out)


def test_slices_round_trip_and_membership(sws, tmp_path):
    ws = sws
    show = js(ws, "task", "show", "spam")
    assert [s["name"] for s in show["sources"]] == ["friendly", "money"]  # slices are not sources
    assert {s["name"]: (s["kind"], s["version"]) for s in show["slices"]} == {
        "pills": ("keyword", 1), "starts_free": ("regex", 1)}
    assert js(ws, "task", "list")[0]["num_sources"] == 2
    py = js(ws, "task", "show", "spam_py")
    assert {s["name"]: s["kind"] for s in py["slices"]} == {"meeting": "keyword", "short": "python",
                                                            "picky": "python"}

    res = js(ws, "label", "apply")
    by = {t["task"]: t for t in res["tasks"]}
    text, _, _ = texts(ws)
    expect = {"pills": {i for i, x in enumerate(text) if "pills" in x},
              "starts_free": {i for i, x in enumerate(text) if x.startswith("free")}}
    assert by["spam"]["slices"]["sizes"] == {k: len(v) for k, v in expect.items()}
    assert members(ws, "spam") == {k: v for k, v in expect.items() if v}
    # the .py task's slicing functions, and one that raises on some rows: its fault, the others whole
    py_sl = by["spam_py"]["slices"]
    [fault] = py_sl["faults"]
    notes = {i for i, x in enumerate(text) if "notes" in x}
    assert fault["name"] == "picky" and fault["raised"] == len(notes) > 0
    got = members(ws, "spam_py")
    assert got["short"] == {i for i, x in enumerate(text) if len(x.split()) <= 5}
    assert got["meeting"] == {i for i, x in enumerate(text) if "meeting" in x}
    assert got["picky"] == {i for i, x in enumerate(text) if "click" in x and i not in notes}
    # verify hash-checks the membership files and names an unrecorded one
    assert run_cli("verify", ws=ws).code == 0
    path = ws / ".mothermodel" / js(ws, "label", "log", "spam")["slice_memberships"][0]["path"]
    stray = path.with_name("sm-" + "0" * 64 + ".parquet")
    stray.write_bytes(path.read_bytes())
    original = path.read_bytes()
    path.write_bytes(original[:-8] + b"damaged!")
    r = run_cli("verify", "--json", ws=ws)
    problems = json.dumps(json.loads(r.out))
    assert r.code != 0 and "slice membership v1" in problems and stray.name in problems
    path.write_bytes(original)
    stray.unlink()
    assert run_cli("verify", ws=ws).code == 0
    # the label matrices hold the voters only
    log = js(ws, "label", "log", "spam_py")
    lm = pq.read_table(ws / ".mothermodel" / log["label_matrices"][0]["path"])
    assert set(lm.column("source").combine_chunks().dictionary.to_pylist()) == {"money"}


def test_a_slice_edit_makes_only_what_it_measures_stale(sws, tmp_path):
    ws = sws
    js(ws, "label", "fit", "spam")
    train(ws)
    before = js(ws, "status")
    st = {t["name"]: t for t in before["tasks"]}["spam"]
    assert not st["labels"]["stale"] and not st["model"]["stale"] and st["slices"] == {"version": 1, "stale": False}
    fp, version = (lambda d: (d["fingerprint"], d["version"]))(js(ws, "task", "show", "spam"))

    impact = js(ws, "dag", "impact", "spam.starts_free")
    assert impact["changed"] == {"kind": "slice", "name": "spam.starts_free"}
    assert impact["label_versions"] == [{"task": "spam", "kind": "slice_membership", "version": 1}]
    assert impact["models"] == [] and impact["deployables"] == []
    assert "never votes" in run_cli("dag", "impact", "spam.starts_free", ws=ws).out

    (tmp_path / "spam.yaml").write_text(YAML.format(pattern="^(free|click)"))
    sub = js(ws, "task", "submit", tmp_path / "spam.yaml", "--replace")
    assert {s["name"]: s["status"] for s in sub["sources"]} == {
        "money": "unchanged", "friendly": "unchanged", "pills": "unchanged", "starts_free": "updated"}
    show = js(ws, "task", "show", "spam")
    assert show["fingerprint"] == fp and show["version"] == version + 1  # the spec moved, not what is learnt
    st = {t["name"]: t for t in js(ws, "status")["tasks"]}["spam"]
    assert not st["labels"]["stale"] and not st["model"]["stale"]
    assert st["slices"]["stale"] and "slice starts_free changed" in st["slices"]["reason"]
    # the status table's slices column (after labels, model, deployable: no student distilled here)
    assert re.search(rf"\bspam\s+{version + 1}\s+ok\s+ok\s+stale\s+stale\b", run_cli("status", ws=ws).out)

    # label fit meanwhile measures what is current and names the stale slice, without running it
    res = js(ws, "label", "apply", "spam")
    [t] = res["tasks"]
    assert t["status"] == "up to date"  # the label matrix: no voter changed
    assert t["slices"]["recomputed"] == ["starts_free"] and t["slices"]["reused"] == ["pills"]
    text, _, _ = texts(ws)
    assert members(ws, "spam")["starts_free"] == {i for i, x in enumerate(text) if re.match("^(free|click)", x)}
    assert not {t["name"]: t for t in js(ws, "status")["tasks"]}["spam"]["slices"]["stale"]
    diff = js(ws, "label", "diff", "spam", "1", "2", "--slices")
    d = {s["slice"]: s for s in diff["slices"]}
    assert d["pills"]["status"] == "unchanged" and d["starts_free"]["left"] == 0
    assert d["starts_free"]["joined"] == d["starts_free"]["rows_after"] - d["starts_free"]["rows_before"]
    assert js(ws, "train", "--task", "spam", "--if-changed")["status"] == "up to date"  # nothing to retrain for it


def test_per_slice_figures_in_label_fit_analyze_train_and_mlflow(sws):
    from mlflow import MlflowClient

    ws = sws
    fit = js(ws, "label", "fit", "spam_py")
    assert fit["slices"]["membership_version"] == 1 and fit["slices"]["stale"] == []
    probs = pq.read_table(ws / ".mothermodel" / _probs_path(ws, "spam_py")).to_pydict()
    pred = np.full(len(probs["row"]), -1)
    pred[probs["row"]] = probs["pred"]
    text, split, gold = texts(ws)
    short = np.array([len(x.split()) <= 5 for x in text])
    for s in ("valid", "test"):
        m = short & (split == s)
        f = fit["slices"]["metrics"]["short"][s]
        assert f["n"] == f["rows"] == int(m.sum()) and f["accuracy"] == pytest.approx((pred[m] == gold[m]).mean())
        lo, hi = f["ci95"]
        assert lo <= f["accuracy"] <= hi and f["too_small"] == (f["n"] < 30)
    shown = run_cli("label", "fit", "spam_py", ws=ws).out
    assert "95% interval" in shown and re.search(r"short\s+test\s+\d+", shown)

    an = js(ws, "label", "analyze", "spam_py", "--split", "valid")
    sl = {s["name"]: s for s in an["slices"]["slices"]}
    m = short & (split == "valid")
    money = np.array(["money" in x or "cheap" in x or "win" in x for x in text])
    assert sl["short"]["rows"] == int(m.sum())
    assert sl["short"]["coverage"] == pytest.approx((money & m).sum() / m.sum())
    [lf] = sl["short"]["lfs"]
    assert lf["name"] == "money" and lf["correct"] + lf["incorrect"] == int((money & m).sum())

    res = json.loads(train(ws, "--task", "spam_py").out)
    key = "spam_py/mail/test/slice:short/accuracy"
    assert 0 <= res["metrics"][key] <= 1 and res["metrics"]["spam_py/mail/test/slice:short/n"] == int(
        (short & (split == "test")).sum())
    assert "spam_py/mail/valid/slice:short/served_accuracy" in res["metrics"]
    run = MlflowClient(tracking_uri=res["mlflow_tracking_uri"]).get_run(res["mlflow_run_id"])
    assert run.data.metrics[key] == pytest.approx(res["metrics"][key])
    assert run.data.metrics["spam_py/mail/test/slice:short/n"] == res["metrics"]["spam_py/mail/test/slice:short/n"]

    # the student beside its teacher, per slice, in the bundle's manifest and the distil run's metrics
    d = js(ws, "distill", "spam_py", "--student", "tiny", "--epochs", "2")
    manifest = json.loads((ws / ".mothermodel" / d["path"] / "manifest.json").read_text())
    for who in ("student", "teacher"):
        f = manifest["metrics"][who]["test/slice:short"]
        assert f["n"] == int((short & (split == "test")).sum()) and f["ci95"][0] <= f["accuracy"] <= f["ci95"][1]
    assert d["metrics"]["spam_py/mail/test/slice:short/teacher_accuracy"] == pytest.approx(
        manifest["metrics"]["teacher"]["test/slice:short"]["accuracy"])
    rows = {(r["slice"], r["split"]): r for r in js(ws, "status")["slices"]}
    assert rows[("short", "test")]["n"] == res["metrics"]["spam_py/mail/test/slice:short/n"]
    assert rows[("short", "test")]["served_accuracy"] == pytest.approx(
        res["metrics"]["spam_py/mail/test/slice:short/served_accuracy"])
    assert not any(split == "train" for _, split in rows) and "accuracy in slice" in run_cli("status", ws=ws).out
    drun = MlflowClient(tracking_uri=d["mlflow_tracking_uri"]).get_run(d["mlflow_run_id"])
    assert "spam_py/mail/test/slice:short/accuracy" in drun.data.metrics


def test_slice_heads_train_follow_slice_edits_and_survive_a_warm_start(sws, tmp_path):
    ws = sws
    heads = YAML.format(pattern="^free") + "slice_heads: true\n"
    (tmp_path / "spam.yaml").write_text(heads)
    fp = js(ws, "task", "show", "spam")["fingerprint"]
    js(ws, "task", "submit", tmp_path / "spam.yaml", "--replace")
    show = js(ws, "task", "show", "spam")
    assert show["slice_heads"] is True and show["fingerprint"] == fp  # what the labels learn did not move
    js(ws, "label", "fit", "spam")
    first = json.loads(train(ws, "--task", "spam").out)
    ckpt = ws / ".mothermodel" / first["path"]
    spec = json.loads((ckpt / "manifest.json").read_text())
    assert "pills" in json.dumps(spec) and "starts_free" in json.dumps(spec)  # the head's slices, recorded
    st = {t["name"]: t for t in js(ws, "status")["tasks"]}["spam"]
    assert not st["model"]["stale"] and not st["labels"]["stale"]

    # with slice heads on, a slice edit makes the task's model stale too, not its labels (nor anything downstream)
    (tmp_path / "spam.yaml").write_text(heads.replace("name: pills, keywords: [pills]",
                                                      "name: pills, keywords: [pills, free]"))
    js(ws, "task", "submit", tmp_path / "spam.yaml", "--replace")
    assert js(ws, "task", "show", "spam")["fingerprint"] == fp
    st = {t["name"]: t for t in js(ws, "status")["tasks"]}["spam"]
    assert st["model"]["stale"] and st["slices"]["stale"] and not st["labels"]["stale"]
    impact = js(ws, "dag", "impact", "spam.pills")
    assert impact["changed"]["kind"] == "slice" and impact["models"] == [first["model_version"]]
    assert [t["name"] for t in impact["tasks"]] == ["spam"]
    # training before the edited slice's membership is computed is refused, naming the fix
    r = train(ws, "--task", "spam")
    assert r.code == 2 and "label apply spam" in r.err, r
    (tmp_path / "spam.yaml").write_text(heads.replace("  - {kind: regex, name: starts_free",
                                                      "  - {kind: keyword, name: meeting, keywords: [meeting]}\n"
                                                      "  - {kind: regex, name: starts_free"))
    js(ws, "task", "submit", tmp_path / "spam.yaml", "--replace")
    js(ws, "label", "apply", "spam")
    second = json.loads(train(ws, "--task", "spam").out)
    assert second["warm_start"]["slices"] == {"spam": {"kept": ["pills", "starts_free"], "added": ["meeting"],
                                                       "dropped": []}}
    assert "spam/mail/valid/slice:meeting/accuracy" in second["metrics"]
    st = {t["name"]: t for t in js(ws, "status")["tasks"]}["spam"]
    assert not st["model"]["stale"] and not st["slices"]["stale"]
    assert js(ws, "train", "--task", "spam", "--if-changed")["status"] == "up to date"


def _probs_path(ws, task):
    from mothermodel.api import Registry

    reg = Registry.open(ws)
    return reg.store.snapshot().latest_probs[task].path


@pytest.mark.parametrize("slices, field", [
    ("  - {kind: lf, name: x}\n", "slices[0].kind"),
    ("  - {kind: keyword, name: x}\n", "slices[0].keywords: missing"),
    ("  - {kind: keyword, name: x, keywords: [a], label: SPAM}\n", "slices[0].label: unknown field"),
    ("  - {kind: regex, name: x, pattern: '(?=a)'}\n", "slices[0].pattern"),
    ("  - {kind: keyword, name: money, keywords: [a]}\n", "duplicate name 'money'"),
    ("  - {kind: keyword, name: x, keywords: [a], field: nope}\n", "slices[0].field"),
    ("  - {kind: threshold, name: x, field: label, op: '~', value: 1}\n", "slices[0].op"),
    ("  - {kind: keyword, name: hand_labels, keywords: [a]}\n", "slices[0].name"),
])
def test_bad_slices_exit_2_naming_the_field_and_write_nothing(sws, tmp_path, slices, field):
    ws = sws
    spec = YAML.format(pattern="^free").split("slices:")[0] + "slices:\n" + slices
    (tmp_path / "bad.yaml").write_text(spec)
    before = snapshot(ws)
    r = run_cli("task", "submit", tmp_path / "bad.yaml", "--replace", ws=ws)
    assert r.code == 2 and field in r.err and r.err.count("\n") == 1, r
    assert snapshot(ws) == before
