"""Metrics of a trained model: accuracy and macro-F1 per task, per split with gold labels.

The numbers are the same functions `label fit` reports (labeling.metrics),
so the mother model's figures sit beside the label model's like for like. The
registry glue names them ``task/dataset/split/metric`` (`MetricKey`, :func:`metric_keys`).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from mothermodel.labeling.metrics import metrics, splits_in_order
from mothermodel.labeling.slices import split_figures
from mothermodel.registry.metric_key import MetricKey, flatten, per_split
from mothermodel.trainer.data import TaskData, Tokenized, tokenize
from mothermodel.trainer.predict import predict_tokens

__all__ = ["evaluate", "metric_keys"]


def evaluate(model: Any, tokenizer: Any, tasks: Sequence[TaskData], *, max_length: int = 128,
             batch_size: int = 128, splits: Optional[Sequence[str]] = None,
             tokens: Optional[dict[str, Tokenized]] = None) -> dict[str, dict[str, dict[str, float]]]:
    """task -> split -> {"accuracy", "macro_f1", "n"} on rows with gold >= 0.

    Only rows that some evaluated split needs are run through the model, once
    per dataset for every task on it. `splits` limits the splits (default:
    every split with gold labels); `tokens` reuses a training run's tokenisation.
    """
    tokens = dict(tokens or {})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    by_dataset: dict[str, list[TaskData]] = {}
    for t in tasks:
        if t.gold is not None:
            by_dataset.setdefault(t.dataset, []).append(t)
    res: dict[str, dict[str, dict[str, float]]] = {t.name: {} for t in tasks}
    for ds, ts in by_dataset.items():
        need = np.zeros(len(ts[0].texts), bool)
        for t in ts:
            m = t.gold >= 0
            if splits is not None:
                m &= np.isin(t.split, list(splits))
            need |= m
        rows = np.flatnonzero(need)
        if len(rows) == 0:
            continue
        tok = tokens.get(ds) or tokenize(tokenizer, ts[0].texts, max_length)
        tokens[ds] = tok
        probs = predict_tokens(model, tok, tasks=[t.name for t in ts], rows=rows, batch_size=batch_size, pad_id=pad)
        for t in ts:
            pred = np.full(len(t.texts), -1, np.int64)
            pred[rows] = probs[t.name].argmax(axis=1)
            names = splits_in_order(t.split[rows])
            for s in names:
                if splits is not None and s not in splits:
                    continue
                m = (t.split == s) & (t.gold >= 0)
                if m.any():
                    res[t.name][s] = metrics(t.gold[m], pred[m], t.num_classes)
            res[t.name].update(slice_figures(t, pred, splits))
    return res


def slice_figures(t: TaskData, pred: np.ndarray, splits: Optional[Sequence[str]] = None) -> dict[str, dict[str, Any]]:
    """Per declared slice (`TaskData.measured`) and split: the figure of `pred` (labeling/slices.py
    `split_figures`: under the split name ``<split>/slice:<name>``)."""
    return split_figures(t.measured, t.gold, pred, t.split, splits)


def metric_keys(results: dict[str, dict[str, dict[str, float]]], datasets: dict[str, str]) -> dict[str, float]:
    """Flatten :func:`evaluate`'s result to ``{"task/dataset/split/metric": value}`` (accuracy, macro_f1);
    the names are `MetricKey`'s (registry/metric_key.py)."""
    keys: dict[MetricKey, float] = {}
    for task, splits in results.items():
        keys.update(per_split(task, datasets.get(task, task), splits, ("accuracy", "macro_f1")))
    return flatten(keys)
