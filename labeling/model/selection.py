"""`label fit --select-on valid`: pick the labels' model by accuracy on the valid split's gold labels.

The WRENCH protocol: the valid split is the small labeled dev set, used for
model selection. Off by default, since the default `label fit` uses no gold
label at all; when it is on, the JSON says so (``"uses_dev_labels": true``)
and reports every candidate's valid figures next to the choice. The chosen
candidate's valid accuracy is the figure it was chosen on, so it is optimistic;
the test split stays untouched by the choice.

Torch-free and pure: the caller computes the candidates' posteriors.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from mothermodel.labeling.model.votes import tie_break

__all__ = ["CANDIDATES", "select_on_valid"]

#: Candidate names in the order ties are settled (the first of equally accurate ones wins):
#: the `label fit` default first, then the simpler models.
CANDIDATES = ("label-model+text-view", "label-model", "majority")


def select_on_valid(candidates: Mapping[str, np.ndarray], gold: np.ndarray, split: np.ndarray, seed: int,
                    row_ids: Optional[np.ndarray] = None, select_split: str = "valid") -> dict[str, Any]:
    """Choose among the candidates' posteriors by accuracy on the rows of `select_split` with gold labels.

    Args:
        candidates: name -> (n, k) posteriors of every row (e.g. ``"majority"``,
            ``"label-model"``, ``"label-model+text-view"``). Ties in accuracy go to
            the name that comes first in :data:`CANDIDATES` (names not listed there
            come after, in the order given).
        gold: (n,) gold class per row, negative where unknown.
        split: (n,) each row's split name.
        seed: the tie-break seed (hard labels as `label fit` makes them).
        row_ids: (n,) row ids for the tie-break (default ``0 .. n-1``).
        select_split: the split whose gold labels decide.

    Returns a JSON-ready dict: ``chosen`` (name), ``uses_dev_labels`` (True),
    ``selected_on`` (split name and number of gold rows), ``rule``, and
    ``candidates`` (name -> that split's ``accuracy``, ``correct``); plus
    ``probs``, the chosen posteriors (not JSON: pop it before printing).

    Raises:
        ValueError: no candidates, posteriors of different shapes, or no row of
            `select_split` with a gold label.
    """
    if not candidates:
        raise ValueError("select_on_valid: no candidates")
    gold = np.asarray(gold).ravel()
    split = np.asarray(split).ravel()
    shapes = {np.asarray(P).shape for P in candidates.values()}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(gold) or len(split) != len(gold):
        raise ValueError(f"select_on_valid: posteriors {sorted(shapes)}, {len(gold)} gold labels and "
                         f"{len(split)} split names must cover the same rows")
    rows = (split == select_split) & (gold >= 0)
    if not rows.any():
        raise ValueError(f"--select-on {select_split}: no row of split {select_split!r} has a gold label")
    ids = np.arange(len(gold)) if row_ids is None else np.asarray(row_ids).ravel()
    order = [c for c in CANDIDATES if c in candidates] + [c for c in candidates if c not in CANDIDATES]
    figures = {}
    for name in order:
        P = np.asarray(candidates[name])
        pred = tie_break(P[rows], seed, row_ids=ids[rows])
        correct = int((pred == gold[rows]).sum())
        figures[name] = {"accuracy": correct / int(rows.sum()), "correct": correct}
    chosen = max(order, key=lambda c: (figures[c]["correct"], -order.index(c)))
    return {"chosen": chosen, "uses_dev_labels": True,
            "selected_on": {"split": select_split, "rows": int(rows.sum())},
            "rule": "highest accuracy on the split's gold labels; ties: " + " > ".join(order),
            "candidates": figures, "probs": np.asarray(candidates[chosen])}
