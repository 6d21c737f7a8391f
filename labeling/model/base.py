"""What every label model here shares: the label-matrix input, the option types, the settings checks, and
the small protocol a labeler follows (``fit`` / ``predict_proba`` / ``predict``).

A label matrix ``L`` is an integer array of shape ``(n, m)``: one row per data
point, one column per labeling function (LF), ``-1`` (:data:`ABSTAIN`) where an
LF abstains, else a class index in ``0 .. cardinality-1``. A sparse triple
``(rows, cols, labels, n, m)`` (the stored Arrow/Parquet layout, abstains left
out) is accepted wherever ``L`` is.

numpy only: `label apply`, `label analyze` and the majority vote import this without torch.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import numpy as np

from mothermodel.defaults import ABSTAIN

#: Whether callers should pass labeled dev rows (``fit(L, L_dev=..., Y_dev=...)``)
#: by default. False: the default model is EM on the weak labels only. The
#: CV-tuned dev correction (``dev_mode='correct'``) won on WRENCH trec *valid*
#: cross-validation (0.628 vs 0.572) but lost on trec *test* (0.522 vs 0.648),
#: so it is opt-in; see docs/label_model.md.
DEFAULT_USE_DEV: bool = False

SparseTriple = Tuple[Any, Any, Any, int, int]
LabelMatrixLike = Union[np.ndarray, SparseTriple]

#: What an LF's abstention tells a label model about a row's class, one vocabulary for every model here:
#: ``"none"``: nothing (abstains are ignored); ``"class"``: per class, "no LF of this class fired" is evidence
#: (one factor per class, two rates each); ``"applicability"``: one abstain rate while a task applies to the
#: row and one while it does not (task trees); ``"full"``: each LF's abstain is one outcome of its categorical
#: (``1 - sum of its firing rates``). A model accepts the modes its likelihood has (flat: none/class; tree:
#: none/applicability/full) and refuses the others by name; each config documents its default and why.
AbstainEvidence = Literal["none", "class", "applicability", "full"]
#: Devices a label model runs on: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
Device = str


@runtime_checkable
class Labeler(Protocol):
    """A flat label model: votes in, probabilistic labels out (MajorityVoter, LabelModel)."""

    cardinality: int

    def predict_proba(self, L: LabelMatrixLike) -> np.ndarray:
        """(n, k) float32 posteriors, rows summing to 1."""

    def predict(self, L: LabelMatrixLike, tie_break_seed: Optional[int] = None,
                row_ids: Optional[np.ndarray] = None) -> np.ndarray:
        """(n,) hard labels, ties broken per row from the seed and the row id."""


def check_mode(name: str, value: str, allowed: Sequence[str]) -> None:
    """A Literal option checked at run time, naming the option and its values."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def small_dtype(cardinality: int) -> np.dtype:
    return np.dtype(np.int8) if cardinality <= 127 else np.dtype(np.int16)


def as_label_matrix(L: LabelMatrixLike, cardinality: int) -> np.ndarray:
    """Return ``L`` as a validated dense ``(n, m)`` int8 (int16 if k > 127) array.

    Accepts a dense integer array or a sparse triple ``(rows, cols, labels, n,
    m)``. Values must be ``-1`` or a class index below ``cardinality``; an
    int8 input is returned without a copy.
    """
    if cardinality < 2:
        raise ValueError(f"cardinality must be >= 2, got {cardinality}")
    dt = small_dtype(cardinality)
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
        check_values(labels, cardinality)
        dense = np.full((int(n), int(m)), ABSTAIN, dtype=dt)
        dense[rows, cols] = labels.astype(dt)
        return dense
    if hasattr(L, "detach") and hasattr(L, "cpu"):  # a torch tensor, without importing torch
        L = L.detach().cpu().numpy()
    L = np.asarray(L)
    if L.ndim != 2:
        raise ValueError(f"label matrix must be 2-D (n rows x m LFs), got shape {L.shape}")
    if L.dtype.kind not in "iu":
        raise ValueError(f"label matrix must hold integers, got dtype {L.dtype}")
    check_values(L, cardinality)
    if L.dtype == dt:
        return L
    return L.astype(dt)


def check_values(a: np.ndarray, cardinality: int) -> None:
    if a.size == 0:
        return
    lo, hi = int(a.min()), int(a.max())
    if lo < ABSTAIN or hi >= cardinality:
        raise ValueError(
            f"label values must be -1 (abstain) or in 0..{cardinality - 1}, found range [{lo}, {hi}]"
        )


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
