"""Embedding sources (labeling/apply/embedding.py): declared in YAML and .py specs, applied with a cached
encoder pass per dataset, faults isolated, through submit / show / apply / analyze / fit."""

import json
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, snapshot

from mothermodel import Embedding, Task
from mothermodel.api import Registry

TEXTS = ["buy cheap pills http://a.b", "hello my friend", "win money now", "see you at lunch",
         "click http://x.y to win money", "thanks for the notes", "cheap money fast", "lunch at noon?"]
GOLD = [1, 0, 1, 0, 1, 0, 1, 0]
SPLIT = ["train", "train", "train", "train", "valid", "valid", "test", "test"]


@pytest.fixture
def ews(tmp_path):
    """Workspace with dataset `mail`, and a tiny random encoder folder beside it."""
    from mothermodel.trainer.encoder import write_tiny_encoder

    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(pa.table({"text": TEXTS, "split": SPLIT, "label": pa.array(GOLD, pa.int8())}),
                   tmp_path / "mail.parquet")
    assert run_cli("dataset", "add", "mail", tmp_path / "mail.parquet", "--gold-field", "label", ws=root).code == 0
    enc = write_tiny_encoder(tmp_path / "enc", words=" ".join(TEXTS).split())
    return root, enc


def yaml_spec(enc, source: str, name: str = "spam") -> str:
    return f"""
name: {name}
dataset: mail
classes: [HAM, SPAM]
sources:
  - kind: keyword
    name: money
    keywords: [money, cheap]
    label: SPAM
  - kind: embedding
    name: near
    encoder: {enc}
{source}"""


# One seed text per class, each equal to one row's text: that row's vector is the prototype itself (cosine 1,
# less float16 rounding in the cache), and no two different texts come that close under the tiny encoder.
EXACT = """    seeds: {SPAM: ["win money now"], HAM: ["see you at lunch"]}
    threshold: 0.99
"""


