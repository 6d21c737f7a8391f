"""Hierarchical multi-task label model for a tree of tasks (Snorkel MeTaL style).

Tasks form a tree. A child task refines one class of its parent (its
``parent_class``): the child has a label only on rows whose parent label is
that class, and is *not applicable* (NA) elsewhere. The model works on the
**joint label** over the whole tree, whose values are the consistent joint
states, e.g. for ``topic = {BILLING, TECHNICAL, OTHER}`` with child
``billing_kind = {REFUND, INVOICE}`` under BILLING::

    (BILLING, REFUND), (BILLING, INVOICE), (TECHNICAL, NA), (OTHER, NA)

Generative model
----------------
Each task ``t`` has its own LFs (label matrix ``L_t``: n x m_t, ``-1`` =
abstain, else a class of ``t``). Given the joint state ``s``, every LF votes
independently of the others, and its vote depends on ``s`` only through its
own task's component ``y_t(s)`` in ``{0..k_t-1} U {NA}`` (NA: the task does not
apply; only child tasks have it). Every (LF, emitted class ``v``) pair that
occurs is a *voter* ``r`` with three firing rates::

    a_r = P(L_j = v | y_t = v)              own class ("recall")
    b_r = P(L_j = v | y_t = u), u != v      other classes of t (tied)
    e_r = P(L_j = v | y_t = NA)             not applicable: a child LF firing
                                            there is an error

Abstentions are evidence as ``config.abstain_evidence`` says: ``"full"``
(default) makes each LF a normalised categorical, ``P(abstain | y) = 1 -
sum_v P(L_j = v | y)``, a proper likelihood (exact EM for unipolar and binary
LFs; the tied off-class rate makes it approximate for polar LFs with k > 2);
``"applicability"`` uses one abstain rate while the task applies and one while
it does not (silence is evidence about applicability, never about the class: a
quasi-likelihood, for correlated real LF sets where class-dependent abstention
overcounts, see docs/label_model.md); ``"none"`` ignores abstentions (the flat
LabelModel's choice). The posterior over joint states of a row is::

    log P(s | row) = log pi_s + sum_{voters r firing} log rate_r(y_{t_r}(s))
                     + sum_{LFs j abstaining} log rho_j(y_{t_j}(s)) + const

Fitting is EM on the (quasi-)marginal likelihood over joint states, on the
unique rows of the concatenated label matrix (``np.unique`` with counts), all
in torch on ``config.device``. The M-step is closed form: every rate is
(expected firings + s * prior rate) / (expected
mass + s): a Beta prior of ``prior_strength`` pseudo-rows centred on the rates
that would give the voter precision ``prior_precision`` ("LFs are better than
random") at its observed firing rate and the initial state masses; the state prior
``pi`` has a symmetric Dirichlet(``balance_prior``) prior. Optional labeled dev
rows (full or partial gold over the tasks) enter EM with their posterior
restricted to the joint states consistent with their gold.

Outputs (all consistent by construction, as they are sums of one joint
posterior): per task marginals ``P(y_t = c)`` (for a child they sum to
``P(parent = parent_class)``), conditionals ``P(y_t = c | t applies)`` (what a
child head trains on), ``P(t applies)``, the joint posterior, and top-down hard
labels (``-1`` where a child does not apply under the predicted parent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from mothermodel.defaults import ABSTAIN, DEFAULT_SEED, resolve_device
from mothermodel.labeling.model.base import AbstainEvidence, Device, as_label_matrix, check_em_settings, check_mode
from mothermodel.labeling.model.votes import tie_break, unique_rows

__all__ = [
    "ABSTAIN",
    "NOT_APPLICABLE",
    "UNKNOWN",
    "HierarchyConfig",
    "TaskNode",
    "HierarchicalLabelModel",
]

#: In joint states, hard predictions and dev gold: the task does not apply.
NOT_APPLICABLE = -1
#: In dev gold only: this task's label is unknown for the row.
UNKNOWN = -2

_ABSTAIN_MODES = ("none", "applicability", "full")


# --------------------------------------------------------------------------- #
# Configuration and tree
# --------------------------------------------------------------------------- #
@dataclass
class HierarchyConfig:
    """Settings of :class:`HierarchicalLabelModel`.

    Attributes:
        epochs: maximum number of EM iterations.
        tol: EM stops when no log-rate, log abstain rate or log state prior
            moves by more than ``tol`` in one iteration.
        prior_precision: precision P(own class | voter fires) at which each
            voter's prior rates are centred ("LFs are better than random"). In (0, 1).
        prior_strength: pseudo-rows behind each rate's Beta prior. Keep it small
            against the rows of the smallest class: 100 already biased the
            synthetic tests' grandchild (1.5k rows per class). >= 0.
        balance_prior: symmetric Dirichlet pseudo-count per joint state of the
            state prior. > 0.
        abstain_evidence: ``"full"`` (normalised per-LF categorical: abstaining
            is evidence through ``1 - sum of firing rates``), ``"applicability"``
            (one abstain rate while the task applies, one while it does not) or
            ``"none"`` (abstains ignored).
        dev_weight: weight of each labeled dev row in EM (0: ignore dev gold).
        max_fit_rows: EM runs on at most this many rows, drawn uniformly with
            ``seed`` (``None``: all rows). Prediction covers every row.
        max_states: refuse trees with more consistent joint states than this.
        chunk_rows: unique rows per block in prediction (bounds memory).
        seed: seed of the row sample and default seed of the tie-break.
        device: ``'auto'`` (CUDA when available), ``'cpu'`` or ``'cuda[:i]'``.
    """

    epochs: int = 300
    tol: float = 1e-4
    prior_precision: float = 0.9
    prior_strength: float = 10.0
    balance_prior: float = 1.0
    abstain_evidence: AbstainEvidence = "full"
    dev_weight: float = 1.0
    max_fit_rows: Optional[int] = 500_000
    max_states: int = 10_000
    chunk_rows: int = 1 << 16
    seed: int = DEFAULT_SEED
    device: Device = "auto"

    def __post_init__(self) -> None:
        check_em_settings(self)
        check_mode("abstain_evidence", self.abstain_evidence, _ABSTAIN_MODES)
        if self.dev_weight < 0:
            raise ValueError("dev_weight must be >= 0")
        if self.max_fit_rows is not None and self.max_fit_rows < 1:
            raise ValueError("max_fit_rows must be >= 1 or None")
        if self.max_states < 1 or self.chunk_rows < 1:
            raise ValueError("max_states and chunk_rows must be >= 1")
        resolve_device(self.device)


@dataclass(frozen=True)
class TaskNode:
    """One task of the tree.

    Attributes:
        name: task name (unique in the tree).
        cardinality: number of classes (>= 2).
        parent: name of the parent task; ``None`` for the root.
        parent_class: the class of ``parent`` that this task refines (the task
            has a label only on rows whose parent label is this class).
    """

    name: str
    cardinality: int
    parent: Optional[str] = None
    parent_class: Optional[int] = None


def _compile_tree(nodes: Sequence[TaskNode], max_states: int):
    """Validate the tree; return (ordered nodes (parents first), joint states (S, T) int64)."""
    nodes = list(nodes)
    if not nodes:
        raise ValueError("the task tree is empty")
    by_name: Dict[str, TaskNode] = {}
    for nd in nodes:
        if not isinstance(nd, TaskNode):
            raise ValueError(f"expected TaskNode objects, got {type(nd).__name__}")
        if not isinstance(nd.name, str) or not nd.name:
            raise ValueError(f"task name must be a non-empty string, got {nd.name!r}")
        if nd.name in by_name:
            raise ValueError(f"task {nd.name!r}: duplicate task name")
        if int(nd.cardinality) != nd.cardinality or nd.cardinality < 2:
            raise ValueError(f"task {nd.name!r}: cardinality must be an integer >= 2, got {nd.cardinality}")
        by_name[nd.name] = nd
    roots = [nd for nd in nodes if nd.parent is None]
    for nd in nodes:
        if nd.parent is None:
            if nd.parent_class is not None:
                raise ValueError(f"task {nd.name!r}: parent_class given without a parent")
            continue
        if nd.parent not in by_name:
            raise ValueError(f"task {nd.name!r}: parent {nd.parent!r} is not a task of the tree")
        if nd.parent == nd.name:
            raise ValueError(f"task {nd.name!r}: a task cannot be its own parent")
        pk = by_name[nd.parent].cardinality
        if nd.parent_class is None or int(nd.parent_class) != nd.parent_class or not 0 <= nd.parent_class < pk:
            raise ValueError(f"task {nd.name!r}: parent_class must be a class index of {nd.parent!r} "
                             f"in 0..{pk - 1}, got {nd.parent_class!r}")
    if len(roots) != 1:
        raise ValueError(f"the tasks must form one tree with a single root, found roots "
                         f"{[r.name for r in roots]} (fit one model per tree)")
    children: Dict[str, List[str]] = {nd.name: [] for nd in nodes}
    for nd in nodes:
        if nd.parent is not None:
            children[nd.parent].append(nd.name)
    order: List[str] = []
    stack = [roots[0].name]
    while stack:  # parents before children, siblings in the given order
        t = stack.pop()
        order.append(t)
        stack.extend(reversed(children[t]))
    if len(order) != len(nodes):
        missing = sorted(set(by_name) - set(order))
        raise ValueError(f"task {missing[0]!r}: not connected to the root {roots[0].name!r} (cycle?)")
    pos = {t: i for i, t in enumerate(order)}

    def subtree(t: str) -> List[str]:
        out = [t]
        for c in children[t]:
            out.extend(subtree(c))
        return out

    def count(t: str) -> int:
        return sum(math.prod(count(c) for c in children[t] if by_name[c].parent_class == k)
                   for k in range(by_name[t].cardinality))

    S = count(order[0])
    if S > max_states:
        raise ValueError(f"the tree has {S} consistent joint states, more than max_states={max_states}")

    def states(t: str) -> List[Dict[int, int]]:
        out: List[Dict[int, int]] = []
        for k in range(by_name[t].cardinality):
            combos: List[Dict[int, int]] = [{pos[t]: k}]
            for c in children[t]:
                if by_name[c].parent_class == k:
                    opts = states(c)
                else:
                    opts = [{pos[x]: NOT_APPLICABLE for x in subtree(c)}]
                combos = [{**a, **b} for a in combos for b in opts]
            out.extend(combos)
        return out

    J = np.array([[st[i] for i in range(len(order))] for st in states(order[0])], dtype=np.int64)
    return [by_name[t] for t in order], J


# --------------------------------------------------------------------------- #
# Model
# --------------------------------------------------------------------------- #
class HierarchicalLabelModel:
    """Label model over a task tree; see the module docstring for the model.

    >>> nodes = [TaskNode("topic", 3), TaskNode("billing_kind", 2, "topic", 0)]
    >>> hm = HierarchicalLabelModel(nodes).fit({"topic": L_topic, "billing_kind": L_billing})
    >>> hm.predict_proba(L_by_task)["billing_kind"]        # P(billing_kind = c), sums to P(topic = 0)
    >>> hm.predict_conditional(L_by_task)["billing_kind"]  # P(billing_kind = c | topic = 0)
    >>> hm.predict(L_by_task)["billing_kind"]              # -1 where the predicted topic is not 0

    Attributes: ``task_names`` (tasks, parents first: the column order of
    ``joint_states``), ``joint_states`` ((S, T) int array, ``-1`` = NA).
    Fitted: ``state_prior_`` (S,), ``class_balance_`` (task -> P(y_t | t
    applies)), ``lf_params_`` (task -> per-LF ``accuracy``, ``propensity``,
    ``na_fire_rate``), ``n_iter_``, ``converged_``, ``log_likelihood_``,
    ``n_patterns_``, ``n_fit_rows_``.
    """

    def __init__(self, nodes: Sequence[TaskNode], config: Optional[HierarchyConfig] = None) -> None:
        self.config = config if config is not None else HierarchyConfig()
        self.nodes, self._J = _compile_tree(nodes, self.config.max_states)
        self.task_names: List[str] = [nd.name for nd in self.nodes]
        self._pos = {t: i for i, t in enumerate(self.task_names)}
        self._k = np.array([nd.cardinality for nd in self.nodes], dtype=np.int64)
        self._fitted = False

    @property
    def joint_states(self) -> np.ndarray:
        """(S, T) consistent joint states: column ``i`` is task ``task_names[i]``,
        value a class index or ``-1`` (not applicable)."""
        return self._J.copy()

    # ------------------------------------------------------------ inputs
    def _concat(self, L_by_task: Mapping[str, np.ndarray], fitted_m: Optional[Dict[str, int]] = None,
                what: str = "L_by_task") -> np.ndarray:
        """Validate the per-task label matrices; return them side by side (n, M) int16."""
        if not isinstance(L_by_task, Mapping):
            raise ValueError(f"{what} must be a dict task name -> label matrix")
        unknown = [t for t in L_by_task if t not in self._pos]
        if unknown:
            raise ValueError(f"{what}: task {unknown[0]!r} is not in the tree {self.task_names}")
        if not L_by_task:
            raise ValueError(f"{what} is empty: give a label matrix for at least one task")
        n: Optional[int] = None
        n_from = None
        blocks = []
        for nd in self.nodes:
            t, k = nd.name, nd.cardinality
            if t not in L_by_task:
                blocks.append(None)
                continue
            try:
                L = as_label_matrix(L_by_task[t], k)  # the flat model's checks, per task
            except ValueError as e:
                raise ValueError(f"task {t!r}: {e}") from None
            if n is None:
                n, n_from = L.shape[0], t
            elif L.shape[0] != n:
                raise ValueError(f"task {t!r}: label matrix has {L.shape[0]} rows, task {n_from!r} has {n}")
            blocks.append(L.astype(np.int16, copy=False))
        cols = []
        for nd, B in zip(self.nodes, blocks):
            m = 0 if B is None else B.shape[1]
            if fitted_m is not None and m != fitted_m[nd.name]:
                raise ValueError(f"task {nd.name!r}: label matrix has {m} LFs, the model was fitted "
                                 f"with {fitted_m[nd.name]}")
            if B is not None and m:
                cols.append(B)
        assert n is not None
        if not cols:
            return np.zeros((n, 0), dtype=np.int16)
        return np.ascontiguousarray(np.concatenate(cols, axis=1))

    def _dev_mask(self, Y_by_task: Mapping[str, Sequence[int]], n: int) -> np.ndarray:
        """(n, S) bool: joint states consistent with the (partial) dev gold."""
        if not isinstance(Y_by_task, Mapping):
            raise ValueError("dev gold must be a dict task name -> labels")
        Y = np.full((n, len(self.nodes)), UNKNOWN, dtype=np.int64)
        for t, y in Y_by_task.items():
            if t not in self._pos:
                raise ValueError(f"dev gold: task {t!r} is not in the tree {self.task_names}")
            i = self._pos[t]
            y = np.asarray(y).ravel()
            if y.dtype.kind not in "iu":
                raise ValueError(f"task {t!r}: dev gold must hold integers, got dtype {y.dtype}")
            if len(y) != n:
                raise ValueError(f"task {t!r}: dev gold has {len(y)} labels for {n} dev rows")
            lo = NOT_APPLICABLE if self.nodes[i].parent is not None else UNKNOWN
            bad = (y < UNKNOWN) | (y >= self._k[i]) | ((y == NOT_APPLICABLE) & (lo == UNKNOWN))
            if bad.any():
                raise ValueError(f"task {t!r}: dev gold value {int(y[bad][0])} is not a class in "
                                 f"0..{self._k[i] - 1}, -2 (unknown)"
                                 + (" or -1 (not applicable)" if lo == NOT_APPLICABLE else ""))
            Y[:, i] = y
        # Parent/child consistency, with the task named.
        for i, nd in enumerate(self.nodes):
            if nd.parent is None:
                continue
            p = self._pos[nd.parent]
            yc, yp = Y[:, i], Y[:, p]
            known = (yc != UNKNOWN) & (yp != UNKNOWN)
            app_p = (yp == nd.parent_class) & (yp >= 0)
            bad = known & ((yc >= 0) != app_p)
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                raise ValueError(f"task {nd.name!r}: dev row {r} has label {int(yc[r])} but its parent "
                                 f"{nd.parent!r} has {int(yp[r])} (the task applies iff the parent is "
                                 f"class {nd.parent_class})")
        mask = np.ones((n, self._J.shape[0]), dtype=bool)
        for i in range(len(self.nodes)):
            known = Y[:, i] != UNKNOWN
            mask[known] &= self._J[None, :, i] == Y[known, i][:, None]
        if not mask.any(axis=1).all():
            r = int(np.flatnonzero(~mask.any(axis=1))[0])
            raise ValueError(f"dev row {r}: its gold labels fit no consistent joint state")
        return mask

    # --------------------------------------------------------------- fit
    def fit(self, L_by_task: Mapping[str, np.ndarray],
            dev: Optional[Tuple[Mapping[str, np.ndarray], Mapping[str, Sequence[int]]]] = None
            ) -> "HierarchicalLabelModel":
        """Fit by EM on the weak labels.

        Args:
            L_by_task: task name -> (n, m_t) int label matrix (``-1`` abstain).
                A task may be left out (it has no LFs; the tree still infers it).
            dev: optional ``(L_dev_by_task, Y_dev_by_task)``: dev label matrices
                (same LFs) and gold per task, a class index, ``-1`` (task does
                not apply; children only) or ``-2`` (unknown). Tasks missing
                from ``Y_dev_by_task`` are unknown.
        """
        cfg = self.config
        device = resolve_device(cfg.device)
        L = self._concat(L_by_task)
        n, M = L.shape
        if n == 0:
            raise ValueError("cannot fit on zero rows")
        self._m = {nd.name: (0 if nd.name not in L_by_task else int(np.asarray(L_by_task[nd.name]).shape[1]))
                   for nd in self.nodes}
        lf_task = np.concatenate([np.full(self._m[nd.name], i, dtype=np.int64)
                                  for i, nd in enumerate(self.nodes)]) if M else np.zeros(0, np.int64)
        self._lf_task = lf_task
        ks = self._k[lf_task]

        U, w, mask, cnt = self._fit_patterns(L, ks, dev)
        self._fit_voters(U, M)
        self._build_static(device)

        Ut = torch.from_numpy(U.astype(np.int64)).to(device)
        X, A = self._indicators(Ut)
        wt = torch.as_tensor(w, dtype=torch.float32, device=device)
        logmask = torch.from_numpy(np.where(mask, 0.0, -np.inf)).to(device, torch.float32)
        n_fit = float(cnt.sum())

        # Initial posterior: prior-precision weighted votes, uniform conditional prior.
        w0 = math.log(cfg.prior_precision / (1 - cfg.prior_precision))
        G0 = w0 * (self._own - self._na)  # (R, S)
        score = self._log_pi_uniform()[None, :] + X @ G0 + logmask
        Q = torch.softmax(score, dim=1)
        a0, b0 = self._prior_rates(X, Q, wt)

        prev = None
        converged = False
        it = 0
        for it in range(1, cfg.epochs + 1):
            a, b, e, logG, H, pi, log_pi = self._m_step(X, A, Q, wt, a0, b0, M)
            # ---- E-step
            score = self._score(X, A, logG, H, log_pi) + logmask
            Q = torch.softmax(score, dim=1)
            cur = torch.cat([logG.flatten(), log_pi] + ([] if H is None else [H.flatten()]))
            if prev is not None and float((cur - prev).abs().max()) <= cfg.tol:
                converged = True
                break
            prev = cur

        self._a, self._b, self._e = a, b, e
        self._logG, self._H, self._log_pi = logG, H, log_pi
        ll = torch.logsumexp(score, dim=1) * wt
        self.log_likelihood_ = float(ll.sum())
        self.n_iter_ = it
        self.converged_ = converged
        self.n_patterns_ = int(U.shape[0])
        self.n_fit_rows_ = int(n_fit)
        self.state_prior_ = pi.double().cpu().numpy()
        self._summarise()
        self._fitted = True
        return self

    def _fit_patterns(self, L: np.ndarray, ks: np.ndarray, dev):
        """Distinct vote patterns of the fitted rows (a seeded sample past `max_fit_rows`) with their
        weights and state masks, plus dev rows (weight `dev_weight`, masked to their gold states)."""
        cfg = self.config
        n = L.shape[0]
        if cfg.max_fit_rows is not None and n > cfg.max_fit_rows:
            rng = np.random.default_rng(cfg.seed)
            Ls = L[np.sort(rng.choice(n, size=cfg.max_fit_rows, replace=False))]
        else:
            Ls = L
        U, cnt = unique_rows(Ls)
        w = cnt.astype(np.float64)
        mask = np.ones((U.shape[0], self._J.shape[0]), dtype=bool)
        if dev is not None:
            if not isinstance(dev, tuple) or len(dev) != 2:
                raise ValueError("dev must be a tuple (L_dev_by_task, Y_dev_by_task)")
            Ld = self._concat(dev[0], fitted_m=self._m, what="dev label matrices")
            md = self._dev_mask(dev[1], Ld.shape[0])
            if cfg.dev_weight > 0 and len(Ld):
                U = np.concatenate([U, Ld])
                w = np.concatenate([w, np.full(len(Ld), float(cfg.dev_weight))])
                mask = np.concatenate([mask, md])
        return U, w, mask, cnt

    def _fit_voters(self, U: np.ndarray, M: int) -> None:
        """Voters: (LF column, class) pairs that fire in the fitted rows."""
        vj, vc = [], []
        for j in range(M):
            for v in np.unique(U[:, j]):
                if v >= 0:
                    vj.append(j)
                    vc.append(int(v))
        self._vj = np.asarray(vj, dtype=np.int64)
        self._vc = np.asarray(vc, dtype=np.int64)

    def _m_step(self, X, A, Q, wt, a0, b0, M: int):
        """MAP firing rates (own class, other class, not applicable), abstain evidence and the state prior."""
        cfg, eps, s = self.config, 1e-6, float(self.config.prior_strength)
        Qc = Q * wt[:, None]                       # (U, S)
        Ns = Qc.sum(0)                             # expected rows per state
        FS = X.T @ Qc                              # (R, S) expected firings per state
        S_a = (FS * self._own).sum(1)
        S_b = (FS * self._oth).sum(1)
        S_e = (FS * self._na).sum(1)
        M_a = self._own @ Ns
        M_b = self._oth @ Ns
        M_e = self._na @ Ns
        # MAP rates under Beta priors worth s pseudo-rows each (see _prior_rates).
        a = ((S_a + s * a0) / (M_a + s).clamp_min(eps)).clamp(eps, 1 - eps)
        b = ((S_b + s * b0) / (M_b + s).clamp_min(eps)).clamp(eps, 1 - eps)
        e = ((S_e + s * b0) / (M_e + s).clamp_min(eps)).clamp(eps, 1 - eps)
        logG = (self._own * torch.log(a)[:, None] + self._oth * torch.log(b)[:, None]
                + self._na * torch.log(e)[:, None])
        if not M or cfg.abstain_evidence == "none":
            H = None
        elif cfg.abstain_evidence == "full":
            # Normalised categorical per LF: P(abstain | y) = 1 - sum_v P(vote v | y).
            H = torch.log((1.0 - self._lf_of_voter @ torch.exp(logG)).clamp_min(eps))
        else:
            FA = A.T @ Qc                          # (M, S) expected abstains per state
            num = torch.einsum("js,jsg->jg", FA, self._grp)
            den = torch.einsum("s,jsg->jg", Ns, self._grp)
            rho = ((num + 1.0) / (den + 2.0)).clamp(eps, 1 - eps)
            H = torch.einsum("jg,jsg->js", torch.log(rho), self._grp)
        pi = (Ns + cfg.balance_prior) / (Ns.sum() + self._J.shape[0] * cfg.balance_prior)
        return a, b, e, logG, H, pi, torch.log(pi)

    def _prior_rates(self, X: torch.Tensor, Q: torch.Tensor, wt: torch.Tensor):
        """Prior means of the own-class and off-class (other class or NA) firing
        rates of every voter: the rates that give the voter precision
        ``prior_precision`` at its observed firing rate, with the state masses of
        the initial (prior-weighted vote) posterior. Fixed during EM, so a class
        that EM shrinks cannot pull its own prior along."""
        p0, eps = float(self.config.prior_precision), 1e-6
        f = (X.T @ wt) / wt.sum()                       # observed firing rate per voter
        Ns = (Q * wt[:, None]).sum(0)
        share_own = (self._own @ Ns) / Ns.sum()
        a0 = (f * p0 / share_own.clamp_min(eps)).clamp(eps, 0.95)
        b0 = (f * (1 - p0) / (1 - share_own).clamp_min(eps)).clamp(eps, 0.95)
        return a0, b0

    def _build_static(self, device: torch.device) -> None:
        """Per-voter state masks and per-LF abstain groups on ``device``."""
        J = torch.from_numpy(self._J).to(device)
        lf_task = torch.from_numpy(self._lf_task).to(device)
        vt = lf_task[torch.from_numpy(self._vj).to(device)] if len(self._vj) else torch.zeros(0, dtype=torch.long,
                                                                                                device=device)
        comp = J[:, vt].T                               # (R, S) voter's task component per state
        vc = torch.from_numpy(self._vc).to(device)[:, None]
        self._own = (comp == vc).to(torch.float32)
        self._na = (comp == NOT_APPLICABLE).to(torch.float32)
        self._oth = 1.0 - self._own - self._na
        M = len(self._lf_task)
        self._lf_of_voter = torch.zeros(M, len(self._vj), device=device)
        if len(self._vj):
            self._lf_of_voter[torch.from_numpy(self._vj).to(device),
                              torch.arange(len(self._vj), device=device)] = 1.0
        compl = J[:, lf_task].T                         # (M, S)
        g = (compl < 0).long()                          # abstain groups: applies / NA
        G = 2
        self._grp = torch.nn.functional.one_hot(g, G).to(torch.float32) if M else torch.zeros(
            0, J.shape[0], G, device=device)
        self._device = device

    def _indicators(self, Ut: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        vj = torch.from_numpy(self._vj).to(Ut.device)
        vc = torch.from_numpy(self._vc).to(Ut.device)
        X = (Ut[:, vj] == vc[None, :]).to(torch.float32)
        A = (Ut == ABSTAIN).to(torch.float32)
        return X, A

    def _score(self, X, A, logG, H, log_pi) -> torch.Tensor:
        score = log_pi[None, :] + X @ logG
        if H is not None:
            score = score + A @ H
        return score

    def _log_pi_uniform(self) -> torch.Tensor:
        """Log prior of each joint state with uniform conditionals down the tree."""
        lp = np.zeros(self._J.shape[0])
        for i, nd in enumerate(self.nodes):
            lp -= np.where(self._J[:, i] >= 0, math.log(nd.cardinality), 0.0)
        return torch.from_numpy(lp).to(self._device, torch.float32)

    def _summarise(self) -> None:
        """Per-task class balance and per-LF accuracy / propensity / NA firing rate."""
        pi = self.state_prior_
        a = self._a.double().cpu().numpy()
        b = self._b.double().cpu().numpy()
        e = self._e.double().cpu().numpy()
        self.class_balance_: Dict[str, np.ndarray] = {}
        self.lf_params_: Dict[str, Dict[str, np.ndarray]] = {}
        col0 = 0
        for i, nd in enumerate(self.nodes):
            k, m = nd.cardinality, self._m[nd.name]
            beta = np.array([pi[self._J[:, i] == c].sum() for c in range(k)])
            beta = beta / beta.sum()
            self.class_balance_[nd.name] = beta
            acc = np.full(m, np.nan)
            prop = np.zeros(m)
            na = np.full(m, np.nan) if nd.parent is None else np.zeros(m)
            for jj in range(m):
                sel = np.flatnonzero(self._vj == col0 + jj)
                if not len(sel):
                    continue
                fire = np.zeros(k)    # P(fire | y = u)
                right = np.zeros(k)   # P(vote u | y = u)
                for r in sel:
                    v = self._vc[r]
                    fire += b[r]
                    fire[v] += a[r] - b[r]
                    right[v] = a[r]
                prop[jj] = float(beta @ fire)
                acc[jj] = float(beta @ right) / prop[jj]
                if nd.parent is not None:
                    na[jj] = float(e[sel].sum())
            self.lf_params_[nd.name] = {"accuracy": acc, "propensity": prop, "na_fire_rate": na}
            col0 += m

    # ----------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("HierarchicalLabelModel is not fitted: call fit() first")

    def _posterior_parts(self, L_by_task: Mapping[str, np.ndarray]):
        """Yield (inverse index, per-unique-row log scores (U, S)) for the rows of ``L_by_task``."""
        self._check_fitted()
        L = self._concat(L_by_task, fitted_m=self._m)
        U, inv, _ = unique_rows(L, return_inverse=True)
        dev = self._device
        step = self.config.chunk_rows
        out = []
        for s0 in range(0, U.shape[0], step):
            Ut = torch.from_numpy(U[s0:s0 + step].astype(np.int64)).to(dev)
            X, A = self._indicators(Ut)  # votes for classes never seen in fit are ignored
            out.append(self._score(X, A, self._logG, self._H, self._log_pi))
        return inv, torch.cat(out) if out else torch.zeros(0, self._J.shape[0], device=dev)

    def _task_logmarg(self, score: torch.Tensor, i: int) -> torch.Tensor:
        """(U, k_i) log of unnormalised P(y_i = c, row)."""
        k = int(self._k[i])
        J = torch.from_numpy(self._J[:, i]).to(score.device)
        mask = J[None, :] == torch.arange(k, device=score.device)[:, None]  # (k, S)
        lm = torch.where(mask[None], score[:, None, :], torch.tensor(-math.inf, device=score.device))
        return torch.logsumexp(lm, dim=2)

    def predict_all(self, L_by_task: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, np.ndarray]]:
        """All outputs at once: ``{"marginal": {task: (n, k)}, "conditional": {task: (n, k)},
        "applicable": {task: (n,)}}`` (float32)."""
        inv, score = self._posterior_parts(L_by_task)
        lse = torch.logsumexp(score, dim=1, keepdim=True)
        out: Dict[str, Dict[str, np.ndarray]] = {"marginal": {}, "conditional": {}, "applicable": {}}
        for i, t in enumerate(self.task_names):
            lm = self._task_logmarg(score, i)
            lapp = torch.logsumexp(lm, dim=1, keepdim=True)
            out["marginal"][t] = torch.exp(lm - lse).cpu().numpy()[inv].astype(np.float32)
            out["conditional"][t] = torch.exp(lm - lapp).cpu().numpy()[inv].astype(np.float32)
            out["applicable"][t] = torch.exp(lapp - lse)[:, 0].cpu().numpy()[inv].astype(np.float32)
        return out

    def predict_proba(self, L_by_task: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Task -> (n, k_t) marginals ``P(y_t = c | row)``. A child's row sums to
        ``P(parent = parent_class | row)`` (= its ``P(applicable)``), the root's to 1."""
        return self.predict_all(L_by_task)["marginal"]

    def predict_conditional(self, L_by_task: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Task -> (n, k_t) ``P(y_t = c | task applies, row)``; rows sum to 1 (the
        target a child head trains on). For the root this equals the marginal."""
        return self.predict_all(L_by_task)["conditional"]

    def predict_applicable(self, L_by_task: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Task -> (n,) ``P(task applies | row)`` (1 for the root)."""
        return self.predict_all(L_by_task)["applicable"]

    def predict_joint(self, L_by_task: Mapping[str, np.ndarray]) -> np.ndarray:
        """(n, S) posterior over ``joint_states``."""
        inv, score = self._posterior_parts(L_by_task)
        return torch.softmax(score, dim=1).cpu().numpy()[inv].astype(np.float32)

    def predict(self, L_by_task: Mapping[str, np.ndarray],
                tie_break_seed: Optional[int] = None) -> Dict[str, np.ndarray]:
        """Task -> (n,) int64 consistent hard labels, top-down: the root takes the
        argmax of its marginal, a child the argmax of its conditional on rows where
        its parent's predicted label is its ``parent_class``, ``-1`` elsewhere.
        Ties are broken at random with ``tie_break_seed`` (default ``config.seed``)."""
        seed = self.config.seed if tie_break_seed is None else int(tie_break_seed)
        P = self.predict_all(L_by_task)
        preds: Dict[str, np.ndarray] = {}
        for i, nd in enumerate(self.nodes):
            cond = P["conditional"][nd.name]
            if nd.parent is None:
                preds[nd.name] = tie_break(cond, seed).astype(np.int64)
                continue
            y = np.full(cond.shape[0], NOT_APPLICABLE, dtype=np.int64)
            rows = np.flatnonzero(preds[nd.parent] == nd.parent_class)
            if len(rows):
                y[rows] = tie_break(cond[rows], seed + i, row_ids=rows)
            preds[nd.name] = y
        return preds
