"""Tasks and their sources in the registry: submit, list, show, remove.

Everything is validated inside the write transaction, before the first write:
a failed check raises `UserError` and the transaction rolls back, so the
registry is untouched. Bulk results travel as Arrow tables.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

from mothermodel.errors import UserError
from mothermodel.registry import fingerprint as fp
from mothermodel.registry.spec import TaskSpec


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _cycle_text(cycle: list[tuple[str, str]]) -> str:
    nodes = [u for u, _ in cycle] + [cycle[0][0]]
    return " -> ".join(nodes)


def submit(con, specs: Sequence[TaskSpec], replace: bool = False) -> dict[str, Any]:
    """Validate and write task specs in the caller's transaction.

    New tasks get version 1. With `replace`, a changed task gets version+1
    and each source whose content changed gets version+1; unchanged sources
    keep theirs. Fingerprints of every task downstream are recomputed.
    """
    import networkx as nx
    import pyarrow as pa

    if not specs:
        return {"tasks": [], "restamped": []}
    names = [s.name for s in specs]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise UserError(f"{s.origin}: name: task {s.name!r} submitted twice in one batch")
        seen.add(s.name)
    batch = set(names)

    datasets = {
        r[0]: (r[1], set(r[2]))
        for r in con.execute("SELECT name, content_hash, columns FROM datasets").fetchall()
    }
    existing = {
        r[0]: {"version": r[1], "spec_hash": r[2], "fingerprint": r[3], "created_at": r[4], "classes": tuple(r[5])}
        for r in con.execute(
            "SELECT name, version, spec_hash, fingerprint, created_at, classes FROM tasks"
        ).fetchall()
    }
    spec_by_name = {s.name: s for s in specs}

    for s in specs:
        if s.dataset not in datasets:
            known = ", ".join(sorted(datasets)[:10]) or "none registered"
            raise UserError(f"{s.origin}: dataset: unknown dataset {s.dataset!r} ({known})")
        cols = datasets[s.dataset][1]
        for i, src in enumerate(s.sources):
            if src.kind == "column" and src.ref not in cols:
                raise UserError(
                    f"{s.origin}: sources[{i}].column: dataset {s.dataset!r} has no column {src.ref!r}"
                )
        if s.name in existing and not replace:
            raise UserError(
                f"{s.origin}: name: task {s.name!r} already exists (use --replace to change it)"
            )
        if s.parent and s.parent not in existing and s.parent not in batch:
            raise UserError(f"{s.origin}: parent: unknown task {s.parent!r}")
        if s.parent_class is not None:
            pclasses = (spec_by_name[s.parent].classes if s.parent in spec_by_name
                        else existing[s.parent]["classes"])
            if s.parent_class not in pclasses:
                raise UserError(f"{s.origin}: parent_class: {s.parent_class!r} is not a class of {s.parent} "
                                f"({', '.join(pclasses)})")
        for i, src in enumerate(s.sources):
            if src.kind == "task_output" and src.ref not in existing and src.ref not in batch:
                raise UserError(f"{s.origin}: sources[{i}].task: unknown task {src.ref!r}")

    # The dependency graph after this submit: old edges into replaced tasks go.
    graph = nx.DiGraph()
    graph.add_nodes_from(existing)
    graph.add_nodes_from(names)
    for up, down, kind in con.execute("SELECT upstream, downstream, kind FROM edges").fetchall():
        if down not in batch:
            graph.add_edge(up, down, kind=kind)
    for s in specs:
        for up, kind in s.upstream_tasks:
            graph.add_edge(up, s.name, kind=kind)
    if not nx.is_directed_acyclic_graph(graph):
        cycle = nx.find_cycle(graph, source=names)
        # Name the field of the submitted task whose new edge closes the cycle.
        into_batch = next(((u, v) for u, v in cycle if v in batch), cycle[0])
        origin = next((s.origin for s in specs if s.name == into_batch[1]), specs[0].origin)
        fld = "parent" if graph.edges[into_batch]["kind"] == "parent" else "sources"
        raise UserError(f"{origin}: {fld}: dependency cycle {_cycle_text(cycle)}")

    # Source versions: bump exactly the sources whose content changed.
    old_sources: dict[tuple[str, str], tuple[str, int]] = {}
    replaced = [n for n in names if n in existing]
    if replaced:
        con.register("_replaced", pa.table({"name": replaced}))
        for task, name, chash, version in con.execute(
            "SELECT task, name, content_hash, version FROM sources WHERE task IN (SELECT name FROM _replaced)"
        ).fetchall():
            old_sources[(task, name)] = (chash, version)
        con.unregister("_replaced")

    now = _now()
    results: dict[str, dict[str, Any]] = {}
    source_rows: dict[str, list[tuple[str, str, str | None, int]]] = {}
    for s in specs:
        src_results = []
        rows = []
        for src in s.sources:
            old = old_sources.get((s.name, src.name))
            if old is None:
                version, status = 1, "created"
            elif old[0] == src.content_hash:
                version, status = old[1], "unchanged"
            else:
                version, status = old[1] + 1, "updated"
            rows.append((src.name, src.kind, src.ref, version))
            src_results.append({"name": src.name, "kind": src.kind, "version": version, "status": status})
        removed = sorted(n for (t, n) in old_sources if t == s.name and n not in {x.name for x in s.sources})
        source_rows[s.name] = rows
        prev = existing.get(s.name)
        if prev is None:
            version, status = 1, "created"
        elif prev["spec_hash"] == s.spec_hash:
            version, status = prev["version"], "unchanged"
        else:
            version, status = prev["version"] + 1, "updated"
        results[s.name] = {
            "name": s.name,
            "version": version,
            "previous_version": prev["version"] if prev else None,
            "status": status,
            "sources": src_results,
            "removed_sources": removed,
        }

    # Fingerprints, in topological order over everything downstream of the batch.
    affected = set(batch)
    for n in names:
        affected |= nx.descendants(graph, n)
    order = [n for n in nx.topological_sort(graph.subgraph(affected))]
    current_fp = {n: e["fingerprint"] for n, e in existing.items()}
    others = affected - batch
    other_rows: dict[str, tuple] = {}
    other_sources: dict[str, list[tuple[str, str, str | None, int]]] = {n: [] for n in others}
    if others:
        con.register("_others", pa.table({"name": sorted(others)}))
        for r in con.execute(
            "SELECT name, dataset, classes, parent, parent_class FROM tasks WHERE name IN (SELECT name FROM _others)"
        ).fetchall():
            other_rows[r[0]] = r
        for t, n, k, ref, v in con.execute(
            "SELECT task, name, kind, ref, version FROM sources WHERE task IN (SELECT name FROM _others)"
        ).fetchall():
            other_sources[t].append((n, k, ref, v))
        con.unregister("_others")
    new_fp: dict[str, str] = {}
    for n in order:
        if n in spec_by_name:
            s = spec_by_name[n]
            dataset, classes, parent, pclass, srcs = s.dataset, s.classes, s.parent, s.parent_class, source_rows[n]
        else:
            _, dataset, classes, parent, pclass = other_rows[n]
            srcs = other_sources[n]
        ups = {u: new_fp.get(u, current_fp.get(u, "")) for u in graph.predecessors(n)}
        new_fp[n] = fp.compute(
            name=n, dataset=dataset, classes=classes, parent=parent, sources=srcs,
            dataset_hash=datasets[dataset][0], upstream=ups, parent_class=pclass,
        )
    for n in names:
        results[n]["fingerprint"] = new_fp[n]
        if results[n]["status"] == "unchanged" and new_fp[n] != current_fp.get(n):
            results[n]["status"] = "restamped"
    restamped = sorted(n for n in others if new_fp[n] != current_fp.get(n))

    # Writes: replaced tasks' rows go, the batch's rows come in as Arrow tables.
    if replaced:
        con.register("_replaced", pa.table({"name": replaced}))
        con.execute("DELETE FROM sources WHERE task IN (SELECT name FROM _replaced)")
        con.execute("DELETE FROM tasks WHERE name IN (SELECT name FROM _replaced)")
        con.unregister("_replaced")
    con.register("_batch", pa.table({"name": names}))
    con.execute("DELETE FROM edges WHERE downstream IN (SELECT name FROM _batch)")
    con.unregister("_batch")

    tasks_tbl = pa.table({
        "name": names,
        "dataset": [spec_by_name[n].dataset for n in names],
        "classes": [list(spec_by_name[n].classes) for n in names],
        "parent": [spec_by_name[n].parent for n in names],
        "parent_class": pa.array([spec_by_name[n].parent_class for n in names], pa.string()),
        "description": [spec_by_name[n].description for n in names],
        "owner": [spec_by_name[n].owner for n in names],
        "version": [results[n]["version"] for n in names],
        "fingerprint": [new_fp[n] for n in names],
        "spec_hash": [spec_by_name[n].spec_hash for n in names],
        "spec_origin": [spec_by_name[n].origin for n in names],
        "spec_source": pa.array([spec_by_name[n].source_text for n in names], pa.string()),
        "created_at": pa.array([existing[n]["created_at"] if n in existing else now for n in names], pa.timestamp("us")),
        "updated_at": pa.array([now] * len(names), pa.timestamp("us")),
    })
    con.register("_tasks", tasks_tbl)
    con.execute("INSERT INTO tasks BY NAME SELECT * FROM _tasks")
    con.unregister("_tasks")

    s_task, s_name, s_kind, s_ref, s_code, s_code_hash, s_chash, s_ver = ([] for _ in range(8))
    for s in specs:
        for src, (_, _, _, version) in zip(s.sources, source_rows[s.name]):
            s_task.append(s.name); s_name.append(src.name); s_kind.append(src.kind)
            s_ref.append(src.ref); s_code.append(src.code); s_code_hash.append(src.code_hash)
            s_chash.append(src.content_hash); s_ver.append(version)
    if s_task:
        src_tbl = pa.table({
            "task": s_task, "name": s_name, "kind": s_kind,
            "ref": pa.array(s_ref, pa.string()), "code": pa.array(s_code, pa.string()),
            "code_hash": pa.array(s_code_hash, pa.string()), "content_hash": s_chash,
            "version": pa.array(s_ver, pa.int32()),
            "created_at": pa.array([now] * len(s_task), pa.timestamp("us")),
            "updated_at": pa.array([now] * len(s_task), pa.timestamp("us")),
        })
        con.register("_sources", src_tbl)
        con.execute("INSERT INTO sources BY NAME SELECT * FROM _sources")
        con.unregister("_sources")

    e_up, e_down, e_kind = [], [], []
    for s in specs:
        for up, kind in dict.fromkeys(s.upstream_tasks):
            e_up.append(up); e_down.append(s.name); e_kind.append(kind)
    if e_up:
        con.register("_edges", pa.table({"upstream": e_up, "downstream": e_down, "kind": e_kind}))
        con.execute("INSERT INTO edges BY NAME SELECT * FROM _edges")
        con.unregister("_edges")

    versioned = [n for n in names if results[n]["status"] in ("created", "updated")]
    if versioned:
        con.register("_tv", pa.table({
            "task": versioned,
            "version": pa.array([results[n]["version"] for n in versioned], pa.int32()),
            "fingerprint": [new_fp[n] for n in versioned],
            "spec_json": [json.dumps(spec_by_name[n].spec_dict(), sort_keys=True) for n in versioned],
            "created_at": pa.array([now] * len(versioned), pa.timestamp("us")),
        }))
        con.execute("INSERT INTO task_versions BY NAME SELECT * FROM _tv")
        con.unregister("_tv")

    if restamped:
        con.register("_fp", pa.table({"name": restamped, "fp": [new_fp[n] for n in restamped]}))
        con.execute("UPDATE tasks SET fingerprint = _fp.fp, updated_at = ? FROM _fp WHERE tasks.name = _fp.name", [now])
        con.unregister("_fp")

    return {"tasks": [results[n] for n in names], "restamped": restamped}


def restamp(con, roots: Sequence[str]) -> list[str]:
    """Recompute fingerprints of `roots` and everything downstream (after a dataset change)."""
    import networkx as nx
    import pyarrow as pa

    graph = nx.DiGraph()
    graph.add_nodes_from(r[0] for r in con.execute("SELECT name FROM tasks").fetchall())
    graph.add_edges_from(con.execute("SELECT upstream, downstream FROM edges").fetchall())
    affected = set(roots)
    for r in roots:
        affected |= nx.descendants(graph, r)
    rows = {
        r[0]: r
        for r in con.execute(
            "SELECT t.name, t.dataset, t.classes, t.parent, t.fingerprint, d.content_hash, t.parent_class "
            "FROM tasks t JOIN datasets d ON d.name = t.dataset"
        ).fetchall()
    }
    srcs: dict[str, list] = {n: [] for n in affected}
    for t, n, k, ref, v in con.execute("SELECT task, name, kind, ref, version FROM sources").fetchall():
        if t in srcs:
            srcs[t].append((n, k, ref, v))
    new_fp: dict[str, str] = {}
    for n in nx.topological_sort(graph.subgraph(affected)):
        _, dataset, classes, parent, _, dhash, pclass = rows[n]
        ups = {u: new_fp.get(u, rows[u][4]) for u in graph.predecessors(n)}
        new_fp[n] = fp.compute(name=n, dataset=dataset, classes=classes, parent=parent,
                               sources=srcs[n], dataset_hash=dhash, upstream=ups, parent_class=pclass)
    changed = sorted(n for n in affected if new_fp[n] != rows[n][4])
    if changed:
        con.register("_fp", pa.table({"name": changed, "fp": [new_fp[n] for n in changed]}))
        con.execute("UPDATE tasks SET fingerprint = _fp.fp, updated_at = ? FROM _fp WHERE tasks.name = _fp.name", [_now()])
        con.unregister("_fp")
    return changed


def list_tasks(con) -> list[dict[str, Any]]:
    rows = con.execute(
        """SELECT t.name, t.dataset, t.classes, t.parent, t.version, t.fingerprint,
                  coalesce(s.n, 0) AS num_sources, t.owner, t.updated_at
           FROM tasks t LEFT JOIN (SELECT task, count(*) AS n FROM sources GROUP BY task) s
             ON s.task = t.name
           ORDER BY t.name"""
    ).fetchall()
    return [
        {"name": r[0], "dataset": r[1], "classes": list(r[2]), "parent": r[3], "version": r[4],
         "fingerprint": r[5], "num_sources": r[6], "owner": r[7], "updated_at": r[8].isoformat()}
        for r in rows
    ]


def show_task(con, name: str) -> dict[str, Any]:
    row = con.execute(
        "SELECT name, dataset, classes, parent, description, owner, version, fingerprint, "
        "spec_origin, created_at, updated_at, parent_class FROM tasks WHERE name = ?",
        [name],
    ).fetchone()
    if row is None:
        raise UserError(f"NAME: unknown task {name!r}")
    sources = [
        {"name": r[0], "kind": r[1], "version": r[2], "ref": r[3], "code_hash": r[4]}
        for r in con.execute(
            "SELECT name, kind, version, ref, code_hash FROM sources WHERE task = ? "
            "ORDER BY CASE kind WHEN 'lf' THEN 1 WHEN 'column' THEN 0 ELSE 2 END, "
            "regexp_extract(name, '^(.*?)(\\d*)$', 1), try_cast(regexp_extract(name, '(\\d+)$', 1) AS INTEGER), name",
            [name],
        ).fetchall()
    ]
    upstream = [{"task": r[0], "kind": r[1]} for r in con.execute(
        "SELECT upstream, kind FROM edges WHERE downstream = ? ORDER BY upstream", [name]).fetchall()]
    downstream = [{"task": r[0], "kind": r[1]} for r in con.execute(
        "SELECT downstream, kind FROM edges WHERE upstream = ? ORDER BY downstream", [name]).fetchall()]
    return {
        "name": row[0], "dataset": row[1], "classes": list(row[2]), "parent": row[3], "parent_class": row[11],
        "description": row[4], "owner": row[5], "version": row[6], "fingerprint": row[7],
        "spec_origin": row[8], "created_at": row[9].isoformat(), "updated_at": row[10].isoformat(),
        "sources": sources, "upstream": upstream, "downstream": downstream,
    }


def remove_task(con, name: str) -> dict[str, Any]:
    if con.execute("SELECT count(*) FROM tasks WHERE name = ?", [name]).fetchone()[0] == 0:
        raise UserError(f"NAME: unknown task {name!r}")
    users = con.execute(
        "SELECT downstream, kind FROM edges WHERE upstream = ? ORDER BY downstream", [name]
    ).fetchall()
    if users:
        listed = ", ".join(f"{d} ({k})" for d, k in users)
        raise UserError(f"NAME: task {name!r} is used by {listed}: remove or change those first")
    n_sources = con.execute("SELECT count(*) FROM sources WHERE task = ?", [name]).fetchone()[0]
    con.execute("DELETE FROM sources WHERE task = ?", [name])
    con.execute("DELETE FROM edges WHERE downstream = ?", [name])
    con.execute("DELETE FROM tasks WHERE name = ?", [name])
    # Version history (task_versions, label and model versions) stays: it is history.
    return {"removed": name, "sources_removed": n_sources}
