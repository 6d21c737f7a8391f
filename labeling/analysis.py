"""LF analysis: polarity, coverage, overlaps, conflicts and empirical accuracy, in DuckDB SQL
over the sparse label matrix (no Python loop over rows)."""

from __future__ import annotations

from typing import Any

from mothermodel.errors import UserError


def analyze(store, task: str, split: str | None = None) -> dict[str, Any]:
    import duckdb
    import pyarrow as pa

    from mothermodel.labeling import store as label_files

    snap = store.snapshot()
    if task not in snap.tasks:
        raise UserError(f"TASK: unknown task {task!r}")
    t = snap.tasks[task]
    m = snap.latest_matrix.get(task)
    if m is None:
        raise UserError(f"TASK: {task} has no label matrix yet; run `mothermodel label apply {task}`")
    ds = snap.datasets[t.dataset]
    entries = label_files.read_checked(store.ws, m.path, m.content_hash)
    data = store.read_dataset(ds)
    gcol = ds.gold_column(task)
    cols = {"row": data.column("_row")}
    cols["split"] = data.column(ds.split_field) if ds.split_field else pa.array(["all"] * data.num_rows)
    cols["gold"] = data.column(gcol).cast(pa.int64()) if gcol else pa.nulls(data.num_rows, pa.int64())
    rows_tbl = pa.table(cols)
    if split is not None and split not in set(cols["split"].to_pylist()):
        raise UserError(f"--split: no rows in split {split!r}")
    con = duckdb.connect()
    try:
        con.register("entries", entries)
        con.register("rows_tbl", rows_tbl)
        where = "WHERE r.split = $split" if split else ""
        params = {"split": split} if split else {}
        n = con.execute(f"SELECT count(*) FROM rows_tbl r {where}", params).fetchone()[0]
        res = con.execute(
            f"""
            WITH e AS (SELECT e.row, e.source::VARCHAR AS source, e.label, r.gold
                       FROM entries e JOIN rows_tbl r ON r.row = e.row {where}),
                 per_row AS (SELECT row, count(*) AS n_lfs, count(DISTINCT label) AS n_labels FROM e GROUP BY row)
            SELECT e.source,
                   list(DISTINCT e.label ORDER BY e.label) AS polarity,
                   count(*) AS covered,
                   count(*) FILTER (WHERE p.n_lfs > 1) AS overlapped,
                   count(*) FILTER (WHERE p.n_labels > 1) AS conflicted,
                   count(*) FILTER (WHERE e.gold >= 0 AND e.label = e.gold) AS correct,
                   count(*) FILTER (WHERE e.gold >= 0 AND e.label <> e.gold) AS incorrect
            FROM e JOIN per_row p USING (row)
            GROUP BY e.source
            """, params).fetchall()
        totals = con.execute(
            f"""WITH e AS (SELECT e.row FROM entries e JOIN rows_tbl r ON r.row = e.row {where})
                SELECT count(DISTINCT row) FROM e""", params).fetchone()
    finally:
        con.close()
    by = {r[0]: r for r in res}
    lfs = []
    for s in t.sources:
        r = by.get(s.name)
        covered, overlapped, conflicted, correct, incorrect = (r[2], r[3], r[4], r[5], r[6]) if r else (0, 0, 0, 0, 0)
        lfs.append({
            "name": s.name, "kind": s.kind, "version": s.version,
            "polarity": [t.classes[i] for i in (r[1] if r else [])],
            "coverage": covered / n if n else 0.0,
            "overlaps": overlapped / n if n else 0.0,
            "conflicts": conflicted / n if n else 0.0,
            "correct": correct, "incorrect": incorrect,
            "empirical_accuracy": correct / (correct + incorrect) if correct + incorrect else None,
        })
    return {"task": task, "label_matrix_version": m.version, "split": split or "all", "num_rows": n,
            "coverage": (totals[0] / n) if n else 0.0, "gold": gcol is not None, "lfs": lfs}
