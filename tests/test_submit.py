"""Task submission: Python/YAML/TOML specs, validation, versions, fingerprints."""

import json

import pytest
from conftest import run_cli, snapshot, write_spec


def show(ws, name):
    r = run_cli("task", "show", name, "--json", ws=ws)
    assert r.code == 0, r
    return json.loads(r.out)


def test_python_spec_registers_task_and_lfs(ws, tmp_path):
    spec = write_spec(tmp_path / "spam.py", sources="Column('lf_a')")
    r = run_cli("task", "submit", spec, "--json", ws=ws)
    assert r.code == 0, r
    t = show(ws, "spam")
    assert t["classes"] == ["HAM", "SPAM"] and t["dataset"] == "docs" and t["parent"] is None
    assert t["version"] == 1 and len(t["fingerprint"]) == 64
    kinds = {s["name"]: (s["kind"], s["version"]) for s in t["sources"]}
    assert kinds == {"lf_a": ("column", 1), "has_link": ("lf", 1), "says_money": ("lf", 1)}


def test_yaml_and_toml_specs(ws, tmp_path):
    (tmp_path / "a.yaml").write_text(
        "name: by_yaml\ndataset: docs\nclasses: ['NO', 'YES']\nsources:\n  - {kind: column, column: lf_b, name: b}\n"
    )
    (tmp_path / "b.toml").write_text(
        'name = "by_toml"\ndataset = "docs"\nclasses = ["NO", "YES"]\nparent = "by_yaml"\n'
        '[[sources]]\nkind = "task_output"\ntask = "by_yaml"\n'
    )
    assert run_cli("task", "submit", tmp_path / "a.yaml", ws=ws).code == 0
    assert run_cli("task", "submit", tmp_path / "b.toml", ws=ws).code == 0
    a, b = show(ws, "by_yaml"), show(ws, "by_toml")
    assert [(s["name"], s["kind"]) for s in a["sources"]] == [("b", "column")]
    assert b["parent"] == "by_yaml"
    assert [(s["name"], s["kind"]) for s in b["sources"]] == [("by_yaml", "task_output")]
    assert {"task": "by_toml", "kind": "parent"} in a["downstream"]


BAD = [
    # (spec kwargs or raw text, expected field in the message)
    (dict(dataset="nope"), "dataset: unknown dataset 'nope'"),
    (dict(parent="ghost"), "parent: unknown task 'ghost'"),
    (dict(sources="TaskOutput('ghost')"), "sources[0].task: unknown task 'ghost'"),
    (dict(classes=()), "classes: must be a non-empty list"),
    (dict(classes=("A", "B", "A")), "classes: duplicate class name 'A'"),
    (dict(name="Bad-Name"), "name: 'Bad-Name' does not match"),
    (dict(sources="Column('no_such_col')"), "sources[0].column: dataset 'docs' has no column 'no_such_col'"),
    (dict(parent="spam", name="spam"), "parent: dependency cycle spam -> spam"),
]


@pytest.mark.parametrize("kwargs,needle", BAD)
def test_bad_specs_exit_2_and_change_nothing(ws, tmp_path, kwargs, needle):
    before = snapshot(ws)
    spec = write_spec(tmp_path / "bad.py", **kwargs)
    r = run_cli("task", "submit", spec, ws=ws)
    assert r.code == 2, r
    assert needle in r.err and r.err.count("\n") == 1, r.err
    assert str(spec) in r.err
    assert snapshot(ws) == before


def test_lf_module_that_fails_to_import(ws, tmp_path):
    before = snapshot(ws)
    spec = tmp_path / "broken.py"
    spec.write_text("import no_such_module_xyz\n")
    r = run_cli("task", "submit", spec, ws=ws)
    assert r.code == 2 and "broken.py: failed to import: ModuleNotFoundError" in r.err
    assert r.err.count("\n") == 1
    assert snapshot(ws) == before


