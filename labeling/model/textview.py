"""The text view: a second, feature-based opinion on each row's class.

A label model that sees only the votes gives every row with the same vote
pattern the same answer. Rows where one weak LF fires, or none, are then
decided by that LF's average precision or by the class prior, whatever the
row says. The text view reads the row itself:

1. Featurize the task's text column as hashed word unigrams and bigrams
   (DuckDB: one SQL pass, no Python loop over rows; binary features,
   ``buckets`` hash buckets).
2. Fit a multinomial logistic regression on those features with the label
   model's posteriors as soft targets, on the rows where at least one source
   votes. Cross-fitted: the rows are split into ``folds`` folds, and a row the
   classifier was fitted on gets its prediction from the fold model that did
   not see it, so the classifier cannot hand a row's own vote back to it. Every
   other row (valid, test, uncovered) gets the mean of the fold models.
3. **Gate** (no gold labels): on the rows it learned from, the classifier's
   cross-fitted predictions are compared with the votes' answers. Their
   agreement beyond what the class mix alone gives (Cohen's kappa) says
   whether the text carries the class at all; below ``gate_low`` the view
   steps back entirely, above ``gate_high`` it counts in full, in between
   linearly. Stepping back is done by tempering the view toward the class mix:
   ``Q_g ∝ q (Q / q) ** gate``.
4. Combine the two views as independent evidence given the class::

       log P(y | votes, text) = log P(y | votes) + weight * s_i * (log Q_g(y | text) - log q_y) + const

   where ``q`` is the class mix of the classifier's soft targets (dividing it
   out keeps the prior from being counted twice), ``weight`` > 1 makes up for
   the classifier's L2 shrinkage toward that mix, and ``s_i = gate^2 + (1 -
   gate^2) d_i`` with ``d_i = (1 - max_y P(y | votes)) k / (k - 1)`` how
   undecided the votes are on row ``i`` (1 on a row without votes, 0 on a row
   the votes settle). A view with plain class signal (gate 1) counts on every
   row; as the gate closes, it counts only where the votes are undecided, so
   a weak view does not overrule the votes where they are sure
   (docs/label_model.md, regime ``weak_short``).

This is a classic co-training-style combination of two views of a row (votes
and text); like the end model, it generalises from the rows LFs cover to the
rows they do not. Its defaults were chosen on WRENCH *valid* accuracy and on
the synthetic regimes of bench/regimes.py (docs/label_model.md); the votes-only
answer stays available (``label fit --no-text-view``) and ``label fit --json``
reports both. :func:`apply_text_view` is the whole step as `label fit` runs it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import duckdb
import numpy as np
import pyarrow as pa
import torch

from mothermodel.defaults import DEFAULT_SEED, resolve_device

__all__ = ["TextViewConfig", "hashed_ngrams", "HashedText", "text_view", "combine", "apply_text_view",
           "view_gate", "fit_rows_of"]


@dataclass(frozen=True)
class TextViewConfig:
    """Settings of the text view (defaults chosen on WRENCH valid; docs/label_model.md).

    Attributes:
        weight: how much the text classifier's log-odds count next to the votes' (0 = off).
        l2: L2 penalty on the classifier's weights (mean-pooled binary features).
        folds: cross-fitting folds (>= 2).
        buckets: hash buckets for the n-gram features.
        bigrams: add word bigrams to the unigrams.
        token_pattern: RE2 pattern of a token, matched on the lower-cased text.
        max_iter: L-BFGS iterations per fold model.
        max_fit_rows: fit on at most this many covered rows (drawn with `seed`); None = all.
        min_fit_rows: fewer covered rows than this: the view is skipped (too little to learn from).
        gate_low: cross-fitted agreement with the votes (kappa) at or below which the view steps back fully.
        gate_high: kappa at or above which the view counts in full.
        doubt_scaled: weigh the view on each row by how undecided the votes are there (``d_i``).
        seed: fold assignment and row sample.
        device: 'auto' (CUDA if available), 'cpu' or 'cuda[:i]'.
    """

    weight: float = 6.0
    l2: float = 3e-6
    folds: int = 5
    buckets: int = 1 << 18
    bigrams: bool = True
    token_pattern: str = r"[\pL\pN']+"
    max_iter: int = 100
    max_fit_rows: Optional[int] = 20_000
    min_fit_rows: int = 50
    gate_low: float = 0.05
    gate_high: float = 0.25
    doubt_scaled: bool = True
    seed: int = DEFAULT_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"TextViewConfig.weight must be >= 0, got {self.weight}")
        if not self.l2 >= 0:
            raise ValueError(f"TextViewConfig.l2 must be >= 0, got {self.l2}")
        if self.folds < 2:
            raise ValueError(f"TextViewConfig.folds must be >= 2, got {self.folds}")
        if self.buckets < 2:
            raise ValueError(f"TextViewConfig.buckets must be >= 2, got {self.buckets}")
        if not 0 <= self.gate_low < self.gate_high <= 1:
            raise ValueError(f"TextViewConfig: need 0 <= gate_low < gate_high <= 1, got {self.gate_low}, "
                             f"{self.gate_high}")


@dataclass
class HashedText:
    """Rows as bags of hashed n-gram ids: row i owns ``ids[offsets[i]:offsets[i+1]]``."""

    ids: np.ndarray  # int64, 0 .. num_features - 1
    offsets: np.ndarray  # int64, n + 1
    num_features: int

    @property
    def num_rows(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows: np.ndarray) -> "HashedText":
        """The bags of `rows`, in that order (vectorised gather, no Python loop)."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lens = ends - starts
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        # position j of the output bag b reads ids[starts[b] + j]
        idx = np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])
        return HashedText(self.ids[idx], offsets, self.num_features)


