"""Label models: turn a label matrix of weak votes into probabilistic labels.

Two models share one interface (``predict_proba`` / ``predict``):

* :class:`MajorityVoter` -- plain majority vote, vectorized.
* :class:`LabelModel` -- a learned generative label model fitted by EM in
  torch (CPU or GPU).

A label matrix ``L`` is an integer array of shape ``(n, m)``: one row per data
point, one column per labeling function (LF), ``-1`` (:data:`ABSTAIN`) where an
LF abstains, else a class index in ``0 .. cardinality-1``. A sparse triple
``(rows, cols, labels, n, m)`` (the stored Arrow/Parquet layout, abstains left
out) is accepted wherever ``L`` is.

The learned model
-----------------
Every (LF, value) pair that occurs is a *voter*: a unipolar LF is one voter, a
binary LF that emits both classes is two. Voter ``r`` emits class ``c_r``. The
model is a class-conditional generative model in which a voter fires with rate
``a_r`` on rows of its own class and with a single shared rate ``b_r`` on rows
of every other class (off-diagonal rates tied). Abstentions are *not* used as
evidence (see docs/label_model.md: on real LF sets, whose LFs are correlated
within a class, the abstention factors of a full Dawid-Skene model overcount
and cost 10+ accuracy points on TREC). The posterior is then::

    log P(y | L_i) = log pi_y + sum_{r fires on row i, c_r = y} w_r  + const
    w_r = logit(p_r) - logit(beta_{c_r})

with ``p_r = P(y = c_r | voter r fires)`` the voter's precision, ``beta`` the
class balance and ``pi`` the class prior (``beta`` unless given). This is a
weighted majority vote whose weights are the voter's precision odds over the
base rate. EM alternates the posterior above (E-step) with closed-form MAP
updates (M-step) of ``p_r`` under a Beta prior of mean ``prior_precision`` and
``prior_strength`` pseudo-votes ("LFs are better than random") and of ``beta``
under a symmetric Dirichlet prior. Labeled dev rows, when given, enter the
M-step as anchored rows whose posterior is their gold label.

Scale: rows are deduplicated (identical vote patterns are fitted once, with
counts), EM runs on at most ``max_fit_rows`` rows drawn uniformly with the fixed
seed (the model has one parameter per voter plus the class balance, so a few
hundred thousand rows pin it down), and prediction streams over row chunks
with one matrix-vector product per class; nothing of size ``n x m x k`` is
ever built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mothermodel.defaults import ABSTAIN, DEFAULT_SEED, resolve_device
from mothermodel.labeling.votes import tie_break as _tie_break
from mothermodel.labeling.votes import vote_counts as _vote_counts

__all__ = [
    "ABSTAIN",
    "DEFAULT_USE_DEV",
    "LabelModelConfig",
    "MajorityVoter",
    "LabelModel",
    "as_label_matrix",
]


#: Whether callers should pass labeled dev rows (``fit(L, L_dev=..., Y_dev=...)``)
#: by default. False: the default model is EM on the weak labels only. The
#: CV-tuned dev correction (``dev_mode='correct'``) won on WRENCH trec *valid*
#: cross-validation (0.628 vs 0.572) but lost on trec *test* (0.522 vs 0.648),
#: so it is opt-in; see docs/label_model.md.
DEFAULT_USE_DEV: bool = False

SparseTriple = Tuple[Any, Any, Any, int, int]
LabelMatrixLike = Union[np.ndarray, SparseTriple]


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _small_dtype(cardinality: int) -> np.dtype:
    return np.dtype(np.int8) if cardinality <= 127 else np.dtype(np.int16)


def as_label_matrix(L: LabelMatrixLike, cardinality: int) -> np.ndarray:
    """Return ``L`` as a validated dense ``(n, m)`` int8 (int16 if k > 127) array.

    Accepts a dense integer array or a sparse triple ``(rows, cols, labels, n,
    m)``. Values must be ``-1`` or a class index below ``cardinality``; an
    int8 input is returned without a copy.
    """
    if cardinality < 2:
        raise ValueError(f"cardinality must be >= 2, got {cardinality}")
    dt = _small_dtype(cardinality)
    if isinstance(L, tuple):
        if len(L) != 5:
            raise ValueError("sparse label matrix must be (rows, cols, labels, n, m)")
        rows, cols, labels, n, m = L
        rows = np.asarray(rows, dtype=np.int64).ravel()
        cols = np.asarray(cols, dtype=np.int64).ravel()
        labels = np.asarray(labels).ravel()
        if not (len(rows) == len(cols) == len(labels)):
            raise ValueError("sparse label matrix: rows, cols and labels differ in length")
        if len(rows) and (rows.min() < 0 or rows.max() >= n or cols.min() < 0 or cols.max() >= m):
            raise ValueError("sparse label matrix: a row or column index is out of range")
        _check_values(labels, cardinality)
        dense = np.full((int(n), int(m)), ABSTAIN, dtype=dt)
        dense[rows, cols] = labels.astype(dt)
        return dense
    if isinstance(L, torch.Tensor):
        L = L.detach().cpu().numpy()
    L = np.asarray(L)
    if L.ndim != 2:
        raise ValueError(f"label matrix must be 2-D (n rows x m LFs), got shape {L.shape}")
    if L.dtype.kind not in "iu":
        raise ValueError(f"label matrix must hold integers, got dtype {L.dtype}")
    _check_values(L, cardinality)
    if L.dtype == dt:
        return L
    return L.astype(dt)


def _check_values(a: np.ndarray, cardinality: int) -> None:
    if a.size == 0:
        return
    lo, hi = int(a.min()), int(a.max())
    if lo < ABSTAIN or hi >= cardinality:
        raise ValueError(
            f"label values must be -1 (abstain) or in 0..{cardinality - 1}, found range [{lo}, {hi}]"
        )


def _unique_rows(L: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``L`` and their counts.

    Rows are hashed to int64 with a random odd multiplier per column, the
    hashes deduplicated with ``np.unique``, and the result verified exactly
    (falls back to ``np.unique(axis=0)`` on a hash collision).
    """
    n, m = L.shape
    if n == 0:
        return L, np.zeros(0, dtype=np.int64)
    mult = np.random.default_rng(0x5EED).integers(1, 2**62, size=m, dtype=np.int64) | 1
    h = np.zeros(n, dtype=np.int64)
    with np.errstate(over="ignore"):
        for j in range(m):  # column loop: O(n) each, no (n, m) int64 temporary
            h = h * np.int64(1_000_003) + (L[:, j].astype(np.int64) + 2) * mult[j]
    _, first, inv, cnt = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    U = L[first]
    if not np.array_equal(U[inv.ravel()], L):
        U, cnt = np.unique(L, axis=0, return_counts=True)
    return U, cnt.astype(np.int64)


