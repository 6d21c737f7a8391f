"""The text view (labeling/model/textview.py): hashed n-grams, cross-fitting, and what it adds to `label fit`."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from mothermodel.labeling.model.textview import TextViewConfig, combine, hashed_ngrams, text_view


def bags(X):
    return [sorted(X.ids[X.offsets[i]:X.offsets[i + 1]].tolist()) for i in range(X.num_rows)]


def test_hashed_ngrams_tokens_case_nulls_and_bigrams():
    texts = pa.array(["Hello world", "hello  WORLD!", None, "", "world hello", "Grüße, it's 12"])
    X = hashed_ngrams(texts)
    b = bags(X)
    assert X.num_rows == 6 and len(X.offsets) == 7
    assert b[0] == b[1] and len(b[0]) == 3  # hello, world, "hello world": case and punctuation ignored
    assert b[2] == [] and b[3] == []  # NULL and empty text: empty bags
    assert set(b[4]) & set(b[0]) and b[4] != b[0]  # same unigrams, other bigram
    assert len(b[5]) == 5  # grüße, it's, 12 (unicode letters, apostrophe) + 2 bigrams
    assert X.ids.max() < X.num_features  # ids renumbered densely
    uni = bags(hashed_ngrams(texts, TextViewConfig(bigrams=False)))
    assert len(uni[0]) == 2 and uni[0] == uni[1] and uni[4] == uni[0]
    # take() gathers bags in the order asked, without re-hashing.
    rows = np.array([5, 0, 3, 0])
    assert bags(X.take(rows)) == [b[5], b[0], b[3], b[0]]


def test_config_rejects_bad_values():
    for bad in ({"weight": -1}, {"folds": 1}, {"l2": -0.1}, {"buckets": 1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TextViewConfig(**bad)


def _world(n=800, seed=0):
    """Two classes; each text holds a class word right 95% of the time and a unique row token.
    A weak 'vote' covers the first half of the rows and is right 70% of the time."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    word_ok = rng.random(n) < 0.95
    word = np.where(word_ok, y, 1 - y)
    texts = [f"{['calm', 'angry'][w]} tone id{i} filler words" for i, w in enumerate(word)]
    vote_ok = rng.random(n) < 0.7
    vote = np.where(vote_ok, y, 1 - y)
    covered = np.arange(n) < n // 2
    P = np.full((n, 2), 0.5)
    P[covered] = 0.1
    P[covered, vote[covered]] = 0.9
    return texts, y, P, covered, vote


def test_cross_fitting_learns_the_text_not_each_rows_own_vote():
    texts, y, P, covered, vote = _world()
    X = hashed_ngrams(pa.array(texts))
    Q, rep = text_view(X, P, covered)
    assert rep["fit_rows"] == covered.sum() and Q.shape == P.shape
    np.testing.assert_allclose(Q.sum(axis=1), 1.0, rtol=1e-6)
    q = Q.argmax(axis=1)
    # Each row carries a unique token: a classifier that had seen the row would hand its vote
    # back. Out of fold, it follows the class word instead: right where the vote is wrong.
    wrong_vote = covered & (vote != y)
    assert (q[wrong_vote] == y[wrong_vote]).mean() > 0.8
    assert (q[covered] == y[covered]).mean() > 0.85
    # Rows without votes (never fitted on) get the fold models' average: also the class word.
    assert (q[~covered] == y[~covered]).mean() > 0.85
    # Combined with the votes, accuracy beats the votes alone on covered and uncovered rows.
    # (These votes claim 0.9 but are right 70% of the time, so the view is not scaled down by their confidence.)
    comb = combine(P, Q, np.array(rep["target_class_mix"]), TextViewConfig().weight,
                   doubt_scaled=False).argmax(axis=1)
    assert (comb == y).mean() > 0.85 > (vote[covered] == y[covered]).mean()


def test_text_view_is_seeded():
    texts, _, P, covered, _ = _world(n=300, seed=1)
    X = hashed_ngrams(pa.array(texts))
    a, _ = text_view(X, P, covered, TextViewConfig(seed=7))
    b, _ = text_view(X, P, covered, TextViewConfig(seed=7))
    np.testing.assert_array_equal(a, b)


SPEC = '''
from mothermodel import KeywordLF, Task
task = Task(name="tone", dataset="notes", classes=["CALM", "ANGRY"])
calm = KeywordLF("calm", ["calm"], label=0)
angry = KeywordLF("angry", ["angry"], label=1)
'''


def test_label_fit_uses_the_text_where_no_lf_fires(tmp_path):
    """Half the rows say 'calm'/'angry' (LFs fire); the rest only share the context words
    ('thanks'/'refund'). The votes alone leave those rows to the prior; the text view reads them."""
    rng = np.random.default_rng(3)
    n = 600
    y = rng.integers(0, 2, n)
    ctx = np.array(["thanks lovely day", "refund now terrible"])
    key = np.array(["calm", "angry"])
    texts = [f"{ctx[c]} {key[c] + ' ' if i % 2 == 0 else ''}note {i}" for i, c in enumerate(y)]
    split = np.where(np.arange(n) < 400, "train", np.where(np.arange(n) < 500, "valid", "test"))
    pq.write_table(pa.table({"text": texts, "split": split, "label": y}), tmp_path / "notes.parquet")
    root = tmp_path / "w"
    assert run_cli("init", root).code == 0
    r = run_cli("dataset", "add", "notes", tmp_path / "notes.parquet", "--split-field", "split",
                "--gold-field", "label", ws=root)
    assert r.code == 0, r
    (tmp_path / "tone.py").write_text(SPEC)
    assert run_cli("task", "submit", tmp_path / "tone.py", ws=root).code == 0
    r = run_cli("label", "fit", "tone", "--json", ws=root)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["text_view"]["used"] and res["text_view"]["fit_rows"] == int(((split == "train") & (np.arange(n) % 2 == 0)).sum())
    # Votes only: the uncovered half is a coin toss by the prior; with the text view, all right.
    assert res["metrics_votes_only"]["test"]["accuracy"] < 0.8
    assert res["metrics"]["test"]["accuracy"] == 1.0
    # The table output shows both columns; --no-text-view records the votes-only model.
    r = run_cli("label", "fit", "tone", ws=root)
    assert r.code == 0 and "votes-only acc." in r.out
    r = run_cli("label", "fit", "tone", "--no-text-view", "--json", ws=root)
    plain = json.loads(r.out)
    assert plain["metrics"]["test"] == res["metrics_votes_only"]["test"]
    log = json.loads(run_cli("label", "log", "tone", "--json", ws=root).out)
    assert len(log["prob_labels"]) == 3


def test_label_fit_without_text_field_says_why(ws):
    """The conftest dataset has a text column; one without text gets the votes-only model."""
    import pyarrow.parquet as pq2

    path = ws.parent / "nums.parquet"
    pq2.write_table(pa.table({"x": [1.0, 2.0, 3.0, 4.0], "weak": pa.array([0, 1, -1, 1], pa.int8())}), path)
    assert run_cli("dataset", "add", "nums", path, "--no-text", ws=ws).code == 0
    (ws.parent / "n.yaml").write_text("name: nums_task\ndataset: nums\nclasses: [A, B]\nsources:\n"
                                       "  - kind: column\n    column: weak\n")
    assert run_cli("task", "submit", ws.parent / "n.yaml", ws=ws).code == 0
    r = run_cli("label", "fit", "nums_task", "--json", ws=ws)
    assert r.code == 0, r
    assert json.loads(r.out)["text_view"] == {"used": False, "reason": "the dataset has no text field"}