def hashed_ngrams(texts: pa.Array | pa.ChunkedArray, cfg: TextViewConfig = TextViewConfig()) -> HashedText:
    """Hash each text's distinct lower-cased word unigrams (and bigrams) into ``cfg.buckets`` ids.

    One DuckDB query over the Arrow column; NULL texts become empty bags. The
    bucket ids that occur are then renumbered densely (``num_features`` of them),
    so the classifier holds one weight row per n-gram seen, not per bucket: on
    TREC that is 7x faster to fit.
    """
    con = duckdb.connect()
    try:
        con.register("texts", pa.table({"text": texts}))
        bigram = ("list_concat(w, list_transform(range(1, len(w)), lambda i: w[i] || ' ' || w[i + 1]))"
                  if cfg.bigrams else "w")
        pattern = cfg.token_pattern.replace("'", "''")
        ids = f"list_transform({bigram}, lambda x: CAST(hash(x) % {int(cfg.buckets)} AS BIGINT))"
        rel = con.sql(
            f"WITH toks AS (SELECT regexp_extract_all(lower(coalesce(CAST(text AS VARCHAR), '')), '{pattern}') AS w "
            f"FROM texts) SELECT list_sort(list_distinct({ids})) AS f FROM toks"
        )
        arrow = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
        col = arrow.column("f").combine_chunks()
    finally:
        con.close()
    if isinstance(col, pa.ChunkedArray):  # an empty table
        col = pa.array([], pa.list_(pa.int64()))
    col = col.fill_null([]) if col.null_count else col
    offsets = col.offsets.to_numpy().astype(np.int64)
    ids = col.values.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = ids[offsets[0]:offsets[-1]]
    vocab, dense = np.unique(ids, return_inverse=True)
    return HashedText(dense.astype(np.int64).ravel(), offsets - offsets[0], max(int(len(vocab)), 1))