# --------------------------------------------------------------------------- #
# Majority vote
# --------------------------------------------------------------------------- #
class MajorityVoter:
    """Majority vote over non-abstaining LFs.

    ``predict_proba`` puts equal mass on all classes tied for the most votes;
    rows where every LF abstains get ``class_balance`` (uniform if None).
    Vectorized: one vote-count pass per class over row chunks.
    """

    def __init__(self, cardinality: int, class_balance: Optional[Sequence[float]] = None,
                 seed: int = DEFAULT_SEED, chunk_rows: int = 1 << 20) -> None:
        if cardinality < 2:
            raise ValueError(f"cardinality must be >= 2, got {cardinality}")
        self.cardinality = int(cardinality)
        self.seed = int(seed)
        self.chunk_rows = int(chunk_rows)
        if class_balance is None:
            self.class_balance = np.full(self.cardinality, 1.0 / self.cardinality)
        else:
            cb = np.asarray(class_balance, dtype=np.float64)
            if cb.shape != (self.cardinality,) or (cb < 0).any() or cb.sum() <= 0:
                raise ValueError("class_balance must be k non-negative numbers with a positive sum")
            self.class_balance = cb / cb.sum()

    def vote_counts(self, L: LabelMatrixLike) -> np.ndarray:
        """(n, k) int32 number of votes each class receives."""
        return _vote_counts(as_label_matrix(L, self.cardinality), self.cardinality, self.chunk_rows)

    def predict_proba(self, L: LabelMatrixLike) -> np.ndarray:
        C = self.vote_counts(L)
        top = C.max(axis=1, keepdims=True)
        P = (C == top).astype(np.float32)
        P /= P.sum(axis=1, keepdims=True)
        none = top[:, 0] == 0
        P[none] = self.class_balance.astype(np.float32)
        return P

    def predict(self, L: LabelMatrixLike, tie_break_seed: Optional[int] = None) -> np.ndarray:
        seed = self.seed if tie_break_seed is None else int(tie_break_seed)
        return _tie_break(self.predict_proba(L), seed)


