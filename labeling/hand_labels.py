"""Hand labels: a task's own small set of clean labels (`mothermodel label add TASK FILE`).

A hand-label file names rows (by dataset row id `row`, or by `text`: every row whose
text field is exactly that text) and their class (`label`: a class name or index, the
rule of registry/gold.py). `add` checks the whole file before anything is written
(one-line errors naming the file and line, exit 2), merges it into the task's current
set (a row labelled again takes the new label; `replace` starts the set anew), writes
the set content-addressed under labels/<task>/ (`hl-<hash>.parquet`: row, label,
added_by, added_in) and records it as the next version of the task's hand-label source,
so fingerprints, `dag impact` and `status` treat it like any source.

The rules of evaluation: a row of the test split is refused (it would be both
trained on and scored); a valid row is accepted, but from then on it is left out of
every valid figure (registry/store.py `read_prob_labels`, label fit) and the figures
say that hand labels were used (`uses_dev_labels`).
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from mothermodel.errors import StaleRead, UserError
from mothermodel.labeling import label_files
from mothermodel.registry import gold as gold_rule
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.datasets import split_column
from mothermodel.registry.records import HandLabelsRecord, TaskRecord

FORMATS = {".csv": "CSV", ".jsonl": "JSON lines", ".json": "JSON lines", ".parquet": "Parquet"}


def read_file(path: str | Path) -> pa.Table:
    """The file as an Arrow table (CSV, JSON lines or Parquet, by extension)."""
    p = Path(path)
    fmt = p.suffix.lower()
    if fmt not in FORMATS:
        raise UserError(f"FILE: {p}: unknown format {p.suffix or '(no extension)'!r} (use .csv, .jsonl or .parquet)")
    if not p.is_file():
        raise UserError(f"FILE: {p}: no such file")
    try:
        if fmt == ".csv":
            # every column as text first: a `label` column of class indices and names alike stays readable
            return pacsv.read_csv(p, convert_options=pacsv.ConvertOptions(
                column_types={"row": pa.int64()}, strings_can_be_null=True))
        if fmt == ".parquet":
            return pq.read_table(p)
        return pajson.read_json(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"FILE: {p}: cannot be read as {FORMATS[fmt]}: {str(e).splitlines()[0]}") from None


def resolve(table: pa.Table, t: TaskRecord, data: pa.Table, text_field: str | None, origin: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """(dataset rows, class indices) the file's lines name; one-line UserError on the first bad line."""
    cols = set(table.column_names)
    if "label" not in cols:
        raise UserError(f"{origin}: label: missing column (each line needs `label` and `row` or `text`)")
    if ("row" in cols) == ("text" in cols):
        raise UserError(f"{origin}: row: give exactly one of the columns `row` (dataset row id) or `text`")
    labels = table.column("label")
    if pa.types.is_string(labels.type) or pa.types.is_large_string(labels.type):
        # class indices written as text ("0", "1": a CSV's) name their class, beside class names
        labels = labels.cast(pa.string())
        idx = pc.index_in(labels, value_set=pa.array([str(i) for i in range(len(t.classes))]))
        labels = pc.if_else(pc.is_null(idx), labels, pc.take(pa.array(list(t.classes)), pc.fill_null(idx, 0)))
    try:
        y = gold_rule.indices(labels, t.classes, dataset=t.dataset, column="label", task=t.name)
    except gold_rule.GoldError as e:
        line = (e.row or 0) + 1
        raise UserError(f"{origin}: line {line}: label: {labels[line - 1].as_py()!r} is not a class of task {t.name} "
                        f"(a class name or index: {', '.join(t.classes)})") from None
    missing = np.flatnonzero(y < 0)
    if missing.size:
        raise UserError(f"{origin}: line {int(missing[0]) + 1}: label: empty (every line needs a class)")
    n = data.num_rows
    if "row" in cols:
        r = table.column("row")
        if not pa.types.is_integer(r.type) or r.null_count:
            raise UserError(f"{origin}: row: must be whole dataset row ids (0..{n - 1})")
        rows = r.to_numpy(zero_copy_only=False).astype(np.int64)
        bad = np.flatnonzero((rows < 0) | (rows >= n))
        if bad.size:
            raise UserError(f"{origin}: line {int(bad[0]) + 1}: row: {int(rows[bad[0]])} is not a row of dataset "
                            f"{t.dataset!r} (0..{n - 1})")
        return rows, y
    if not text_field:
        raise UserError(f"{origin}: text: dataset {t.dataset!r} has no text field: name rows by `row`")
    texts = table.column("text").cast(pa.string())
    ds_text = data.column(text_field).cast(pa.string())
    # Every row with exactly that text (duplicates are labelled alike), found with Arrow joins, not a loop.
    left = pa.table({"text": texts, "line": pa.array(np.arange(len(texts)), pa.int64()),
                     "label": pa.array(y, pa.int64())})
    right = pa.table({"text": ds_text, "row": pa.array(np.arange(n), pa.int64())})
    joined = left.join(right, "text", join_type="left outer")
    unmatched = joined.filter(pc.is_null(joined.column("row")))
    if unmatched.num_rows:
        i = int(pc.min(unmatched.column("line")).as_py())
        shown = texts[i].as_py()
        shown = shown if shown is None or len(shown) <= 60 else shown[:57] + "..."
        raise UserError(f"{origin}: line {i + 1}: text: {shown!r} is not the text of any row of dataset "
                        f"{t.dataset!r} (field {text_field!r})")
    return joined.column("row").to_numpy().astype(np.int64), joined.column("label").to_numpy().astype(np.int64)


