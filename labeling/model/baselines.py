"""Baselines every learned label model is measured against: the plain majority vote (numpy only)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from mothermodel.defaults import DEFAULT_SEED
from mothermodel.labeling.model.base import LabelMatrixLike, as_label_matrix
from mothermodel.labeling.model.votes import tie_break, vote_counts


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
