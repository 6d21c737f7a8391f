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
binary LF that emits both classes is two. Voter ``r`` emits class ``c_r`` and
fires with rate ``a_r`` on rows of its own class and one shared rate ``b_r`` on
rows of every other class (off-diagonal rates tied). The posterior of a row is
a weighted vote with a class prior and a *silence* term::

    log P(y | L_i) = log pi_y + sum_{r fires on row i, c_r = y} g_r w_r
                     + sum_{classes c no voter of which fires on row i} h_c(y) + const
    w_r = log(a_r / b_r) = logit(p_r) - logit(beta_{c_r})

with ``p_r = P(y = c_r | voter r fires)`` the voter's precision and ``beta``
the class balance. Four things keep it at least as good as a majority vote
where the votes cannot pin its parameters down (docs/label_model.md has the
regimes that motivated each):

1. **Shrinkage by evidence.** A voter's accuracy is only identifiable from the
   rows where it fires together with *other* LFs (on a row where it fires alone
   EM just hands its own weight back to it). Its weight is shrunk toward one
   shared weight by that evidence: ``w_r = (E_r w_r^own + s w_bar) / (E_r +
   s)``, ``E_r`` its overlapping rows, ``s = shrink_strength``. Sparse LFs fall
   back to a vote with equal weights whose ties the class prior breaks. It is a
   fallback for LF sets whose accuracies the votes cannot identify, so it is on
   only when the median LF has fewer than ``shrink_median_overlaps`` overlapping
   rows: on WRENCH trec (median 40+) even mild shrinkage cost 0.6 point with the
   text view.
2. **Silence by class.** Abstentions are evidence only per class: ``h_c(y)`` is
   the log-probability that *no* LF of class ``c`` fires given ``y`` (two rates
   per class: ``y = c`` and ``y != c``). One factor per class, not one per LF,
   so a class's correlated LFs are not counted once each; it is what tells an
   uncovered row's class when one class's LFs cover more rows than another's.
3. **Near-duplicate LFs.** Voters of one class that fire together more often
   than any pair of conditionally independent LFs could (given their coverage
   and the class balance) are grouped; a group's votes count as one
   (``g_r = 1 / group size``) and overlaps inside a group are no evidence.
4. A Beta prior on each precision (mean ``prior_precision``, ``prior_strength``
   pseudo-votes: "LFs are better than random").
5. **No overruled unanimity.** Where one class's LFs are much weaker than
   another's and break the independence assumption, EM's class balance can
   drift until the model overrules rows on which every vote agrees; past
   ``overrule_limit`` of those rows EM is refitted with the class balance fixed
   at the majority vote's class shares.

EM alternates the posterior above (E-step) with closed-form updates (M-step).
Labeled dev rows, when given, enter the M-step as anchored rows whose posterior
is their gold label.

Scale: rows are deduplicated (identical vote patterns are fitted once, with
counts), EM runs on at most ``max_fit_rows`` rows drawn uniformly with the fixed
seed (the model has a few parameters per voter plus the class balance, so a few
hundred thousand rows pin it down), every pass over the patterns streams
blocks of 0/1 vote indicators (:class:`_Design`: one pass for everything that
needs no weights, then one per EM iteration), and prediction streams over row
blocks the same way; no float matrix of size ``n x m x k`` is ever built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from mothermodel.defaults import ABSTAIN, DEFAULT_SEED, resolve_device
from mothermodel.labeling.dependencies import duplicate_units, lf_groups, near_duplicate_groups
from mothermodel.labeling.votes import tie_break, unique_rows, vote_counts

