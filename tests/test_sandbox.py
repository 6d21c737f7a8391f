"""The LF engine as a per-LF fault boundary (issue 26): sys.exit()/os._exit in an LF, a call that ignores the
time limit, a child process an LF starts, the memory cap, print() with --json, unusable declarative and column
sources, a column named like an internal one, LFs that fail on every row, and stored specs whose imports must not
resolve from the folder they were submitted from. Each is a recorded fault of that LF (or source); every other
output lands; `label apply` exits 1 when an LF was stopped as a whole."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, run_proc

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and RLIMIT_AS: Linux")


def _submit(ws, path: Path, text: str):
    path.write_text(text)
    r = run_cli("task", "submit", path, ws=ws)
    assert r.code == 0, r
    return r


def _matrix(ws, task: str) -> dict:
    from mothermodel.api import Registry
    from mothermodel.labeling import label_files

    reg = Registry.open(ws)
    rec = reg.store.snapshot().latest_matrix[task]
    m = label_files.read_checked(reg.ws, rec.path, rec.content_hash).to_pylist()
    return {(e["row"], e["source"]): e["label"] for e in m}


EXITS_SPEC = """
import os, sys
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="exits", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def has_link(x):
    return 1 if "http" in x.text else ABSTAIN

@labeling_function()
def calls_exit(x):
    if "friend" in x.text:
        sys.exit(0)
    return 0

@labeling_function()
def kills_worker(x):
    if "money" in x.text:
        os._exit(3)
    return 0
"""


def test_sys_exit_and_os_exit_are_per_lf_faults(ws, tmp_path):
    # Before: sys.exit() made `label apply` exit 0 with nothing recorded; os._exit broke the process pool.
    _submit(ws, tmp_path / "exits.py", EXITS_SPEC)
    p = run_proc("label", "apply", "--json", ws=ws, timeout=120)
    assert p.returncode == 1, p
    res = json.loads(p.stdout)["tasks"][0]
    assert res["status"] == "created"
    faults = {f["name"]: f for f in res["faults"]}
    assert set(faults) == {"calls_exit", "kills_worker"}
    # sys.exit() on one row is that row's fault, like any exception
    assert faults["calls_exit"]["raised"] == 1 and faults["calls_exit"]["first_row"] == 1
    assert "SystemExit" in faults["calls_exit"]["first_error"] and faults["calls_exit"]["fatal"] is None
    # os._exit kills the worker: the LF is stopped as a whole, none of its votes kept
    k = faults["kills_worker"]
    assert k["fatal"] == "crashed" and k["failed_rows"] == 4 and "exit code 3" in k["first_error"]
    assert "kills_worker" in p.stderr and p.stderr.count("\n") == 1  # one error line: exit 1 at the end
    m = _matrix(ws, "exits")
    assert m == {(0, "has_link"): 1, (0, "calls_exit"): 0, (2, "calls_exit"): 0, (3, "calls_exit"): 0}
    # Run again: nothing changed, nothing recomputed, but the stopped LF is still reported (exit 1 again).
    p = run_proc("label", "apply", "--json", ws=ws, timeout=120)
    assert p.returncode == 1, p
    res = json.loads(p.stdout)["tasks"][0]
    assert res["status"] == "up to date" and [f["name"] for f in res["faults"]] == ["kills_worker"]


HANG_SPEC = """
import time
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="hang", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def has_link(x):
    return 1 if "http" in x.text else ABSTAIN

@labeling_function()
def retries(x):
    if "friend" in x.text:
        while True:
            try:
                time.sleep(10)
            except:  # noqa: E722 - swallows the in-worker time limit too
                pass
    return 0
"""


def test_a_call_that_ignores_the_time_limit_is_killed_from_outside(ws, tmp_path):
    # Before: `label apply --timeout 1` hung forever on this LF.
    _submit(ws, tmp_path / "hang.py", HANG_SPEC)
    t0 = time.monotonic()
    p = run_proc("label", "apply", "--json", "--timeout", "1", ws=ws, timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 1, p
    assert took < 20, took
    (f,) = json.loads(p.stdout)["tasks"][0]["faults"]
    assert f["name"] == "retries" and f["fatal"] == "timeout" and f["first_row"] == 1 and f["failed_rows"] == 4
    assert _matrix(ws, "hang") == {(0, "has_link"): 1}


CHILD_SPEC = """
import resource, subprocess
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="child", dataset="docs", classes=["HAM", "SPAM"])
PID_FILE = {pid_file!r}

@labeling_function()
def starts_child(x):
    if "http" in x.text:
        p = subprocess.Popen(["sleep", "300"])
        with open(PID_FILE, "w") as fh:
            fh.write(str(p.pid))
    return ABSTAIN

