"""Validation where input enters (issue 26): tasks submitted from Python, `dataset add`, `import wrench`,
spec files, regex and column types at submit, a registry held by another process."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, run_proc, snapshot

from mothermodel.errors import UserError


def files_under(root) -> set[str]:
    home = Path(root) / ".mothermodel"
    return {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and p.name != "registry.lock"}


def import_file(path: Path):
    """Import a module from a file, as a user's script would be (with its folder on sys.path while it runs)."""
    name = f"user_tasks_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


# --- 1. submitting Task objects built in Python ---------------------------------------------------------


TASK_MODULE = '''
import re
from mothermodel import ABSTAIN, KeywordLF, Task, labeling_function
from spam_helpers import polite

LINK = re.compile(r"http")
MONEY = {"money", "cash", "prize", "refund"}


class Row:  # only in annotations: not recorded, not needed
    text: str


def lowered(s):
    return s.lower()


@labeling_function()
def has_link(x: Row) -> int:
    return 1 if LINK.search(x.text) else ABSTAIN


@labeling_function(resources={"extra": ["win"]})
def says_money(x, extra, words=MONEY):
    return 1 if any(w in lowered(x.text) for w in words | set(extra)) else ABSTAIN


@labeling_function()
def is_polite(x):
    return 0 if polite(x.text) else ABSTAIN


spam = Task(name="spam", dataset="docs", classes=["HAM", "SPAM"],
            sources=[has_link, says_money, is_polite, KeywordLF("friendly", ["friend"], 0)])
other = Task(name="other", dataset="docs", classes=["A", "B"], sources=[has_link])
'''


