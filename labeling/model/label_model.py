"""Label models: turn a label matrix of weak votes into probabilistic labels.

:class:`LabelModel`, a learned generative label model fitted by EM in torch (CPU or GPU), follows the
:class:`~mothermodel.labeling.model.base.Labeler` protocol like the majority vote
(:mod:`~mothermodel.labeling.model.baselines`); the label-matrix input is described in
:mod:`~mothermodel.labeling.model.base`.

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
blocks of 0/1 vote indicators (:class:`~mothermodel.labeling.model.design.Design`: one pass for everything that
needs no weights, then one per EM iteration), and prediction streams over row
blocks the same way; no float matrix of size ``n x m x k`` is ever built.
"""


from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch

from mothermodel.defaults import DEFAULT_SEED, resolve_device
from mothermodel.labeling.model.base import (AbstainEvidence, Device, LabelMatrixLike, as_label_matrix, check_em_settings,
                                             check_mode)
from mothermodel.labeling.model.dependencies import duplicate_units, lf_groups, near_duplicate_groups
from mothermodel.labeling.model.design import (Design, block_scores, block_step, per_class, score_matrix,
                                               vote_indicators)
from mothermodel.labeling.model.dev_correction import fit_correction, select_l2
from mothermodel.labeling.model.votes import tie_break, unique_rows

__all__ = ["LabelModel", "LabelModelConfig"]


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
        abstain_evidence: what an abstain tells (:data:`~mothermodel.labeling.model.base.AbstainEvidence`):
            ``'none'`` (default: abstains are ignored, since on correlated real LF sets class-dependent
            abstention overcounts; docs/hierarchy.md) or ``'class'`` (per
            class, "no LF of this class fired" is evidence: one factor per class, two rates each).
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
    abstain_evidence: AbstainEvidence = "none"
    uncovered: Literal["uniform", "model"] = "uniform"
    near_duplicates: bool = True
    duplicate_min_cofire: float = 0.5
    duplicate_margin: float = 0.2
    class_balance: Optional[Sequence[float]] = None
    balance_prior: float = 1.0
    dev_mode: Literal["anchor", "correct", "ignore"] = "anchor"
    dev_l2_grid: Sequence[float] = (math.inf, 100.0, 30.0, 10.0, 3.0, 1.0)
    dev_folds: int = 5
    dev_weight: float = 1.0
    balance_from_dev: bool = False
    overrule_limit: float = 0.05
    max_fit_rows: Optional[int] = 250_000
    chunk_rows: Optional[int] = None
    seed: int = DEFAULT_SEED
    device: Device = "auto"

    def __post_init__(self) -> None:
        check_em_settings(self)
        if self.shrink_strength < 0 or self.shrink_median_overlaps < 0:
            raise ValueError("shrink_strength and shrink_median_overlaps must be >= 0")
        check_mode("abstain_evidence", self.abstain_evidence, ("none", "class"))
        check_mode("uncovered", self.uncovered, ("uniform", "model"))
        if not 0.0 < self.duplicate_min_cofire <= 1.0 or self.duplicate_margin < 0:
            raise ValueError("duplicate_min_cofire must be in (0, 1] and duplicate_margin >= 0")
        check_mode("dev_mode", self.dev_mode, ("anchor", "correct", "ignore"))
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

    def _design(self, Ls: np.ndarray, device: torch.device) -> Design:
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
        return Design(U, cnt_t, int(cnt.sum()), vj.cpu().numpy(), vc.cpu().numpy(), C, Cs, fires[vj, vc],
                       block_step(m, k, device))

    def _dev_statistics(self, d: Design, L_dev, Y_dev, device: torch.device) -> _Dev:
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
    def _voter_indicators(L: np.ndarray, d: Design, device: torch.device) -> torch.Tensor:
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

    def _first_pass(self, d: Design) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor], _Stats, np.ndarray,
                                                np.ndarray]:
        """One pass over the patterns for everything that does not need the fitted weights:
        each voter's unit (near-duplicate voters share one; labeling/model/dependencies.py), from the
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
            Ec += per_class(((votes >= 2).to(torch.float32) * cb), I)  # confirmations, likewise
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

    def _evidence(self, d: Design, idx: np.ndarray, size: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
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
            Ec += per_class(((units >= 2).to(torch.float32) * cb), I)
        return d.voters(E.view(k, m).T), d.voters(Ec.T)

    def _overruled(self, d: Design, discount: torch.Tensor, em: _EMState) -> float:
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

    def _empty_stats(self, d: Design) -> _Stats:
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

    def _em(self, d: Design, dev: _Dev, discount: torch.Tensor, evidence: torch.Tensor,
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

    def _e_pass(self, d: Design, st: _EMState, discount: torch.Tensor) -> _Stats:
        """E-step over every block, summed into the next M-step's statistics."""
        SM = score_matrix(d.dense(discount * st.w), d.dense(d.Cs.sum(1)))
        stats = self._empty_stats(d)
        base = st.log_prior + st.h
        for cb, I in d.blocks():
            scores, fired = block_scores(I, SM, base, st.h)
            self._accumulate(stats, I, fired, torch.softmax(scores, dim=0), cb)
        stats.S = d.voters(stats.S)
        return stats

    def _m_step(self, d: Design, dev: _Dev, stats: _Stats, evidence: torch.Tensor,
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
    def _silence(d: Design, stats: _Stats) -> torch.Tensor:
        """``h_c = log P(no LF of c fires | y = c) - log P(no LF of c fires | y != c)`` (add-one smoothed)."""
        Nc = stats.N
        A = (stats.A + 1.0) / (Nc + 2.0)
        B = (stats.B + 1.0) / (d.n_fit - Nc + 2.0)
        h = torch.log1p(-A.clamp(max=1 - 1e-6)) - torch.log1p(-B.clamp(max=1 - 1e-6))
        return h * (d.Cs.sum(0) > 0).to(h.dtype)

    def _dev_correction(self, d: Design, dev: _Dev, weights: torch.Tensor,
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
        lam, cv_acc = select_l2(Xd.double(), dev.y, vc, base, k, cfg)
        self.dev_lambda_, self.dev_cv_accuracy_ = lam, cv_acc
        if not math.isfinite(lam):
            return weights, em.log_prior, None
        W_em = np.zeros((d.U.shape[1], k), dtype=np.float32)
        W_em[d.lf, d.cls] = weights.cpu().numpy()
        dw, db = fit_correction(Xd.double(), torch.from_numpy(dev.y).to(device), vc, base, k, lam)
        log_prior = torch.log_softmax(em.log_prior.double() + db, dim=0).to(torch.float32)
        return (weights.double() + dw).to(torch.float32), log_prior, W_em

    def _keep(self, d: Design, em: _EMState, weights: torch.Tensor, log_prior: torch.Tensor,
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
        step = cfg.chunk_rows or block_step(m, k, dev)
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