def current(store: AbstractStore, t: TaskRecord) -> pa.Table | None:
    """TASK's current hand labels (row, label, added_by, added_in), hash-checked; None when it has none."""
    s = t.hand_source
    if s is None:
        return None
    return label_files.read_checked(store.ws, s.ref, s.code_hash)


def as_vector(table: pa.Table | None, t: TaskRecord, num_rows: int) -> tuple[np.ndarray, int]:
    """(rows,) int64 class index per dataset row (-1: not hand-labelled), and how many labels name a class
    the task no longer has (after a resubmit changed its classes: left out)."""
    out = np.full(num_rows, -1, np.int64)
    if table is None or not table.num_rows:
        return out, 0
    idx = pc.index_in(table.column("label"), value_set=pa.array(list(t.classes), pa.string()))
    y = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    rows = table.column("row").to_numpy()
    ok = (y >= 0) & (rows < num_rows)
    out[rows[ok]] = y[ok]
    return out, int((~ok).sum())


def add(store: AbstractStore, task: str, file: str | Path, added_by: str | None = None,
        replace: bool = False) -> dict[str, Any]:
    """Add FILE's hand labels to TASK (or replace its set); record the next version. Checked whole first:
    a bad line, an unknown row or class, or a row of the test split writes nothing (exit 2)."""
    t = store.task(task)
    ds = store.dataset(t.dataset)
    origin = str(file)
    table = read_file(file)
    data = store.read_dataset(ds)
    rows, y = resolve(table, t, data, ds.text_field, origin)
    if len(rows) == 0:
        raise UserError(f"FILE: {origin}: no labels in the file")
    split = split_column(data, ds)
    test = np.flatnonzero(split[rows] == "test")
    if test.size:
        raise UserError(f"{origin}: row {int(rows[test[0]])} is in the test split: hand labels there would be "
                        "trained on and scored; label rows of train (or valid, which then leaves valid's figures)")
    # one label per row: a row named twice in the file takes the label on its last line
    last = np.unique(rows[::-1], return_index=True)[1]
    keep = len(rows) - 1 - last
    rows, y = rows[keep], y[keep]
    who = added_by or _user()
    for attempt in range(ATTEMPTS):
        try:
            done = _record(store, t, ds, rows, y, split, who, str(Path(file).resolve()), replace)
            break
        except StaleRead:  # another `label add` recorded first: merge with its set, not over it
            if attempt == ATTEMPTS - 1:
                raise
    if done[0] == "unchanged":
        return {"task": task, "status": "unchanged", "version": done[1].version, "rows": done[1].num_rows,
                "added": 0}
    rec, new = done[1], done[2]
    by_class = pc.value_counts(new.column("label")).to_pylist()
    return {"task": task, "status": "created", **_summary(rec),
            "classes": {d["values"]: d["counts"] for d in sorted(by_class, key=lambda d: t.classes.index(d["values"])
                                                                 if d["values"] in t.classes else len(t.classes))}}


ATTEMPTS = 5


def _record(store: AbstractStore, t, ds, rows: np.ndarray, y: np.ndarray, split: np.ndarray, who: str,
            source_file: str, replace: bool):
    """Merge the checked labels into TASK's latest set (or replace it), write and record it as the version
    after the one read: ("unchanged", latest record) or ("created", record, table). Raises StaleRead when
    another version was recorded meanwhile (the caller reads again)."""
    versions = store.hand_labels(t.name)
    after = versions[0].version if versions else 0
    t = store.task(t.name)  # read after `versions`: its hand source is that version or a later one (then StaleRead)
    prev = None if replace else current(store, t)
    old_vec, _ = as_vector(prev, t, ds.num_rows)
    changed = old_vec[rows] != y  # new rows, and rows whose class changes; a row labelled alike keeps its provenance
    if prev is not None and not changed.any():
        return ("unchanged", versions[0])
    rows, y = rows[changed], y[changed]
    new = pa.table({"row": pa.array(rows, pa.int64()),
                    "label": pa.array([t.classes[i] for i in y], pa.string()),
                    "added_by": pa.array([who] * len(rows), pa.string()),
                    "added_in": pa.array(np.full(len(rows), after + 1), pa.int32())})
    if prev is not None and prev.num_rows:
        stay = prev.filter(pc.invert(pc.is_in(prev.column("row"), value_set=new.column("row"))))
        new = pa.concat_tables([stay.cast(new.schema), new])
    new = new.sort_by("row")
    all_rows = new.column("row").to_numpy()
    path, digest = label_files.write_hand(store.ws, t.name, new)
    try:
        rec = store.record_hand_labels(t.name, path=path, content_hash=digest, num_rows=int(new.num_rows),
                                       added=int(len(rows)), valid_rows=int((split[all_rows] == "valid").sum()),
                                       added_by=who, source_file=source_file, replaced=replace, after=after)
    except StaleRead:
        if all(v.path != path for v in store.hand_labels(t.name)):  # content-addressed: maybe theirs too
            (store.ws.home / path).unlink(missing_ok=True)
        raise
    return ("created", rec, new)


def _summary(rec: HandLabelsRecord) -> dict[str, Any]:
    d = rec.to_json()
    return {k: d[k] for k in ("version", "rows", "added", "valid_rows", "by", "file", "replaced", "path")}


def history(store: AbstractStore, task: str) -> list[dict[str, Any]]:
    """Every hand-labels version of TASK, newest first (`label add --list`)."""
    return [r.to_json() for r in store.hand_labels(task)]


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return None