def submit(ws, tmp_path, text, name="spam.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return run_cli("task", "submit", p, "--replace", ws=ws)


def matrix(ws, task="spam"):
    log = json.loads(run_cli("label", "log", task, "--json", ws=ws).out)
    t = pq.read_table(ws / ".mothermodel" / log["label_matrices"][0]["path"]).to_pydict()
    return {(r, s): lab for r, s, lab in zip(t["row"], t["source"], t["label"])}


def cache_files(ws):
    return sorted((ws / ".mothermodel" / "embeddings").glob("*.parquet"))


def apply(ws, *args):
    r = run_cli("label", "apply", "--json", *args, ws=ws)
    return r, json.loads(r.out) if r.out.strip() else None


def test_yaml_round_trip_submit_show_apply_analyze_fit(ews, tmp_path):
    ws, enc = ews
    assert submit(ws, tmp_path, yaml_spec(enc, EXACT)).code == 0
    show = json.loads(run_cli("task", "show", "spam", "--json", ws=ws).out)
    assert {s["name"]: s["kind"] for s in show["sources"]} == {"money": "lf", "near": "embedding"}

    r, out = apply(ws)
    assert r.code == 0, r
    task = out["tasks"][0]
    assert task["recomputed"] == ["money", "near"] and task["faults"] == []
    st = task["sources"]["near"]
    assert st["rows"] == 8 and st["embedded"] == 8 and st["cached"] is False and st["encoder"] == str(enc)
    assert st["coverage"] == 2 / 8 and st["rows_per_s"] > 0
    near = {r: lab for (r, s), lab in matrix(ws).items() if s == "near"}
    assert near == {2: 1, 3: 0}  # the two rows equal to a seed, each with its seed's class

    analysis = json.loads(run_cli("label", "analyze", "spam", "--json", ws=ws).out)
    by = {lf["name"]: lf for lf in analysis["lfs"]}
    assert by["near"]["kind"] == "embedding" and by["near"]["coverage"] == 2 / 8
    assert by["near"]["polarity"] == ["HAM", "SPAM"] and by["near"]["empirical_accuracy"] == 1.0

    for model in ("majority", "label-model"):
        r = run_cli("label", "fit", "spam", "--model", model, "--json", ws=ws)
        assert r.code == 0, r
    # The same source through the Python API, as a .py spec would declare it (typed fields).
    reg = Registry.open(ws)
    reg.submit(Task(name="spam_py", dataset="mail", classes=["HAM", "SPAM"], sources=[
        Embedding(name="near", encoder=str(enc), seeds={"SPAM": ["win money now"], 0: ["see you at lunch"]},
                  threshold=0.99)]))
    res = reg.label_apply(["spam_py"])
    assert res is not None
    assert {r: lab for (r, s), lab in matrix(ws, "spam_py").items()} == {2: 1, 3: 0}
    # Same dataset, encoder and text: the second task read the first one's vectors.
    assert len(cache_files(ws)) == 1


def test_cache_written_once_reused_and_damage_recomputed(ews, tmp_path):
    ws, enc = ews
    assert submit(ws, tmp_path, yaml_spec(enc, EXACT)).code == 0
    assert apply(ws)[0].code == 0
    [cache] = cache_files(ws)
    stamp = cache.stat().st_mtime_ns

    # A changed source on the same dataset: recomputed from the cached vectors, nothing embedded again.
    assert submit(ws, tmp_path, yaml_spec(enc, EXACT.replace("0.99", "0.995"))).code == 0
    r, out = apply(ws)
    assert r.code == 0, r
    task = out["tasks"][0]
    assert task["recomputed"] == ["near"] and task["reused"] == ["money"]
    assert task["sources"]["near"]["embedded"] == 0 and task["sources"]["near"]["cached"] is True
    assert cache_files(ws) == [cache] and cache.stat().st_mtime_ns == stamp

    # A damaged cache file is not trusted: the vectors are computed again and the file rewritten. Twice: a
    # torn file (does not read back), then a well-formed one whose vectors no longer match their recorded hash.
    t = pq.read_table(cache)
    dim = t.column("embedding").type.list_size
    changed = pa.FixedSizeListArray.from_arrays(pa.array([0.5] * (8 * dim), pa.float16()), dim)
    for damage in (lambda: cache.write_bytes(cache.read_bytes()[:-100]),
                   lambda: pq.write_table(pa.table({"embedding": changed}).replace_schema_metadata(t.schema.metadata),
                                          cache)):
        damage()
        r, out = apply(ws, "--force")
        assert r.code == 0, r
        st = out["tasks"][0]["sources"]["near"]
        assert st["embedded"] == 8 and st["cached"] is False
        assert {r: lab for (r, s), lab in matrix(ws).items() if s == "near"} == {2: 1, 3: 0}
        r, out = apply(ws, "--force")  # and the rewritten file reads back
        assert out["tasks"][0]["sources"]["near"]["embedded"] == 0


def test_seed_rows_and_clusters(ews, tmp_path):
    ws, enc = ews
    seeded = """    seed_rows: {SPAM: [2], HAM: [3]}
    threshold: 0.99
"""
    assert submit(ws, tmp_path, yaml_spec(enc, seeded)).code == 0
    assert apply(ws)[0].code == 0
    assert {r: lab for (r, s), lab in matrix(ws).items() if s == "near"} == {2: 1, 3: 0}
    # Cluster mode: as many clusters as rows puts each row alone, so exactly the seed rows' clusters vote.
    clustered = """    seed_rows: {SPAM: [0, 2], HAM: [3]}
    clusters: 8
"""
    assert submit(ws, tmp_path, yaml_spec(enc, clustered)).code == 0
    r, out = apply(ws)
    assert r.code == 0, r
    assert out["tasks"][0]["sources"]["near"]["embedded"] == 0
    assert {r: lab for (r, s), lab in matrix(ws).items() if s == "near"} == {0: 1, 2: 1, 3: 0}


NEIGHBOURS = """
name: spam
dataset: mail
classes: [HAM, SPAM]
sources:
  - kind: embedding
    name: near
    encoder: {enc}
    neighbours: 1
    min_agreement: 0.5
{extra}
  - kind: keyword
    name: money
    keywords: [{money}]
    label: SPAM
  - kind: keyword
    name: lunch
    keywords: [lunch]
    label: HAM
"""


def nearest_anchor_votes(ws, anchors: dict[int, int], rows) -> dict[int, int]:
    """What 1-nearest-neighbour propagation must give `rows`, computed here from the cached vectors."""
    import numpy as np

    [cache] = cache_files(ws)
    col = pq.read_table(cache).column("embedding").combine_chunks()
    v = col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size).astype(np.float32)
    ids = sorted(anchors)
    out = {}
    for r in rows:
        sims = v[ids] @ v[r]
        sims[[i == r for i in ids]] = -np.inf
        best = ids[int(np.argmax(sims))]
        if sims.max() > 0:  # an anchor facing away carries no weight: no vote
            out[r] = anchors[best]
    return out