class _Softmax:
    """Multinomial logistic regression on bags of hashed ids (mean-pooled binary features)."""

    def __init__(self, num_features: int, k: int, device) -> None:
        self.bag = torch.nn.EmbeddingBag(num_features, k, mode="mean").to(device)
        torch.nn.init.zeros_(self.bag.weight)
        self.bias = torch.nn.Parameter(torch.zeros(k, device=device))
        self.device = device

    def logits(self, X: HashedText, block: int = 1 << 17):
        out = []
        for s in range(0, X.num_rows, block):
            e = min(s + block, X.num_rows)
            ids = torch.from_numpy(X.ids[X.offsets[s]:X.offsets[e]]).to(self.device)
            off = torch.from_numpy(X.offsets[s:e] - X.offsets[s]).to(self.device)
            out.append(self.bag(ids, off) + self.bias)
        return torch.cat(out) if out else torch.zeros((0, self.bias.shape[0]), device=self.device)

    def fit(self, X: HashedText, targets: np.ndarray, l2: float, max_iter: int) -> "_Softmax":
        T = torch.from_numpy(np.ascontiguousarray(targets, np.float32)).to(self.device)
        opt = torch.optim.LBFGS([self.bag.weight, self.bias], max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -(T * torch.log_softmax(self.logits(X), dim=1)).sum(1).mean()
            loss = loss + 0.5 * l2 * self.bag.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        return self

    def proba(self, X: HashedText) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(self.logits(X), dim=1).cpu().numpy().astype(np.float64)


def text_view(X: HashedText, P_votes: np.ndarray, fit_rows: np.ndarray,
              cfg: TextViewConfig = TextViewConfig(),
              on_fold: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Cross-fitted, gated text classifier probabilities ``Q_g`` (n x k) and a small report.

    `P_votes` are the label model's posteriors (the soft targets), `fit_rows` a
    boolean mask of the rows it may learn from (train rows with at least one vote).
    The report holds the gate (:func:`view_gate`): ``Q_g`` is the classifier tempered
    toward the target class mix by it (the classifier itself where the gate is 1).
    `on_fold(1)` is called after each fold model (progress).
    """
    n, k = P_votes.shape
    if X.num_rows != n:
        raise ValueError(f"text features have {X.num_rows} rows, posteriors {n}")
    rng = np.random.default_rng(cfg.seed)
    cand = np.flatnonzero(fit_rows)
    if cfg.max_fit_rows is not None and len(cand) > cfg.max_fit_rows:
        cand = np.sort(rng.choice(cand, cfg.max_fit_rows, replace=False))
    fold = rng.integers(0, cfg.folds, len(cand))
    device = resolve_device(cfg.device)
    Q = np.zeros((n, k))
    others = np.ones(n, bool)
    others[cand] = False
    rest = X.take(np.flatnonzero(others))
    for f in range(cfg.folds):
        learn, held = cand[fold != f], cand[fold == f]
        clf = _Softmax(X.num_features, k, device).fit(X.take(learn), P_votes[learn], cfg.l2, cfg.max_iter)
        if len(held):
            Q[held] = clf.proba(X.take(held))
        Q[others] += clf.proba(rest) / cfg.folds
        if on_fold:
            on_fold(1)
    mix = P_votes[cand].mean(axis=0) if len(cand) else np.full(k, 1.0 / k)
    gate = view_gate(Q[cand], P_votes[cand], mix, cfg)
    report = {"fit_rows": int(len(cand)), "target_class_mix": mix.tolist(), "device": str(device), **gate}
    return _temper(Q, mix, gate["gate"]), report


def view_gate(Q_held: np.ndarray, P_votes: np.ndarray, mix: np.ndarray, cfg: TextViewConfig) -> dict[str, float]:
    """How much the view counts (0..1), from its cross-fitted agreement with the votes (no gold labels).

    On the rows the classifier learned from (each predicted by the fold model that
    did not see it), ``agreement`` is how often its top class is the votes' top
    class, ``chance`` how often the class mix's top class is; ``kappa = (agreement -
    chance) / (1 - chance)``. The gate rises linearly from 0 at ``cfg.gate_low`` to 1
    at ``cfg.gate_high``.
    """
    if len(Q_held) == 0:
        return {"agreement": 0.0, "chance_agreement": 0.0, "kappa": 0.0, "gate": 0.0}
    top = P_votes.argmax(axis=1)
    agreement = float((Q_held.argmax(axis=1) == top).mean())
    chance = float((top == int(np.argmax(mix))).mean())
    kappa = (agreement - chance) / (1.0 - chance) if chance < 1 else 0.0
    gate = float(np.clip((kappa - cfg.gate_low) / (cfg.gate_high - cfg.gate_low), 0.0, 1.0))
    return {"agreement": round(agreement, 4), "chance_agreement": round(chance, 4), "kappa": round(kappa, 4),
            "gate": round(gate, 4)}


def _temper(Q: np.ndarray, mix: np.ndarray, gate: float) -> np.ndarray:
    """``q (Q / q) ** gate``, renormalised: the view moved toward the class mix (gate 0: exactly the mix)."""
    if gate >= 1.0:
        return Q
    eps = 1e-12
    lq = np.log(np.clip(np.asarray(mix, np.float64), eps, None))
    S = lq[None, :] + gate * (np.log(np.clip(Q, eps, None)) - lq[None, :])
    S -= S.max(axis=1, keepdims=True)
    out = np.exp(S)
    return out / out.sum(axis=1, keepdims=True)


def combine(P_votes: np.ndarray, Q: np.ndarray, target_mix: np.ndarray, weight: float,
            doubt_scaled: bool = True, gate: float = 0.0) -> np.ndarray:
    """``P(y | votes) * (Q(y | text) / q_y) ** (weight * s_i)``, renormalised (float32).

    ``s_i = gate^2 + (1 - gate^2) d_i`` with ``d_i = (1 - max_y P(y | votes)) k / (k - 1)``
    (1 where the votes say nothing, 0 where they are certain) and ``gate`` the view's
    gate (:func:`view_gate`); ``doubt_scaled=False``: ``s_i = 1`` everywhere.
    """
    eps = 1e-12
    P_votes = np.asarray(P_votes, np.float64)
    k = P_votes.shape[1]
    w = np.full(len(P_votes), float(weight))
    if doubt_scaled:
        # Blend toward the doubt as the gate closes: a view with plain class signal (gate 1) counts on
        # every row (WRENCH trec: scaling it by doubt there cost 1.6 points); a weak one only where the
        # votes are undecided (regime weak_short).
        g2 = float(gate) ** 2
        w *= g2 + (1.0 - g2) * np.clip((1.0 - P_votes.max(axis=1)) * k / (k - 1), 0.0, 1.0)
    S = np.log(np.clip(P_votes, eps, None)) + w[:, None] * (
        np.log(np.clip(Q, eps, None)) - np.log(np.clip(np.asarray(target_mix, np.float64), eps, None)))
    S -= S.max(axis=1, keepdims=True)
    P = np.exp(S)
    P /= P.sum(axis=1, keepdims=True)
    return P.astype(np.float32)


def fit_rows_of(L: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The rows the view may learn from: train rows where at least one source votes."""
    return np.asarray(train, bool) & (np.asarray(L) >= 0).any(axis=1)


def apply_text_view(texts: pa.Array | pa.ChunkedArray, L: np.ndarray, P_votes: np.ndarray, train: np.ndarray,
                    cfg: TextViewConfig = TextViewConfig(),
                    on_fold: Optional[Callable[[int], None]] = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The whole text-view step of `label fit`: the label model's posteriors combined with the view.

    Args:
        texts: one text per row (row i of `L`).
        L: (n, m) label matrix, -1 = abstain.
        P_votes: (n, k) the label model's posteriors.
        train: (n,) bool, the rows the label model was fitted on.
        cfg: settings (its seed seeds the folds and the row sample).
        on_fold: called with 1 after each fold model (progress).

    Returns ``(posteriors, report)``: the combined float32 posteriors (or `P_votes`
    unchanged, with ``"used": False`` and a ``"reason"``, when there are fewer than
    ``cfg.min_fit_rows`` rows to learn from) and a JSON-ready report (``used``,
    ``config``, ``fit_rows``, ``target_class_mix``, ``device`` and the gate's
    ``agreement``, ``chance_agreement``, ``kappa``, ``gate``).
    """
    fit_rows = fit_rows_of(L, train)
    covered = int(fit_rows.sum())
    if covered < cfg.min_fit_rows:
        return P_votes, {"used": False, "reason": f"{covered} covered train rows, fewer than {cfg.min_fit_rows}"}
    X = hashed_ngrams(texts, cfg)
    Q, report = text_view(X, np.asarray(P_votes, np.float64), fit_rows, cfg, on_fold=on_fold)
    combined = combine(P_votes, Q, np.asarray(report["target_class_mix"]), cfg.weight, cfg.doubt_scaled,
                       report["gate"])
    return combined, {"used": True, "config": asdict(cfg), **report}
