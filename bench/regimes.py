"""Benchmark: `label fit` across regimes of labeling functions, on synthetic worlds with known LFs.

    python bench/regimes.py [--seeds 1 2 3 4 5] [--regimes tiny_precise weak_short ...]
                            [--snorkel-python /tmp/snorkelvenv/bin/python] [--out bench/results/regimes.json]

Each regime is a seeded generator of a WRENCH-like dataset: a train split (weak labels only; its gold is used
for nothing but the reported LF precisions), a valid and a test split with gold, a text per row, and a label
matrix whose LFs are keyword functions of that text (an LF fires exactly where one of its trigger words or
phrases is in the text; each LF's firing rates given the class are set by the generator, so every LF's
precision is known). The regimes:

  tiny_precise   ~160 one-class LFs over 9 imbalanced classes; each fires on ~0.2% of rows (heavy-tailed), together
                 they cover every row, ~13% of rows hold two votes of different classes (SemEval-like).
  weak_short     6 classes, one LF per class firing on 10-15% of rows with precision ~0.5; texts of 10-13 words
                 from a vocabulary where words are only weakly class-informative (low-resource news-topic-like).
  youtube_like   2 classes, 10 unipolar LFs of both polarities, coverage 5-35%, precision 0.6-0.98.
  trec_like      6 imbalanced classes, 68 unipolar LFs of mixed quality (precision 0.35-0.95), sparse coverage.
  correlated     3 classes, 6 independent LFs of precision ~0.8 and two groups of 5 near-duplicates of a
                 mediocre LF (precision ~0.55): the copies fire together and vote alike.

For every regime and seed, in one process (ours) and one Snorkel child process:
  majority vote (MajorityVoter.predict: the seeded row-id tie-break), our label model votes-only,
  the `label fit` default (label model + text view through `textview.apply_text_view`, the function
  `label fit` calls), and Snorkel 0.10's LabelModel (fit(seed), predict with tie_break_policy="random").
Figures are test accuracy (valid too), medians over seeds; JSON in bench/results/regimes.json.
This file imports no torch at top level (Snorkel's child imports only numpy and snorkel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
from snorkel_peer import DEFAULT_SNORKEL, snorkel_interpreter  # noqa: E402 (bench/ is sys.path[0])
REGIMES = ("tiny_precise", "weak_short", "youtube_like", "trec_like", "correlated")


# --------------------------------------------------------------------------- #
# Synthetic worlds
# --------------------------------------------------------------------------- #
@dataclass
class World:
    """One generated dataset: rows in train, valid, test order."""

    name: str
    k: int
    L: np.ndarray  # (n, m) int8, -1 = abstain
    y: np.ndarray  # (n,) gold (train gold: for the LF precisions reported, never for fitting)
    split: np.ndarray  # (n,) 'train' | 'valid' | 'test'
    texts: list
    lf_class: np.ndarray  # (m,) the class each LF votes for
    groups: list = field(default_factory=list)  # near-duplicate LF groups (correlated regime)

    def stats(self) -> dict:
        """Coverage, overlap and conflict rates, and the LFs' true precisions (all rows)."""
        fires = self.L >= 0
        n_votes = fires.sum(1)
        distinct = np.array([len(set(r[r >= 0].tolist())) for r in self.L])
        prec = np.array([float((self.y[fires[:, j]] == self.lf_class[j]).mean()) if fires[:, j].any() else np.nan
                         for j in range(self.L.shape[1])])
        cov = fires.mean(0)
        return {"rows": {s: int((self.split == s).sum()) for s in ("train", "valid", "test")},
                "classes": self.k, "lfs": int(self.L.shape[1]),
                "coverage": round(float((n_votes > 0).mean()), 4), "overlap": round(float((n_votes > 1).mean()), 4),
                "conflict": round(float((distinct > 1).mean()), 4),
                "lf_coverage_median": round(float(np.median(cov)), 4),
                "lf_precision_median": round(float(np.nanmedian(prec)), 4),
                "lf_precision_range": [round(float(np.nanmin(prec)), 3), round(float(np.nanmax(prec)), 3)],
                "class_balance": np.round(np.bincount(self.y, minlength=self.k) / len(self.y), 3).tolist(),
                "near_duplicate_groups": [list(map(int, g)) for g in self.groups]}


