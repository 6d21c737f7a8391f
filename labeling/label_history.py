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
        members = store.slice_memberships(task)
    except UserError:
        raise UserError(f"TASK: unknown task {task!r}") from None
    out = {
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
    if members:  # a task with slices: its membership versions too
        out["slice_memberships"] = [
            {"version": m.version, "created_at": m.created_at.isoformat(), "sizes": m.sizes,
             "slice_versions": {n: i["version"] for n, i in m.slice_versions.items()}, "faults": len(m.faults),
             "content_hash": m.content_hash, "path": m.path} for m in members]
    return out


def diff_slices(store: AbstractStore, task: str, v1: int, v2: int) -> dict[str, Any]:
    """Per slice: rows that joined and left it between slice-membership versions V1 and V2."""
    versions = {m.version: m for m in store.slice_memberships(task)}
    for i, v in enumerate((v1, v2), 1):
        if v not in versions:
            raise UserError(f"V{i}: task {task!r} has no slice-membership version {v}")
    a = label_files.read_checked(store.ws, versions[v1].path, versions[v1].content_hash)
    b = label_files.read_checked(store.ws, versions[v2].path, versions[v2].content_hash)
    con = duckdb.connect()
    try:
        con.register("a", a)
        con.register("b", b)
        rows = con.execute(
            """
            WITH a AS (SELECT row, slice::VARCHAR AS slice FROM a), b AS (SELECT row, slice::VARCHAR AS slice FROM b),
                 j AS (SELECT coalesce(a.slice, b.slice) AS slice, a.row AS ra, b.row AS rb
                       FROM a FULL OUTER JOIN b ON a.row = b.row AND a.slice = b.slice)
            SELECT slice, count(ra) AS rows_before, count(rb) AS rows_after,
                   count(*) FILTER (WHERE ra IS NULL) AS joined, count(*) FILTER (WHERE rb IS NULL) AS left_
            FROM j GROUP BY slice ORDER BY slice
            """).fetchall()
    finally:
        con.close()
    before, after = versions[v1].slice_versions, versions[v2].slice_versions
    return {"task": task, "from": v1, "to": v2, "slices": [
        {"slice": s, "rows_before": int(rb), "rows_after": int(ra), "joined": int(jn), "left": int(lf),
         "status": "added" if s not in before else ("removed" if s not in after else
                                                   ("changed" if jn or lf else "unchanged"))}
        for s, rb, ra, jn, lf in rows] + [
        {"slice": s, "rows_before": 0, "rows_after": 0, "joined": 0, "left": 0,
         "status": "added" if s not in before else ("removed" if s not in after else "unchanged")}
        for s in sorted(set(before) | set(after)) if s not in {r[0] for r in rows}]}


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