@labeling_function()
def lifts_memory_cap(x):
    # 1 when the LF could lift its worker's memory cap, 0 when it could not
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return 1
    except (ValueError, OSError):
        return 0
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@linux_only
def test_an_lf_child_process_dies_with_the_apply_and_the_memory_cap_is_hard(ws, tmp_path):
    pid_file = tmp_path / "child.pid"
    _submit(ws, tmp_path / "child.py", CHILD_SPEC.format(pid_file=str(pid_file)))
    p = run_proc("label", "apply", "--json", "--memory-mb", "512", ws=ws, timeout=120)
    assert p.returncode == 0, p
    pid = int(pid_file.read_text())
    try:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), "a process an LF started outlived label apply"
    finally:
        if _alive(pid):
            os.kill(pid, 9)
    m = _matrix(ws, "child")
    # the cap is the hard limit too: the LF could not lift it on any row
    assert {r: v for (r, s), v in m.items() if s == "lifts_memory_cap"} == {0: 0, 1: 0, 2: 0, 3: 0}


PRINT_SPEC = """
from mothermodel import ABSTAIN, Task, labeling_function
print("spec module output")
task = Task(name="chatty", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def chatty(x):
    print("LF output", x.text)
    return 1 if "http" in x.text else ABSTAIN
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_print_in_a_spec_or_lf_goes_to_stderr(ws, tmp_path, jobs):
    (tmp_path / "chatty.py").write_text(PRINT_SPEC)
    p = run_proc("task", "submit", tmp_path / "chatty.py", "--json", ws=ws, timeout=120)
    assert p.returncode == 0, p
    json.loads(p.stdout)
    assert "spec module output" in p.stderr
    for extra in (["--memory-mb", "0"], []):  # --memory-mb 0 -j 1 used to run LFs in the command's own process
        p = run_proc("label", "apply", "--json", "--force", "-j", jobs, *extra, ws=ws, timeout=120)
        assert p.returncode == 0, p
        assert json.loads(p.stdout)["tasks"][0]["task"] == "chatty"
        assert "LF output" in p.stderr and "spec module output" in p.stderr


def test_lf_failing_on_every_row_is_a_fault(ws, tmp_path):
    # Before: exit 0, and the LF quietly covered nothing.
    _submit(ws, tmp_path / "body.py", """
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="body", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def wrong_field(x):
    return 1 if "http" in x.body else ABSTAIN

@labeling_function()
def has_link(x):
    return 1 if "http" in x.text else ABSTAIN
""")
    r = run_cli("label", "apply", "--json", ws=ws)
    assert r.code == 1, r
    (f,) = json.loads(r.out)["tasks"][0]["faults"]
    assert f["name"] == "wrong_field" and f["fatal"] == "every row" and f["raised"] == 4
    assert "has no attribute 'body'" in f["first_error"]
    assert "wrong_field (every row)" in r.err
    assert _matrix(ws, "body") == {(0, "has_link"): 1}


def test_unusable_declarative_and_column_sources_do_not_block_other_tasks(ws, tmp_path):
    # A dataset replaced after submit changes column types under a keyword, a threshold and a column source.
    # Before: `label apply` (all tasks) exited 1 with a BinderException and labelled no task at all.
    def docs(path, note, lf_a, lf_b):
        pq.write_table(pa.table({"text": ["buy now http://x", "hello friend", "win money", "see you"],
                                 "split": ["train", "train", "valid", "test"], "note": note, "lf_a": lf_a,
                                 "lf_b": lf_b}), path)
        r = run_cli("dataset", "add", "docs", path, "--replace", ws=ws)
        assert r.code == 0, r

    docs(tmp_path / "d1.parquet", ["x", "y", "x", "y"], pa.array([1, -1, 1, 0], pa.int8()), [1, 0, 1, 0])
    (tmp_path / "good.yaml").write_text("name: good\ndataset: docs\nclasses: [HAM, SPAM]\nsources:\n"
                                        "  - {kind: keyword, name: link, keywords: [http], label: SPAM}\n")
    assert run_cli("task", "submit", tmp_path / "good.yaml", ws=ws).code == 0
    _submit(ws, tmp_path / "bad.py", """
