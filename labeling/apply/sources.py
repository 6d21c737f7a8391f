"""A task's registered sources turned into label entries: LFs rebuilt from the registry,
weak-label columns read, upstream task outputs mapped onto this task's classes."""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pyarrow as pa

from mothermodel.defaults import ABSTAIN
from mothermodel.errors import UserError
from mothermodel.labeling import label_files
from mothermodel.labeling.apply.core import Applied, LFReport, drop_fatal
from mothermodel.labeling.hand_labels import as_vector
from mothermodel.labeling.lf.core import KeywordLF, LabelingFunction, RegexLF, ThresholdLF, lfs_from_source
from mothermodel.registry.columns import column_problem
from mothermodel.registry.records import SourceRecord, TaskRecord, declarative_params

DECLARATIVE = {"keyword": KeywordLF, "regex": RegexLF, "threshold": ThresholdLF}


def empty(names: Sequence[str] = (), reports: dict[str, LFReport] | None = None) -> Applied:
    return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), list(names), reports or {})


def build_lfs(t: TaskRecord) -> dict[str, LabelingFunction]:
    """The task's LFs as submitted: declarative ones from their recorded parameters,
    Python ones by re-running the stored spec module."""
    return _build(t, [s for s in t.sources if s.kind == "lf"], "LF")


def build_slices(t: TaskRecord, names: Sequence[str] | None = None) -> dict[str, LabelingFunction]:
    """The task's slicing functions (all, or `names`), built as its LFs are (labeling/lf/slicing.py: an
    applied slice gives its members IN_SLICE)."""
    return _build(t, [s for s in t.slices if names is None or s.name in names], "slice")


def _build(t: TaskRecord, records: Sequence[SourceRecord], what: str) -> dict[str, LabelingFunction]:
    lfs: dict[str, LabelingFunction] = {}
    py_needed = []
    for s in records:
        decl = declarative_params(s.code)
        if decl and decl.get("kind") in DECLARATIVE:
            params = {k: v for k, v in decl.items() if k != "kind"}
            lfs[s.name] = DECLARATIVE[decl["kind"]](name=s.name, **params)
        else:
            py_needed.append(s.name)
    if py_needed:
        if not t.spec_source:
            raise UserError(f"task {t.name}: its spec's code is not in the registry; resubmit it with --replace")
        module_lfs = lfs_from_source(t.spec_source, t.spec_origin or f"<task {t.name}>")
        for n in py_needed:
            if n not in module_lfs:
                raise UserError(f"task {t.name}: {what} {n!r} not found in its stored spec")
            lfs[n] = module_lfs[n]
    return lfs


def column_entries(table, sources: Sequence[SourceRecord], cardinality: int) -> Applied:
    """Weak labels already in dataset columns (class index, -1 or null = abstain)."""
    if not sources:
        return empty()
    rows, cidx, labels, reports = [], [], [], {}
    row_ids = table.column("_row").to_numpy()
    for j, s in enumerate(sources):
        rep = reports[s.name] = LFReport(s.name)
        # The rule `task submit` checks (registry/columns.py); fractions in a float column are refused too.
        problem = column_problem(table.schema, s.ref, "column", values=lambda: table.column(s.ref))
        if problem:  # one unusable column source must not stop the task's other sources, nor other tasks
            rep.raised, rep.first_error, rep.fatal = table.num_rows, problem, "unusable"
            continue
        col = table.column(s.ref)
        if pa.types.is_dictionary(col.type):  # decoded: a dictionary's to_numpy() would turn nulls into index 0
            col = col.cast(col.type.value_type)
        v = col.to_numpy(zero_copy_only=False)
        if v.dtype.kind == "f":  # whole numbers here: column_problem refused fractions above
            v = np.where(np.isnan(v), ABSTAIN, v)
        elif v.dtype.kind == "O":  # an integer column with nulls
            v = np.array([ABSTAIN if x is None else x for x in v])
        v = v.astype(np.int64)
        bad = (v < ABSTAIN) | (v >= cardinality)
        if bad.any():
            rep.out_of_range = int(bad.sum())
            i = int(np.argmax(bad))
            shown = col[i].as_py()
            rep.first_row, rep.first_error = int(row_ids[i]), f"column value {shown} outside 0..{cardinality - 1} or -1"
        keep = (v != ABSTAIN) & ~bad
        rows.append(row_ids[keep]); cidx.append(np.full(int(keep.sum()), j, np.int32)); labels.append(v[keep])
    if not rows:
        return empty([s.name for s in sources], reports)
    return drop_fatal(Applied(np.concatenate(rows).astype(np.int64), np.concatenate(cidx),
                              np.concatenate(labels).astype(np.int16), [s.name for s in sources], reports),
                      table.num_rows)


def map_output(t: TaskRecord, s: SourceRecord, up: TaskRecord, preds: np.ndarray, table) -> Applied:
    """An upstream task's hard labels as votes of this task: through the source's class map
    (default: classes of the same name); unmapped classes abstain."""
    mapping = json.loads(s.code) if s.code else {c: c for c in up.classes if c in t.classes}
    lut = np.array([t.classes.index(mapping[c]) if c in mapping else ABSTAIN for c in up.classes] + [ABSTAIN], np.int64)
    rows = table.column("_row").to_numpy()
    if t.dataset != up.dataset or len(preds) != len(rows):
        rep = LFReport(s.name, first_error=f"task {up.name} labels dataset {up.dataset}, not {t.dataset}: all abstain")
        return empty([s.name], {s.name: rep})
    mapped = lut[preds[rows]]  # -1 (abstain) indexes the trailing ABSTAIN
    keep = mapped != ABSTAIN
    return Applied(rows[keep].astype(np.int64), np.zeros(int(keep.sum()), np.int32), mapped[keep].astype(np.int16),
                   [s.name], {s.name: LFReport(s.name)})


def model_source(s: SourceRecord) -> Applied:
    """External-model sources are recorded but not applied yet: they abstain, and the run says so."""
    return empty([s.name], {s.name: LFReport(s.name, first_error="model sources are not applied yet: all abstain")})


def hand_entries(ws, t: TaskRecord, s: SourceRecord, table) -> Applied:
    """A task's hand labels as entries of their own column: versioned with the matrix (`label log/diff` show
    them); label fit takes that column out of the votes and uses it as clean labels (label_fit.read_inputs)."""
    rep = LFReport(s.name)
    y, dropped = as_vector(label_files.read_checked(ws, s.ref, s.code_hash), t, table.num_rows)
    if dropped:  # the task's classes changed since: a label naming a class it no longer has is left out
        rep.first_error = f"{dropped} hand label(s) name a class the task no longer has: left out"
    rows = np.flatnonzero(y >= 0)
    return Applied(rows.astype(np.int64), np.zeros(len(rows), np.int32), y[rows].astype(np.int16), [s.name],
                   {s.name: rep})
