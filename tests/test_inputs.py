"""Task inputs beyond one text field: templates (text pairs, marked spans) in specs, the registry and the
fingerprint, `import wrench` of a relation set, and the template's round trip through training, the ONNX
bundle, its standalone runner and the MLflow pyfunc (the same token ids and logits as the trainer's path)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, run_cli, snapshot

from mothermodel.inputs import DEFAULT_MARKERS, InputError, TaskInput, as_text

RUNNER = REPO / "distill" / "run_bundle.py"


# --- the template itself ------------------------------------------------------------


def test_render_text_pair_and_markers():
    row = {"text": "aspirin blocks COX-2 here", "q": "what?", "s1": [15, 20], "s2": [0, 7]}
    assert TaskInput.text("q").render(row) == "what?"
    assert TaskInput.pair("q", "text").render(row) == ("what?", "aspirin blocks COX-2 here")
    marked = TaskInput.marked("text", ["s1", "s2"])
    assert marked.markers == DEFAULT_MARKERS[:2]
    assert marked.render(row) == "[[ aspirin ]] blocks << COX-2 >> here"
    # The same sentence asked about another pair is another input.
    assert marked.render({**row, "s1": [0, 7], "s2": [15, 20]}) == "<< aspirin >> blocks [[ COX-2 ]] here"
    # Adjacent and nested spans keep their markers in order; a missing span leaves the text unmarked there.
    assert marked.render({"text": "abcd", "s1": [0, 2], "s2": [2, 4]}) == "<< ab >>[[ cd ]]"
    assert marked.render({"text": "abcd", "s1": [0, 4], "s2": [1, 3]}) == "<< a[[ bc ]]d >>"
    assert marked.render({"text": "abcd", "s1": None, "s2": [1, 3]}) == "a[[ bc ]]d"
    assert as_text(("a", "b")) == "a || b"


def test_template_json_round_trip_and_errors():
    m = TaskInput.marked("text", ["s1"], markers=[["<e>", "</e>"]])
    assert TaskInput.from_dict(json.loads(json.dumps(m.to_dict()))) == m
    assert TaskInput.from_dict({"kind": "text", "field": "body"}) == TaskInput.text("body")
    assert m.key != TaskInput.marked("text", ["s1"]).key
    bad = [({"kind": "sql"}, "input.kind"), ({"kind": "pair", "fields": ["a"]}, "input.fields"),
           ({"kind": "markers", "field": "t"}, "input.spans"), ({"kind": "text", "spans": ["s"]}, "input.spans"),
           ({"kind": "markers", "field": "t", "spans": ["s"], "markers": [["<", " "]]}, "input.markers"),
           ({"kind": "text", "colour": 1}, "input.colour"), ("text", "input")]
    for d, field in bad:
        with pytest.raises(InputError, match=f"^{field}"):
            TaskInput.from_dict(d)
    for span in ([3, 1], [0, 99], "0-2", [0.5, 1], [True, 1]):
        with pytest.raises(InputError, match="^s1: "):
            m.render({"text": "abc", "s1": span})
    with pytest.raises(InputError, match="^s1: the row has no such field"):
        m.render({"text": "abc"})


# --- specs, registry, fingerprint ---------------------------------------------------------


def _relation_table(n=40, seed=0):
    """Sentences naming two pairs of entities; each row asks about one pair (spans), labelled by that pair."""
    rng = np.random.default_rng(seed)
    texts, s1, s2, y = [], [], [], []
    for i in range(n):
        a, b, c, d = (f"e{int(x)}" for x in rng.integers(10, 99, 4))
        t = f"{a} likes {b} while {c} hates {d}"
        pair = i % 2  # the same sentence, asked about its first or its second pair
        (x, z), lab = ((a, b), 0) if pair == 0 else ((c, d), 1)
        texts.append(t); s1.append([t.index(x), t.index(x) + len(x)]); s2.append([t.rindex(z), t.rindex(z) + len(z)])
        y.append(lab)
    split = np.where(np.arange(n) < n * 0.6, "train", np.where(np.arange(n) < n * 0.8, "valid", "test"))
    weak = np.where(rng.random(n) < 0.85, y, 1 - np.array(y))
    return pa.table({"text": texts, "span1": pa.array(s1, pa.list_(pa.int64())),
                     "span2": pa.array(s2, pa.list_(pa.int64())), "split": split,
                     "label": pa.array(y, pa.int8()), "weak": pa.array(weak, pa.int8())})


YAML = """
name: rel
dataset: rel
classes: [LIKES, HATES]
sources:
  - {kind: column, column: weak}
