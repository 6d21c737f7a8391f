"""Gold labels: one rule for turning a dataset column into a task's class indices.

A gold column holds class indices (integers, or floats that are whole numbers)
or class names (strings matching the task's classes); null, NaN, -1 and the
empty string mean "unknown" (-1). Anything else is refused naming the dataset,
column, task and the offending value, so no stage ever scores a task against
labels that are not its own (trainer/data.py's range check is then unreachable
from user data).

Where the column comes from decides what a misfit is (`resolve`):
- named for the task (its spec's `gold:` field, or a `gold_<task>` column): an
  error (exit 2 at `task submit`; a recorded per-task fault at run time);
- the dataset's own `--gold-field`, inherited by every task on the dataset: not
  used for a task whose classes it does not fit, with a one-line warning, so a
  2-class task is never scored against 4-class gold.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pt

from mothermodel.errors import UserError


class GoldError(UserError):
    """A gold column does not fit a task's classes (exit 2 when named; a per-task fault at run time).
    `row`: the 0-based position of the first value that does not fit, when one does."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row

    fix = ("make the task's gold column hold its class indices or class names (null or -1: unknown), or name "
           "another one with `gold:` in its spec and resubmit it with --replace")


def can_be_gold(dtype) -> bool:
    """Whether a column of Arrow type `dtype` could ever hold gold labels (indices or class names)."""
    if pt.is_dictionary(dtype):
        dtype = dtype.value_type
    return (pt.is_integer(dtype) or pt.is_floating(dtype) or pt.is_string(dtype) or pt.is_large_string(dtype)
            or pt.is_null(dtype))


def _where(dataset: str, column: str, task: str) -> str:
    return f"gold: dataset {dataset!r} column {column!r} for task {task!r}"


def indices(values, classes: Sequence[str], *, dataset: str, column: str, task: str):
    """A gold column (Arrow array or chunked array) -> int64 class indices, -1 where unknown.

    Raises GoldError naming the first value that is neither a class index (0..k-1) nor a class name."""
    k = len(classes)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    if pt.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    where = _where(dataset, column, task)
    n = len(values)
    if pt.is_null(values.type):
        return np.full(n, -1, np.int64)
    if pt.is_string(values.type) or pt.is_large_string(values.type):
        idx = pc.index_in(values, value_set=pa.array(list(classes), values.type))
        unknown = pc.or_kleene(pc.is_null(values), pc.is_in(values, value_set=pa.array(["", "-1"], values.type)))
        bad = pc.and_(pc.is_null(idx), pc.invert(pc.fill_null(unknown, True)))
        if pc.any(bad).as_py():
            i = pc.index(bad, True).as_py()
            raise GoldError(f"{where}: {values[i].as_py()!r} (row {i}) is not one of the task's classes "
                            f"({', '.join(classes)})", row=i)
        return pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    if pt.is_integer(values.type) or pt.is_floating(values.type):
        x = pc.fill_null(values.cast(pa.float64()), -1.0).to_numpy(zero_copy_only=False)
        x = np.where(np.isnan(x), -1.0, x)
        bad = (x != np.floor(x)) | (x < -1) | (x >= k)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            v = values[i].as_py()
            why = ("not a whole number" if x[i] != np.floor(x[i]) else
                   f"out of range: the task has {k} classes, indices 0..{k - 1} ({', '.join(classes)})")
            raise GoldError(f"{where}: value {v!r} (row {i}) is {why}; -1 or null means unknown", row=i)
        return x.astype(np.int64)
    raise GoldError(f"{where}: a column of type {values.type} cannot hold gold labels "
                    "(class indices or class names)")


def column_for(task, dataset) -> tuple[str | None, bool]:
    """The column holding TASK's gold labels on DATASET and whether it is named for the task (its own `gold:`
    field or a `gold_<task>` column) rather than inherited from the dataset's `--gold-field`."""
    col = dataset.gold_column(task)
    return col, bool(getattr(task, "gold", None)) or col != dataset.gold_field


def resolve(table, task, dataset) -> tuple[Any, str | None]:
    """TASK's gold labels from TABLE (its dataset's rows) as int64 indices (-1 unknown), or None; and a one-line
    warning when the dataset's inherited gold field does not fit the task's classes and so is not used.

    A column named for the task that does not fit raises GoldError (a missing one too)."""
    col, own = column_for(task, dataset)
    if col is None:
        return None, None
    if col not in table.column_names:
        if own:
            raise GoldError(f"{_where(dataset.name, col, task.name)}: the dataset has no such column")
        return None, None
    try:
        return indices(table.column(col), task.classes, dataset=dataset.name, column=col, task=task.name), None
    except GoldError as e:
        if own:
            raise
        return None, (f"task {task.name}: the dataset's gold field {col!r} does not fit its classes, so it is not "
                      f"used ({str(e).split(': ', 2)[-1]}); name the task's own `gold:` column")
