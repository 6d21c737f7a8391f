"""Slices: a task's slice membership as `label apply` recorded it, and per-slice metrics with the
rules every stage reports them by (docs/writing-tasks.md, "Slices").

- Membership is read from the task's latest `slice_memberships` version (hash-checked), aligned to dataset
  rows. Slices edited or added since that version are named in `stale` (their rows are not measured:
  `label apply` brings them up to date), so no figure is silently computed from an old definition.
- A slice's accuracy on a split counts its rows with gold labels (rows trained on as hand labels have none
  and are never scored). Below MIN_ROWS such rows a figure is flagged `too_small`; every figure carries its
  95% Wilson interval, so a small slice says how little it knows instead of printing noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mothermodel.labeling import label_files
from mothermodel.labeling.metrics import splits_in_order
from mothermodel.registry.records import DatasetRecord, SliceMembershipRecord, TaskRecord

MIN_ROWS = 30
"""Fewer scored rows than this in a slice: its figure is reported with `too_small: true` (and its interval)."""
Z95 = 1.959964


@dataclass(frozen=True)
class Membership:
    """Which dataset rows are in which of a task's slices."""

    version: int
    names: list[str]  # the slices measured (current ones with an up-to-date membership), in name order
    members: np.ndarray  # (dataset rows, len(names)) bool
    stale: list[str]  # current slices this membership does not cover as defined now (not measured)

    def to_json(self) -> dict[str, Any]:
        return {"membership_version": self.version, "stale": self.stale}

    def by_name(self) -> dict[str, np.ndarray]:
        """slice name -> (rows,) bool membership."""
        return {n: self.members[:, j] for j, n in enumerate(self.names)}


def identities(t: TaskRecord) -> dict[str, dict[str, Any]]:
    """What a task's membership is computed from, per slice (as `label apply` records it)."""
    return {s.name: {"version": s.version, "code_hash": s.code_hash} for s in t.slices}


def read(store, t: TaskRecord, ds: DatasetRecord, record: SliceMembershipRecord | None = None
         ) -> Membership | None:
    """TASK's latest membership (or `record`), aligned to its dataset's rows; None when the task has no
    slices or no membership yet. A membership of another dataset version measures nothing (all stale)."""
    if not t.slices:
        return None
    if record is None:
        versions = store.slice_memberships(t.name)
        record = versions[0] if versions else None
    if record is None:
        return None
    current = identities(t)
    same_data = record.dataset_hash == ds.content_hash
    fresh = sorted(n for n, i in current.items() if same_data and record.slice_versions.get(n) == i)
    num_rows = ds.num_rows
    table = label_files.read_checked(store.ws, record.path, record.content_hash)
    col = table.column("slice").combine_chunks()
    stored = col.dictionary.to_pylist()
    idx = col.indices.to_numpy(zero_copy_only=False)
    rows = table.column("row").to_numpy()
    members = np.zeros((num_rows, len(fresh)), bool)
    for j, n in enumerate(fresh):
        if n in stored:
            members[rows[idx == stored.index(n)], j] = True
    return Membership(record.version, fresh, members, sorted(set(current) - set(fresh)))


def wilson(correct: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion correct/n (n > 0)."""
    p = correct / n
    d = 1 + Z95 ** 2 / n
    centre = (p + Z95 ** 2 / (2 * n)) / d
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def figure(correct: int, n: int) -> dict[str, Any]:
    """One slice's accuracy on one split: {"n", "accuracy", "ci95", "too_small"} (accuracy None when n = 0)."""
    if n == 0:
        return {"n": 0, "accuracy": None, "ci95": None, "too_small": True}
    lo, hi = wilson(correct, n)
    return {"n": int(n), "accuracy": correct / n, "ci95": [round(lo, 4), round(hi, 4)], "too_small": n < MIN_ROWS}


def _split_figure(member: np.ndarray, in_split: np.ndarray, gold: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """One slice on one split: `figure` of its scored rows, plus "rows": its rows in the split, scored or not."""
    rows = member & in_split
    scored = rows & (gold >= 0)
    return {**figure(int((pred[scored] == gold[scored]).sum()), int(scored.sum())), "rows": int(rows.sum())}


def metrics(m: Membership, gold: np.ndarray | None, pred: np.ndarray, split: np.ndarray) -> dict[str, dict]:
    """Per slice, per split with gold labels: its accuracy figure (`_split_figure`), plus "share": the slice's
    rows over the split's rows."""
    if gold is None:
        return {n: {} for n in m.names}
    splits = [(s, split == s) for s in splits_in_order(split)]
    splits = [(s, in_split) for s, in_split in splits if (in_split & (gold >= 0)).any()]
    out: dict[str, dict] = {}
    for j, name in enumerate(m.names):
        out[name] = {}
        for s, in_split in splits:
            f = _split_figure(m.members[:, j], in_split, gold, pred)
            out[name][s] = {**f, "share": float(f["rows"] / in_split.sum())}
    return out


def split_figures(measured: dict[str, np.ndarray], gold: np.ndarray | None, pred: np.ndarray, split: np.ndarray,
                  splits: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The figures of a model's predictions per slice and split in the shape of a split's metrics, under the
    split name ``<split>/slice:<name>`` (so `MetricKey` names them ``task/dataset/<split>/slice:<name>/accuracy``):
    `figure` plus "rows". `measured`: slice name -> (rows,) bool membership. Slices without a scored row on a
    split are left out."""
    out: dict[str, dict[str, Any]] = {}
    if gold is None:
        return out
    for name, member in measured.items():
        for s in splits_in_order(split):
            if splits is not None and s not in splits:
                continue
            f = _split_figure(member, split == s, gold, pred)
            if f["n"]:
                out[f"{s}/slice:{name}"] = f
    return out