def test_neighbours_propagate_the_other_sources_labels_and_follow_their_changes(ews, tmp_path):
    ws, enc = ews
    spec = NEIGHBOURS.format(enc=enc, extra="", money="money, cheap")
    assert submit(ws, tmp_path, spec).code == 0
    r, out = apply(ws)
    assert r.code == 0, r
    # money votes SPAM on rows 0, 2, 4, 6 and lunch HAM on 3, 7 (listed first, the source still runs last).
    m = matrix(ws)
    lf_votes = {r: lab for (r, s), lab in m.items() if s != "near"}
    assert lf_votes == {0: 1, 2: 1, 4: 1, 6: 1, 3: 0, 7: 0}
    near = {r: lab for (r, s), lab in m.items() if s == "near"}
    assert set(near) <= {1, 5}  # only the rows no other source votes on
    assert near == nearest_anchor_votes(ws, lf_votes, [1, 5]) and near

    # Unchanged: nothing to do. An edit of another source alone makes it recompute (its anchors moved).
    assert apply(ws)[1]["tasks"][0]["status"] == "up to date"
    assert submit(ws, tmp_path, NEIGHBOURS.format(enc=enc, extra="", money="money")).code == 0
    r, out = apply(ws)
    assert sorted(out["tasks"][0]["recomputed"]) == ["money", "near"] and out["tasks"][0]["reused"] == ["lunch"]
    lf_votes = {r: lab for (r, s), lab in matrix(ws).items() if s != "near"}
    assert lf_votes == {2: 1, 4: 1, 6: 1, 3: 0, 7: 0}
    near = {r: lab for (r, s), lab in matrix(ws).items() if s == "near"}
    assert near == nearest_anchor_votes(ws, lf_votes, [0, 1, 5])

    # Hand labels are anchors too (and decide their rows), and adding them recomputes the source.
    (tmp_path / "hand.csv").write_text("row,label\n0,HAM\n1,HAM\n")
    assert run_cli("label", "add", "spam", tmp_path / "hand.csv", ws=ws).code == 0
    r, out = apply(ws)
    assert "near" in out["tasks"][0]["recomputed"] and "lunch" in out["tasks"][0]["reused"]
    anchors = {**lf_votes, 0: 0, 1: 0}
    near = {r: lab for (r, s), lab in matrix(ws).items() if s == "near"}
    assert near == nearest_anchor_votes(ws, anchors, [0, 1, 5])

    # vote_on: all votes on covered rows too, each from its nearest OTHER anchor.
    assert submit(ws, tmp_path, NEIGHBOURS.format(enc=enc, extra="    vote_on: all", money="money")).code == 0
    assert apply(ws)[0].code == 0
    near = {r: lab for (r, s), lab in matrix(ws).items() if s == "near"}
    assert near == nearest_anchor_votes(ws, anchors, range(8)) and len(near) > 3
    analysis = json.loads(run_cli("label", "analyze", "spam", "--json", ws=ws).out)
    assert {lf["name"] for lf in analysis["lfs"]} >= {"near", "money", "lunch"}
    assert run_cli("label", "fit", "spam", "--json", ws=ws).code == 0


