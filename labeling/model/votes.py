"""Vote counting and the seeded tie-break, without torch.

`label apply` needs hard majority labels for upstream task outputs and must not
import torch; the label models (labeling/model/label_model.py, labeling/model/hierarchy.py) and
`label fit` use the same functions, so every command breaks ties alike.

The tie-break is counter-based: the random number that decides a tie on a row
is a hash of ``(seed, row id, class)``, so a row gets the same answer whatever
other rows are predicted with it (all splits at once in `label fit`, one split
in a benchmark, a chunk in a stream).
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def vote_counts(L: np.ndarray, cardinality: int, chunk_rows: int = 1 << 20) -> np.ndarray:
    """(n, k) int32: how many sources vote for each class on each row (-1 = abstain)."""
    n = L.shape[0]
    counts = np.empty((n, cardinality), np.int32)
    for s in range(0, n, chunk_rows):
        blk = L[s:s + chunk_rows]
        for c in range(cardinality):
            counts[s:s + len(blk), c] = np.count_nonzero(blk == c, axis=1)
    return counts


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 (wrapping arithmetic): a counter-based generator."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def row_uniforms(seed: int, row_ids: np.ndarray, cardinality: int) -> np.ndarray:
    """(len(row_ids), k) numbers in [0, 1) that depend only on (seed, row id, class)."""
    ids = np.asarray(row_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5DEECE66D))
        base = _splitmix64(ids * np.uint64(0x9E3779B97F4A7C15) ^ key)
        cls = np.arange(cardinality, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
        bits = _splitmix64(base[:, None] ^ cls[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def tie_break(P: np.ndarray, seed: int, tol: float = 1e-5, row_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Argmax of each row; a row with several (near-)maximal classes picks one of them
    uniformly at random, with a draw that depends only on ``(seed, row id)``.

    Args:
        P: (n, k) scores or probabilities.
        seed: the tie-break seed.
        tol: classes within ``tol`` of the row's maximum are tied.
        row_ids: (n,) stable ids of the rows (default ``0 .. n-1``). Pass the rows'
            ids in the whole dataset when predicting a subset, so that each row
            breaks its tie as it would when every row is predicted together.
    """
    P = np.asarray(P)
    n = P.shape[0]
    out = P.argmax(axis=1)
    if n == 0:
        return out
    if row_ids is None:
        row_ids = np.arange(n)
    else:
        row_ids = np.asarray(row_ids).ravel()
        if len(row_ids) != n:
            raise ValueError(f"row_ids has {len(row_ids)} ids for {n} rows")
    mx = P[np.arange(n), out][:, None]
    tied = P >= mx - tol
    multi = np.flatnonzero(tied.sum(axis=1) > 1)
    if len(multi):
        r = row_uniforms(seed, row_ids[multi], P.shape[1])
        r[~tied[multi]] = -1.0
        out[multi] = r.argmax(axis=1)
    return out


def majority_hard(L: np.ndarray, cardinality: int, seed: int, row_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Most voted class per row, ties broken by :func:`tie_break`; -1 where every source abstains."""
    counts = vote_counts(L, cardinality)
    pred = tie_break(counts.astype(np.float32), seed, row_ids=row_ids)
    pred[counts.sum(axis=1) == 0] = -1
    return pred


def one_hot_where(P: np.ndarray, labels: Optional[np.ndarray]) -> np.ndarray:
    """Posteriors `P` (n, k) with every row whose `labels` entry is a class (>= 0) set one-hot on it (a copy,
    float32); `P` itself when no row is labelled. Hand labels (`label add`) become targets this way."""
    if labels is None or not (labels >= 0).any():
        return P
    rows = np.flatnonzero(labels >= 0)
    out = np.array(P, dtype=np.float32, copy=True)
    out[rows] = 0.0
    out[rows, labels[rows]] = 1.0
    return out


def unique_rows(L: np.ndarray, return_inverse: bool = False):
    """Distinct rows of ``L`` and their counts (``(U, cnt)``), or ``(U, inv, cnt)`` with ``U[inv] == L``.

    The one implementation for every label model here. Rows are hashed to uint64 eight bytes at a time (a row
    of 50 int8 votes is seven multiply-xor steps, not fifty), the hashes deduplicated with ``np.unique``, and
    the result verified exactly, block by block (falls back to ``np.unique(axis=0)`` on a hash collision).
    When no two hashes are equal the rows are all distinct and ``L`` itself is returned (no copy).
    """
    n, m = L.shape
    if n == 0:
        none = np.zeros(0, dtype=np.int64)
        return (L, none, none) if return_inverse else (L, none)
    h = _row_hashes(np.ascontiguousarray(L))
    hs = np.sort(h)
    if not (hs[1:] == hs[:-1]).any():  # distinct hashes: distinct rows, exactly; L is its own pattern set
        ones = np.ones(n, dtype=np.int64)
        return (L, np.arange(n, dtype=np.int64), ones) if return_inverse else (L, ones)
    del hs
    _, first, inv, cnt = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    del h
    U = L[first]
    inv = inv.ravel()
    step = max(1, (1 << 22) // max(m, 1))  # verify in blocks: no second (n, m) copy
    if not all(np.array_equal(U[inv[s:s + step]], L[s:s + step]) for s in range(0, n, step)):
        U, inv, cnt = np.unique(L, axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
    cnt = cnt.astype(np.int64)
    return (U, inv.astype(np.int64), cnt) if return_inverse else (U, cnt)


def _row_hashes(L: np.ndarray) -> np.ndarray:
    """(n,) uint64 hash of each row's bytes: whole 8-byte words, then the tail bytes."""
    b = L.reshape(L.shape[0], -1).view(np.uint8)
    nw = b.shape[1] // 8
    mult = np.random.default_rng(0x5EED).integers(1, 2**62, size=nw + b.shape[1] % 8 + 1, dtype=np.int64)
    mult = mult.astype(np.uint64) | np.uint64(1)
    h = np.full(b.shape[0], mult[-1], dtype=np.uint64)
    with np.errstate(over="ignore"):
        if nw:
            words = b[:, :8 * nw].view(np.uint64)  # rows stay contiguous: a view, no copy
            for i in range(nw):
                h ^= words[:, i]
                h *= mult[i]
                h ^= h >> np.uint64(29)
        for t, j in enumerate(range(8 * nw, b.shape[1])):
            h ^= b[:, j].astype(np.uint64)
            h *= mult[nw + t]
            h ^= h >> np.uint64(29)
    return h