def test_yaml_errors_name_the_field(ws, tmp_path):
    (tmp_path / "norway.yaml").write_text("name: n\ndataset: docs\nclasses: [NO, YES]\n")
    r = run_cli("task", "submit", tmp_path / "norway.yaml", ws=ws)
    assert r.code == 2 and "classes: class False is a boolean" in r.err and "quote them" in r.err
    (tmp_path / "x.yaml").write_text("name: x\ndataset: docs\n")
    r = run_cli("task", "submit", tmp_path / "x.yaml", ws=ws)
    assert r.code == 2 and "x.yaml: classes: missing" in r.err
    (tmp_path / "y.yaml").write_text("name: y\ndataset: docs\nclasses: [A]\ncolour: red\n")
    r = run_cli("task", "submit", tmp_path / "y.yaml", ws=ws)
    assert r.code == 2 and "y.yaml: colour: unknown field" in r.err
    r = run_cli("task", "submit", tmp_path / "missing.yaml", ws=ws)
    assert r.code == 2 and "missing.yaml: no such spec file" in r.err


def test_replace_bumps_only_changed_lfs(ws, tmp_path):
    spec = write_spec(tmp_path / "spam.py")
    assert run_cli("task", "submit", spec, ws=ws).code == 0
    v1 = show(ws, "spam")
    # Submitting again without --replace is refused.
    r = run_cli("task", "submit", spec, ws=ws)
    assert r.code == 2 and "use --replace" in r.err
    # Same spec with --replace: nothing changes.
    r = run_cli("task", "submit", spec, "--replace", "--json", ws=ws)
    assert r.code == 0 and json.loads(r.out)["status"] == "unchanged"
    assert show(ws, "spam")["version"] == 1
    # Change one LF's code.
    write_spec(spec, lf_body='1 if "http" in x.text.lower() else ABSTAIN')
    r = run_cli("task", "submit", spec, "--replace", "--json", ws=ws)
    assert r.code == 0, r
    v2 = show(ws, "spam")
    versions = {s["name"]: s["version"] for s in v2["sources"]}
    assert v2["version"] == 2
    assert versions == {"has_link": 2, "says_money": 1}
    assert v2["fingerprint"] != v1["fingerprint"]


def test_fingerprints_propagate_downstream(ws, tmp_path):
    up = write_spec(tmp_path / "up.py", name="up")
    down = write_spec(tmp_path / "down.py", name="down", sources="TaskOutput('up')")
    child = write_spec(tmp_path / "child.py", name="child", parent="down")
    other = write_spec(tmp_path / "other.py", name="other")
    for s in (up, down, child, other):
        assert run_cli("task", "submit", s, ws=ws).code == 0
    before = {n: show(ws, n)["fingerprint"] for n in ("up", "down", "child", "other")}
    write_spec(up, name="up", lf_body="0")
    r = run_cli("task", "submit", up, "--replace", "--json", ws=ws)
    assert r.code == 0 and sorted(json.loads(r.out)["restamped"]) == ["child", "down"]
    after = {n: show(ws, n)["fingerprint"] for n in ("up", "down", "child", "other")}
    assert after["other"] == before["other"]
    assert all(after[n] != before[n] for n in ("up", "down", "child"))
    # Versions of downstream tasks do not change: only their fingerprints.
    assert show(ws, "down")["version"] == 1


def test_replace_that_creates_cycle_is_refused(ws, tmp_path):
    a = write_spec(tmp_path / "a.py", name="a")
    b = write_spec(tmp_path / "b.py", name="b", parent="a")
    c = write_spec(tmp_path / "c.py", name="c", sources="TaskOutput('b')")
    for s in (a, b, c):
        assert run_cli("task", "submit", s, ws=ws).code == 0
    before = snapshot(ws)
    write_spec(a, name="a", sources="TaskOutput('c')")
    r = run_cli("task", "submit", a, "--replace", ws=ws)
    assert r.code == 2, r
    assert "dependency cycle" in r.err and "a -> b -> c -> a" in r.err and "sources" in r.err
    assert snapshot(ws) == before