_CONS, _VOWELS = "bdfgklmnprstvwyz", "aeiou"


def _words(rng, count: int, taken: set) -> list:
    """`count` new pronounceable pseudo-words (2-4 syllables), none in `taken` (updated)."""
    out = []
    while len(out) < count:
        w = "".join(rng.choice(list(_CONS)) + rng.choice(list(_VOWELS)) for _ in range(int(rng.integers(2, 5))))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def _zipf(n: int, a: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** a
    return p / p.sum()


class _Text:
    """Texts whose words are weakly to strongly class-informative; LFs' trigger words are planted afterwards."""

    def __init__(self, rng, k: int, informative: float, topic_words: int, common_words: int, taken: set):
        self.rng, self.k, self.rho = rng, k, informative
        self.common = np.array(_words(rng, common_words, taken))
        self.topic = [np.array(_words(rng, topic_words, taken)) for _ in range(k)]
        self.p_common, self.p_topic = _zipf(common_words), _zipf(topic_words, 0.9)

    def make(self, y: np.ndarray, lo: int, hi: int) -> list:
        rng = self.rng
        out = []
        for c in y:
            n = int(rng.integers(lo, hi + 1))
            topical = rng.random(n) < self.rho
            toks = np.where(topical, self.topic[c][rng.choice(len(self.topic[c]), n, p=self.p_topic)],
                            self.common[rng.choice(len(self.common), n, p=self.p_common)])
            out.append(list(toks))
        return out


def _plant(rng, toks: list, L: np.ndarray, triggers: list) -> list:
    """Put one trigger of each firing LF into the row's words (LF j fires iff one of triggers[j] is there)."""
    texts = []
    for i, words in enumerate(toks):
        words = list(words)
        for j in np.flatnonzero(L[i] >= 0):
            t = triggers[j][int(rng.integers(len(triggers[j])))]
            words.insert(int(rng.integers(len(words) + 1)), t)
        texts.append(" ".join(words))
    return texts


def _split(rng, n_train: int, n_valid: int, n_test: int) -> np.ndarray:
    return np.array(["train"] * n_train + ["valid"] * n_valid + ["test"] * n_test)


def _fire_given_class(rng, y, k, lf_class, coverage, precision, balance, exclusive: float = 0.0) -> np.ndarray:
    """LF j fires on rows of its class w.p. a_j and on other rows w.p. b_j, chosen so that it covers
    `coverage[j]` of the rows at precision `precision[j]`; it votes its class.

    `exclusive`: on this share of the rows, at most one LF of the row's class fires (one categorical draw with
    the same rates), as with real keyword LFs of one class that match different phrasings (TREC's question
    words: a question starting "who" does not also start "where"); on the other rows they fire independently.
    Firing on rows of other classes is always independent."""
    n, m = len(y), len(lf_class)
    beta = balance[lf_class]
    a = np.clip(coverage * precision / beta, 0, 1)
    b = np.clip(coverage * (1 - precision) / (1 - beta), 0, 1)
    fire = (rng.random((n, m)) < b[None, :]) & (y[:, None] != lf_class[None, :])
    indep = rng.random(n) >= exclusive
    own = y[:, None] == lf_class[None, :]
    fire |= own & indep[:, None] & (rng.random((n, m)) < a[None, :])
    for c in range(k):
        js = np.flatnonzero(lf_class == c)
        rows = np.flatnonzero((y == c) & ~indep)
        if not len(js) or not len(rows):
            continue
        p = np.append(a[js] / max(1.0, a[js].sum()), max(0.0, 1.0 - a[js].sum()))
        pick = rng.choice(len(js) + 1, size=len(rows), p=p / p.sum())
        hit = pick < len(js)
        fire[rows[hit], js[pick[hit]]] = True
    return np.where(fire, lf_class[None, :], -1).astype(np.int8)


def _world(name, rng, k, y, split, L, lf_class, text: _Text, lo, hi, triggers, groups=()) -> World:
    texts = _plant(rng, text.make(y, lo, hi), L, triggers)
    return World(name, k, L, y.astype(np.int64), split, texts, np.asarray(lf_class), [list(g) for g in groups])


def tiny_precise(seed: int, n_train: int = 1750, n_valid: int = 500, n_test: int = 2000,
                 informative: float = 0.25) -> World:
    """~160 precise one-class LFs, 9 imbalanced classes, each LF on ~0.2% of rows, every row covered;
    13% of rows are ambiguous and get one vote of their class and one of another class."""
    rng = np.random.default_rng(seed)
    k, m = 9, 160
    balance = np.array([0.27, 0.17, 0.13, 0.10, 0.09, 0.08, 0.07, 0.05, 0.04])
    n = n_train + n_valid + n_test
    y = rng.choice(k, n, p=balance)
    # LFs per class roughly follow the class mix; each LF's share of its class's votes is heavy-tailed.
    lf_class = np.sort(np.concatenate([np.arange(k), rng.choice(k, m - k, p=np.sqrt(balance) / np.sqrt(balance).sum())]))
    share = rng.lognormal(0.0, 1.4, m)
    err = rng.lognormal(0.0, 1.0, m)  # how prone each LF is to fire on rows of other classes
    members = [np.flatnonzero(lf_class == c) for c in range(k)]

    def pick(cls: int, wrong: bool) -> int:
        w = share[members[cls]] * (err[members[cls]] if wrong else 1.0)
        return int(members[cls][rng.choice(len(w), p=w / w.sum())])

    L = np.full((n, m), -1, np.int8)
    ambiguous = rng.random(n) < 0.13
    right = rng.random(n) < 0.90
    for i in range(n):
        other = int((y[i] + rng.integers(1, k)) % k)
        if ambiguous[i]:
            L[i, pick(y[i], False)] = y[i]
            L[i, pick(other, True)] = other
        elif right[i]:
            L[i, pick(y[i], False)] = y[i]
        else:
            L[i, pick(other, True)] = other
    taken: set = set()
    text = _Text(rng, k, informative=informative, topic_words=300, common_words=3000, taken=taken)
    triggers = [[" ".join(_words(rng, 2, taken))] for _ in range(m)]  # one two-word pattern per LF
    return _world("tiny_precise", rng, k, y, _split(rng, n_train, n_valid, n_test), L, lf_class, text, 12, 25,
                  triggers)


def weak_short(seed: int, n_train: int = 2000, n_valid: int = 500, n_test: int = 2000, k: int = 6) -> World:
    """One keyword-list LF per class, each on 10-15% of rows at precision ~0.5; 10-13-word texts whose
    words say little about the class."""
    rng = np.random.default_rng(seed)
    balance = rng.dirichlet(np.full(k, 8.0))
    n = n_train + n_valid + n_test
    y = rng.choice(k, n, p=balance)
    lf_class = np.arange(k)
    L = _fire_given_class(rng, y, k, lf_class, rng.uniform(0.10, 0.15, k), rng.uniform(0.42, 0.58, k), balance)
    taken: set = set()
    text = _Text(rng, k, informative=0.05, topic_words=1500, common_words=6000, taken=taken)
    triggers = [_words(rng, 150, taken) for _ in range(k)]  # a gazetteer of 150 keywords per LF
    # Trigger words take the place of one ordinary word: texts stay 10-13 words long.
    return _world("weak_short", rng, k, y, _split(rng, n_train, n_valid, n_test), L, lf_class, text, 9, 12, triggers)


def youtube_like(seed: int, n_train: int = 1600, n_valid: int = 500, n_test: int = 2000) -> World:
    """Spam vs ham: 7 SPAM LFs and 3 HAM LFs of varied coverage and precision."""
    rng = np.random.default_rng(seed)
    k = 2
    balance = np.array([0.48, 0.52])
    n = n_train + n_valid + n_test
    y = rng.choice(k, n, p=balance)
    lf_class = np.array([1] * 7 + [0] * 3)
    coverage = np.concatenate([rng.uniform(0.05, 0.30, 7), rng.uniform(0.05, 0.35, 3)])
    precision = np.concatenate([rng.uniform(0.75, 0.98, 7), rng.uniform(0.60, 0.90, 3)])
    L = _fire_given_class(rng, y, k, lf_class, coverage, precision, balance, exclusive=0.5)
    taken: set = set()
    text = _Text(rng, k, informative=0.25, topic_words=200, common_words=2000, taken=taken)
    triggers = [_words(rng, 3, taken) for _ in range(len(lf_class))]
    return _world("youtube_like", rng, k, y, _split(rng, n_train, n_valid, n_test), L, lf_class, text, 5, 30,
                  triggers)


def trec_like(seed: int, n_train: int = 5000, n_valid: int = 500, n_test: int = 2000) -> World:
    """6 imbalanced classes, 68 unipolar LFs with precision 0.35-0.95 and sparse, varied coverage."""
    rng = np.random.default_rng(seed)
    k, m = 6, 68
    balance = np.array([0.21, 0.23, 0.22, 0.02, 0.16, 0.16])
    n = n_train + n_valid + n_test
    y = rng.choice(k, n, p=balance)
    lf_class = np.sort(np.concatenate([np.arange(k), rng.choice(k, m - k, p=[0.2, 0.2, 0.2, 0.04, 0.18, 0.18])]))
    coverage = np.clip(rng.lognormal(np.log(0.012), 1.0, m), 0.001, 0.12)
    coverage = np.minimum(coverage, 0.9 * balance[lf_class])
    precision = rng.uniform(0.35, 0.95, m)
    L = _fire_given_class(rng, y, k, lf_class, coverage, precision, balance, exclusive=0.9)
    taken: set = set()
    text = _Text(rng, k, informative=0.20, topic_words=250, common_words=2500, taken=taken)
    triggers = [_words(rng, 2, taken) for _ in range(m)]
    return _world("trec_like", rng, k, y, _split(rng, n_train, n_valid, n_test), L, lf_class, text, 6, 15, triggers)


def correlated(seed: int, n_train: int = 3000, n_valid: int = 500, n_test: int = 2000, copies: int = 5) -> World:
    """6 independent LFs (precision ~0.8) and two groups of `copies` near-duplicates of a mediocre LF
    (precision ~0.55): a copy fires where its original does (95%) plus on 1% of other rows, and votes alike."""
    rng = np.random.default_rng(seed)
    k = 3
    balance = np.array([0.34, 0.33, 0.33])
    n = n_train + n_valid + n_test
    y = rng.choice(k, n, p=balance)
    ind_class = np.array([0, 0, 1, 1, 2, 2])
    L_ind = _fire_given_class(rng, y, k, ind_class, rng.uniform(0.15, 0.25, 6), rng.uniform(0.75, 0.85, 6), balance)
    base_class = np.array([0, 1])
    L_base = _fire_given_class(rng, y, k, base_class, np.full(2, 0.20), np.full(2, 0.55), balance)
    cols, lf_class, groups = [L_ind], list(ind_class), []
    for g, c in enumerate(base_class):
        fires = L_base[:, g] >= 0
        start = 6 + g * copies
        groups.append(list(range(start, start + copies)))
        for _ in range(copies):
            f = (fires & (rng.random(n) < 0.95)) | (rng.random(n) < 0.01)
            cols.append(np.where(f, c, -1).astype(np.int8)[:, None])
            lf_class.append(int(c))
    L = np.hstack(cols)
    taken: set = set()
    text = _Text(rng, k, informative=0.20, topic_words=250, common_words=2500, taken=taken)
    triggers = [_words(rng, 2, taken) for _ in range(L.shape[1])]
    return _world("correlated", rng, k, y, _split(rng, n_train, n_valid, n_test), L, np.array(lf_class), text,
                  8, 20, triggers, groups)


GENERATORS = {"tiny_precise": tiny_precise, "weak_short": weak_short, "youtube_like": youtube_like,
              "trec_like": trec_like, "correlated": correlated}


# --------------------------------------------------------------------------- #
# Methods
# --------------------------------------------------------------------------- #
def accuracy_f1(pred: np.ndarray, y: np.ndarray, k: int) -> dict:
    f1s = []
    for c in range(k):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": round(float((pred == y).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4)}


def _scores(w: World, pred: np.ndarray) -> dict:
    return {s: accuracy_f1(pred[w.split == s], w.y[w.split == s], w.k) for s in ("valid", "test")}


def run_ours(w: World, seed: int = 123, lm_overrides: dict | None = None) -> dict:
    """Majority vote, the label model votes-only and the `label fit` default, as `label fit` computes them:
    the label model fitted on the train rows, every row predicted, ties broken by row id with `seed`."""
    import pyarrow as pa

    from mothermodel.labeling.model.baselines import MajorityVoter
    from mothermodel.labeling.model.label_model import LabelModel, LabelModelConfig
    from mothermodel.labeling.model.textview import TextViewConfig, apply_text_view
    from mothermodel.labeling.model.votes import tie_break

    train = w.split == "train"
    out: dict = {}
    out["majority_vote"] = _scores(w, MajorityVoter(w.k, seed=seed).predict(w.L))
    t0 = time.perf_counter()
    lm = LabelModel(w.k, LabelModelConfig(seed=seed, **(lm_overrides or {}))).fit(w.L[train])
    probs = lm.predict_proba(w.L)
    fit_s = time.perf_counter() - t0
    out["label_model_votes_only"] = {**_scores(w, tie_break(probs, seed)), "fit_s": round(fit_s, 3),
                                     "near_duplicate_groups": lm.lf_groups_,
                                     "median_lf_overlaps": float(np.median(lm.overlaps_))}
    t0 = time.perf_counter()
    combined, view = apply_text_view(pa.array(w.texts), w.L, probs, train, TextViewConfig(seed=seed))
    out["label_fit_default"] = {**_scores(w, tie_break(combined, seed)), "text_view_s": round(time.perf_counter() - t0, 2),
                                "text_view": {k: view.get(k) for k in ("used", "reason", "fit_rows", "agreement",
                                                                        "chance_agreement", "kappa", "gate")
                                              if k in view}}
    return out


def run_snorkel(w: World, seed: int = 123) -> dict:
    """Snorkel 0.10's LabelModel (defaults, fit(seed)) on the train weak labels; random tie-break."""
    from snorkel.labeling.model import LabelModel as SnorkelLM

    train = w.split == "train"
    np.random.seed(seed)
    lm = SnorkelLM(cardinality=w.k, verbose=False)
    lm.fit(w.L[train], seed=seed, progress_bar=False)
    return {"snorkel_label_model": _scores(w, lm.predict(w.L, tie_break_policy="random"))}


# --------------------------------------------------------------------------- #
# Driver
# --------------------------------------------------------------------------- #
METHODS = ("majority_vote", "label_model_votes_only", "label_fit_default", "snorkel_label_model")


def _child(python: str, regime: str, seeds: list, extra=()) -> dict:
    cmd = [python, str(HERE), "--child", "--regimes", regime, "--seeds", *map(str, seeds), *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    if p.returncode != 0:
        raise RuntimeError(f"child {cmd} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _median(runs: list, method: str, split: str, metric: str = "accuracy"):
    vals = [r[method][split][metric] for r in runs if method in r]
    return round(statistics.median(vals), 4) if vals else None


def summarise(regime: str, runs: list) -> dict:
    out = {m: {s: {"accuracy": _median(runs, m, s), "macro_f1": _median(runs, m, s, "macro_f1")}
               for s in ("valid", "test")} for m in METHODS if any(m in r for r in runs)}
    mv = [r["majority_vote"]["test"]["accuracy"] for r in runs]
    ours = [r["label_fit_default"]["test"]["accuracy"] for r in runs]
    votes = [r["label_model_votes_only"]["test"]["accuracy"] for r in runs]
    out["test_margins_points"] = {
        "default_minus_majority": round(100 * statistics.median(o - m for o, m in zip(ours, mv)), 2),
        "default_minus_votes_only": round(100 * statistics.median(o - v for o, v in zip(ours, votes)), 2),
        "votes_only_minus_majority": round(100 * statistics.median(v - m for v, m in zip(votes, mv)), 2),
        "per_seed_default_minus_majority": [round(100 * (o - m), 2) for o, m in zip(ours, mv)],
        "per_seed_default_minus_votes_only": [round(100 * (o - v), 2) for o, v in zip(ours, votes)]}
    out["targets_met"] = {"default >= majority - 0.5 point": out["test_margins_points"]["default_minus_majority"] >= -0.5,
                          "default >= votes-only - 0.5 point":
                              out["test_margins_points"]["default_minus_votes_only"] >= -0.5}
    return out


def table(results: dict) -> str:
    head = ("| regime | LFs / classes | coverage / conflict | majority vote | ours votes-only | **`label fit` default** "
            "| Snorkel 0.10 | default − MV | default − votes-only | view gate (median) |")
    lines = [head, "|" + "---|" * 10]
    for name, r in results["regimes"].items():
        s = r["summary"]
        st = r["world"]
        f = lambda m: "–" if m not in s or s[m]["test"]["accuracy"] is None else f"{s[m]['test']['accuracy']:.3f}"  # noqa: E731
        gates = [x["label_fit_default"]["text_view"].get("gate", 0.0) for x in r["runs"]]
        lines.append(f"| {name} | {st['lfs']} / {st['classes']} | {st['coverage']:.2f} / {st['conflict']:.2f} | "
                     f"{f('majority_vote')} | {f('label_model_votes_only')} | **{f('label_fit_default')}** | "
                     f"{f('snorkel_label_model')} | {s['test_margins_points']['default_minus_majority']:+.1f} | "
                     f"{s['test_margins_points']['default_minus_votes_only']:+.1f} | {statistics.median(gates):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    ap.add_argument("--snorkel-python", default=DEFAULT_SNORKEL)
    ap.add_argument("--skip-snorkel", action="store_true")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "regimes.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:  # Snorkel's side: only numpy and snorkel
        print(json.dumps({name: [run_snorkel(GENERATORS[name](s)) for s in args.seeds] for name in args.regimes}))
        return

    snorkel = snorkel_interpreter(args.snorkel_python, args.skip_snorkel)
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "command": " ".join(["python", "bench/regimes.py", *sys.argv[1:]]),
               "seeds": args.seeds, "model_seed": 123, "regimes": {}}
    for name in args.regimes:
        t0 = time.perf_counter()
        runs = []
        for s in args.seeds:
            w = GENERATORS[name](s)
            runs.append({"seed": s, **run_ours(w), "world": w.stats()})
        if snorkel:
            for r, sn in zip(runs, _child(snorkel, name, args.seeds)[name]):
                r.update(sn)
        world = dict(runs[0]["world"])
        results["regimes"][name] = {"world": world, "summary": summarise(name, runs), "runs": runs,
                                    "wall_s": round(time.perf_counter() - t0, 1)}
        s = results["regimes"][name]["summary"]
        print(f"[{name}] test acc (median of {len(args.seeds)} seeds): " + ", ".join(
            f"{m} {s[m]['test']['accuracy']:.3f}" for m in METHODS if m in s)
            + f" | default-MV {s['test_margins_points']['default_minus_majority']:+.1f} pt, "
              f"default-votes {s['test_margins_points']['default_minus_votes_only']:+.1f} pt", flush=True)
    results["table_markdown"] = table(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table_markdown"])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
