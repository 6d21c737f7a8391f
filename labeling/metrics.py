"""Accuracy and macro-F1 per split with gold labels: the figures every stage reports."""

from __future__ import annotations

import numpy as np

SPLIT_ORDER = ("train", "valid", "test")


def metrics(y_true: np.ndarray, y_pred: np.ndarray, cardinality: int) -> dict[str, float]:
    """Accuracy and macro-F1 (over classes present in gold or predictions)."""
    acc = float((y_true == y_pred).mean()) if len(y_true) else float("nan")
    f1s = []
    for c in range(cardinality):
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": acc, "macro_f1": float(np.mean(f1s)) if f1s else float("nan"), "n": int(len(y_true))}


def splits_in_order(split: np.ndarray) -> list[str]:
    """train, valid, test first (those present), then any other split names."""
    present = set(split.tolist())
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))


def split_metrics(gold: np.ndarray | None, preds: np.ndarray, split: np.ndarray, k: int) -> dict[str, dict]:
    """Accuracy and macro-F1 on each split that has gold labels."""
    out: dict[str, dict[str, float]] = {}
    if gold is None:
        return out
    for s in splits_in_order(split):
        mask = (split == s) & (gold >= 0)
        if mask.any():
            out[s] = metrics(gold[mask], preds[mask], k)
    return out
