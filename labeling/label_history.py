"""`label log` and `label diff`: a task's label versions, and what changed between two of them."""

from __future__ import annotations

from typing import Any

import duckdb

from mothermodel.errors import UserError
from mothermodel.labeling import label_files
from mothermodel.registry.abstract_store import AbstractStore


def log(store: AbstractStore, task: str) -> dict[str, Any]:
    """Every label-matrix and probabilistic-labels version of TASK, newest first."""
    try:
        matrices, probs = store.label_history(task)
    except UserError:
        raise UserError(f"TASK: unknown task {task!r}") from None
    return {
        "task": task,
        "label_matrices": [
            {"version": m.version, "created_at": m.created_at.isoformat(), "entries": m.num_entries,
             "content_hash": m.content_hash, "task_fingerprint": m.task_fingerprint, "faults": len(m.faults),
             "path": m.path} for m in matrices],
        "prob_labels": [
            {"version": p.version, "created_at": p.created_at.isoformat(), "model": p.model,
             "label_matrix_version": p.label_matrix_version, "metrics": p.metrics, "content_hash": p.content_hash}
            for p in probs],
    }


def diff(store: AbstractStore, task: str, v1: int, v2: int) -> dict[str, Any]:
    """Per source: rows whose label changed, coverage in each version (DuckDB over both files)."""
    got = {}
    for i, v in enumerate((v1, v2), 1):
        m = store.label_matrix(task, v)
        if m is None:
            raise UserError(f"V{i}: task {task!r} has no label-matrix version {v}")
        got[v] = m
    a = label_files.read_checked(store.ws, got[v1].path, got[v1].content_hash)
    b = label_files.read_checked(store.ws, got[v2].path, got[v2].content_hash)
    n = got[v2].num_rows or got[v1].num_rows
    con = duckdb.connect()  # an in-memory database over the two files, not the registry
    try:
        con.register("a", a)
        con.register("b", b)
        rows = con.execute(
            """
            WITH a AS (SELECT row, source::VARCHAR AS source, label FROM a),
                 b AS (SELECT row, source::VARCHAR AS source, label FROM b),
                 j AS (SELECT coalesce(a.source, b.source) AS source, a.label AS la, b.label AS lb
                       FROM a FULL OUTER JOIN b ON a.row = b.row AND a.source = b.source)
            SELECT source,
                   count(*) FILTER (WHERE la IS DISTINCT FROM lb) AS rows_changed,
                   count(la) AS covered_before, count(lb) AS covered_after,
                   bool_or(la IS NOT NULL) AS in_before, bool_or(lb IS NOT NULL) AS in_after
            FROM j GROUP BY source ORDER BY source
            """).fetchall()
    finally:
        con.close()
    sources = [
        {"source": s, "rows_changed": int(ch), "coverage_before": cb / n, "coverage_after": ca / n,
         "status": "added" if not ib else ("removed" if not ia else ("changed" if ch else "unchanged"))}
        for s, ch, cb, ca, ib, ia in rows
    ]
    return {"task": task, "from": v1, "to": v2, "num_rows": n, "sources": sources}