# --------------------------------------------------------------------------- #
# Dev-gold correction (dev_mode='correct')
# --------------------------------------------------------------------------- #
def _fit_correction(Xd: torch.Tensor, yd: torch.Tensor, vc: torch.Tensor, w0: torch.Tensor,
                    lp0: torch.Tensor, k: int, lam: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on the dev rows, centred on the EM model.

    Scores: ``lp0 + db + Xd @ (C * (w0 + dw))`` (``C`` the voter -> class
    one-hot); minimises the summed cross-entropy ``+ lam/2 (|dw|^2 + |db|^2)``
    (convex; L-BFGS with a strong-Wolfe line search, float64). Returns
    ``(dw, db)``.
    """
    R = w0.numel()
    dw = torch.zeros(R, dtype=torch.float64, device=w0.device, requires_grad=True)
    db = torch.zeros(k, dtype=torch.float64, device=w0.device, requires_grad=True)
    if Xd.shape[0] == 0:
        return dw.detach(), db.detach()
    C = torch.zeros(R, k, dtype=torch.float64, device=w0.device)
    C[torch.arange(R, device=w0.device), vc] = 1.0
    opt = torch.optim.LBFGS([dw, db], lr=1.0, max_iter=200, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        S = lp0 + db + Xd @ (C * (w0 + dw)[:, None])
        loss = torch.nn.functional.cross_entropy(S, yd, reduction="sum") + 0.5 * lam * (
            dw.pow(2).sum() + db.pow(2).sum())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return dw.detach(), db.detach()


def _stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    off = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(len(idx)) + off) % n_folds
        off += len(idx)
    return [np.flatnonzero(fold == f) for f in range(n_folds)]


def _select_l2(Xd: torch.Tensor, yd: np.ndarray, vc: torch.Tensor, w0: torch.Tensor, lp0: torch.Tensor,
               k: int, cfg: "LabelModelConfig") -> Tuple[float, Optional[float]]:
    """Pick the correction strength from ``cfg.dev_l2_grid`` by stratified
    k-fold CV accuracy on the dev rows (seeded tie-break); ties keep the
    earlier (more conservative) value. Too few dev rows -> ``inf``."""
    n = len(yd)
    n_folds = min(cfg.dev_folds, n)
    if n_folds < 2:
        return math.inf, None
    folds = _stratified_folds(yd, n_folds, cfg.seed)
    R = w0.numel()
    C = torch.zeros(R, k, dtype=torch.float64, device=w0.device)
    C[torch.arange(R, device=w0.device), vc] = 1.0
    y_t = torch.from_numpy(yd).to(w0.device)
    best, best_acc = math.inf, -1.0
    for lam in cfg.dev_l2_grid:
        hits = 0
        for te in folds:
            if len(te) == 0:
                continue
            tr = np.setdiff1d(np.arange(n), te)
            te_t, tr_t = torch.from_numpy(te).to(w0.device), torch.from_numpy(tr).to(w0.device)
            if math.isinf(lam):
                dw, db = torch.zeros_like(w0), torch.zeros_like(lp0)
            else:
                dw, db = _fit_correction(Xd[tr_t], y_t[tr_t], vc, w0, lp0, k, lam)
            S = lp0 + db + Xd[te_t] @ (C * (w0 + dw)[:, None])
            pred = _tie_break(torch.softmax(S, dim=1).cpu().numpy(), cfg.seed)
            hits += int((pred == yd[te]).sum())
        a = hits / n
        if a > best_acc + 1e-12:
            best, best_acc = lam, a
    return best, best_acc


# --------------------------------------------------------------------------- #
# Learned label model
# --------------------------------------------------------------------------- #
def check_em_settings(cfg) -> None:
    """Checks shared by every EM config here (flat and hierarchical label models)."""
    if cfg.epochs < 1:
        raise ValueError("epochs must be >= 1")
    if cfg.tol < 0:
        raise ValueError("tol must be >= 0")
    if not 0.0 < cfg.prior_precision < 1.0:
        raise ValueError("prior_precision must be in (0, 1)")
    if cfg.prior_strength < 0:
        raise ValueError("prior_strength must be >= 0")
    if cfg.balance_prior <= 0:
        raise ValueError("balance_prior must be > 0")


@dataclass
class LabelModelConfig:
    """Settings of :class:`LabelModel` (defaults chosen on WRENCH *valid* splits).

    Attributes:
        epochs: maximum number of EM iterations.
        tol: EM stops when no voter weight (log-odds) and no class-prior
            log-probability moves by more than ``tol`` in one iteration.
        prior_precision: mean of the Beta prior on each voter's precision
            P(y = voted class | voter fires); encodes "LFs are better than
            random". In (0, 1).
        prior_strength: pseudo-votes behind that prior. Large values keep
            rarely firing LFs near ``prior_precision``; LFs that fire
            thousands of times are ruled by their data. >= 0.
        class_balance: class prior P(y). ``None`` estimates it by EM (or from
            ``Y_dev`` when dev labels are given and ``balance_from_dev``).
        balance_prior: symmetric Dirichlet pseudo-count per class when the
            class balance is estimated. > 0.
        dev_mode: what ``fit`` does with labeled dev rows (``L_dev``,
            ``Y_dev``; not passed by default, see :data:`DEFAULT_USE_DEV`).
            ``'anchor'`` (default): dev rows enter the EM M-step with their
            gold label as a fixed posterior (``dev_weight``). ``'correct'``
            (opt-in; uses dev gold as a semi-supervised signal): EM runs on the weak labels only, then a discriminative correction
            is fitted on the dev rows -- multinomial logistic regression on the
            voter one-hot features whose weights and class biases have an L2
            prior (strength ``lambda``) centred on the EM solution; ``lambda``
            is chosen from ``dev_l2_grid`` by stratified ``dev_folds``-fold
            cross-validation on the dev rows (``inf`` = keep EM unchanged; ties
            keep the larger ``lambda``). ``'ignore'``: dev gold is not used.
        dev_l2_grid: candidate L2 strengths of the correction, in pseudo-rows
            (``math.inf`` = no correction), most conservative first.
        dev_folds: folds of the cross-validation that picks ``lambda``.
        dev_weight: weight of each labeled dev row in the EM M-step
            (``dev_mode='anchor'`` only); 0 ignores dev gold entirely.
        balance_from_dev: when dev labels are given and ``class_balance`` is
            None, fix the class prior to the (smoothed) dev class frequencies.
        max_fit_rows: EM runs on at most this many rows, drawn uniformly at
            random with ``seed`` (``None``: all rows). Prediction always covers
            every row.
        chunk_rows: rows per block when predicting; ``None`` picks about 2M
            label-matrix cells per block (cache-sized: 2x faster than large
            blocks on CPU) and bounds working memory.
        seed: seed of the row sample and of the default tie-break.
        device: 'auto' (CUDA when available), 'cpu' or 'cuda[:i]'.
    """

    epochs: int = 200
    tol: float = 1e-4
    prior_precision: float = 0.9
    prior_strength: float = 100.0
    class_balance: Optional[Sequence[float]] = None
    balance_prior: float = 1.0
    dev_mode: str = "anchor"
    dev_l2_grid: Sequence[float] = (math.inf, 100.0, 30.0, 10.0, 3.0, 1.0)
    dev_folds: int = 5
    dev_weight: float = 1.0
    balance_from_dev: bool = False
    max_fit_rows: Optional[int] = 250_000
    chunk_rows: Optional[int] = None
    seed: int = DEFAULT_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        check_em_settings(self)
        if self.dev_mode not in ("correct", "anchor", "ignore"):
            raise ValueError("dev_mode must be 'correct', 'anchor' or 'ignore'")
        self.dev_l2_grid = tuple(math.inf if g is None else float(g) for g in self.dev_l2_grid)
        if not self.dev_l2_grid or any(not g > 0 for g in self.dev_l2_grid):
            raise ValueError("dev_l2_grid must hold positive numbers (math.inf = no correction)")
        if self.dev_folds < 2:
            raise ValueError("dev_folds must be >= 2")
        if self.dev_weight < 0:
            raise ValueError("dev_weight must be >= 0")
        if self.max_fit_rows is not None and self.max_fit_rows < 1:
            raise ValueError("max_fit_rows must be >= 1 or None")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        resolve_device(self.device)


class LabelModel:
    """Learned label model (precision-weighted class-conditional EM, torch).

    >>> lm = LabelModel(cardinality=2).fit(L_train)
    >>> probs = lm.predict_proba(L_test)          # float32 (n, k)
    >>> preds = lm.predict(L_test)                # ties broken with the seed

    Fitted attributes: ``class_balance_`` (k,), ``precision_`` and ``weights_``
    (m, k; NaN / 0 where an LF never emits that class), ``n_iter_``,
    ``converged_``, ``n_fit_rows_``, ``n_patterns_``.
    """

    def __init__(self, cardinality: int = 2, config: Optional[LabelModelConfig] = None) -> None:
        if cardinality < 2:
            raise ValueError(f"cardinality must be >= 2, got {cardinality}")
        self.cardinality = int(cardinality)
        self.config = config if config is not None else LabelModelConfig()
        if self.config.class_balance is not None:
            cb = np.asarray(self.config.class_balance, dtype=np.float64)
            if cb.shape != (self.cardinality,) or (cb <= 0).any():
                raise ValueError("class_balance must be k positive numbers")
        self._fitted = False

    # ------------------------------------------------------------------ fit
    def fit(self, L: LabelMatrixLike, L_dev: Optional[LabelMatrixLike] = None,
            Y_dev: Optional[Sequence[int]] = None) -> "LabelModel":
        """Fit on the weak labels ``L``; optional labeled dev rows anchor EM."""
        cfg, k = self.config, self.cardinality
        dev = resolve_device(cfg.device)
        L = as_label_matrix(L, k)
        n, m = L.shape
        if n == 0 or m == 0:
            raise ValueError(f"cannot fit on an empty label matrix of shape {L.shape}")
        if (L_dev is None) != (Y_dev is None):
            raise ValueError("give both L_dev and Y_dev, or neither")
        U, cnt = _unique_rows(self._fit_rows(L))
        d = self._design(U, cnt, dev)
        anchors = self._dev_anchors(L_dev, Y_dev, d, m, dev)
        w, p, beta, log_prior, it, converged = self._em(d, anchors, self._fixed_prior(anchors["balance"]), dev)
        w, log_prior = self._dev_correction(anchors, d, w, log_prior, m, dev)
        self._keep_state(d, w, p, beta, log_prior, m, it, converged, U)
        return self

    def _fit_rows(self, L: np.ndarray) -> np.ndarray:
        """The rows EM sees: all, or a seeded sample of `max_fit_rows`."""
        cfg = self.config
        if cfg.max_fit_rows is not None and L.shape[0] > cfg.max_fit_rows:
            rng = np.random.default_rng(cfg.seed)
            return L[np.sort(rng.choice(L.shape[0], size=cfg.max_fit_rows, replace=False))]
        return L

    def _design(self, U: np.ndarray, cnt: np.ndarray, dev) -> dict[str, Any]:
        """Voters ((LF j, class v) pairs that occur in the fitted rows) and the (patterns x voters)
        0/1 design matrix over distinct vote patterns (unique patterns keep it small)."""
        k = self.cardinality
        Ut = torch.from_numpy(np.ascontiguousarray(U)).to(dev)
        cnt_t = torch.from_numpy(cnt).to(dev, torch.float32)
        fires = torch.stack([(Ut == v).to(torch.float32).T @ cnt_t for v in range(k)], dim=1)  # (m, k)
        vj, vc = torch.nonzero(fires > 0, as_tuple=True)
        R = int(vj.numel())
        self._voter_lf, self._voter_class = vj.cpu().numpy(), vc.cpu().numpy()
        X = (Ut[:, vj] == vc.to(Ut.dtype)[None, :]).to(torch.float32)
        del Ut
        C = torch.zeros(R, k, device=dev)
        C[torch.arange(R, device=dev), vc] = 1.0
        return {"X": X, "C": C, "F": cnt_t @ X, "cnt": cnt_t, "vj": vj, "vc": vc, "R": R,
                "n_fit": int(cnt.sum())}

    def _dev_anchors(self, L_dev, Y_dev, d: dict[str, Any], m: int, dev) -> dict[str, Any]:
        """Dev anchors: gold posteriors, constant through EM (zeros without dev labels)."""
        cfg, k, R = self.config, self.cardinality, d["R"]
        out: dict[str, Any] = {"S": torch.zeros(R, device=dev), "F": torch.zeros(R, device=dev),
                               "N": torch.zeros(k, device=dev), "balance": None, "L": None, "y": None}
        if L_dev is None:
            return out
        Ld = as_label_matrix(L_dev, k)
        yd = np.asarray(Y_dev, dtype=np.int64).ravel()
        if Ld.shape[1] != m or len(yd) != Ld.shape[0]:
            raise ValueError("L_dev must have the same LFs as L and one gold label per row")
        if len(yd) and (yd.min() < 0 or yd.max() >= k):
            raise ValueError(f"Y_dev values must be in 0..{k - 1}")
        out["L"], out["y"] = Ld, yd
        counts = np.bincount(yd, minlength=k).astype(np.float64)
        out["balance"] = (counts + cfg.balance_prior) / (counts.sum() + k * cfg.balance_prior)
        if cfg.dev_mode == "anchor" and cfg.dev_weight > 0 and len(yd):
            vj, vc, C = d["vj"], d["vc"], d["C"]
            Ldt = torch.from_numpy(np.ascontiguousarray(Ld)).to(dev)
            Xd = (Ldt[:, vj] == vc.to(Ldt.dtype)[None, :]).to(torch.float32)
            Yd = torch.nn.functional.one_hot(torch.from_numpy(yd).to(dev), k).to(torch.float32)
            wt = float(cfg.dev_weight)
            out["F"] = wt * Xd.sum(0)
            out["S"] = wt * ((Xd.T @ Yd) * C).sum(1)
            out["N"] = wt * Yd.sum(0)
        return out

    def _fixed_prior(self, dev_balance) -> Optional[np.ndarray]:
        """A class prior held fixed through EM: the configured one, or the dev split's balance."""
        cfg = self.config
        if cfg.class_balance is not None:
            cb = np.asarray(cfg.class_balance, dtype=np.float64)
            return cb / cb.sum()
        if cfg.balance_from_dev and dev_balance is not None and cfg.dev_mode != "ignore":
            return dev_balance
        return None

    def _em(self, d: dict[str, Any], anchors: dict[str, Any], fixed_prior, dev):
        """Precision-weighted class-conditional EM from majority-vote posteriors; closed-form MAP M-step."""
        cfg, k = self.config, self.cardinality
        X, C, F, cnt_t, vc, R = d["X"], d["C"], d["F"], d["cnt"], d["vc"], d["R"]
        n_dev = float(anchors["N"].sum())
        # Initial posteriors: majority vote (ties split evenly, uncovered rows uniform).
        votes = X @ C
        Q = (votes == votes.max(dim=1, keepdim=True).values).to(torch.float32)
        Q /= Q.sum(dim=1, keepdim=True)
        a0 = cfg.prior_strength * cfg.prior_precision
        F_all = F + anchors["F"] + cfg.prior_strength
        eps = 1e-6
        prev_w = prev_lp = None
        converged = False
        it = 0
        for it in range(1, cfg.epochs + 1):
            # M-step (closed form MAP).
            Qc = Q * cnt_t[:, None]
            N = Qc.sum(0) + anchors["N"]
            S = ((X.T @ Qc) * C).sum(1) + anchors["S"]
            p = ((S + a0) / F_all).clamp(eps, 1 - eps)
            beta = (N + cfg.balance_prior) / (d["n_fit"] + n_dev + k * cfg.balance_prior)
            bc = beta[vc]
            w = torch.log(p) - torch.log1p(-p) - torch.log(bc) + torch.log1p(-bc)
            log_prior = torch.log(beta) if fixed_prior is None else torch.log(
                torch.as_tensor(fixed_prior, device=dev, dtype=torch.float32))
            # E-step.
            Q = torch.softmax(log_prior[None, :] + X @ (C * w[:, None]), dim=1)
            if prev_w is not None:
                delta = max(float((w - prev_w).abs().max()) if R else 0.0,
                            float((log_prior - prev_lp).abs().max()))
                if delta <= cfg.tol:
                    converged = True
                    break
            prev_w, prev_lp = w, log_prior
        return w, p, beta, log_prior, it, converged

    def _dev_correction(self, anchors: dict[str, Any], d: dict[str, Any], w, log_prior, m: int, dev):
        """Discriminative correction of the EM weights on dev gold (dev_mode='correct')."""
        cfg, k = self.config, self.cardinality
        self.weights_em_ = None
        self.dev_lambda_ = None
        self.dev_cv_accuracy_ = None
        Ld, yd = anchors["L"], anchors["y"]
        if Ld is None or cfg.dev_mode != "correct" or not len(yd):
            return w, log_prior
        vj, vc = d["vj"], d["vc"]
        Ldt = torch.from_numpy(np.ascontiguousarray(Ld)).to(dev)
        Xd64 = (Ldt[:, vj] == vc.to(Ldt.dtype)[None, :]).to(torch.float64)
        w64, lp64 = w.to(torch.float64), log_prior.to(torch.float64)
        lam, cv_acc = _select_l2(Xd64, yd, vc, w64, lp64, k, cfg)
        self.dev_lambda_, self.dev_cv_accuracy_ = lam, cv_acc
        if math.isfinite(lam):
            self.weights_em_ = np.zeros((m, k), dtype=np.float32)
            self.weights_em_[self._voter_lf, self._voter_class] = w.cpu().numpy()
            dw, db = _fit_correction(Xd64, torch.from_numpy(yd).to(dev), vc, w64, lp64, k, lam)
            w = (w64 + dw).to(torch.float32)
            log_prior = torch.log_softmax(lp64 + db, dim=0).to(torch.float32)
        return w, log_prior

    def _keep_state(self, d: dict[str, Any], w, p, beta, log_prior, m: int, it: int, converged: bool,
                    U: np.ndarray) -> None:
        """The fitted state, kept on CPU as numpy (small)."""
        k = self.cardinality
        W = np.zeros((m, k), dtype=np.float32)
        Pm = np.full((m, k), np.nan, dtype=np.float64)
        Fm = np.zeros((m, k), dtype=np.float64)
        W[self._voter_lf, self._voter_class] = w.cpu().numpy()
        Pm[self._voter_lf, self._voter_class] = p.cpu().double().numpy()
        Fm[self._voter_lf, self._voter_class] = d["F"].cpu().double().numpy()
        self.weights_ = W
        self.precision_ = Pm
        self._fires = Fm
        self.class_balance_ = beta.cpu().double().numpy()
        self.class_prior_ = np.exp(log_prior.cpu().double().numpy())
        self.class_prior_ /= self.class_prior_.sum()
        self.n_iter_ = it
        self.converged_ = converged
        self.n_fit_rows_ = d["n_fit"]
        self.n_patterns_ = int(U.shape[0])
        self.n_lfs_ = m
        self._fitted = True

    # -------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("LabelModel is not fitted: call fit() first")

    def predict_proba(self, L: LabelMatrixLike) -> np.ndarray:
        """(n, k) float32 posterior class probabilities, one row per data point."""
        self._check_fitted()
        cfg, k = self.config, self.cardinality
        L = as_label_matrix(L, k)
        n, m = L.shape
        if m != self.n_lfs_:
            raise ValueError(f"label matrix has {m} LFs, the model was fitted on {self.n_lfs_}")
        dev = resolve_device(cfg.device)
        W = torch.from_numpy(self.weights_).to(dev)
        lp = torch.from_numpy(np.log(self.class_prior_)).to(dev, torch.float32)
        classes = [c for c in range(k) if bool((W[:, c] != 0).any())]
        out = np.empty((n, k), dtype=np.float32)
        step = cfg.chunk_rows or max(8192, min(1 << 16, (1 << 21) // max(m, 1)))
        for s in range(0, n, step):
            blk = torch.from_numpy(L[s:s + step]).to(dev)
            scores = lp.expand(blk.shape[0], k).clone()
            for c in classes:  # one mat-vec per class: score_c += [L == c] @ w[:, c]
                scores[:, c] += (blk == c).to(torch.float32) @ W[:, c]
            out[s:s + blk.shape[0]] = torch.softmax(scores, dim=1).cpu().numpy()
        return out

    def predict(self, L: LabelMatrixLike, tie_break_seed: Optional[int] = None) -> np.ndarray:
        """Hard labels for every row; ties broken at random with a fixed seed
        (``config.seed`` unless ``tie_break_seed`` is given)."""
        seed = self.config.seed if tie_break_seed is None else int(tie_break_seed)
        return _tie_break(self.predict_proba(L), seed)

    # ------------------------------------------------------------ analysis
    def lf_accuracies(self) -> np.ndarray:
        """(m,) estimated accuracy of each LF, P(vote correct | LF votes): the
        fire-weighted mean precision of its voters (NaN for LFs that never vote)."""
        self._check_fitted()
        Pm = np.nan_to_num(self.precision_, nan=0.0)
        tot = self._fires.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = (Pm * self._fires).sum(axis=1) / tot
        acc[tot == 0] = np.nan
        return acc

    def to_dict(self) -> dict:
        """JSON-serialisable fitted state (for versioning beside the labels)."""
        self._check_fitted()
        cfg = asdict(self.config)
        cfg["dev_l2_grid"] = [None if math.isinf(g) else g for g in cfg["dev_l2_grid"]]
        if cfg["class_balance"] is not None:
            cfg["class_balance"] = [float(x) for x in cfg["class_balance"]]
        return {
            "cardinality": self.cardinality,
            "config": cfg,
            "weights": self.weights_.tolist(),
            "precision": [[None if math.isnan(x) else x for x in row] for row in self.precision_.tolist()],
            "fires": self._fires.tolist(),
            "class_balance": self.class_balance_.tolist(),
            "class_prior": self.class_prior_.tolist(),
            "n_iter": self.n_iter_,
            "converged": self.converged_,
            "n_fit_rows": self.n_fit_rows_,
            "n_patterns": self.n_patterns_,
            "dev_lambda": (None if self.dev_lambda_ is None or math.isinf(self.dev_lambda_)
                           else self.dev_lambda_),
            "dev_cv_accuracy": self.dev_cv_accuracy_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LabelModel":
        lm = cls(d["cardinality"], LabelModelConfig(**d["config"]))
        lm.weights_ = np.asarray(d["weights"], dtype=np.float32)
        lm.precision_ = np.asarray([[np.nan if x is None else x for x in row] for row in d["precision"]],
                                   dtype=np.float64)
        lm._fires = np.asarray(d["fires"], dtype=np.float64)
        lm.class_balance_ = np.asarray(d["class_balance"], dtype=np.float64)
        lm.class_prior_ = np.asarray(d["class_prior"], dtype=np.float64)
        lm.n_iter_, lm.converged_ = d["n_iter"], d["converged"]
        lm.n_fit_rows_, lm.n_patterns_ = d["n_fit_rows"], d["n_patterns"]
        lm.n_lfs_ = lm.weights_.shape[0]
        lm.dev_lambda_ = d.get("dev_lambda")
        lm.dev_cv_accuracy_ = d.get("dev_cv_accuracy")
        lm.weights_em_ = None
        lm._fitted = True
        return lm