@pytest.mark.parametrize("source, field", [
    ("    seeds: {BOGUS: [x]}\n", "sources[1].seeds.BOGUS"),
    ("    seeds: {SPAM: []}\n", "sources[1].seeds.SPAM"),
    ("    seeds: {SPAM: [x]}\n    threshold: 2\n", "sources[1].threshold"),
    ("    seed_rows: {HAM: [-3]}\n", "sources[1].seed_rows.HAM"),
    ("    seeds: {SPAM: [x]}\n    margin: high\n", "sources[1].margin"),
    ("    descriptions: {HAM: x}\n    clusters: 4\n", "sources[1].clusters"),
    ("    seeds: {SPAM: [x]}\n    clusters: 1\n", "sources[1].clusters"),
    ("    seeds: {SPAM: [x]}\n    neighbours: 0\n", "sources[1].neighbours"),
    ("    seed_rows: {SPAM: [0]}\n    clusters: 2\n    neighbours: 3\n", "sources[1].neighbours"),
    ("    seeds: {SPAM: [x]}\n    vote_on: all\n", "sources[1].vote_on"),
    ("    neighbours: 3\n    vote_on: some\n", "sources[1].vote_on"),
    ("    seeds: {SPAM: [x]}\n    hops: 3\n", "sources[1].hops"),
    ("    threshold: 0.5\n", "sources[1]: an embedding source needs seeds"),
])
def test_bad_parameters_exit_2_naming_the_field(ews, tmp_path, source, field):
    ws, enc = ews
    before = snapshot(ws)
    r = submit(ws, tmp_path, yaml_spec(enc, source))
    assert r.code == 2 and field in r.err and r.err.count("\n") == 1, r
    assert snapshot(ws) == before


def test_bad_encoder_path_exits_2(ews, tmp_path):
    ws, _ = ews
    r = submit(ws, tmp_path, yaml_spec(tmp_path / "nowhere", EXACT))
    assert r.code == 2 and "sources[1].encoder" in r.err, r


def test_faults_isolated(ews, tmp_path):
    ws, enc = ews
    import shutil

    # Row 99 is past the 8-row dataset: known only at apply.
    assert submit(ws, tmp_path, yaml_spec(enc, "    seed_rows: {SPAM: [99]}\n")).code == 0
    gone = tmp_path / "enc2"
    shutil.copytree(enc, gone)
    assert submit(ws, tmp_path, yaml_spec(gone, EXACT, name="other"), name="other.yaml").code == 0
    shutil.rmtree(gone)  # the encoder disappears after submit
    r, out = apply(ws)
    assert r.code == 1  # fatal faults: exit 1 after recording every healthy output
    by = {t["task"]: t for t in out["tasks"]}
    [fault] = by["spam"]["faults"]
    assert fault["name"] == "near" and fault["fatal"] and "row 99" in fault["first_error"]
    [fault] = by["other"]["faults"]
    assert fault["name"] == "near" and "enc2" in fault["first_error"]
    # The keyword source of each task landed all the same.
    for task in ("spam", "other"):
        assert matrix(ws, task) == {(i, "money"): 1 for i, t in enumerate(TEXTS) if "money" in t or "cheap" in t}


def test_label_apply_without_embedding_sources_imports_no_torch():
    code = ("import sys; import mothermodel.labeling.label_apply, mothermodel.labeling.apply.embedding; "
            "assert not {'torch', 'transformers', 'sklearn'} & set(sys.modules), 'heavy import'")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_bundled_encoder_votes_by_meaning(tmp_path):
    """The real all-MiniLM-L6-v2 on a handful of texts: seeds by meaning, not by shared words."""
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    texts = ["the striker scored twice in the final", "parliament passed the budget bill",
             "the goalkeeper saved a penalty", "the senate votes on the new tax law", "qwxz"]
    pq.write_table(pa.table({"text": texts}), tmp_path / "news.parquet")
    assert run_cli("dataset", "add", "news", tmp_path / "news.parquet", ws=root).code == 0
    reg = Registry.open(root)
    reg.submit(Task(name="topic", dataset="news", classes=["SPORT", "POLITICS"], sources=[
        Embedding(name="sim", seeds={"SPORT": ["a football match"], "POLITICS": ["an election campaign"]},
                  descriptions={"POLITICS": "politics and government"}, threshold=0.2, margin=0.05)]))
    t0 = time.time()
    reg.label_apply(["topic"])
    assert time.time() - t0 < 30
    votes = {r: lab for (r, s), lab in matrix(root, "topic").items()}
    assert votes == {0: 0, 1: 1, 2: 0, 3: 1}  # the nonsense row abstains
