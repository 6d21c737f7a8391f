"""Datasets: Parquet files under `.mothermodel/data/`, content-addressed.

A dataset is read with DuckDB (Parquet, CSV or JSON lines), given a `_row`
column (0..n-1, the row id that label matrices refer to), written to a
temporary file, hashed, and renamed into place: a killed process leaves at
most an orphan temporary file, never a half-written dataset.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mothermodel.errors import UserError
from mothermodel.inputs import InputError
from mothermodel.registry.files import write_parquet_addressed
from mothermodel.registry.gold import can_be_gold
from mothermodel.registry.records import NAME_RE, is_name

READERS = {".parquet": "read_parquet", ".csv": "read_csv_auto", ".jsonl": "read_json_auto", ".ndjson": "read_json_auto"}
ROW = "_row"
#: The split names every stage knows (label fit selects on valid, reports test; the trainer trains on train).
SPLITS = ("train", "valid", "test")


def read_table(file: str | Path):
    """Read a data file into an Arrow table with DuckDB."""
    p = Path(file)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise UserError(f"{p}: a dataset file must be .parquet, .csv or .jsonl")
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    con = duckdb.connect()
    tmp = None
    try:
        target = p
        if any(c in p.name for c in "*?[]{}") or any(c in str(p.parent) for c in "*?[]{}"):
            # DuckDB's readers expand globs: read the named file only, through a link with a plain name.
            tmp = tempfile.mkdtemp(prefix="mothermodel-read-")
            target = Path(tmp) / f"data{p.suffix.lower()}"
            target.symlink_to(p.resolve())
        quoted = str(target).replace("'", "''")
        rel = con.sql(f"SELECT * FROM {reader}('{quoted}')")
        # DuckDB 2 renamed fetch_arrow_table() to to_arrow_table().
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
    except duckdb.Error as e:
        raise UserError(f"{p}: cannot be read: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def stage(ws, name: str, table, text_field: str | None, split_field: str | None,
          gold_field: str | None, origin: str, no_text: bool = False) -> dict[str, Any]:
    """Validate `table` and write it into the workspace's data folder (no registry write).

    A dataset needs a text column (models read text) unless `no_text` says it has none on purpose
    (votes-only tasks); split values must be train, valid or test (`SPLITS`).

    Returns the dataset row for `RegistryStore.record_dataset`. The file name carries the content hash,
    so the same content is stored once.
    """
    if not is_name(name):
        raise UserError(f"NAME: {name!r} does not match {NAME_RE.pattern}")
    cols = [c for c in table.column_names if c != ROW]
    if no_text and text_field is not None:
        raise UserError("--no-text: not with --text-field")
    if text_field is None and "text" in cols and not no_text:
        text_field = "text"
    if text_field is None and not no_text:
        raise UserError(f"--text-field: {origin} has no 'text' column: name the text column "
                        f"(columns: {', '.join(cols[:20])}), or pass --no-text for a dataset without text")
    if split_field is None and "split" in cols:
        split_field = "split"
    for flag, fld in (("--text-field", text_field), ("--split-field", split_field), ("--gold-field", gold_field)):
        if fld is not None and fld not in cols:
            raise UserError(f"{flag}: column {fld!r} not in {origin} (columns: {', '.join(cols[:20])})")
    if gold_field is not None:
        if not can_be_gold(table.schema.field(gold_field).type):
            raise UserError(f"--gold-field: column {gold_field!r} in {origin} is of type "
                            f"{table.schema.field(gold_field).type}, which cannot hold gold labels "
                            "(class indices or class names)")
    if table.num_rows == 0:
        raise UserError(f"{origin}: the dataset has no rows")
    if text_field is not None:
        ttype = table.schema.field(text_field).type
        if not (pa.types.is_string(ttype) or pa.types.is_large_string(ttype)):
            raise UserError(f"--text-field: column {text_field!r} holds {ttype}, not text")
    if split_field is not None:
        _check_splits(table, split_field)
    if ROW in table.column_names:
        table = table.drop_columns([ROW])
    table = table.add_column(0, ROW, pa.array(range(table.num_rows), pa.int64()))
    final, digest = write_parquet_addressed(table, ws.data_dir, name, ws.tmp_dir)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return {
        "name": name, "path": str(final.relative_to(ws.home)), "num_rows": table.num_rows,
        "content_hash": digest, "text_field": text_field, "split_field": split_field,
        "gold_field": gold_field, "columns": cols, "source_file": origin,
        "created_at": now, "updated_at": now,
    }


def _check_splits(table, split_field: str) -> None:
    """Split values are the names the stages know (and they end up in MLflow metric keys, whose characters
    MLflow restricts): train, valid or test, as text; anything else is refused naming the first bad row."""
    col = table.column(split_field)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise UserError(f"--split-field: column {split_field!r} holds {col.type}, not split names "
                        f"({', '.join(SPLITS)})")
    ok = pc.fill_null(pc.is_in(col, value_set=pa.array(SPLITS, col.type)), False)
    if not pc.all(ok).as_py():
        row = pc.index(ok, False).as_py()
        raise UserError(f"--split-field: column {split_field!r} row {row}: split {col[row].as_py()!r} "
                        f"is not one of {', '.join(SPLITS)}")


def input_texts(table, task_input) -> list[Any]:
    """Every row's model input built by `task_input` (a `mothermodel.inputs.TaskInput`) from the table's
    columns: strings, or (text, text_pair) tuples for a pair input. A row whose span does not fit its text
    is refused naming the column and the row."""
    cols = {c: table.column(c).to_pylist() for c in task_input.columns}
    try:
        return task_input.render_columns(cols)
    except InputError as e:
        bad = next(i for i in range(table.num_rows)
                   if _fails(task_input, {c: v[i] for c, v in cols.items()}))
        raise UserError(f"{e} (dataset row {bad})") from None


def _fails(task_input, row) -> bool:
    try:
        task_input.render(row)
        return False
    except InputError:
        return True


def split_column(table, dataset) -> Any:
    """Each row's split name as a numpy object array ('train' for every row when the dataset has no
    split field). `dataset` is a `DatasetRecord`."""
    if dataset.split_field:
        return np.asarray(table.column(dataset.split_field).to_pylist(), dtype=object)
    return np.full(table.num_rows, "train", dtype=object)
