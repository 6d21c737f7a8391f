"""Hand labels (`label add`, labeling/hand_labels.py): a versioned source with provenance, checked whole before
anything is written; the label model anchors on them, the mother model trains on them, and no row is both
trained on and scored."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli, snapshot

WORDS = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta"]


def _world(tmp_path, n=120, seed=0):
    """A class the text says (word 'alpha' = POS), a weak column right 80% of the time on 70% of rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    texts = [" ".join(["alpha" if c else "omega", *rng.choice(WORDS[1:7], 3)]) + f" r{i}" for i, c in enumerate(y)]
    weak = np.where(rng.random(n) < 0.8, y, 1 - y)
    weak = np.where(rng.random(n) < 0.7, weak, -1)
    split = np.where(np.arange(n) < n * 0.5, "train", np.where(np.arange(n) < n * 0.75, "valid", "test"))
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(pa.table({"text": texts, "split": split, "label": pa.array(y, pa.int8()),
                             "weak": pa.array(weak, pa.int8())}), tmp_path / "w.parquet")
    assert run_cli("dataset", "add", "w", tmp_path / "w.parquet", "--gold-field", "label", ws=root).code == 0
    (tmp_path / "t.yaml").write_text("name: t\ndataset: w\nclasses: [NEG, POS]\n"
                                     "sources:\n  - {kind: column, column: weak}\n")
    assert run_cli("task", "submit", tmp_path / "t.yaml", ws=root).code == 0
    return root, y, split, texts


def _csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_label_add_versions_provenance_and_merge(tmp_path):
    root, y, split, texts = _world(tmp_path)
    f1 = _csv(tmp_path / "a.csv", ["row,label", "0,POS", "1,NEG", "2,1"])
    r = run_cli("label", "add", "t", f1, "--by", "ann", "--json", ws=root)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert (res["version"], res["rows"], res["added"], res["by"], res["valid_rows"]) == (1, 3, 3, "ann", 0)
    # by text (JSON lines), one row relabelled, one new; same labels again change nothing
    f2 = tmp_path / "b.jsonl"
    f2.write_text(json.dumps({"text": texts[0], "label": "NEG"}) + "\n" + json.dumps({"text": texts[70], "label": "POS"}) + "\n")
    res = json.loads(run_cli("label", "add", "t", f2, "--by", "bob", "--json", ws=root).out)
    assert (res["version"], res["rows"], res["added"], res["valid_rows"]) == (2, 4, 2, 1)
    res = json.loads(run_cli("label", "add", "t", f2, "--json", ws=root).out)
    assert res["status"] == "unchanged" and res["version"] == 2
    from mothermodel.api import Registry

    reg = Registry.open(root)
    t = reg.store.task("t")
    hand = reg.store.hand_labels("t")
    assert [h.version for h in hand] == [2, 1] and hand[0].added_by == "bob"
    tbl = pq.read_table(reg.ws.home / t.hand_source.ref).to_pydict()
    assert dict(zip(tbl["row"], tbl["label"])) == {0: "NEG", 1: "NEG", 2: "POS", 70: "POS"}
    assert dict(zip(tbl["row"], tbl["added_by"])) == {0: "bob", 1: "ann", 2: "ann", 70: "bob"}
    # --replace starts the set anew
    res = json.loads(run_cli("label", "add", "t", f1, "--replace", "--json", ws=root).out)
    assert (res["version"], res["rows"], res["replaced"]) == (3, 3, True)
    listed = json.loads(run_cli("label", "add", "t", "--list", "--json", ws=root).out)
    assert [v["version"] for v in listed] == [3, 2, 1]