input:
  kind: markers
  field: text
  spans: [span1, span2]
"""


@pytest.fixture
def rws(tmp_path):
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(_relation_table(), tmp_path / "rel.parquet")
    assert run_cli("dataset", "add", "rel", tmp_path / "rel.parquet", "--gold-field", "label", ws=root).code == 0
    return root


def test_spec_input_in_registry_show_and_fingerprint(rws, tmp_path):
    spec = tmp_path / "rel.yaml"
    spec.write_text(YAML)
    assert run_cli("task", "submit", spec, ws=rws).code == 0
    shown = json.loads(run_cli("task", "show", "rel", "--json", ws=rws).out)
    assert shown["input"] == {"kind": "markers", "fields": ["text"], "spans": ["span1", "span2"],
                              "markers": [list(m) for m in DEFAULT_MARKERS[:2]]}
    # The template is part of the fingerprint: another template is another task version and fingerprint.
    spec.write_text(YAML.replace("spans: [span1, span2]", "spans: [span2, span1]"))
    r = json.loads(run_cli("task", "submit", spec, "--replace", "--json", ws=rws).out)
    assert r["status"] == "updated" and r["fingerprint"] != shown["fingerprint"]
    # Without a template the task reads the text field, and its fingerprint is what it was before templates.
    spec.write_text(YAML.split("input:")[0])
    r = json.loads(run_cli("task", "submit", spec, "--replace", "--json", ws=rws).out)
    assert json.loads(run_cli("task", "show", "rel", "--json", ws=rws).out)["input"] is None
    from mothermodel.registry import fingerprint as fp

    ds_hash = json.loads(run_cli("dataset", "list", "--json", ws=rws).out)[0]["content_hash"]
    assert r["fingerprint"] == fp.compute(name="rel", dataset="rel", classes=["LIKES", "HATES"], parent=None,
                                          sources=[("weak", "column", "weak", 1)], dataset_hash=ds_hash, upstream={})


def test_bad_input_refused_in_one_line_and_nothing_written(rws, tmp_path):
    before = snapshot(rws)
    for old, new, msg in [("spans: [span1, span2]", "spans: [span1, nosuch]", "input: dataset 'rel' has no column"),
                          ("kind: markers", "kind: triple", "input.kind: must be one of"),
                          ("spans: [span1, span2]", "spans: []", "input.spans: a markers input needs")]:
        spec = tmp_path / "bad.yaml"
        spec.write_text(YAML.replace(old, new))
        r = run_cli("task", "submit", spec, ws=rws)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and msg in r.err, r
    assert snapshot(rws) == before


def test_import_wrench_relation_set_sets_the_marker_template(tmp_path):
    folder = tmp_path / "rel"
    folder.mkdir()
    table = _relation_table(30).to_pylist()
    (folder / "label.json").write_text(json.dumps({"0": "LIKES", "1": "HATES"}))
    for split in ("train", "valid", "test"):
        rows = {str(i): {"label": r["label"], "weak_labels": [r["weak"], -1],
                         "data": {"text": r["text"], "entity1": "x", "entity2": "y", "span1": r["span1"],
                                  "span2": r["span2"]}}
                for i, r in enumerate(table) if r["split"] == split}
        (folder / f"{split}.json").write_text(json.dumps(rows))
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    r = run_cli("import", "wrench", folder, "--task", "rel", "--json", ws=root)
    assert r.code == 0, r
    assert json.loads(r.out)["input"]["kind"] == "markers"
    shown = json.loads(run_cli("task", "show", "rel", "--json", ws=root).out)
    assert shown["input"]["spans"] == ["span1", "span2"]
    ds = json.loads(run_cli("dataset", "list", "--json", ws=root).out)[0]
    assert {"entity1", "entity2", "span1", "span2"} <= set(ds["columns"])
    # A span outside its text is refused naming the example, and nothing is registered.
    bad = json.loads((folder / "test.json").read_text())
    next(iter(bad.values()))["data"]["span1"] = [5, 999]
    (folder / "test.json").write_text(json.dumps(bad))
    r = run_cli("import", "wrench", folder, "--task", "rel2", ws=root)
    assert r.code == 2 and "span1" in r.err and "test.json" in r.err
    assert "rel2" not in run_cli("task", "list", ws=root).out


# --- the round trip through training, the bundle, its runner and pyfunc --------------------------


def test_template_round_trips_through_bundle_runner_and_pyfunc(rws, tmp_path, monkeypatch):
    from mothermodel.api import Registry
    from mothermodel.trainer.encoder import write_tiny_encoder

    spec = tmp_path / "rel.yaml"
    spec.write_text(YAML)
    assert run_cli("task", "submit", spec, ws=rws).code == 0
    assert run_cli("label", "fit", "rel", "--model", "majority", ws=rws).code == 0
    words = ["likes", "hates", "while"] + [f"e{i}" for i in range(10, 99)] + ["<", ">", "[", "]"]
    write_tiny_encoder(tmp_path / "enc", words=words)
    r = run_cli("train", "--encoder", tmp_path / "enc", "--max-steps", 20, "--batch-size", 8, "--max-length", 32,
                "--lr", "1e-3", "--self-train-rounds", "0", "--json", ws=rws)
    assert r.code == 0, r
    r = run_cli("distill", "rel", "--student", "tiny", "--epochs", "2", "--json", ws=rws)
    assert r.code == 0, r
    out = tmp_path / "bundle"
    assert run_cli("export", "rel", "--out", out, ws=rws).code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["kind"] == "markers" and manifest["input"]["spans"] == ["span1", "span2"]

    # The trainer's input path: the registry renders the rows, the teacher's tokenizer encodes them.
    reg = Registry.open(rws)
    t = pq.read_table(tmp_path / "rel.parquet")
    rows = [{k: r[k] for k in ("text", "span1", "span2")} for r in t.to_pylist()]
    pl = reg.store.read_prob_labels(reg.store.latest_prob_labels("rel"), with_text=True)
    assert pl.texts == [TaskInput.marked("text", ["span1", "span2"]).render(r) for r in rows]
    assert "<< " in pl.texts[0] and "[[ " in pl.texts[0]
    from mothermodel.distill.run_bundle import Bundle
    from mothermodel.trainer import checkpoint as ckpt
    from mothermodel.trainer.data import tokenize

    bundle = Bundle(out)
    _, tokenizer, _ = ckpt.load_model(Path(rws) / ".mothermodel" / reg.store.model().path)
    tok = tokenize(tokenizer, pl.texts, manifest["max_length"])
    ids, mask = bundle.encode(bundle.render(rows))
    for i in range(len(rows)):  # the bundle builds the same token ids from the raw rows
        assert ids[i][mask[i] == 1].tolist() == tok.ids[tok.offsets[i]:tok.offsets[i + 1]].tolist()
    np.testing.assert_allclose(bundle.logits(bundle.render(rows)), bundle.logits(pl.texts), atol=1e-6)
    # On those tokens the ONNX graph's logits are the student's PyTorch logits (distill's own check).
    assert manifest["onnx_check"]["passed"] and manifest["onnx_check"]["max_abs_diff"] <= 1e-4
    rec = reg.store.latest_deployable("rel")
    preds = [manifest["classes"][i] for i in bundle.logits(bundle.render(rows)).argmax(1)]
    assert preds == bundle.predict_rows(rows)

    # The standalone runner takes raw rows (--row, .jsonl) and refuses plain text for this bundle.
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    p = subprocess.run([sys.executable, str(RUNNER), str(out), "--input", str(tmp_path / "rows.jsonl"),
                        "--row", json.dumps(rows[0])], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert [json.loads(x)["label"] for x in p.stdout.splitlines()] == preds[:1] + preds  # --row first
    p = subprocess.run([sys.executable, str(RUNNER), str(out), "--text", "e10 likes e11"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "span1" in p.stderr
    p = subprocess.run([sys.executable, str(RUNNER), str(out), "--row", json.dumps({"text": "ab", "span1": [0, 9],
                                                                                     "span2": [0, 1]})],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "span1: span [0, 9] is outside the text" in p.stderr

    # The registered MLflow model takes a DataFrame of the input's fields and says the same.
    import mlflow.pyfunc
    import pandas as pd

    # the environment, not mlflow's process-wide setting (which later tests' commands would inherit)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{Path(rws) / '.mothermodel' / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model(f"models:/rel/{rec.mlflow_model_version}")
    assert list(model.predict(pd.DataFrame(rows))) == preds
    with pytest.raises(Exception, match="span1"):
        model.predict(pd.DataFrame({"text": ["x"]}))
    # predict reads the same inputs and shows them.
    table = reg.predict("rel", split="test")
    assert table.column("text").to_pylist() == [pl.texts[i] for i in table.column("row").to_pylist()]