def test_task_built_in_python_is_submitted_and_applied_in_a_fresh_process(ws, tmp_path):
    from mothermodel import Registry

    (tmp_path / "mytasks.py").write_text(TASK_MODULE)
    (tmp_path / "spam_helpers.py").write_text("def polite(s):\n    return s.endswith(\"you\")\n")
    mod = import_file(tmp_path / "mytasks.py")
    reg = Registry.open(ws)
    res = reg.submit(mod.spam)
    assert res["tasks"][0]["status"] == "created"
    assert reg.submit([mod.other])["tasks"][0]["name"] == "other"  # a list of Tasks too
    # the recorded code hashes are stable
    assert reg.submit(mod.spam, replace=True)["tasks"][0]["status"] == "unchanged"
    # ... in another process too (its set order differs with its string hashing)
    script = (f"import importlib.util, sys; sys.path.insert(0, {str(tmp_path)!r}); from mothermodel import Registry\n"
              f"s = importlib.util.spec_from_file_location('m', {str(tmp_path / 'mytasks.py')!r})\n"
              "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
              f"print(Registry.open({str(ws)!r}).submit(m.spam, replace=True)['tasks'][0]['status'])\n")
    for seed in ("1", "2"):
        p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": seed})
        assert p.stdout.strip() == "unchanged", p.stderr[-2000:]
    # The user's files are gone: apply runs the code recorded at submit, in another process.
    (tmp_path / "mytasks.py").unlink()
    (tmp_path / "spam_helpers.py").unlink()
    p = run_proc("label", "apply", "--json", ws=ws, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = {t["task"]: t for t in json.loads(p.stdout)["tasks"]}
    # has_link: row 0; says_money (helper + constant + default + resource): row 2; friendly: row 1;
    # is_polite (a helper from a file beside the module): row 3.
    assert out["spam"]["entries"] == 4 and out["spam"]["faults"] == []
    assert out["other"]["entries"] == 1 and out["other"]["faults"] == []


UNRECORDABLE = {
    "lambda": ("bad = labeling_function(name='bad')(lambda x: 1)\n", "lambda"),
    "closure": ("def make(k):\n    @labeling_function(name='bad')\n    def f(x):\n        return k\n    return f\n"
                "bad = make(1)\n", "variables of the function"),
    "object_global": ("class Thing:\n    pass\nTHING = Thing()\n@labeling_function(name='bad')\n"
                      "def bad(x):\n    return 1 if THING else -1\n", "THING"),
    "local_module": ("import localmod\n@labeling_function(name='bad')\ndef bad(x):\n    return localmod.f(x)\n",
                     "module localmod"),
    "resource_object": ("@labeling_function(name='bad', resources={'r': object()})\ndef bad(x, r):\n    return 1\n",
                        "resource 'r'"),
}


@pytest.mark.parametrize("case", sorted(UNRECORDABLE))
def test_task_whose_lf_code_cannot_be_recorded_is_refused(ws, tmp_path, case):
    from mothermodel import Registry

    body, why = UNRECORDABLE[case]
    (tmp_path / "localmod.py").write_text("def f(x):\n    return 1\n")
    (tmp_path / f"{case}.py").write_text("from mothermodel import Task, labeling_function\n" + body +
                                         "task = Task(name='t', dataset='docs', classes=['A', 'B'], sources=[bad])\n")
    mod = import_file(tmp_path / f"{case}.py")
    before = snapshot(ws)
    with pytest.raises(UserError) as e:
        Registry.open(ws).submit(mod.task)
    assert "'bad'" in str(e.value) and why in str(e.value)
    assert snapshot(ws) == before


def test_lf_typed_at_a_prompt_is_refused(ws):
    from mothermodel import Registry, Task, labeling_function

    ns = {"labeling_function": labeling_function}
    exec(compile("@labeling_function()\ndef typed(x):\n    return 1\n", "<stdin>", "exec"), ns)
    with pytest.raises(UserError, match="'typed'.*cannot be read"):
        Registry.open(ws).submit(Task(name="t", dataset="docs", classes=["A", "B"], sources=[ns["typed"]]))


def test_submit_refuses_what_is_not_a_task(ws):
    from mothermodel import Registry

    with pytest.raises(UserError, match="expected a Task"):
        Registry.open(ws).submit([object()])


def test_keyword_and_regex_sources_read_the_datasets_text_field(ws, tmp_path):
    """A keyword/regex source that names no field reads the dataset's text field, not a column called "text"."""
    pq.write_table(pa.table({"body": ["buy cheap pills", "hello friend", "cheap cheap", "good day"],
                             "text": ["x", "x", "x", "x"],  # a decoy: the old default read this column
                             "split": ["train", "train", "valid", "test"]}), tmp_path / "b.parquet")
    assert run_cli("dataset", "add", "mail", tmp_path / "b.parquet", "--text-field", "body", ws=ws).code == 0
    (tmp_path / "s.yaml").write_text("name: cheap\ndataset: mail\nclasses: [ham, spam]\nsources:\n"
                                     "  - {kind: keyword, keywords: [cheap], label: spam}\n"
                                     "  - {kind: regex, pattern: 'pill', label: spam}\n")
    assert run_cli("task", "submit", tmp_path / "s.yaml", ws=ws).code == 0
    r = run_cli("label", "apply", "--json", ws=ws)
    assert r.code == 0, r
    assert json.loads(r.out)["tasks"][0]["entries"] == 3  # rows 0 and 2 by keyword, row 0 by regex
    # On a dataset whose text field is "text", leaving the field out records what naming it did: no new versions.
    (tmp_path / "t.yaml").write_text("name: t\ndataset: docs\nclasses: [a, b]\nsources:\n"
                                     "  - {kind: keyword, keywords: [win], label: b, field: text}\n")
    assert run_cli("task", "submit", tmp_path / "t.yaml", ws=ws).code == 0
    (tmp_path / "t.yaml").write_text("name: t\ndataset: docs\nclasses: [a, b]\nsources:\n"
                                     "  - {kind: keyword, keywords: [win], label: b}\n")
    r = run_cli("task", "submit", tmp_path / "t.yaml", "--replace", "--json", ws=ws)
    assert r.code == 0 and '"unchanged"' in r.out, r


# --- 2. dataset add: a text column, known split names, the named file only ------------------------------


def test_dataset_add_needs_a_text_column(ws, tmp_path):
    pq.write_table(pa.table({"body": ["a", "b"], "n": [1, 2]}), tmp_path / "nt.parquet")
    before = files_under(ws)
    r = run_cli("dataset", "add", "nt", tmp_path / "nt.parquet", ws=ws)
    assert r.code == 2 and "--text-field" in r.err and "body, n" in r.err and len(r.err.strip().splitlines()) == 1
    assert files_under(ws) == before
    # Named, or explicitly none, it is accepted.
    assert run_cli("dataset", "add", "nt", tmp_path / "nt.parquet", "--text-field", "body", ws=ws).code == 0
    assert run_cli("dataset", "add", "nt2", tmp_path / "nt.parquet", "--no-text", ws=ws).code == 0
    r = run_cli("dataset", "add", "nt3", tmp_path / "nt.parquet", "--text-field", "n", ws=ws)
    assert r.code == 2 and "'n'" in r.err and "not text" in r.err


@pytest.mark.parametrize("bad", ["test (2024)", "dev", "Train", ""])
def test_dataset_add_refuses_unknown_split_values(ws, tmp_path, bad):
    pq.write_table(pa.table({"text": ["a", "b", "c"], "part": ["train", bad, "test"]}), tmp_path / "s.parquet")
    before, files = snapshot(ws), files_under(ws)
    r = run_cli("dataset", "add", "s", tmp_path / "s.parquet", "--split-field", "part", ws=ws)
    assert r.code == 2, r
    assert "'part'" in r.err and repr(bad) in r.err and "row 1" in r.err
    assert snapshot(ws) == before and files_under(ws) == files


def test_dataset_add_refuses_null_and_non_text_splits(ws, tmp_path):
    pq.write_table(pa.table({"text": ["a", "b"], "split": ["train", None]}), tmp_path / "n.parquet")
    r = run_cli("dataset", "add", "n", tmp_path / "n.parquet", ws=ws)
    assert r.code == 2 and "None" in r.err
    pq.write_table(pa.table({"text": ["a", "b"], "split": [0, 1]}), tmp_path / "i.parquet")
    r = run_cli("dataset", "add", "i", tmp_path / "i.parquet", ws=ws)
    assert r.code == 2 and "'split'" in r.err


def test_dataset_add_reads_the_named_file_only(ws, tmp_path):
    d = tmp_path / "csvs"
    d.mkdir()
    (d / "a*.csv").write_text("text,split\none,train\n")
    (d / "ab.csv").write_text("text,split\ntwo,train\nthree,valid\n")
    (d / "ac.csv").write_text("text,split\nfour,test\n")
    r = run_cli("dataset", "add", "g", d / "a*.csv", "--json", ws=ws)
    assert r.code == 0, r
    assert json.loads(r.out)["num_rows"] == 1
    r = run_cli("dataset", "add", "q", d / "a?.csv", ws=ws)  # no file of that literal name
    assert r.code == 2 and "no such file" in r.err


# --- 3. import wrench ------------------------------------------------------------------------------------


def wrench_folder(root: Path, label_json: str | None = None, train: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "label.json").write_text(label_json or '{"0": "HAM", "1": "SPAM"}')
    ex = {"0": {"label": 0, "weak_labels": [0, -1], "data": {"text": "hello"}},
          "1": {"label": 1, "weak_labels": [1, 1], "data": {"text": "buy now"}}}
    (root / "train.json").write_text(train if train is not None else json.dumps(ex))
    for s in ("valid", "test"):
        (root / f"{s}.json").write_text(json.dumps(ex))
    return root


def ex_json(label="0", weak="[0, -1]", text='"hello"') -> str:
    return '{"0": {"label": %s, "weak_labels": %s, "data": {"text": %s}}}' % (label, weak, text)


BAD_WRENCH = {
    "infinity": (None, ex_json(label="Infinity"), "train.json"),
    "nan": (None, ex_json(weak="[NaN, 0]"), "train.json"),
    "float_overflow": (None, ex_json(label="1e999"), "train.json"),
    "huge_int": (None, ex_json(label="9" * 5000), "train.json"),
    "huge_negative": (None, ex_json(label="-" + "9" * 30), "train.json"),
    "deep_nesting": (None, ex_json(text="[" * 100000 + "]" * 100000), "train.json"),
    "lone_surrogate": (None, ex_json(text='"bad \\ud800 text"'), "train.json"),
    "string_weak_labels": (None, ex_json(weak='"01"'), "train.json"),
    "string_label": (None, ex_json(label='"1"'), "train.json"),
    "fractional_label": (None, ex_json(label="1.9"), "train.json"),
    "bool_weak_label": (None, ex_json(weak="[true, 0]"), "train.json"),
    "text_not_string": (None, ex_json(text="42"), "train.json"),
    "duplicate_classes": ('{"0": "A", "1": "A"}', None, "label.json"),
    "empty_class": ('{"0": "A", "1": " "}', None, "label.json"),
    "boolean_class": ('{"0": "A", "1": true}', None, "label.json"),
    "null_class": ('{"0": "A", "1": null}', None, "label.json"),
    "surrogate_class": ('{"0": "A", "1": "\\udc00"}', None, "label.json"),
    "deep_label_map": ("[" * 100000 + "]" * 100000, None, "label.json"),
}


@pytest.mark.parametrize("case", sorted(BAD_WRENCH))
def test_import_wrench_refuses_bad_files_in_one_line(ws, tmp_path, case):
    label_json, train, file = BAD_WRENCH[case]
    folder = wrench_folder(tmp_path / case, label_json, train)
    before, files = snapshot(ws), files_under(ws)
    r = run_cli("import", "wrench", folder, "--task", "wr", ws=ws)
    assert r.code == 2, r
    assert len(r.err.strip().splitlines()) == 1 and file in r.err, r.err
    assert snapshot(ws) == before and files_under(ws) == files  # no orphan parquet or temporary file


def test_import_wrench_refused_by_the_registry_leaves_no_orphan_file(ws, tmp_path):
    """The task name is taken (by a task on another dataset): refused after the dataset file was written."""
    spec = tmp_path / "wr.yaml"
    spec.write_text("name: wr\ndataset: docs\nclasses: [A, B]\nsources:\n  - kind: column\n    column: lf_a\n")
    assert run_cli("task", "submit", spec, ws=ws).code == 0
    before, files = snapshot(ws), files_under(ws)
    r = run_cli("import", "wrench", wrench_folder(tmp_path / "ok"), "--task", "wr", ws=ws)
    assert r.code == 2 and "already exists" in r.err
    assert snapshot(ws) == before and files_under(ws) == files


def test_import_wrench_accepts_whole_number_floats(ws, tmp_path):
    folder = wrench_folder(tmp_path / "ok", train=ex_json(label="1.0", weak="[1.0, -1]"))
    assert run_cli("import", "wrench", folder, "--task", "wr", ws=ws).code == 0


# --- 4. spec files that are not UTF-8 --------------------------------------------------------------------


SPECS = {
    "yaml": "name: yspam\ndataset: docs\nclasses: [HAM, SPAM]\nsources:\n  - kind: column\n    column: lf_a\n",
    "toml": 'name = "yspam"\ndataset = "docs"\nclasses = ["HAM", "SPAM"]\n[[sources]]\nkind = "column"\ncolumn = "lf_a"\n',
    "py": "from mothermodel import Column, Task\n"
          "task = Task(name='yspam', dataset='docs', classes=['HAM', 'SPAM'], sources=[Column('lf_a')])\n",
}


@pytest.mark.parametrize("fmt", sorted(SPECS))
def test_utf16_spec_is_refused_in_one_line(ws, tmp_path, fmt):
    p = tmp_path / f"spec.{fmt}"
    p.write_bytes(SPECS[fmt].encode("utf-16"))
    r = run_cli("task", "submit", p, ws=ws)
    assert r.code == 2 and str(p) in r.err and len(r.err.strip().splitlines()) == 1, r
    assert "UTF-8" in r.err or fmt == "py"  # Python itself refuses the file's null bytes
    p.write_bytes(SPECS[fmt].encode("utf-8-sig"))  # a UTF-8 byte-order mark is fine
    assert run_cli("task", "submit", p, ws=ws).code == 0


# --- 5. regular expressions compiled by the engine that runs them ----------------------------------------


@pytest.mark.parametrize("pattern", [r"money\Z", r"(?>mon)ey", r"mo+?n++", r"(m)?(?(1)oney|x)", r"(?P<w>o)(?P=w)",
                                     r"((a{100}){100}){100}"])
def test_regex_that_re2_cannot_run_is_refused_at_submit(ws, tmp_path, pattern):
    yaml_spec = tmp_path / "r.yaml"
    yaml_spec.write_text("name: rx\ndataset: docs\nclasses: [HAM, SPAM]\nsources:\n"
                         f"  - kind: regex\n    pattern: '{pattern}'\n    label: SPAM\n")
    r = run_cli("task", "submit", yaml_spec, ws=ws)
    assert r.code == 2 and "sources[0].pattern" in r.err and "RE2" in r.err, r
    py_spec = tmp_path / "r.py"
    py_spec.write_text("from mothermodel import RegexLF, Task\n"
                       f"task = Task(name='rx', dataset='docs', classes=['HAM', 'SPAM'], "
                       f"sources=[RegexLF('m', {pattern!r}, 1)])\n")
    r = run_cli("task", "submit", py_spec, ws=ws)
    assert r.code == 2 and "sources[0].pattern: m:" in r.err and "RE2" in r.err, r
    assert "rx" not in run_cli("task", "list", "--json", ws=ws).out


# --- 6. column types at submit ---------------------------------------------------------------------------


@pytest.fixture
def typed_ws(ws, tmp_path):
    pq.write_table(pa.table({
        "text": ["a b", "c d", "e", "f"], "n": [1, 2, 3, 4],
        "tags": [["x"], [], ["y"], ["z"]], "meta": [{"k": 1}, {"k": 2}, {"k": 3}, {"k": 4}],
        "weak_f": [1.0, float("nan"), 0.0, -1.0], "frac": [0.5, 1.0, 0.0, -1.0],
    }), tmp_path / "typed.parquet")
    assert run_cli("dataset", "add", "typed", tmp_path / "typed.parquet", ws=ws).code == 0
    return ws


@pytest.mark.parametrize("source,col", [
    ("kind: keyword\n    keywords: [x]\n    label: A\n    field: n", "n"),
    ("kind: keyword\n    keywords: [x]\n    label: A\n    field: tags", "tags"),
    ("kind: regex\n    pattern: x\n    label: A\n    field: meta", "meta"),
    ("kind: column\n    column: text", "text"),
    ("kind: column\n    column: frac", "frac"),
])
def test_source_on_a_column_of_the_wrong_type_is_refused_at_submit(typed_ws, tmp_path, source, col):
    spec = tmp_path / "t.yaml"
    spec.write_text(f"name: typed_task\ndataset: typed\nclasses: [A, B]\nsources:\n  - {source}\n")
    before = snapshot(typed_ws)
    r = run_cli("task", "submit", spec, ws=typed_ws)
    assert r.code == 2 and f"column {col!r}" in r.err and "sources[0]" in r.err, r
    assert len(r.err.strip().splitlines()) == 1
    assert snapshot(typed_ws) == before


def test_sources_on_columns_of_the_right_type_pass(typed_ws, tmp_path):
    spec = tmp_path / "t.yaml"
    spec.write_text("name: typed_task\ndataset: typed\nclasses: [A, B]\nsources:\n"
                    "  - kind: column\n    column: n\n  - kind: column\n    column: weak_f\n"
                    "  - kind: keyword\n    keywords: [a]\n    label: A\n")
    assert run_cli("task", "submit", spec, ws=typed_ws).code == 0


# --- 7. a registry held open by another DuckDB client ----------------------------------------------------


@pytest.mark.parametrize("argv", [["task", "list"], ["dataset", "add", "x", "X"], ["status"]])
def test_registry_held_by_another_process_is_reported_as_busy(ws, tmp_path, argv):
    argv = [str(tmp_path / "docs.parquet") if a == "X" else a for a in argv]
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(ws / '.mothermodel' / 'registry.duckdb')!r})
        print('held', flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        p = run_proc(*argv, ws=ws, env={"MOTHERMODEL_LOCK_TIMEOUT": "1"})
        assert time.time() - t0 < 30
    finally:
        holder.kill()
        holder.wait()
    assert p.returncode == 1, p
    assert "registry stayed locked by another process" in p.stderr and "internal error" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
