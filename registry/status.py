"""What is stale: per task, whether its labels, model and deployable match its fingerprint."""

from __future__ import annotations

from typing import Any


def status(con) -> dict[str, Any]:
    latest_model = con.execute("SELECT max(version) FROM models").fetchone()[0]
    rows = con.execute(
        """
        WITH pl AS (
            SELECT task, max(version) AS version, arg_max(task_fingerprint, version) AS fp
            FROM prob_labels GROUP BY task),
        mt AS (SELECT task, task_fingerprint AS fp FROM model_tasks WHERE model_version = ?),
        dp AS (
            SELECT task, max(version) AS version, arg_max(task_fingerprint, version) AS fp,
                   arg_max(model_version, version) AS model_version
            FROM deployables GROUP BY task)
        SELECT t.name, t.version, t.fingerprint, t.dataset,
               pl.version, pl.fp = t.fingerprint,
               mt.fp = t.fingerprint,
               dp.version, dp.fp = t.fingerprint AND dp.model_version = ?
        FROM tasks t
        LEFT JOIN pl ON pl.task = t.name
        LEFT JOIN mt ON mt.task = t.name
        LEFT JOIN dp ON dp.task = t.name
        ORDER BY t.name
        """,
        [latest_model, latest_model],
    ).fetchall()
    tasks = []
    for name, version, fp, dataset, pl_v, pl_fresh, mt_fresh, dp_v, dp_fresh in rows:
        tasks.append({
            "name": name, "version": version, "fingerprint": fp, "dataset": dataset,
            "labels": {"version": pl_v, "stale": not bool(pl_fresh)},
            "model": {"version": latest_model if mt_fresh is not None else None, "stale": not bool(mt_fresh)},
            "deployable": {"version": dp_v, "stale": not bool(dp_fresh)},
        })
    counts = con.execute(
        "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM sources), (SELECT count(*) FROM datasets), "
        "(SELECT max(version) FROM schema_version)"
    ).fetchone()
    return {
        "latest_model_version": latest_model,
        "counts": {"tasks": counts[0], "sources": counts[1], "datasets": counts[2]},
        "schema_version": counts[3],
        "stale": {
            "labels": sum(t["labels"]["stale"] for t in tasks),
            "model": sum(t["model"]["stale"] for t in tasks),
            "deployable": sum(t["deployable"]["stale"] for t in tasks),
        },
        "tasks": tasks,
    }