def test_a_label_add_that_lost_a_race_merges_instead_of_dropping_the_other(tmp_path, monkeypatch):
    """Another `label add` records between this one's read and its write: this one re-reads and merges."""
    from mothermodel.api import Registry
    from mothermodel.labeling import hand_labels

    root, *_ = _world(tmp_path)
    assert run_cli("label", "add", "t", _csv(tmp_path / "a.csv", ["row,label", "0,POS"]), "--by", "ann", ws=root).code == 0
    real, raced = hand_labels.current, []

    def current_then_someone_else_adds(store, t):
        prev = real(store, t)
        if not raced:  # the other writer lands after this read, before this write
            raced.append(1)
            other = _csv(tmp_path / "b.csv", ["row,label", "1,NEG"])
            assert run_cli("label", "add", "t", other, "--by", "bob", ws=root).code == 0
        return prev

    monkeypatch.setattr(hand_labels, "current", current_then_someone_else_adds)
    res = Registry.open(root).label_add("t", _csv(tmp_path / "c.csv", ["row,label", "2,POS"]), by="cy")
    assert raced and res["version"] == 3 and res["rows"] == 3
    reg = Registry.open(root)
    assert [h.version for h in reg.store.hand_labels("t")] == [3, 2, 1]
    tbl = pq.read_table(reg.ws.home / reg.store.task("t").hand_source.ref).to_pydict()
    assert list(zip(tbl["row"], tbl["label"], tbl["added_by"], tbl["added_in"])) == [
        (0, "POS", "ann", 1), (1, "NEG", "bob", 2), (2, "POS", "cy", 3)]
    # the file built from the stale read was not left behind
    files = sorted(p.name for p in (reg.ws.home / "labels" / "t").glob("hl-*.parquet"))
    assert files == sorted(Path(h.path).name for h in reg.store.hand_labels("t"))
    assert run_cli("verify", ws=root).code == 0


@pytest.mark.parametrize("lines, field", [
    (["row,label", "90,POS"], "is in the test split"),  # a test row would be trained on and scored
    (["row,label", "0,MAYBE"], "line 1: label: 'MAYBE' is not a class"),
    (["row,label", "0,POS", "1,"], "line 2: label: empty"),
    (["row,label", "500,POS"], "line 1: row: 500 is not a row"),
    (["text,label", "no such text,POS"], "line 1: text: 'no such text' is not the text of any row"),
    (["label", "POS"], "row: give exactly one of"),
    (["row", "1"], "label: missing column"),
])
def test_bad_hand_labels_exit_2_and_write_nothing(tmp_path, lines, field):
    root, *_ = _world(tmp_path)
    before = snapshot(root)
    r = run_cli("label", "add", "t", _csv(tmp_path / "bad.csv", lines), ws=root)
    assert r.code == 2 and field in r.err and len(r.err.strip().splitlines()) == 1, r
    assert snapshot(root) == before
    assert run_cli("label", "add", "t", tmp_path / "nope.csv", ws=root).code == 2
    assert run_cli("label", "add", "t", _csv(tmp_path / "x.txt", ["row,label"]), ws=root).code == 2


def test_hand_labels_are_a_source_for_staleness_impact_and_resubmit(tmp_path):
    root, *_ = _world(tmp_path)
    assert run_cli("label", "fit", "t", "--model", "majority", ws=root).code == 0
    st = json.loads(run_cli("status", "--json", ws=root).out)["tasks"][0]
    assert not st["labels"]["stale"]
    fp0 = json.loads(run_cli("task", "show", "t", "--json", ws=root).out)["fingerprint"]
    assert run_cli("label", "add", "t", _csv(tmp_path / "a.csv", ["row,label", "0,POS"]), ws=root).code == 0
    shown = json.loads(run_cli("task", "show", "t", "--json", ws=root).out)
    assert shown["fingerprint"] != fp0
    assert [s["kind"] for s in shown["sources"] if s["name"] == "hand_labels"] == ["hand"]
    st = json.loads(run_cli("status", "--json", ws=root).out)["tasks"][0]
    assert st["labels"]["stale"]  # the labels were fit without them
    imp = json.loads(run_cli("dag", "impact", "t.hand_labels", "--json", ws=root).out)
    assert imp["changed"] == {"kind": "source", "name": "t.hand_labels"} and [x["name"] for x in imp["tasks"]] == ["t"]
    # the spec resubmitted unchanged keeps them, and so the fingerprint; a spec may not take their name
    r = json.loads(run_cli("task", "submit", tmp_path / "t.yaml", "--replace", "--json", ws=root).out)
    assert r["status"] == "unchanged" and r["removed_sources"] == []
    assert json.loads(run_cli("task", "show", "t", "--json", ws=root).out)["fingerprint"] == shown["fingerprint"]
    (tmp_path / "u.yaml").write_text("name: u\ndataset: w\nclasses: [NEG, POS]\n"
                                     "sources:\n  - {kind: column, column: weak, name: hand_labels}\n")
    r = run_cli("task", "submit", tmp_path / "u.yaml", ws=root)
    assert r.code == 2 and "reserved" in r.err


