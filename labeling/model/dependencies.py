"""Near-duplicate LFs: voters that fire together more often than independent LFs could.

Torch-free (numpy only), so `label analyze` can report the groups and the label
model (labeling/model/label_model.py) can count each group's votes once.

The test. Two voters ``r`` and ``s`` (an LF and the class it votes; different
LFs, same class) are near-duplicates when each fires on at least
``min_cofire`` of the other's rows (at least ``min_rows`` rows) and that share
is ``margin`` above the most that two LFs independent given the class could
reach. For independent LFs::

    P(s fires | r fires) = sum_y P(y | r fires) P(s fires | y) <= max_y P(s fires | y)
                        <= F_s / (n * min(beta_c, 1 - beta_c))

(``F_s`` the rows ``s`` fires on, ``n`` the rows, ``beta_c`` the share of its
class: ``s`` cannot fire on more than all rows of its class, nor on more than
all rows of the other classes). The bound needs no accuracy estimate, so the
duplicates cannot talk the test out of it by agreeing with each other (which is
what makes them look accurate to a label model). Groups are the connected
components of the relation. It finds copies and near-copies of an LF whose
coverage is well below its class's share of the rows; an LF that fires on
nearly every row of its class cannot be told from an independent one this way.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from mothermodel.labeling.model.votes import unique_rows

__all__ = ["near_duplicate_groups", "voter_matrix", "vote_share", "duplicate_units", "lf_groups"]


def near_duplicate_groups(L: np.ndarray, cardinality: int, min_cofire: float = 0.5, margin: float = 0.2,
                          min_rows: int = 5, class_balance: Optional[Sequence[float]] = None) -> List[List[int]]:
    """Groups (2+ LF column indices each) of near-duplicate LFs in the label matrix ``L`` (-1 = abstain).

    ``class_balance`` defaults to the majority-vote class shares of the covered rows.
    """
    L = np.asarray(L)
    if L.ndim != 2 or L.shape[0] == 0 or L.shape[1] < 2:
        return []
    U, cnt = unique_rows(L)
    X, lf, cls = voter_matrix(U, cardinality)
    cnt_f = cnt.astype(np.float64)
    beta = (np.asarray(class_balance, np.float64) if class_balance is not None
            else vote_share(X, cls, cnt_f, cardinality))
    co = X.T @ (X * cnt[:, None].astype(np.float32))
    unit = duplicate_units(co, lf, cls, float(cnt_f.sum()), beta, min_cofire, margin, min_rows)
    return lf_groups(unit, lf)


def voter_matrix(U: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows x voters) 0/1 float32 matrix of the (LF, class) pairs that occur in ``U``, and each voter's
    LF and class (voters ordered by LF, then class)."""
    lf, cls = [], []
    for v in range(k):
        js = np.flatnonzero((U == v).any(axis=0))
        lf.append(js)
        cls.append(np.full(len(js), v))
    lf_a, cls_a = np.concatenate(lf).astype(np.int64), np.concatenate(cls).astype(np.int64)
    order = np.lexsort((cls_a, lf_a))
    lf_a, cls_a = lf_a[order], cls_a[order]
    X = (U[:, lf_a] == cls_a[None, :].astype(U.dtype)).astype(np.float32)
    return X, lf_a, cls_a


def vote_share(X: np.ndarray, cls: np.ndarray, cnt: np.ndarray, k: int) -> np.ndarray:
    """Class shares of the majority vote (ties split) over the covered rows, add-one smoothed."""
    C = np.zeros((len(cls), k))
    C[np.arange(len(cls)), cls] = 1.0
    votes = X @ C
    top = votes.max(axis=1, keepdims=True) if len(cls) else np.zeros((X.shape[0], 1))
    covered = top[:, 0] > 0
    share = ((votes == top) & covered[:, None]).astype(np.float64)
    share[covered] /= share[covered].sum(axis=1, keepdims=True)
    mass = (share * cnt[:, None]).sum(0) + 1.0
    return mass / mass.sum()


def duplicate_units(co: np.ndarray, lf: np.ndarray, cls: np.ndarray, n: float, beta: np.ndarray,
                    min_cofire: float, margin: float, min_rows: int) -> np.ndarray:
    """Each voter's unit id: near-duplicate voters (the module's test) share one, every other voter has its own.

    ``co``: (voters x voters) rows where both fire (the diagonal: each voter's rows; only
    pairs of one class are read), ``n``: rows, ``beta``: class balance.
    """
    R = len(lf)
    if R < 2:
        return np.arange(R)
    co = np.asarray(co, dtype=np.float64)
    F = np.diag(co).copy()
    b = beta[cls]
    bound = np.minimum(1.0, F / (n * np.minimum(b, 1.0 - b)).clip(1e-12))
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = co / F[:, None]  # [r, s] = P(s fires | r fires)
    ok = (cond >= min_cofire) & (cond >= bound[None, :] + margin) & (co >= min_rows)
    dup = ok & ok.T & (cls[:, None] == cls[None, :]) & (lf[:, None] != lf[None, :])
    parent = np.arange(R)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r, s in zip(*np.nonzero(np.triu(dup, 1))):
        ra, rb = find(int(r)), find(int(s))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(r) for r in range(R)])


def lf_groups(unit: np.ndarray, lf: np.ndarray) -> List[List[int]]:
    """The LF groups (2+ LFs) that voter units make."""
    groups: dict = {}
    for u, j in zip(unit.tolist(), lf.tolist()):
        groups.setdefault(u, set()).add(j)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)