def test_remove(ws, tmp_path):
    a = write_spec(tmp_path / "a.py", name="a")
    b = write_spec(tmp_path / "b.py", name="b", parent="a")
    assert run_cli("task", "submit", a, ws=ws).code == 0
    assert run_cli("task", "submit", b, ws=ws).code == 0
    r = run_cli("task", "remove", "a", ws=ws)
    assert r.code == 2 and "used by b (parent)" in r.err
    assert run_cli("task", "remove", "b", ws=ws).code == 0
    assert run_cli("task", "remove", "a", ws=ws).code == 0
    r = run_cli("task", "list", "--json", ws=ws)
    assert json.loads(r.out) == []
    assert run_cli("task", "show", "a", ws=ws).code == 2


def test_python_api_twin(ws, tmp_path):
    from mothermodel import Registry, Task, Column
    from mothermodel.spec import normalise

    reg = Registry.open(ws)
    res = reg.submit(normalise(Task(name="api_task", dataset="docs", classes=["A", "B"], sources=[Column("lf_a")]), []))
    assert res["tasks"][0]["status"] == "created"
    assert [t.name for t in reg.list_tasks()] == ["api_task"]
    assert reg.show_task("api_task").sources[0].name == "lf_a"


def test_shared_module_code_bumps_every_python_lf(ws, tmp_path):
    spec = write_spec(tmp_path / "s.py", extra_lfs="LIMIT = 3\n")
    assert run_cli("task", "submit", spec, ws=ws).code == 0
    # A shared constant changes: both Python LFs may read it, so both bump.
    write_spec(spec, extra_lfs="LIMIT = 4\n")
    r = run_cli("task", "submit", spec, "--replace", "--json", ws=ws)
    assert {s["name"]: s["version"] for s in json.loads(r.out)["sources"]} == {"has_link": 2, "says_money": 2}
    # Only the description changes: the task version bumps, no LF does, the fingerprint stays.
    fp = show(ws, "spam")["fingerprint"]
    spec.write_text(spec.read_text().replace("sources=[])", "sources=[], description='new words')"))
    r = run_cli("task", "submit", spec, "--replace", "--json", ws=ws)
    out = json.loads(r.out)
    assert out["status"] == "updated" and out["version"] == 3
    assert {s["name"]: s["version"] for s in out["sources"]} == {"has_link": 2, "says_money": 2}
    assert show(ws, "spam")["fingerprint"] == fp


def test_declarative_lfs_in_a_spec(ws, tmp_path):
    spec = tmp_path / "d.py"
    spec.write_text(
        "from mothermodel import KeywordLF, RegexLF, Task\n"
        "task = Task(name='decl', dataset='docs', classes=['A', 'B'])\n"
        "kw = KeywordLF('kw_money', ['money', 'cash'], label=1)\n"
        "rx = RegexLF('rx_link', r'https?://', label=1)\n"
    )
    assert run_cli("task", "submit", spec, ws=ws).code == 0
    t = show(ws, "decl")
    assert sorted(s["name"] for s in t["sources"]) == ["kw_money", "rx_link"]


def test_parent_class(ws, tmp_path):
    assert run_cli("task", "submit", write_spec(tmp_path / "p.py", name="topic", classes=("BILLING", "TECH")), ws=ws).code == 0
    kid = tmp_path / "k.py"
    write_spec(kid, name="kind", classes=("REFUND", "INVOICE"), parent="topic")
    kid.write_text(kid.read_text().replace("parent='topic'", "parent='topic', parent_class='SALES'"))
    r = run_cli("task", "submit", kid, ws=ws)
    assert r.code == 2 and "parent_class: 'SALES' is not a class of topic (BILLING, TECH)" in r.err
    kid.write_text(kid.read_text().replace("'SALES'", "'BILLING'"))
    assert run_cli("task", "submit", kid, ws=ws).code == 0
    assert show(ws, "kind")["parent_class"] == "BILLING"