def test_label_fit_anchors_on_hand_labels_and_never_scores_them(tmp_path):
    root, y, split, texts = _world(tmp_path)
    valid = np.flatnonzero(split == "valid")
    train = np.flatnonzero(split == "train")
    chosen = np.concatenate([train[:10], valid[:12]])
    _csv(tmp_path / "h.csv", ["row,label", *[f"{i},{int(y[i])}" for i in chosen]])
    before = json.loads(run_cli("label", "fit", "t", "--json", ws=root).out)
    assert before["metrics"]["valid"]["n"] == len(valid) and "hand_labels" not in before
    assert run_cli("label", "add", "t", tmp_path / "h.csv", ws=root).code == 0
    fit = json.loads(run_cli("label", "fit", "t", "--json", ws=root).out)
    assert fit["hand_labels"] == {"version": 1, "rows": 22, "valid_rows": 12}
    assert fit["uses_dev_labels"] is True  # valid rows labelled by hand are valid labels used
    assert "label-model-without-hand-anchor" in fit["selected"]["candidates"]  # never worse on valid for them
    assert fit["metrics"]["valid"]["n"] == len(valid) - 12 and fit["metrics"]["train"]["n"] == len(train) - 10
    from mothermodel.api import Registry

    reg = Registry.open(root)
    pl = reg.store.read_prob_labels(reg.store.latest_prob_labels("t"))
    assert (pl.hand[chosen] == y[chosen]).all() and (np.delete(pl.hand, chosen) == -1).all()
    assert (pl.gold[chosen] == -1).all()  # never scored
    assert np.allclose(pl.probs[chosen, y[chosen]], 1.0) and (pl.pred[chosen] == y[chosen]).all()
    an = json.loads(run_cli("label", "analyze", "t", "--json", ws=root).out)
    assert an["hand_labels"] == {"version": 1, "rows": 22} and [lf["name"] for lf in an["lfs"]] == ["weak"]
    # the label matrix carries them as their own column (label log/diff see a version change)
    assert "hand_labels" in [s["source"] for s in json.loads(
        run_cli("label", "diff", "t", "1", "2", "--json", ws=root).out)["sources"]]


def test_the_mother_model_learns_from_hand_labels_and_scores_none_of_them(tmp_path):
    root, y, split, texts = _world(tmp_path)
    valid = np.flatnonzero(split == "valid")
    chosen = valid[:15]
    _csv(tmp_path / "h.csv", ["row,label", *[f"{i},{int(y[i])}" for i in chosen]])
    assert run_cli("label", "add", "t", tmp_path / "h.csv", ws=root).code == 0
    assert run_cli("label", "fit", "t", "--model", "majority", ws=root).code == 0
    from mothermodel.trainer.encoder import write_tiny_encoder

    write_tiny_encoder(tmp_path / "enc", words=WORDS + [f"r{i}" for i in range(120)])
    r = run_cli("train", "--encoder", tmp_path / "enc", "--max-steps", 6, "--batch-size", 8, "--max-length", 16,
                "--self-train-rounds", "0", "--set", "hand_epochs=2", "--json", ws=root)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["stages"] == 2  # the weak stage, then the clean one on the hand-labelled rows alone
    assert res["guard"]["t"]["hand_labels"] == {"rows": 15, "valid_rows": 15}
    # what the trainer was given: hand rows one-hot at hand_weight, in any split; their gold is gone
    from mothermodel.api import Registry
    from mothermodel.trainer import checkpoint as ckpt
    from mothermodel.trainer.data import TaskData
    from mothermodel.trainer.evaluate import evaluate

    reg = Registry.open(root)
    pl = reg.store.read_prob_labels(reg.store.latest_prob_labels("t"), with_text=True)
    td = TaskData(name="t", classes=["NEG", "POS"], texts=pl.texts, split=pl.split, probs=pl.probs,
                  covered=pl.covered, gold=pl.gold, hand=pl.hand)
    model, tok, _ = ckpt.load_model(reg.ws.home / reg.store.model().path)
    scored = evaluate(model, tok, [td], max_length=16)["t"]
    assert scored["valid"]["n"] == len(valid) - len(chosen)  # the rows it trained on are not scored
    assert res["metrics"]["t/w/valid/accuracy"] == pytest.approx(scored["valid"]["accuracy"])
    w = td.train_weights(0.0, hand_weight=3.0)
    assert (w[chosen] == 3.0).all() and (td.gold[chosen] == -1).all()
    assert (td.targets()[chosen].argmax(1) == y[chosen]).all()
    only = td.hand_only()
    assert (np.flatnonzero(only.train_weights()) == chosen).all()
