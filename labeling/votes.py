"""Majority vote without torch: hard labels for upstream task outputs during apply."""

from __future__ import annotations

import numpy as np


def vote_counts(L: np.ndarray, cardinality: int) -> np.ndarray:
    n = L.shape[0]
    counts = np.zeros((n, cardinality), np.int32)
    rows, cols = np.nonzero(L >= 0)
    np.add.at(counts, (rows, L[rows, cols].astype(np.int64)), 1)
    return counts


def majority_hard(L: np.ndarray, cardinality: int, seed: int) -> np.ndarray:
    """Most voted class per row, ties broken at random with `seed`; -1 where every source abstains."""
    counts = vote_counts(L, cardinality)
    rng = np.random.default_rng(seed)
    noise = rng.random(counts.shape)
    top = counts == counts.max(axis=1, keepdims=True)
    pred = np.argmax(np.where(top, noise, -1.0), axis=1)
    pred[counts.sum(axis=1) == 0] = -1
    return pred