def test_yaml_keyword_and_regex_sources(ws, tmp_path):
    """Declarative LFs without Python: a label by class name or index, optional field and case flags."""
    (tmp_path / "kw.yaml").write_text(
        "name: by_kw\ndataset: docs\nclasses: [HAM, SPAM]\nsources:\n"
        "  - {kind: column, column: lf_a}\n"
        "  - {kind: keyword, name: money_words, keywords: [Money, cash], label: SPAM}\n"
        "  - {kind: keyword, keywords: [Money], label: 1, case_sensitive: true}\n"
        "  - {kind: regex, name: link, pattern: 'HTTPS?://', label: 1, field: text, ignore_case: true}\n"
        "  - {kind: regex, name: greeting, pattern: '^(hello|see)\\b', label: HAM}\n"
    )
    r = run_cli("task", "submit", tmp_path / "kw.yaml", ws=ws)
    assert r.code == 0, r
    t = show(ws, "by_kw")
    assert sorted((s["name"], s["kind"]) for s in t["sources"]) == [
        ("greeting", "lf"), ("keyword_2", "lf"), ("lf_a", "column"), ("link", "lf"), ("money_words", "lf")]
    r = run_cli("label", "apply", "by_kw", "--json", ws=ws)
    assert r.code == 0, r
    from mothermodel import Registry
    from mothermodel.labeling.apply.sources import build_lfs

    lfs = build_lfs(Registry.open(ws).store.task("by_kw"))
    row = lambda text: type("Row", (), {"text": text})()  # noqa: E731
    votes = {n: [lf(row(x)) for x in ("buy now http://x", "hello friend", "win money")] for n, lf in lfs.items()}
    assert votes == {"money_words": [-1, -1, 1], "keyword_2": [-1, -1, -1], "link": [1, -1, -1],
                     "greeting": [-1, 0, -1]}
    # Same field, same keywords, other case flag: a new LF version (the hash covers every parameter).
    (tmp_path / "kw.yaml").write_text((tmp_path / "kw.yaml").read_text().replace("case_sensitive: true", "case_sensitive: false"))
    r = run_cli("task", "submit", tmp_path / "kw.yaml", "--replace", "--json", ws=ws)
    assert {s["name"]: s["version"] for s in json.loads(r.out)["sources"]}["keyword_2"] == 2


KW = "  - {kind: keyword, keywords: [money], label: SPAM}\n"
BAD_YAML_SOURCES = [
    ("  - {kind: keyword, keywords: [money], label: EGGS}\n", "sources[0].label: 'EGGS' is not a class of this task (HAM, SPAM)"),
    ("  - {kind: keyword, keywords: [money], label: 2}\n", "sources[0].label: class index 2 is outside 0..1"),
    ("  - {kind: keyword, keywords: [money], label: true}\n", "sources[0].label: must be a class name or a class index"),
    ("  - {kind: keyword, keywords: [money]}\n", "sources[0].label: missing"),
    ("  - {kind: keyword, keywords: [], label: 1}\n", "sources[0].keywords: must be a non-empty list"),
    ("  - {kind: keyword, keywords: money, label: 1}\n", "sources[0].keywords: must be a non-empty list"),
    ("  - {kind: keyword, keywords: [money], label: 1, case_sensitive: maybe}\n", "sources[0].case_sensitive: must be true or false"),
    ("  - {kind: keyword, keywords: [money], label: 1, ignore_case: true}\n", "sources[0].ignore_case: unknown field for a keyword source"),
    (KW + "  - {kind: keyword, keywords: [money], label: 1, field: body}\n", "sources[1].field: dataset 'docs' has no column 'body'"),
    ("  - {kind: regex, pattern: '(unclosed', label: 1}\n", "sources[0].pattern: not a valid regular expression"),
    ("  - {kind: regex, pattern: 'a(?=b)', label: 1}\n", "sources[0].pattern: lookarounds and backreferences are not supported"),
    ("  - {kind: regex, label: 1}\n", "sources[0].pattern: missing"),
    ("  - {kind: regex, pattern: x, label: 1, ignore_case: 1}\n", "sources[0].ignore_case: must be true or false"),
    (KW + "  - {kind: regex, name: keyword_0, pattern: x, label: 1}\n", "sources: duplicate source name 'keyword_0'"),
    ("  - {kind: keyword, name: 'bad name', keywords: [x], label: 1}\n", "sources[0].name: 'bad name' is not a valid source name"),
    ("  - {kind: lf}\n", "sources[0].kind: LFs need code"),
    ("  - {kind: column, column: lf_a, colour: red}\n", "sources[0].colour: unknown field for a column source"),
]