__all__ = [
    "ABSTAIN",
    "DEFAULT_USE_DEV",
    "LabelModelConfig",
    "MajorityVoter",
    "LabelModel",
    "as_label_matrix",
    "check_em_settings",
    "near_duplicate_groups",
    "stratified_folds",
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
        return vote_counts(as_label_matrix(L, self.cardinality), self.cardinality, self.chunk_rows)

    def predict_proba(self, L: LabelMatrixLike) -> np.ndarray:
        C = self.vote_counts(L)
        top = C.max(axis=1, keepdims=True)
        P = (C == top).astype(np.float32)
        P /= P.sum(axis=1, keepdims=True)
        none = top[:, 0] == 0
        P[none] = self.class_balance.astype(np.float32)
        return P

    def predict(self, L: LabelMatrixLike, tie_break_seed: Optional[int] = None,
                row_ids: Optional[np.ndarray] = None) -> np.ndarray:
        """Hard labels; ties drawn per row from ``(seed, row id)`` (ids default to ``0 .. n-1``)."""
        seed = self.seed if tie_break_seed is None else int(tie_break_seed)
        return tie_break(self.predict_proba(L), seed, row_ids=row_ids)


# --------------------------------------------------------------------------- #
# Dev-gold correction (dev_mode='correct')
# --------------------------------------------------------------------------- #
def _fit_correction(Xd: torch.Tensor, yd: torch.Tensor, vc: torch.Tensor, base: torch.Tensor,
                    k: int, lam: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on the dev rows, centred on the EM model.

    Scores: ``base + db + Xd @ (C * dw)`` (``base`` the EM model's scores of the
    dev rows, ``C`` the voter -> class one-hot); minimises the summed
    cross-entropy ``+ lam/2 (|dw|^2 + |db|^2)`` (convex; L-BFGS with a
    strong-Wolfe line search, float64). Returns ``(dw, db)``.
    """
    R = vc.numel()
    dw = torch.zeros(R, dtype=torch.float64, device=base.device, requires_grad=True)
    db = torch.zeros(k, dtype=torch.float64, device=base.device, requires_grad=True)
    if Xd.shape[0] == 0:
        return dw.detach(), db.detach()
    C = torch.zeros(R, k, dtype=torch.float64, device=base.device)
    C[torch.arange(R, device=base.device), vc] = 1.0
    opt = torch.optim.LBFGS([dw, db], lr=1.0, max_iter=200, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        S = base + db + Xd @ (C * dw[:, None])
        loss = torch.nn.functional.cross_entropy(S, yd, reduction="sum") + 0.5 * lam * (
            dw.pow(2).sum() + db.pow(2).sum())
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return dw.detach(), db.detach()


def stratified_folds(y: np.ndarray, n_folds: int, seed: int) -> List[np.ndarray]:
    """Row indices of ``n_folds`` folds with each class spread evenly over them (seeded)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    off = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(len(idx)) + off) % n_folds
        off += len(idx)
    return [np.flatnonzero(fold == f) for f in range(n_folds)]


def _select_l2(Xd: torch.Tensor, yd: np.ndarray, vc: torch.Tensor, base: torch.Tensor,
               k: int, cfg: "LabelModelConfig") -> Tuple[float, Optional[float]]:
    """Pick the correction strength from ``cfg.dev_l2_grid`` by stratified
    k-fold CV accuracy on the dev rows (seeded tie-break); ties keep the
    earlier (more conservative) value. Too few dev rows -> ``inf``."""
    n = len(yd)
    n_folds = min(cfg.dev_folds, n)
    if n_folds < 2:
        return math.inf, None
    folds = stratified_folds(yd, n_folds, cfg.seed)
    R = vc.numel()
    C = torch.zeros(R, k, dtype=torch.float64, device=base.device)
    C[torch.arange(R, device=base.device), vc] = 1.0
    y_t = torch.from_numpy(yd).to(base.device)
    best, best_acc = math.inf, -1.0
    for lam in cfg.dev_l2_grid:
        hits = 0
        for te in folds:
            if len(te) == 0:
                continue
            tr = np.setdiff1d(np.arange(n), te)
            te_t, tr_t = torch.from_numpy(te).to(base.device), torch.from_numpy(tr).to(base.device)
            if math.isinf(lam):
                dw, db = torch.zeros(R, dtype=torch.float64, device=base.device), torch.zeros(
                    k, dtype=torch.float64, device=base.device)
            else:
                dw, db = _fit_correction(Xd[tr_t], y_t[tr_t], vc, base[tr_t], k, lam)
            S = base[te_t] + db + Xd[te_t] @ (C * dw[:, None])
            pred = tie_break(torch.softmax(S, dim=1).cpu().numpy(), cfg.seed, row_ids=te)
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
    """Settings of :class:`LabelModel` (defaults chosen on WRENCH *valid* splits and the
    synthetic regimes of bench/regimes.py; docs/label_model.md).

    Attributes:
        epochs: maximum number of EM iterations.
        tol: EM stops when no voter weight (log-odds), silence term and no
            class-prior log-probability moves by more than ``tol`` in one iteration.
        prior_precision: mean of the Beta prior on each voter's precision
            P(y = voted class | voter fires); encodes "LFs are better than
            random". In (0, 1).
        prior_strength: pseudo-votes behind that prior. >= 0.
        shrink_strength: pseudo overlapping rows behind the shared weight: a
            voter's log-odds weight is ``(E w_own + s w_shared) / (E + s)``
            with ``E`` the rows where it fires together with another LF (not a
            near-duplicate of it). 0: no shrinkage. >= 0.
        shrink_median_overlaps: shrinkage applies only when the median voter has
            fewer overlapping rows than this (the regime where accuracies are not
            identifiable; `label analyze` warns at the same threshold). 0: never; inf: always.
        abstain_evidence: ``'class'`` (default): per class, "no LF of this
            class fired" is evidence (one factor per class, two rates each).
            ``'none'``: abstentions are ignored.
        near_duplicates: detect groups of near-duplicate LFs and count each
            group's votes once (:func:`near_duplicate_groups`).
        duplicate_min_cofire: two voters are near-duplicates only if each fires
            on at least this share of the other's rows ...
        duplicate_margin: ... and that share is this much above the most that
            two LFs independent given the class could reach.
        class_balance: class prior P(y). ``None`` estimates it by EM (or from
            ``Y_dev`` when dev labels are given and ``balance_from_dev``).
        balance_prior: symmetric Dirichlet pseudo-count per class when the
            class balance is estimated. > 0.
        dev_mode: what ``fit`` does with labeled dev rows (``L_dev``,
            ``Y_dev``; not passed by default, see :data:`DEFAULT_USE_DEV`).
            ``'anchor'`` (default): dev rows enter the EM M-step with their
            gold label as a fixed posterior (``dev_weight``). ``'correct'``
            (opt-in; uses dev gold as a semi-supervised signal): EM runs on
            the weak labels only, then a discriminative correction is fitted
            on the dev rows -- multinomial logistic regression on the voter
            one-hot features whose weights and class biases have an L2 prior
            (strength ``lambda``) centred on the EM solution; ``lambda`` is
            chosen from ``dev_l2_grid`` by stratified ``dev_folds``-fold
            cross-validation on the dev rows (``inf`` = keep EM unchanged;
            ties keep the larger ``lambda``). ``'ignore'``: dev gold is not used.
        dev_l2_grid: candidate L2 strengths of the correction, in pseudo-rows
            (``math.inf`` = no correction), most conservative first.
        dev_folds: folds of the cross-validation that picks ``lambda``.
        dev_weight: weight of each labeled dev row in the EM M-step
            (``dev_mode='anchor'`` only); 0 ignores dev gold entirely.
        balance_from_dev: when dev labels are given and ``class_balance`` is
            None, fix the class prior to the (smoothed) dev class frequencies.
        overrule_limit: a label model that trusts its LFs never overrules a unanimous row
            (every vote on it for one class); EM's class balance can drift where the LFs break
            its independence assumption (one class's LFs much weaker than the other's) until
            it does. When the fitted model overrules more than this share of the unanimous
            fitted rows, EM is run again with the class balance fixed at the majority vote's
            class shares (``balance_fallback_``; ``overruled_`` is the share). Not applied
            when ``class_balance`` is given or taken from dev. 1.0: never. In [0, 1].
        max_fit_rows: EM runs on at most this many rows, drawn uniformly at
            random with ``seed`` (``None``: all rows). Prediction always covers
            every row.
        chunk_rows: rows per block when predicting; ``None`` picks about 512k
            vote-indicator cells per block on CPU (cache-sized: 2x faster than
            large blocks) and 16M on a GPU; either bounds working memory.
        seed: seed of the row sample and of the default tie-break.
        device: 'auto' (CUDA when available), 'cpu' or 'cuda[:i]'.
    """

    epochs: int = 200
    tol: float = 1e-4
    prior_precision: float = 0.9
    prior_strength: float = 100.0
    shrink_strength: float = 20.0
    shrink_median_overlaps: float = 20.0
    abstain_evidence: str = "none"
    uncovered: str = "uniform"
    near_duplicates: bool = True
    duplicate_min_cofire: float = 0.5
    duplicate_margin: float = 0.2
    class_balance: Optional[Sequence[float]] = None
    balance_prior: float = 1.0
    dev_mode: str = "anchor"
    dev_l2_grid: Sequence[float] = (math.inf, 100.0, 30.0, 10.0, 3.0, 1.0)
    dev_folds: int = 5
    dev_weight: float = 1.0
    balance_from_dev: bool = False
    overrule_limit: float = 0.05
    max_fit_rows: Optional[int] = 250_000
    chunk_rows: Optional[int] = None
    seed: int = DEFAULT_SEED
    device: str = "auto"

    def __post_init__(self) -> None:
        check_em_settings(self)
        if self.shrink_strength < 0 or self.shrink_median_overlaps < 0:
            raise ValueError("shrink_strength and shrink_median_overlaps must be >= 0")
        if self.abstain_evidence not in ("class", "none"):
            raise ValueError("abstain_evidence must be 'class' or 'none'")
        if self.uncovered not in ("uniform", "model"):
            raise ValueError("uncovered must be 'uniform' or 'model'")
        if not 0.0 < self.duplicate_min_cofire <= 1.0 or self.duplicate_margin < 0:
            raise ValueError("duplicate_min_cofire must be in (0, 1] and duplicate_margin >= 0")
        if self.dev_mode not in ("correct", "anchor", "ignore"):
            raise ValueError("dev_mode must be 'correct', 'anchor' or 'ignore'")
        self.dev_l2_grid = tuple(math.inf if g is None else float(g) for g in self.dev_l2_grid)
        if not self.dev_l2_grid or any(not g > 0 for g in self.dev_l2_grid):
            raise ValueError("dev_l2_grid must hold positive numbers (math.inf = no correction)")
        if self.dev_folds < 2:
            raise ValueError("dev_folds must be >= 2")
        if self.dev_weight < 0:
            raise ValueError("dev_weight must be >= 0")
        if not 0.0 <= self.overrule_limit <= 1.0:
            raise ValueError("overrule_limit must be in [0, 1]")
        if self.max_fit_rows is not None and self.max_fit_rows < 1:
            raise ValueError("max_fit_rows must be >= 1 or None")
        if self.chunk_rows is not None and self.chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        resolve_device(self.device)


@dataclass
class _Design:
    """The fitted rows as distinct vote patterns, and the voters that fire in them.

    No float matrix of size (patterns x voters) is stored: every pass over the
    patterns (:meth:`blocks`) casts one block at a time of the (patterns x LFs*k)
    0/1 vote indicators to float32. The indicators are kept as bool (one byte a
    cell) when they fit ``CACHE_CELLS``, else rebuilt per block from the int8
    patterns. On 1M distinct rows x 50 LFs a stored float32 voter matrix was
    400 MB and the near-duplicate test's float64 copy of it 800 MB more.
    """

    U: np.ndarray            # (P, m) distinct vote patterns
    cnt: torch.Tensor        # (P,) rows per pattern
    n_fit: int
    lf: np.ndarray           # (R,) each voter's LF
    cls: np.ndarray          # (R,) each voter's class
    C: torch.Tensor          # (R, k) voter -> class one-hot
    Cs: torch.Tensor         # (R, k) one-hot of the voters whose silence counts (unipolar LFs' voters)
    F: torch.Tensor          # (R,) rows each voter fires on
    step: int                # patterns per block
    cached: Optional[torch.Tensor] = None  # (P, k*m) bool vote indicators, when small enough

    def blocks(self):
        """Per block of patterns: its counts and its (b, k*m) float32 :func:`vote_indicators`."""
        device, k = self.cnt.device, self.C.shape[1]
        P, m = self.U.shape
        if self.cached is None and P * m * k <= CACHE_CELLS:
            if device.type == "cpu":  # filled in place: no concatenated copy
                bits = np.empty((P, k * m), dtype=bool)
                for s in range(0, P, self.step):
                    bits[s:s + self.step] = _vote_bits(self.U[s:s + self.step], k, device).numpy()
                self.cached = torch.from_numpy(bits)
            else:
                self.cached = torch.cat([_vote_bits(self.U[s:s + self.step], k, device)
                                         for s in range(0, P, self.step)])
        for s in range(0, P, self.step):
            bits = (self.cached[s:s + self.step] if self.cached is not None
                    else _vote_bits(self.U[s:s + self.step], k, device))
            yield self.cnt[s:s + self.step], _as_float(bits)

    def dense(self, v: torch.Tensor) -> torch.Tensor:
        """(R,) per-voter values as an (m, k) matrix over (LF, class), 0 where no voter."""
        D = torch.zeros(self.U.shape[1], self.C.shape[1], device=v.device, dtype=v.dtype)
        D[torch.from_numpy(self.lf).to(v.device), torch.from_numpy(self.cls).to(v.device)] = v
        return D

    def voters(self, D: torch.Tensor) -> torch.Tensor:
        """The (R,) voter entries of an (m, k) matrix over (LF, class)."""
        return D[torch.from_numpy(self.lf).to(D.device), torch.from_numpy(self.cls).to(D.device)]


#: Indicator cells per block of rows on CPU: a block's float32 indicators (2 MB) stay in the
#: cache between the cast, the scores and the statistics (1M x 50 binary LFs, 1 thread: a fit
#: 2x faster than with 4M-cell blocks), and a pass is still only a few hundred torch calls.
BLOCK_CELLS = 1 << 19
#: The same on a GPU, where every block costs a dozen kernel launches and the cache argument
#: does not apply.
GPU_BLOCK_CELLS = 1 << 24
#: Vote indicators up to this many cells (bytes) are kept between passes: casting them is a
#: quarter of the cost of comparing the int8 patterns again (1M x 50 binary LFs: 100 MB).
CACHE_CELLS = 1 << 27


def _block_step(m: int, k: int, device: torch.device) -> int:
    cells = BLOCK_CELLS if device.type == "cpu" else GPU_BLOCK_CELLS
    return max(4096, cells // max(m * k, 1))


def vote_indicators(blk: np.ndarray, k: int, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """(b, k*m) float32 on ``device``: column ``c*m + j`` is 1 where LF ``j`` votes class ``c`` in
    the int8 rows ``blk`` (class-major, so that one class's columns are one strided slice)."""
    return _as_float(_vote_bits(np.ascontiguousarray(blk), k, device))


def _vote_bits(blk: np.ndarray, k: int, device: torch.device) -> torch.Tensor:
    """(b, k*m) bool vote indicators of the int8 rows ``blk``."""
    b, m = blk.shape
    if device.type == "cpu":  # numpy's compare into one buffer: 4x torch's broadcast compare on CPU
        out = np.empty((b, k, m), dtype=bool)
        for c in range(k):
            np.equal(blk, c, out=out[:, c, :])
        return torch.from_numpy(out.reshape(b, k * m))
    return _vote_bits_torch(torch.from_numpy(blk).to(device), k)


def _vote_bits_torch(t: torch.Tensor, k: int) -> torch.Tensor:
    """:func:`_vote_bits` on a device tensor (GPU): one broadcast compare."""
    cls = torch.arange(k, device=t.device, dtype=t.dtype).view(1, k, 1)
    return (t.unsqueeze(1) == cls).view(t.shape[0], -1)


def _as_float(bits: torch.Tensor) -> torch.Tensor:
    """bool -> float32 through a uint8 view (torch casts uint8 10x faster than bool on CPU)."""
    return bits.view(torch.uint8).to(torch.float32)


def _per_class(G: torch.Tensor, I: torch.Tensor) -> torch.Tensor:
    """(k, m): ``[c, j]`` = sum of ``G[c]`` over the rows where LF ``j`` votes ``c`` (``G``: (k, b))."""
    k = G.shape[0]
    return torch.bmm(G.unsqueeze(1), I.view(-1, k, I.shape[1] // k).transpose(0, 1)).squeeze(1)


def score_matrix(W: torch.Tensor, silence: torch.Tensor) -> torch.Tensor:
    """(2k, k*m) from (m, k) vote weights and silence flags: its product with a block's
    indicators gives each class's weighted votes (rows ``:k``) and its silence voters firing
    (rows ``k:``). Kept on the left of the product: a (2k, k*m) @ (k*m, b) product runs 5x
    faster on CPU than the same numbers as (b, k*m) @ (k*m, 2k), whose output is 2k wide."""
    m, k = W.shape
    M = torch.zeros(2 * k, k, m, device=W.device, dtype=torch.float32)
    c = torch.arange(k, device=W.device)
    M[c, c, :] = W.T.to(torch.float32)
    M[k + c, c, :] = silence.T.to(torch.float32)
    return M.view(2 * k, k * m)


def block_scores(I: torch.Tensor, SM: torch.Tensor, base: torch.Tensor,
                 h: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Posterior log-scores of a block of rows (before the softmax), shared by EM and prediction.

    ``I``: (b, k*m) :func:`vote_indicators` of the block; ``SM``: :func:`score_matrix`;
    ``base``: (k,) log prior + silence term of every class; ``h``: (k,) silence terms (a class
    is silent until one of its silence-counting voters fires). Returns the (k, b) scores, class
    by row (a softmax over classes is then one over dim 0, 20x faster on CPU than over a
    k-wide last dim), and the (k, b) 0/1 "a silence voter of the class fires".
    """
    k = base.numel()
    sv = SM @ I.T
    fired = (sv[k:] > 0).to(torch.float32)
    return base[:, None] + sv[:k] - fired * h[:, None], fired


@dataclass
class _Stats:
    """EM's sufficient statistics over the fitted rows (one pass over the patterns)."""

    N: torch.Tensor          # (k,) posterior mass per class
    S: torch.Tensor          # (R,) posterior mass of each voter's class on the rows it fires on
    A: torch.Tensor          # (k,) posterior mass of class c on rows where a silence voter of c fires
    B: torch.Tensor          # (k,) mass of the other classes on those rows


@dataclass
class _Dev:
    """Labeled dev rows as constant M-step statistics (zeros without dev rows)."""

    S: torch.Tensor          # (R,) dev rows where the voter fires on its gold class (weighted)
    F: torch.Tensor          # (R,) dev rows where the voter fires (weighted)
    N: torch.Tensor          # (k,) dev rows per gold class (weighted)
    balance: Optional[np.ndarray] = None
    L: Optional[np.ndarray] = None
    y: Optional[np.ndarray] = None


@dataclass
class _EMState:
    p: torch.Tensor          # (R,) precision (MAP, before shrinkage)
    w: torch.Tensor          # (R,) log-odds weight, shrunk, before the duplicate discount
    h: torch.Tensor          # (k,) silence term of each class
    shared: float            # the shared weight the weights are shrunk toward
    beta: torch.Tensor       # (k,) class balance
    log_prior: torch.Tensor  # (k,)
    n_iter: int = 0
    converged: bool = False


class LabelModel:
    """Learned label model (precision-weighted class-conditional EM, torch).

    >>> lm = LabelModel(cardinality=2).fit(L_train)
    >>> probs = lm.predict_proba(L_test)          # float32 (n, k)
    >>> preds = lm.predict(L_test)                # ties broken with the seed

    Fitted attributes: ``class_balance_`` (k,), ``precision_`` and ``weights_``
    (m, k; NaN / 0 where an LF never emits that class; ``weights_`` are the
    weights predictions use, after shrinkage and the near-duplicate discount),
    ``silence_`` (k,), ``lf_groups_`` (near-duplicate LF groups), ``overlaps_``
    (m,: rows each LF shares with another, independent LF), ``confirmations_`` (m,: those
    where such an LF votes the same class), ``overruled_`` (share of the unanimous fitted
    rows the first fit overruled) and ``balance_fallback_`` (whether that refitted EM with
    the majority vote's class shares: ``LabelModelConfig.overrule_limit``), ``n_iter_``,
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
        device = resolve_device(self.config.device)
        L = self._checked_input(L, L_dev, Y_dev)
        design = self._design(self._fit_rows(L), device)
        dev = self._dev_statistics(design, L_dev, Y_dev, device)
        discount, (overlaps, confirmations), stats, unit, mv_share = self._first_pass(design)
        fixed = self._fixed_prior(dev)
        em = self._em(design, dev, discount, overlaps, fixed, stats)
        self.overruled_ = self._overruled(design, discount, em)
        self.balance_fallback_ = fixed is None and self.overruled_ > self.config.overrule_limit
        if self.balance_fallback_:  # see LabelModelConfig.overrule_limit
            em = self._em(design, dev, discount, overlaps, mv_share, stats)
        weights = discount * em.w
        weights, log_prior, self.weights_em_ = self._dev_correction(design, dev, weights, em)
        self._keep(design, em, weights, log_prior, unit, overlaps, confirmations, L.shape[1])
        return self

    def _checked_input(self, L, L_dev, Y_dev) -> np.ndarray:
        L = as_label_matrix(L, self.cardinality)
        if L.shape[0] == 0 or L.shape[1] == 0:
            raise ValueError(f"cannot fit on an empty label matrix of shape {L.shape}")
        if (L_dev is None) != (Y_dev is None):
            raise ValueError("give both L_dev and Y_dev, or neither")
        return L

    def _fit_rows(self, L: np.ndarray) -> np.ndarray:
        """The rows EM runs on: all, or ``max_fit_rows`` of them drawn with the seed."""
        cfg = self.config
        if cfg.max_fit_rows is not None and L.shape[0] > cfg.max_fit_rows:
            rng = np.random.default_rng(cfg.seed)
            return L[np.sort(rng.choice(L.shape[0], size=cfg.max_fit_rows, replace=False))]
        return L

    def _design(self, Ls: np.ndarray, device: torch.device) -> _Design:
        """Distinct vote patterns with counts, and the voters (the (LF, class) pairs that occur)."""
        k, m = self.cardinality, Ls.shape[1]
        U, cnt = unique_rows(Ls)
        cnt_t = torch.from_numpy(cnt).to(device, torch.float32)
        fires = np.zeros((m, k))  # rows each (LF, class) vote occurs on, counted on the int8 rows
        for s in range(0, Ls.shape[0], 1 << 16):
            blk = Ls[s:s + (1 << 16)]
            for c in range(k):
                fires[:, c] += np.count_nonzero(blk == c, axis=0)
        fires = torch.from_numpy(fires.astype(np.float32)).to(device)
        vj, vc = torch.nonzero(fires > 0, as_tuple=True)
        R = int(vj.numel())
        C = torch.zeros(R, k, device=device)
        C[torch.arange(R, device=device), vc] = 1.0
        # Silence counts for unipolar LFs only: a polar LF's vote for one class already
        # speaks against the others through its tied off-class rate.
        unipolar = (fires > 0).sum(1) == 1
        Cs = C * unipolar[vj].to(torch.float32)[:, None]
        return _Design(U, cnt_t, int(cnt.sum()), vj.cpu().numpy(), vc.cpu().numpy(), C, Cs, fires[vj, vc],
                       _block_step(m, k, device))

    def _dev_statistics(self, d: _Design, L_dev, Y_dev, device: torch.device) -> _Dev:
        """Dev rows as anchored M-step statistics (``dev_mode='anchor'``), and the dev class mix."""
        cfg, k = self.config, self.cardinality
        R = len(d.lf)
        out = _Dev(torch.zeros(R, device=device), torch.zeros(R, device=device), torch.zeros(k, device=device))
        if L_dev is None:
            return out
        Ld = as_label_matrix(L_dev, k)
        yd = np.asarray(Y_dev, dtype=np.int64).ravel()
        if Ld.shape[1] != d.U.shape[1] or len(yd) != Ld.shape[0]:
            raise ValueError("L_dev must have the same LFs as L and one gold label per row")
        if len(yd) and (yd.min() < 0 or yd.max() >= k):
            raise ValueError(f"Y_dev values must be in 0..{k - 1}")
        counts = np.bincount(yd, minlength=k).astype(np.float64)
        out.balance = (counts + cfg.balance_prior) / (counts.sum() + k * cfg.balance_prior)
        out.L, out.y = Ld, yd
        if cfg.dev_mode == "anchor" and cfg.dev_weight > 0 and len(yd):
            Xd = self._voter_indicators(Ld, d, device)
            Yd = torch.nn.functional.one_hot(torch.from_numpy(yd).to(device), k).to(torch.float32)
            w = float(cfg.dev_weight)
            out.F = w * Xd.sum(0)
            out.S = w * ((Xd.T @ Yd) * d.C).sum(1)
            out.N = w * Yd.sum(0)
        return out

    @staticmethod
    def _voter_indicators(L: np.ndarray, d: _Design, device: torch.device) -> torch.Tensor:
        Lt = torch.from_numpy(np.ascontiguousarray(L)).to(device)
        vj = torch.from_numpy(d.lf).to(device)
        vc = torch.from_numpy(d.cls).to(device)
        return (Lt[:, vj] == vc.to(Lt.dtype)[None, :]).to(torch.float32)

    def _fixed_prior(self, dev: _Dev) -> Optional[np.ndarray]:
        cfg = self.config
        if cfg.class_balance is not None:
            cb = np.asarray(cfg.class_balance, dtype=np.float64)
            return cb / cb.sum()
        if cfg.balance_from_dev and dev.balance is not None and cfg.dev_mode != "ignore":
            return dev.balance
        return None

    def _first_pass(self, d: _Design) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor], _Stats, np.ndarray,
                                                np.ndarray]:
        """One pass over the patterns for everything that does not need the fitted weights:
        each voter's unit (near-duplicate voters share one; labeling/dependencies.py), from the
        co-firing counts of each class's voters (only voters of one class can be near-duplicates)
        and the majority vote's class shares; ``g_r`` = 1 / size of the voter's unit; ``E_r`` =
        the rows where it fires together with a voter of another unit (its evidence); and EM's
        statistics under the majority-vote posterior it starts from (ties split).

        Returns ``(discount, (overlaps, confirmations), stats, unit, mv_share)``: per voter, the
        rows it shares with another unit and those where another unit votes its class; and the
        majority vote's class shares on the covered rows (add-one smoothed)."""
        cfg, k, device = self.config, self.cardinality, d.cnt.device
        m, R = d.U.shape[1], len(d.lf)
        test = cfg.near_duplicates and R >= 2
        of_class = [np.flatnonzero(d.cls == c) for c in range(k)]
        cols = [None if len(idx) == m else torch.from_numpy(d.lf[idx]).to(device) for idx in of_class]
        grams = [np.zeros((len(idx), len(idx))) for idx in of_class]
        distinct = bool((d.cnt == 1).all())
        mass = torch.zeros(k, device=device)
        SM = score_matrix(torch.ones(m, k, device=device), d.dense(d.Cs.sum(1)))  # unit weights: vote counts
        zero = torch.zeros(k, device=device)
        E = torch.zeros(k * m, device=device)
        Ec = torch.zeros(k, m, device=device)
        stats = self._empty_stats(d)
        for cb, I in d.blocks():
            votes, fired = block_scores(I, SM, zero, zero)
            Q = (votes == votes.max(dim=0, keepdim=True).values).to(torch.float32)
            Q /= Q.sum(dim=0, keepdim=True)
            mass += (Q * ((votes.sum(0) > 0).to(torch.float32) * cb)).sum(1)
            if test:
                for c in range(k):
                    if len(of_class[c]):
                        Xc = I.view(-1, k, m)[:, c, :]
                        Xc = Xc if cols[c] is None else Xc[:, cols[c]]
                        Y = (Xc if distinct else Xc * cb.sqrt()[:, None]).cpu().numpy()
                        grams[c] += Y.T @ Y  # numpy runs Y.T @ Y as one BLAS syrk: half a gemm
            E += ((votes.sum(0) >= 2).to(torch.float32) * cb) @ I  # overlaps if every unit is one voter
            Ec += _per_class(((votes >= 2).to(torch.float32) * cb), I)  # confirmations, likewise
            self._accumulate(stats, I, fired, Q, cb)
        stats.S = d.voters(stats.S)
        unit = np.arange(R)
        if test:
            co = np.zeros((R, R))
            for idx, g in zip(of_class, grams):
                co[np.ix_(idx, idx)] = g
            share = mass.cpu().double().numpy() + 1.0  # the majority vote's class shares, add-one smoothed
            unit = duplicate_units(co, d.lf, d.cls, float(d.n_fit), share / share.sum(),
                                   cfg.duplicate_min_cofire, cfg.duplicate_margin, 5)
        _, idx, size = np.unique(unit, return_inverse=True, return_counts=True)
        discount = torch.from_numpy(1.0 / size[idx]).to(device, torch.float32)
        mv_share = mass.cpu().double().numpy() + 1.0
        if size.max(initial=1) == 1:
            evidence = (d.voters(E.view(k, m).T), d.voters(Ec.T))
        else:
            evidence = self._evidence(d, idx, size)
        return discount, evidence, stats, unit, mv_share / mv_share.sum()

    def _evidence(self, d: _Design, idx: np.ndarray, size: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        """Overlaps and confirmations when some units hold several voters: units firing on a
        row (of a class) = voters firing minus (voters firing - 1) of each multi-voter unit
        that fires. One more pass."""
        k, m, device = self.cardinality, d.U.shape[1], d.cnt.device
        multi = np.flatnonzero(size[idx] > 1)
        groups = np.unique(idx[multi], return_inverse=True)[1].ravel()
        M = torch.zeros(k, m, int(groups.max()) + 1, device=device)  # (class, LF) -> its multi-voter unit
        M[torch.from_numpy(d.cls[multi]).to(device), torch.from_numpy(d.lf[multi]).to(device),
          torch.from_numpy(groups).to(device)] = 1.0
        Mt = M.view(k * m, -1).T.contiguous()
        G = torch.zeros(k, Mt.shape[0], device=device)  # multi-voter unit -> its class (units are one class)
        G[torch.from_numpy(d.cls[multi]).to(device), torch.from_numpy(groups).to(device)] = 1.0
        E = torch.zeros(k * m, device=device)
        Ec = torch.zeros(k, m, device=device)
        for cb, I in d.blocks():
            excess = (Mt @ I.T - 1).clamp(min=0)                            # (groups, b)
            units = I.view(-1, k, m).sum(2).T - G @ excess                  # (k, b) units firing per class
            E += ((units.sum(0) >= 2).to(torch.float32) * cb) @ I
            Ec += _per_class(((units >= 2).to(torch.float32) * cb), I)
        return d.voters(E.view(k, m).T), d.voters(Ec.T)

    def _overruled(self, d: _Design, discount: torch.Tensor, em: _EMState) -> float:
        """Share of the fitted rows with unanimous votes (every vote for one class) whose
        most probable class under the fitted model is another one. One pass."""
        k, m, device = self.cardinality, d.U.shape[1], d.cnt.device
        SM = score_matrix(d.dense(discount * em.w), d.dense(d.Cs.sum(1)))
        VM = score_matrix(torch.ones(m, k, device=device), torch.zeros(m, k, device=device))[:k]  # vote counts
        over = torch.zeros((), device=device)
        tot = torch.zeros((), device=device)
        for cb, I in d.blocks():
            scores, _ = block_scores(I, SM, em.log_prior + em.h, em.h)
            votes = VM @ I.T
            n_votes = votes.sum(0)
            unanimous = ((votes.max(0).values == n_votes) & (n_votes > 0)).to(torch.float32) * cb
            voted = votes > 0  # on a unanimous row: its one voted class
            beaten = (scores.masked_fill(voted, -math.inf).max(0).values
                      > scores.masked_fill(~voted, -math.inf).max(0).values)  # (max, not argmax: 10x faster over dim 0)
            over += (unanimous * beaten.to(torch.float32)).sum()
            tot += unanimous.sum()
        return float(over / tot) if float(tot) > 0 else 0.0

    def _empty_stats(self, d: _Design) -> _Stats:
        k, device = self.cardinality, d.cnt.device
        return _Stats(torch.zeros(k, device=device), torch.zeros(d.U.shape[1], k, device=device),
                      torch.zeros(k, device=device), torch.zeros(k, device=device))

    def _accumulate(self, st: _Stats, I: torch.Tensor, fired: torch.Tensor, Q: torch.Tensor,
                    cb: torch.Tensor) -> None:
        """Add a block's (k, b) posterior ``Q`` to the statistics (``S`` kept per (LF, class) until
        the pass ends)."""
        k = Q.shape[0]
        Qc = Q * cb
        st.N += Qc.sum(1)
        st.S += (Qc @ I).view(k, k, -1).diagonal(dim1=0, dim2=1)  # [j, c]: mass of c where j votes c
        if self.config.abstain_evidence == "class":
            st.A += (Qc * fired).sum(1)
            st.B += ((cb - Qc) * fired).sum(1)

    def _em(self, d: _Design, dev: _Dev, discount: torch.Tensor, evidence: torch.Tensor,
            fixed_prior: Optional[np.ndarray], stats: _Stats) -> _EMState:
        """EM from the majority-vote posterior (``stats``) until the parameters stop moving.

        Each iteration is one pass over the patterns: the E-step's posterior of a block goes
        straight into the next M-step's statistics and is not kept."""
        cfg = self.config
        device = d.cnt.device
        fixed = None if fixed_prior is None else torch.as_tensor(np.log(fixed_prior), device=device,
                                                                  dtype=torch.float32)
        prev = None
        st = None
        for it in range(1, cfg.epochs + 1):
            st = self._m_step(d, dev, stats, evidence, fixed)
            cur = torch.cat([st.w, st.h, st.log_prior])
            st.n_iter = it
            if prev is not None and float((cur - prev).abs().max()) <= cfg.tol:
                st.converged = True
                break
            prev = cur
            if it < cfg.epochs:
                stats = self._e_pass(d, st, discount)
        return st

    def _e_pass(self, d: _Design, st: _EMState, discount: torch.Tensor) -> _Stats:
        """E-step over every block, summed into the next M-step's statistics."""
        SM = score_matrix(d.dense(discount * st.w), d.dense(d.Cs.sum(1)))
        stats = self._empty_stats(d)
        base = st.log_prior + st.h
        for cb, I in d.blocks():
            scores, fired = block_scores(I, SM, base, st.h)
            self._accumulate(stats, I, fired, torch.softmax(scores, dim=0), cb)
        stats.S = d.voters(stats.S)
        return stats

    def _m_step(self, d: _Design, dev: _Dev, stats: _Stats, evidence: torch.Tensor,
                fixed_log_prior: Optional[torch.Tensor]) -> _EMState:
        """Closed-form updates: MAP precisions, class balance, shrunk weights, silence terms."""
        cfg, k = self.config, self.cardinality
        eps = 1e-6
        N = stats.N + dev.N
        S = stats.S + dev.S
        beta = (N + cfg.balance_prior) / (d.n_fit + float(dev.N.sum()) + k * cfg.balance_prior)
        bc = beta[torch.from_numpy(d.cls).to(beta.device)]
        p = ((S + cfg.prior_strength * cfg.prior_precision) / (d.F + dev.F + cfg.prior_strength)).clamp(eps, 1 - eps)
        w_own = torch.log(p) - torch.log1p(-p) - torch.log(bc) + torch.log1p(-bc)
        w, shared = self._shrink(w_own, evidence)
        h = self._silence(d, stats) if cfg.abstain_evidence == "class" else torch.zeros(k, device=N.device)
        log_prior = torch.log(beta) if fixed_log_prior is None else fixed_log_prior
        return _EMState(p, w, h, shared, beta, log_prior)

    def _shrink(self, w_own: torch.Tensor, evidence: torch.Tensor) -> Tuple[torch.Tensor, float]:
        """Each weight pulled toward the shared weight (the evidence-weighted mean) by ``shrink_strength``.

        The evidence is each voter's overlapping rows. Its confirmations (rows where another LF
        votes its class) were tried instead and lost to majority vote on one-LF-per-class sets
        (docs/label_model.md, "Regimes of LFs")."""
        s = float(self.config.shrink_strength)
        if w_own.numel() == 0:
            return w_own, float(math.log(self.config.prior_precision / (1 - self.config.prior_precision)))
        tot = float(evidence.sum())
        shared = float((evidence * w_own).sum() / tot) if tot > 0 else float(w_own.mean())
        if s == 0 or float(evidence.median()) >= self.config.shrink_median_overlaps:
            return w_own, shared
        return (evidence * w_own + s * shared) / (evidence + s), shared

    @staticmethod
    def _silence(d: _Design, stats: _Stats) -> torch.Tensor:
        """``h_c = log P(no LF of c fires | y = c) - log P(no LF of c fires | y != c)`` (add-one smoothed)."""
        Nc = stats.N
        A = (stats.A + 1.0) / (Nc + 2.0)
        B = (stats.B + 1.0) / (d.n_fit - Nc + 2.0)
        h = torch.log1p(-A.clamp(max=1 - 1e-6)) - torch.log1p(-B.clamp(max=1 - 1e-6))
        return h * (d.Cs.sum(0) > 0).to(h.dtype)

    def _dev_correction(self, d: _Design, dev: _Dev, weights: torch.Tensor,
                        em: _EMState) -> Tuple[torch.Tensor, torch.Tensor, Optional[np.ndarray]]:
        """``dev_mode='correct'``: a CV-tuned logistic correction of the weights and class prior on dev gold.
        Returns the weights, the log prior and (when corrected) the EM weights as an (m, k) array."""
        cfg, k = self.config, self.cardinality
        self.dev_lambda_ = None
        self.dev_cv_accuracy_ = None
        if dev.y is None or cfg.dev_mode != "correct" or not len(dev.y):
            return weights, em.log_prior, None
        device = weights.device
        Xd = self._voter_indicators(dev.L, d, device)
        silent_d = ((Xd @ d.Cs) == 0).to(torch.float32) * (d.Cs.sum(0) > 0).to(torch.float32)[None, :]
        base = (em.log_prior[None, :] + Xd @ (d.C * weights[:, None]) + silent_d * em.h[None, :]).double()
        vc = torch.from_numpy(d.cls).to(device)
        lam, cv_acc = _select_l2(Xd.double(), dev.y, vc, base, k, cfg)
        self.dev_lambda_, self.dev_cv_accuracy_ = lam, cv_acc
        if not math.isfinite(lam):
            return weights, em.log_prior, None
        W_em = np.zeros((d.U.shape[1], k), dtype=np.float32)
        W_em[d.lf, d.cls] = weights.cpu().numpy()
        dw, db = _fit_correction(Xd.double(), torch.from_numpy(dev.y).to(device), vc, base, k, lam)
        log_prior = torch.log_softmax(em.log_prior.double() + db, dim=0).to(torch.float32)
        return (weights.double() + dw).to(torch.float32), log_prior, W_em

    def _keep(self, d: _Design, em: _EMState, weights: torch.Tensor, log_prior: torch.Tensor,
              unit: np.ndarray, overlaps: torch.Tensor, confirmations: torch.Tensor, m: int) -> None:
        """The fitted state, on CPU as numpy (small)."""
        k = self.cardinality
        self._voter_lf, self._voter_class = d.lf, d.cls
        W = np.full((m, k), em.shared, dtype=np.float32)  # an (LF, class) vote never seen in fitting
        Pm = np.full((m, k), np.nan, dtype=np.float64)
        Fm = np.zeros((m, k), dtype=np.float64)
        V = np.zeros((m, k), dtype=bool)
        W[d.lf, d.cls] = weights.cpu().numpy()
        Pm[d.lf, d.cls] = em.p.cpu().double().numpy()
        Fm[d.lf, d.cls] = d.F.cpu().double().numpy()
        V[d.lf, d.cls] = True
        never = ~V.any(axis=1)
        Sm = np.zeros((m, k), dtype=bool)
        Sm[d.lf, d.cls] = d.Cs.sum(1).cpu().numpy() > 0
        Sm[never] = True  # an LF that never voted in fitting: its votes count as a unipolar LF's
        self.weights_ = W
        self.precision_ = Pm
        self._fires = Fm
        self.voters_ = V
        self.silence_lfs_ = Sm
        self.silence_ = em.h.cpu().double().numpy()
        self.shared_weight_ = float(em.shared)
        self.overlaps_ = np.bincount(d.lf, weights=overlaps.cpu().double().numpy(), minlength=m)
        self.confirmations_ = np.bincount(d.lf, weights=confirmations.cpu().double().numpy(), minlength=m)
        self.lf_groups_ = lf_groups(unit, d.lf)
        self.class_balance_ = em.beta.cpu().double().numpy()
        self.class_prior_ = np.exp(log_prior.cpu().double().numpy())
        self.class_prior_ /= self.class_prior_.sum()
        self.n_iter_ = em.n_iter
        self.converged_ = em.converged
        self.n_fit_rows_ = d.n_fit
        self.n_patterns_ = int(d.U.shape[0])
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
        SM = score_matrix(torch.from_numpy(self.weights_).to(dev), torch.from_numpy(self.silence_lfs_).to(dev))
        lp = torch.from_numpy(np.log(self.class_prior_)).to(dev, torch.float32)
        h = torch.from_numpy(self.silence_).to(dev, torch.float32)
        out = np.empty((n, k), dtype=np.float32)
        step = cfg.chunk_rows or _block_step(m, k, dev)
        for s in range(0, n, step):
            I = vote_indicators(L[s:s + step], k, dev)
            scores, _ = block_scores(I, SM, lp + h, h)
            if cfg.uncovered != "model":
                scores.masked_fill_(I.sum(1) == 0, 0.0)  # no vote: no evidence about the class
            out[s:s + I.shape[0]] = torch.softmax(scores, dim=0).T.cpu().numpy()
        return out

    def predict(self, L: LabelMatrixLike, tie_break_seed: Optional[int] = None,
                row_ids: Optional[np.ndarray] = None) -> np.ndarray:
        """Hard labels for every row; ties broken at random with a fixed seed
        (``config.seed`` unless ``tie_break_seed`` is given), the draw of a row
        depending only on the seed and its id (``row_ids``, default ``0 .. n-1``)."""
        seed = self.config.seed if tie_break_seed is None else int(tie_break_seed)
        return tie_break(self.predict_proba(L), seed, row_ids=row_ids)

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
            "voters": self.voters_.astype(int).tolist(),
            "silence_lfs": self.silence_lfs_.astype(int).tolist(),
            "silence": self.silence_.tolist(),
            "shared_weight": self.shared_weight_,
            "lf_groups": self.lf_groups_,
            "overlaps": self.overlaps_.tolist(),
            "confirmations": self.confirmations_.tolist(),
            "overruled": self.overruled_,
            "balance_fallback": bool(self.balance_fallback_),
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
        k = lm.cardinality
        lm.voters_ = (np.asarray(d["voters"], dtype=bool) if "voters" in d else lm.weights_ != 0)
        lm.silence_lfs_ = (np.asarray(d["silence_lfs"], dtype=bool) if "silence_lfs" in d
                           else np.ones_like(lm.voters_))
        lm.silence_ = np.asarray(d.get("silence", [0.0] * k), dtype=np.float64)
        lm.shared_weight_ = float(d.get("shared_weight", 0.0))
        lm.lf_groups_ = [list(g) for g in d.get("lf_groups", [])]
        lm.precision_ = np.asarray([[np.nan if x is None else x for x in row] for row in d["precision"]],
                                   dtype=np.float64)
        lm._fires = np.asarray(d["fires"], dtype=np.float64)
        lm.overlaps_ = np.asarray(d.get("overlaps", [0.0] * lm.weights_.shape[0]), dtype=np.float64)
        lm.confirmations_ = np.asarray(d.get("confirmations", [0.0] * lm.weights_.shape[0]), dtype=np.float64)
        lm.overruled_ = float(d.get("overruled", 0.0))
        lm.balance_fallback_ = bool(d.get("balance_fallback", False))
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
