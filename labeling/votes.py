"""Vote counting and the seeded tie-break, without torch.

`label apply` needs hard majority labels for upstream task outputs and must not
import torch; the label models (labeling/model.py, labeling/hierarchy.py) and
`label fit` use the same two functions, so every command breaks ties alike.
"""

from __future__ import annotations

import numpy as np


def vote_counts(L: np.ndarray, cardinality: int, chunk_rows: int = 1 << 20) -> np.ndarray:
    """(n, k) int32: how many sources vote for each class on each row (-1 = abstain)."""
    n = L.shape[0]
    counts = np.empty((n, cardinality), np.int32)
    for s in range(0, n, chunk_rows):
        blk = L[s:s + chunk_rows]
        for c in range(cardinality):
            counts[s:s + len(blk), c] = np.count_nonzero(blk == c, axis=1)
    return counts


def tie_break(P: np.ndarray, seed: int, tol: float = 1e-5) -> np.ndarray:
    """Argmax of each row; rows with several (near-)maximal classes pick one of
    them uniformly at random from a generator seeded with ``seed``."""
    n = P.shape[0]
    out = P.argmax(axis=1)
    if n == 0:
        return out
    mx = P[np.arange(n), out][:, None]
    tied = P >= mx - tol
    multi = np.flatnonzero(tied.sum(axis=1) > 1)
    if len(multi):
        rng = np.random.default_rng(seed)
        r = rng.random((len(multi), P.shape[1]))
        r[~tied[multi]] = -1.0
        out[multi] = r.argmax(axis=1)
    return out


def majority_hard(L: np.ndarray, cardinality: int, seed: int) -> np.ndarray:
    """Most voted class per row, ties broken by :func:`tie_break`; -1 where every source abstains."""
    counts = vote_counts(L, cardinality)
    pred = tie_break(counts.astype(np.float32), seed)
    pred[counts.sum(axis=1) == 0] = -1
    return pred