@pytest.mark.parametrize("sources,needle", BAD_YAML_SOURCES)
def test_bad_yaml_sources_exit_2_and_change_nothing(ws, tmp_path, sources, needle):
    before = snapshot(ws)
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ndataset: docs\nclasses: [HAM, SPAM]\nsources:\n" + sources)
    r = run_cli("task", "submit", spec, ws=ws)
    assert r.code == 2 and needle in r.err and r.err.count("\n") == 1, r.err
    assert f"{spec}: " in r.err and snapshot(ws) == before


def test_declarative_lf_field_is_checked_against_the_dataset(ws, tmp_path):
    spec = write_spec(tmp_path / "f.py", extra_lfs="from mothermodel import KeywordLF\nkw = KeywordLF('kw', ['x'], 1, field='body')\n")
    r = run_cli("task", "submit", spec, ws=ws)
    assert r.code == 2 and "f.py: sources[2].field: dataset 'docs' has no column 'body' (LF kw)" in r.err, r.err


def test_python_regex_lf_with_python_only_syntax_is_refused(ws, tmp_path):
    """RegexLF itself refuses what DuckDB's RE2 cannot run (its SQL path), in a .py spec as in YAML."""
    before = snapshot(ws)
    for pattern in (r"foo(?=bar)", r"(?<!x)y", r"(a)\1"):
        spec = write_spec(tmp_path / "rx.py", extra_lfs=f"from mothermodel import RegexLF\nrx = RegexLF('rx', {pattern!r}, 1)\n")
        r = run_cli("task", "submit", spec, ws=ws)
        assert r.code == 2 and "lookarounds and backreferences are not supported" in r.err, r.err
        assert r.err.count("\n") == 1 and snapshot(ws) == before


def test_python_spec_may_import_a_helper_module_beside_it(ws, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "spam_words.py").write_text("WORDS = ('money', 'win')\n")
    spec = write_spec(specs / "spam.py", lf_body="1 if any(w in x.text for w in WORDS) else ABSTAIN",
                      extra_lfs="from spam_words import WORDS\n")
    r = run_cli("task", "submit", spec, ws=ws)  # the test's cwd is not specs/
    assert r.code == 0, r.err
    assert run_cli("label", "apply", "spam", ws=ws).code == 0
    L = json.loads(run_cli("label", "log", "spam", "--json", ws=ws).out)["label_matrices"]
    assert L and L[0]["entries"] > 0
    versions = lambda: {s["name"]: s["version"] for s in json.loads(run_cli("task", "show", "spam", "--json", ws=ws).out)["sources"]}  # noqa: E731
    v1 = versions()
    assert run_cli("task", "submit", spec, "--replace", ws=ws).code == 0
    assert versions() == v1  # nothing edited: nothing bumped
    (specs / "spam_words.py").write_text("WORDS = ('money', 'win', 'free')\n")
    assert run_cli("task", "submit", spec, "--replace", ws=ws).code == 0
    v2 = versions()
    assert v2["has_link"] == v1["has_link"] + 1 and v2["says_money"] == v1["says_money"] + 1  # helpers are shared code
