"""Datasets: Parquet files under `.mothermodel/data/`, content-addressed.

A dataset is read with DuckDB (Parquet, CSV or JSON lines), given a `_row`
column (0..n-1, the row id that label matrices refer to), written to a
temporary file, hashed, and renamed into place: a killed process leaves at
most an orphan temporary file, never a half-written dataset.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mothermodel.errors import UserError
from mothermodel.registry.files import write_parquet_addressed
from mothermodel.registry.records import NAME_RE, is_name

READERS = {".parquet": "read_parquet", ".csv": "read_csv_auto", ".jsonl": "read_json_auto", ".ndjson": "read_json_auto"}
ROW = "_row"


def read_table(file: str | Path):
    """Read a data file into an Arrow table with DuckDB."""
    import duckdb

    p = Path(file)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise UserError(f"{p}: a dataset file must be .parquet, .csv or .jsonl")
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    con = duckdb.connect()
    try:
        quoted = str(p).replace("'", "''")
        rel = con.sql(f"SELECT * FROM {reader}('{quoted}')")
        # DuckDB 2 renamed fetch_arrow_table() to to_arrow_table().
        return rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.fetch_arrow_table()
    except duckdb.Error as e:
        raise UserError(f"{p}: cannot be read: {str(e).splitlines()[0]}") from None
    finally:
        con.close()


def stage(ws, name: str, table, text_field: str | None, split_field: str | None,
          gold_field: str | None, origin: str) -> dict[str, Any]:
    """Validate `table` and write it into the workspace's data folder (no registry write).

    Returns the dataset row for `RegistryStore.record_dataset`. The file name carries the content hash,
    so the same content is stored once.
    """
    import pyarrow as pa

    if not is_name(name):
        raise UserError(f"NAME: {name!r} does not match {NAME_RE.pattern}")
    cols = [c for c in table.column_names if c != ROW]
    if text_field is None and "text" in cols:
        text_field = "text"
    if split_field is None and "split" in cols:
        split_field = "split"
    for flag, fld in (("--text-field", text_field), ("--split-field", split_field), ("--gold-field", gold_field)):
        if fld is not None and fld not in cols:
            raise UserError(f"{flag}: column {fld!r} not in {origin} (columns: {', '.join(cols[:20])})")
    if table.num_rows == 0:
        raise UserError(f"{origin}: the dataset has no rows")
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


def input_texts(table, task_input) -> list[Any]:
    """Every row's model input built by `task_input` (a `mothermodel.inputs.TaskInput`) from the table's
    columns: strings, or (text, text_pair) tuples for a pair input. A row whose span does not fit its text
    is refused naming the column and the row."""
    from mothermodel.inputs import InputError

    cols = {c: table.column(c).to_pylist() for c in task_input.columns}
    try:
        return task_input.render_columns(cols)
    except InputError as e:
        bad = next(i for i in range(table.num_rows)
                   if _fails(task_input, {c: v[i] for c, v in cols.items()}))
        raise UserError(f"{e} (dataset row {bad})") from None


def _fails(task_input, row) -> bool:
    from mothermodel.inputs import InputError

    try:
        task_input.render(row)
        return False
    except InputError:
        return True


def split_column(table, dataset) -> Any:
    """Each row's split name as a numpy object array ('train' for every row when the dataset has no
    split field). `dataset` is a `DatasetRecord`."""
    import numpy as np

    if dataset.split_field:
        return np.asarray(table.column(dataset.split_field).to_pylist(), dtype=object)
    return np.full(table.num_rows, "train", dtype=object)