from mothermodel import Column, KeywordLF, Task, ThresholdLF
task = Task(name="bad", dataset="docs", classes=["HAM", "SPAM"], sources=[Column("lf_a")])
kw_note = KeywordLF("kw_note", ["x"], label=1, field="note")
th_b = ThresholdLF("th_b", field="lf_b", op=">", value=0, label=1)
money = KeywordLF("money", ["money"], label=1)
""")
    docs(tmp_path / "d2.parquet", [1, 2, 3, 4], ["1", "-1", "1", "0"], ["a", "b", "c", "d"])
    r = run_cli("label", "apply", "--json", ws=ws)
    assert r.code == 1, r
    assert "BinderException" not in r.err and r.err.count("\n") == 1
    res = {t["task"]: t for t in json.loads(r.out)["tasks"]}
    assert res["good"]["status"] == res["bad"]["status"] == "created" and res["good"]["faults"] == []
    faults = {f["name"]: f for f in res["bad"]["faults"]}
    assert set(faults) == {"kw_note", "th_b", "lf_a"}
    assert all(f["fatal"] == "unusable" and f["failed_rows"] == 4 for f in faults.values())
    assert "field 'note': column 'note' holds int64: a keyword source needs text" in faults["kw_note"]["first_error"]
    assert "column 'lf_b' holds string: a threshold source needs numbers" in faults["th_b"]["first_error"]
    assert "column 'lf_a' holds string: a column source needs class indices" in faults["lf_a"]["first_error"]
    assert _matrix(ws, "good") == {(0, "link"): 1}
    assert _matrix(ws, "bad") == {(2, "money"): 1}  # only the healthy source voted


def test_a_dataset_column_named_like_an_internal_one_does_not_shadow_it():
    # Before: a column `__lower_text` took the place of lower(text): keyword votes went to the wrong rows.
    from mothermodel.labeling.apply.core import apply_declarative_lfs
    from mothermodel.labeling.lf.core import KeywordLF, RegexLF

    t = pa.table({"_row": [0, 1], "text": ["Money here", "nothing"], "__lower_text": ["nothing", "money"],
                  "f0": ["money", "x"]})
    lfs = [KeywordLF("kw", ["money"], 1), KeywordLF("kw_lower", ["money"], 0, field="__lower_text"),
           RegexLF("rx_f0", "^x$", 1, field="f0")]
    got = apply_declarative_lfs(t, lfs, 2)
    votes = {(int(r), got.sources[c], int(v)) for r, c, v in zip(got.rows, got.cols, got.labels)}
    assert votes == {(0, "kw", 1), (1, "kw_lower", 0), (1, "rx_f0", 1)}


@linux_only
def test_a_stored_spec_imports_nothing_from_its_folder(ws, tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    marker = tmp_path / "ran.txt"
    (folder / "mm_words.py").write_text("WORD = 'http'\n")
    # `wave` (standard library) is not loaded by the CLI: a file of that name beside the spec would shadow it
    _submit(ws, folder / "imp.py", """
import wave
import mm_words
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="imp", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def has_word(x):
    import colorsys  # imported at call time, in the worker
    return 1 if mm_words.WORD in x.text else ABSTAIN
""")
    # After submit, files land beside the spec: a new module, and a changed helper.
    for name in ("wave", "colorsys"):
        (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name} ran\\n')\n")
    (folder / "mm_words.py").write_text(f"open({str(marker)!r}, 'a').write('helper ran\\n')\nWORD = 'friend'\n")
    p = run_proc("label", "apply", "--json", ws=ws, cwd=folder, timeout=120)
    assert p.returncode == 0, p
    assert not marker.exists(), marker.read_text()
    assert _matrix(ws, "imp") == {(0, "has_word"): 1}  # the helper as it was stored at submit


def test_a_stored_spec_without_its_helpers_says_to_resubmit(ws, tmp_path):
    from mothermodel.labeling.lf.core import lfs_from_source
    from mothermodel.errors import UserError

    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "mm_old_helper.py").write_text("X = 1\n")
    with pytest.raises(UserError, match="resubmit it with task submit --replace"):
        lfs_from_source("import mm_old_helper\n", str(folder / "spec.py"))
    assert "mm_old_helper" not in sys.modules


def test_label_fit_warns_when_no_source_votes(ws, tmp_path):
    # Before: `label fit` fitted coverage 0.0 without a word.
    _submit(ws, tmp_path / "none.py", """
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="none", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def never(x):
    return ABSTAIN
""")
    assert run_cli("label", "apply", ws=ws).code == 0
    r = run_cli("label", "fit", "none", "--json", ws=ws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["coverage"] == 0.0 and any("coverage 0.0" in w for w in res["warnings"])
    r = run_cli("label", "fit", "none", ws=ws)
    assert "warning: none: no source voted on any row" in r.out + r.err


def test_watch_once_exits_1_when_an_lf_is_stopped(ws, tmp_path):
    # Before: an LF calling os._exit/sys.exit made the tick (and `watch --once`) end with exit 0.
    from test_train import TINY

    from mothermodel.trainer.encoder import write_tiny_encoder

    write_tiny_encoder(tmp_path / "enc", words=["buy", "now", "http", "hello", "friend", "win", "money", "see", "you"])
    _submit(ws, tmp_path / "exits.py", EXITS_SPEC)
    r = run_cli("watch", "--once", "--encoder", tmp_path / "enc", "--max-steps", 5, "--max-length", 16, *TINY,
                "--student", "ngram", "--distill-epochs", 1, "--json", ws=ws)
    assert r.code == 1, r
    tick = json.loads(r.out)
    assert tick["label_apply"] == ["exits"] and tick["failed"] == []
    (e,) = [e for e in tick["errors"] if "kills_worker" in e["reason"]]
    assert "stopped (crashed)" in e["reason"] and "exit code 3" in e["reason"]
