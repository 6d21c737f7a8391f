"""The registry store over DuckDB: every SQL statement on the registry's tables, in one place.

In the spirit of MLflow's tracking stores: `RegistryStore` implements the store's
contract (`mothermodel.registry.abstract_store.AbstractStore`) over the DuckDB
file, between it and every stage. Labeling, the trainer, distillation and the CLI
read records (`mothermodel.registry.records`) and record new versions through its
methods, never through SQL of their own. Rows become records by column name
(`_rows`), never by position. Each method opens the
registry, does one unit of work (reads under a shared lock; writes in one
transaction under an exclusive lock, see `db`) and closes it again, so no
long-running process holds the file.

Version counters (`max(version) + 1`) are taken inside the write transaction,
under the exclusive lock, so concurrent recorders never collide.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Sequence

from mothermodel.errors import StaleRead, UserError
from mothermodel.inputs import TaskInput
from mothermodel.registry import db
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry import fingerprint as fp
from mothermodel.registry import lineage, tasks as submit_rules
from mothermodel.registry.graph import build_graph, closure, task_tree, topological
from mothermodel.registry.records import (
    HAND_SOURCE,
    DatasetRecord,
    DeployableRecord,
    Edge,
    HandLabelsRecord,
    ImpactedDeployable,
    SliceMembershipRecord,
    model_fingerprint,
    ImpactedModel,
    ImpactReport,
    LabelMatrixRecord,
    LabelVersionRef,
    ModelRecord,
    ModelTaskRecord,
    ProbLabels,
    ProbLabelsRecord,
    RegistryCounts,
    RegistryStatus,
    Snapshot,
    SourceRecord,
    SourceSpec,
    TaskDetail,
    TaskFault,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TaskSummary,
)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def _rows(cur) -> list[dict[str, Any]]:
    """The result's rows as {column: value}: records are built by column name, so adding or moving a
    column in a SELECT cannot shift a field."""
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _row(cur) -> dict[str, Any] | None:
    """The result's first row as {column: value}, or None (fetches all: a half-read result would block
    `register` on the same connection)."""
    rows = _rows(cur)
    return rows[0] if rows else None


@contextmanager
def _registered(con, name: str, table) -> Iterator[None]:
    """An Arrow table visible to SQL as `name` for the block (bulk IN-lists and inserts)."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)


def _next_version(con, table: str, task: str | None = None) -> int:
    """The next version number of TABLE (per task where given); called inside the write transaction,
    under the exclusive lock, so concurrent recorders never collide."""
    if task is None:
        return con.execute(f"SELECT coalesce(max(version), 0) + 1 FROM {table}").fetchone()[0]
    return con.execute(f"SELECT coalesce(max(version), 0) + 1 FROM {table} WHERE task = ?", [task]).fetchone()[0]


def _names(names) -> Any:
    import pyarrow as pa  # lazy: no pyarrow on reads

    return pa.table({"name": pa.array(sorted(names), pa.string())})


_TASK_COLS = ("name, dataset, classes, parent, parent_class, version, fingerprint, description, owner, "
              "spec_origin, spec_source, created_at, updated_at, input, gold, slice_heads")
_DATASET_COLS = "name, path, num_rows, content_hash, text_field, split_field, gold_field, columns, source_file"
_MATRIX_COLS = ("task, version, path, content_hash, dataset_hash, source_versions, task_fingerprint, num_rows, "
                "inputs_key, num_entries, report AS faults, created_at")
_PROBS_COLS = "task, version, label_matrix_version, model, path, content_hash, task_fingerprint, metrics, config, created_at"
_MEMBERSHIP_COLS = ("task, version, path, content_hash, dataset_hash, slice_versions, inputs_key, num_rows, sizes, "
                    "faults, created_at")
_DEPLOYABLE_COLS = ("task, version, model_version, task_fingerprint, student, path, content_hash, "
                    "mlflow_model_version, metrics, created_at")


# Row -> record, by column name: each *_COLS list names exactly its record's stored fields.


def _dataset(r: Mapping[str, Any]) -> DatasetRecord:
    return DatasetRecord(**{**r, "columns": tuple(r["columns"])})


def _source(r: Mapping[str, Any]) -> SourceRecord:
    return SourceRecord(**r)


def _task(r: Mapping[str, Any], sources=()) -> TaskRecord:
    return TaskRecord(**{**r, "classes": tuple(r["classes"]), "description": r["description"] or "",
                         "input": _input(r["input"]), "sources": tuple(s for s in sources if s.kind != "slice"),
                         "slices": tuple(s for s in sources if s.kind == "slice")})


def _input(text: str | None):
    return TaskInput.from_dict(json.loads(text)) if text else None


def _matrix(r: Mapping[str, Any]) -> LabelMatrixRecord:
    return LabelMatrixRecord(**{**r, "source_versions": _json(r["source_versions"], {}),
                                "faults": _json(r["faults"], [])})


def _membership(r: Mapping[str, Any]) -> SliceMembershipRecord:
    return SliceMembershipRecord(**{**r, "slice_versions": _json(r["slice_versions"], {}),
                                    "sizes": _json(r["sizes"], {}), "faults": _json(r["faults"], [])})


def _probs(r: Mapping[str, Any]) -> ProbLabelsRecord:
    return ProbLabelsRecord(**{**r, "metrics": _json(r["metrics"], {}), "config": _json(r["config"], {})})


def _deployable(r: Mapping[str, Any]) -> DeployableRecord:
    return DeployableRecord(**{**r, "metrics": _json(r["metrics"], {})})


def _fault(r: Mapping[str, Any]) -> TaskFault:
    return TaskFault(task=r["task"], stage=r["stage"], reason=r["reason"], fix=r["fix"], at=r["recorded_at"])


class RegistryStore(AbstractStore):
    """The registry store over one workspace's DuckDB file (`AbstractStore`'s contract). Cheap to create;
    holds no connection."""

    def __init__(self, ws):
        self.ws = ws

    def read(self):
        return db.connect(self.ws, write=False)

    def write(self):
        return db.connect(self.ws, write=True)

    # --- datasets --------------------------------------------------------------------

    def record_dataset(self, row: Mapping[str, Any], replace: bool) -> dict[str, Any]:
        """Record a staged dataset (`datasets.stage`); a changed file restamps the tasks that read it."""
        with self.write() as con:
            return self._record_dataset(con, row, replace)

    def record_dataset_and_tasks(self, row: Mapping[str, Any], specs: Sequence[TaskSpec],
                                 replace: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """A dataset and the tasks on it, in one transaction (`import wrench`): all or nothing."""
        with self.write() as con:
            return self._record_dataset(con, row, replace), self._submit(con, specs, replace)

    def _record_dataset(self, con, row: Mapping[str, Any], replace: bool) -> dict[str, Any]:
        old = _row(con.execute("SELECT content_hash, created_at FROM datasets WHERE name = ?", [row["name"]]))
        if old is not None and not replace:
            raise UserError(f"NAME: dataset {row['name']!r} already exists (use --replace to change it)")
        if old is not None:
            # Tasks that read columns the new file lacks would break: refuse.
            for task, src, col in con.execute(
                "SELECT s.task, s.name, s.ref FROM sources s JOIN tasks t ON t.name = s.task "
                "WHERE t.dataset = ? AND s.kind = 'column'", [row["name"]]
            ).fetchall():
                if col not in row["columns"]:
                    raise UserError(f"FILE: task {task!r} source {src!r} needs column {col!r}, "
                                    "which the new file lacks")
            row = {**row, "created_at": old["created_at"]}
            con.execute("DELETE FROM datasets WHERE name = ?", [row["name"]])
        con.execute(
            "INSERT INTO datasets (name, path, num_rows, content_hash, text_field, split_field, gold_field, "
            "columns, source_file, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row[k] for k in ("name", "path", "num_rows", "content_hash", "text_field", "split_field",
                              "gold_field", "columns", "source_file", "created_at", "updated_at")],
        )
        restamped: list[str] = []
        if old is not None and old["content_hash"] != row["content_hash"]:
            users = [r["name"] for r in _rows(con.execute("SELECT name FROM tasks WHERE dataset = ?", [row["name"]]))]
            restamped = self._restamp(con, users)
        keys = ("name", "path", "num_rows", "content_hash", "text_field", "split_field", "gold_field")
        return {k: row[k] for k in keys} | {
            "status": ("created" if old is None else
                       "unchanged" if old["content_hash"] == row["content_hash"] else "updated"),
            "restamped": restamped,
        }

    def datasets(self, con=None) -> dict[str, DatasetRecord]:
        if con is None:
            with self.read() as con:
                return self.datasets(con)
        return {r["name"]: _dataset(r)
                for r in _rows(con.execute(f"SELECT {_DATASET_COLS} FROM datasets ORDER BY name"))}

    def dataset(self, name: str) -> DatasetRecord:
        with self.read() as con:
            r = _row(con.execute(f"SELECT {_DATASET_COLS} FROM datasets WHERE name = ?", [name]))
        if r is None:
            raise UserError(f"dataset: unknown dataset {name!r}")
        return _dataset(r)

    def list_datasets(self) -> list[DatasetRecord]:
        return list(self.datasets().values())

    def read_dataset(self, dataset: DatasetRecord):
        """The dataset's Arrow table, hash-checked (row i is `_row` i)."""
        from mothermodel.registry.files import read_parquet_checked  # lazy: no pyarrow on reads

        return read_parquet_checked(self.ws.home, dataset.path, dataset.content_hash)

    # --- tasks -----------------------------------------------------------------------

    def submit(self, specs: Sequence[TaskSpec], replace: bool = False) -> dict[str, Any]:
        """Validate and write task specs in one transaction (see `registry.tasks` for the rules)."""
        if not specs:
            return {"tasks": [], "restamped": []}
        with self.write() as con:
            return self._submit(con, specs, replace)

    def _submit(self, con, specs: Sequence[TaskSpec], replace: bool) -> dict[str, Any]:
        state = self._submit_state(con, specs)
        plan = submit_rules.plan_submit(specs, state, replace, lambda names: self._fingerprint_inputs(con, names))
        self._check_gold(con, specs)
        self._write_submit(con, plan, state)
        return {"tasks": [plan.results[n] for n in plan.names], "restamped": sorted(plan.restamped)}

    def _check_gold(self, con, specs: Sequence[TaskSpec]) -> None:
        """A gold column named for a task (its `gold:` field, or a `gold_<task>` column) must fit its classes:
        refused at submit (exit 2), before anything is written. An inherited dataset gold field is not checked
        here: a task it does not fit just goes without it (registry/gold.py)."""
        import pyarrow.parquet as pq  # lazy: no pyarrow on reads
        from mothermodel.registry import gold as gold_rule  # lazy: no pyarrow on reads

        for s in specs:
            ds = _dataset(_row(con.execute(f"SELECT {_DATASET_COLS} FROM datasets WHERE name = ?", [s.dataset])))
            col, own = gold_rule.column_for(s, ds)
            if not own:
                continue
            if col not in ds.columns:
                raise UserError(f"{s.origin}: gold: dataset {s.dataset!r} has no column {col!r}")
            values = pq.read_table(self.ws.home / ds.path, columns=[col]).column(col)
            try:
                gold_rule.indices(values, s.classes, dataset=ds.name, column=col, task=s.name)
            except gold_rule.GoldError as e:
                raise UserError(f"{s.origin}: {e}") from None

    def _submit_state(self, con, specs: Sequence[TaskSpec]) -> submit_rules.SubmitState:
        existing = {
            r.pop("name"): submit_rules.ExistingTask(**{**r, "classes": tuple(r["classes"])})
            for r in _rows(con.execute("SELECT name, version, spec_hash, fingerprint, created_at, classes FROM tasks"))
        }
        state = submit_rules.SubmitState(
            datasets={r["name"]: (r["content_hash"], set(r["columns"])) for r in
                      _rows(con.execute("SELECT name, content_hash, columns FROM datasets"))},
            existing=existing,
            edges=[Edge(**r) for r in _rows(con.execute("SELECT upstream, downstream, kind FROM edges"))],
        )
        replaced = [s.name for s in specs if s.name in existing]
        if replaced:
            with _registered(con, "_replaced", _names(replaced)):
                for task, name, kind, ref, chash, version in con.execute(
                    "SELECT task, name, kind, ref, content_hash, version FROM sources "
                    "WHERE task IN (SELECT name FROM _replaced)"
                ).fetchall():
                    if kind == "hand":  # hand labels are not in the spec: a resubmit keeps them
                        state.kept_sources.setdefault(task, []).append((name, kind, ref, version))
                    else:
                        state.old_sources[(task, name)] = (chash, version)
        return state

    def _fingerprint_inputs(self, con, names: set[str]) -> dict[str, fp.Inputs]:
        """What the fingerprints of tasks `names` are computed from, as stored."""
        if not names:
            return {}
        with _registered(con, "_fp_names", _names(names)):
            srcs: dict[str, list] = {n: [] for n in names}
            for t, n, k, ref, v in con.execute(  # slices never vote: not in the fingerprint (see model_fingerprint)
                "SELECT task, name, kind, ref, version FROM sources WHERE task IN (SELECT name FROM _fp_names) "
                "AND kind <> 'slice'"
            ).fetchall():
                srcs[t].append((n, k, ref, v))
            return {
                r["name"]: fp.Inputs(dataset=r["dataset"], classes=tuple(r["classes"]), parent=r["parent"],
                                     parent_class=r["parent_class"], sources=tuple(srcs[r["name"]]),
                                     dataset_hash=r["dataset_hash"], input=_json(r["input"], None), gold=r["gold"])
                for r in _rows(con.execute(
                    "SELECT t.name, t.dataset, t.classes, t.parent, t.parent_class, d.content_hash AS dataset_hash, "
                    "t.input, t.gold FROM tasks t JOIN datasets d ON d.name = t.dataset "
                    "WHERE t.name IN (SELECT name FROM _fp_names)"))
            }

    def _write_submit(self, con, plan: submit_rules.SubmitPlan, state: submit_rules.SubmitState) -> None:
        """Replaced tasks' rows go, the batch's rows come in as Arrow tables; downstream fingerprints move."""
        import pyarrow as pa  # lazy: no pyarrow on reads

        now, names, specs = _now(), plan.names, plan.specs
        if plan.replaced:
            with _registered(con, "_replaced", _names(plan.replaced)):
                con.execute("DELETE FROM sources WHERE task IN (SELECT name FROM _replaced) AND kind <> 'hand'")
                con.execute("DELETE FROM tasks WHERE name IN (SELECT name FROM _replaced)")
        with _registered(con, "_batch", _names(names)):
            con.execute("DELETE FROM edges WHERE downstream IN (SELECT name FROM _batch)")
        ts = pa.timestamp("us")
        tasks_tbl = pa.table({
            "name": names,
            "dataset": [s.dataset for s in specs],
            "classes": [list(s.classes) for s in specs],
            "parent": pa.array([s.parent for s in specs], pa.string()),
            "parent_class": pa.array([s.parent_class for s in specs], pa.string()),
            "description": [s.description for s in specs],
            "owner": pa.array([s.owner for s in specs], pa.string()),
            "version": [plan.results[n]["version"] for n in names],
            "fingerprint": [plan.fingerprints[n] for n in names],
            "spec_hash": [s.spec_hash for s in specs],
            "spec_origin": [s.origin for s in specs],
            "spec_source": pa.array([s.source_text for s in specs], pa.string()),
            "input": pa.array([json.dumps(s.input.to_dict()) if s.input is not None else None for s in specs],
                              pa.string()),
            "gold": pa.array([s.gold for s in specs], pa.string()),
            "slice_heads": pa.array([s.slice_heads for s in specs], pa.bool_()),
            "created_at": pa.array([state.existing[n].created_at if n in state.existing else now for n in names], ts),
            "updated_at": pa.array([now] * len(names), ts),
        })
        with _registered(con, "_tasks", tasks_tbl):
            con.execute("INSERT INTO tasks BY NAME SELECT * FROM _tasks")
        c_task, c_name, c_kind, c_ref, c_code, c_code_hash, c_chash, c_ver = ([] for _ in range(8))
        for s in specs:  # plain appends: a bulk submit carries 10^5 sources
            for src, v in zip(s.sources, plan.source_versions[s.name]):
                c_task.append(s.name); c_name.append(src.name); c_kind.append(src.kind); c_ref.append(src.ref)
                c_code.append(src.code); c_code_hash.append(src.code_hash); c_chash.append(src.content_hash)
                c_ver.append(v)
        cols = {"task": c_task, "name": c_name, "kind": c_kind, "ref": c_ref, "code": c_code,
                "code_hash": c_code_hash, "content_hash": c_chash, "version": c_ver}
        if cols["task"]:
            n = len(cols["task"])
            src_tbl = pa.table({
                **{k: pa.array(cols[k], pa.string()) for k in ("task", "name", "kind", "ref", "code", "code_hash",
                                                                "content_hash")},
                "version": pa.array(cols["version"], pa.int32()),
                "created_at": pa.array([now] * n, ts), "updated_at": pa.array([now] * n, ts),
            })
            with _registered(con, "_sources", src_tbl):
                con.execute("INSERT INTO sources BY NAME SELECT * FROM _sources")
        edges = [(up, s.name, kind) for s in specs for up, kind in dict.fromkeys(s.upstream_tasks)]
        if edges:
            with _registered(con, "_edges", pa.table({"upstream": [e[0] for e in edges], "downstream": [e[1] for e in edges],
                                                      "kind": [e[2] for e in edges]})):
                con.execute("INSERT INTO edges BY NAME SELECT * FROM _edges")
        versioned = plan.versioned
        if versioned:
            by = {s.name: s for s in specs}
            with _registered(con, "_tv", pa.table({
                "task": versioned,
                "version": pa.array([plan.results[n]["version"] for n in versioned], pa.int32()),
                "fingerprint": [plan.fingerprints[n] for n in versioned],
                "spec_json": [json.dumps(by[n].spec_dict(), sort_keys=True) for n in versioned],
                "created_at": pa.array([now] * len(versioned), ts),
            })):
                con.execute("INSERT INTO task_versions BY NAME SELECT * FROM _tv")
        self._set_fingerprints(con, plan.restamped, now)

    def _set_fingerprints(self, con, new_fp: Mapping[str, str], now: datetime) -> None:
        import pyarrow as pa  # lazy: no pyarrow on reads

        if new_fp:
            with _registered(con, "_fp", pa.table({"name": list(new_fp), "fp": list(new_fp.values())})):
                con.execute("UPDATE tasks SET fingerprint = _fp.fp, updated_at = ? FROM _fp WHERE tasks.name = _fp.name",
                            [now])

    def _restamp(self, con, roots: Sequence[str]) -> list[str]:
        """Recompute the fingerprints of `roots` and everything downstream (after a dataset change)."""
        graph = build_graph([r["name"] for r in _rows(con.execute("SELECT name FROM tasks"))], self.edges(con))
        affected = closure(graph, roots)
        current = dict(con.execute("SELECT name, fingerprint FROM tasks").fetchall())
        new_fp = fp.recompute(graph, topological(graph, affected), self._fingerprint_inputs(con, affected), current)
        changed = {n: new_fp[n] for n in sorted(affected) if new_fp[n] != current[n]}
        self._set_fingerprints(con, changed, _now())
        return sorted(changed)

    def list_tasks(self) -> list[TaskSummary]:
        with self.read() as con:
            rows = _rows(con.execute(
                """SELECT t.name, t.dataset, t.classes, t.parent, t.version, t.fingerprint,
                          coalesce(s.n, 0) AS num_sources, t.owner, t.updated_at
                   FROM tasks t LEFT JOIN (SELECT task, count(*) AS n FROM sources WHERE kind <> 'slice'
                                           GROUP BY task) s
                     ON s.task = t.name
                   ORDER BY t.name"""))
        return [TaskSummary(**{**r, "classes": tuple(r["classes"])}) for r in rows]

    def show_task(self, name: str) -> TaskDetail:
        with self.read() as con:
            t = self._task(con, name)
            edges = [Edge(**r) for r in _rows(con.execute(
                "SELECT upstream, downstream, kind FROM edges WHERE downstream = ? OR upstream = ? ORDER BY 1, 2",
                [name, name]))]
            # Display order: columns, then LFs with numbered names in number order (lf2 before lf10), then the rest.
            sources = [_source(r) for r in _rows(con.execute(
                "SELECT task, name, kind, ref, code, code_hash, version FROM sources WHERE task = ? "
                "ORDER BY CASE kind WHEN 'lf' THEN 1 WHEN 'column' THEN 0 ELSE 2 END, "
                "regexp_extract(name, '^(.*?)(\\d*)$', 1), try_cast(regexp_extract(name, '(\\d+)$', 1) AS INTEGER), name",
                [name]))]
        downstream = sorted((e for e in edges if e.upstream == name), key=lambda e: e.downstream)
        sources = [x for x in sources if x.kind != "slice"]
        return TaskDetail(task=t, sources=tuple(sources), upstream=tuple(e for e in edges if e.downstream == name),
                          downstream=tuple(downstream))

    def remove_task(self, name: str) -> dict[str, Any]:
        with self.write() as con:
            self._task(con, name, with_sources=False)
            users = _rows(con.execute("SELECT downstream, kind FROM edges WHERE upstream = ? ORDER BY downstream",
                                      [name]))
            if users:
                listed = ", ".join(f"{u['downstream']} ({u['kind']})" for u in users)
                raise UserError(f"NAME: task {name!r} is used by {listed}: remove or change those first")
            n_sources = con.execute("SELECT count(*) FROM sources WHERE task = ?", [name]).fetchone()[0]
            con.execute("DELETE FROM sources WHERE task = ?", [name])
            con.execute("DELETE FROM edges WHERE downstream = ?", [name])
            con.execute("DELETE FROM task_faults WHERE task = ?", [name])
            con.execute("DELETE FROM tasks WHERE name = ?", [name])
        # Version history (task_versions, label and model versions) stays: it is history.
        return {"removed": name, "sources_removed": n_sources}

    def _task(self, con, name: str, with_sources: bool = True) -> TaskRecord:
        r = _row(con.execute(f"SELECT {_TASK_COLS} FROM tasks WHERE name = ?", [name]))
        if r is None:
            raise UserError(f"NAME: unknown task {name!r}")
        srcs = [] if not with_sources else [_source(s) for s in _rows(con.execute(
            "SELECT task, name, kind, ref, code, code_hash, version FROM sources WHERE task = ? ORDER BY kind, name",
            [name]))]
        return _task(r, srcs)

    def task(self, name: str) -> TaskRecord:
        with self.read() as con:
            return self._task(con, name)

    def tasks(self, con=None) -> dict[str, TaskRecord]:
        """Every task with its sources (sources in kind, then name order: the label matrix's column order)."""
        if con is None:
            with self.read() as con:
                return self.tasks(con)
        srcs: dict[str, list[SourceRecord]] = {}
        for r in _rows(con.execute("SELECT task, name, kind, ref, code, code_hash, version FROM sources "
                                   "ORDER BY task, kind, name")):
            srcs.setdefault(r["task"], []).append(_source(r))
        return {r["name"]: _task(r, srcs.get(r["name"], ())) for r in
                _rows(con.execute(f"SELECT {_TASK_COLS} FROM tasks ORDER BY name"))}

    def edges(self, con=None) -> list[Edge]:
        if con is None:
            with self.read() as con:
                return self.edges(con)
        return [Edge(**r) for r in _rows(con.execute("SELECT upstream, downstream, kind FROM edges ORDER BY ALL"))]

    def snapshot(self) -> Snapshot:
        """Tasks, datasets, edges and each task's latest label versions, in one short read."""
        with self.read() as con:
            matrices = {r["task"]: _matrix(r) for r in _rows(con.execute(
                f"SELECT {_MATRIX_COLS} FROM label_matrices "
                "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1"))}
            probs = {r["task"]: _probs(r) for r in _rows(con.execute(
                f"SELECT {_PROBS_COLS} FROM prob_labels "
                "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1"))}
            members = {r["task"]: _membership(r) for r in _rows(con.execute(
                f"SELECT {_MEMBERSHIP_COLS} FROM slice_memberships "
                "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1"))}
            return Snapshot(self.tasks(con), self.datasets(con), self.edges(con), matrices, probs, members)

    def graph(self):
        """All tasks and typed edges as a networkx DiGraph (node attrs: dataset, n_classes, parent, version,
        n_sources) for rendering."""
        with self.read() as con:
            nodes = _rows(con.execute(
                """SELECT t.name, t.dataset, len(t.classes) AS n_classes, t.parent, t.version,
                          coalesce(s.n, 0) AS n_sources
                   FROM tasks t LEFT JOIN (SELECT task, count(*) n FROM sources WHERE kind <> 'slice' GROUP BY task) s
                     ON s.task = t.name"""))
            g = build_graph([n["name"] for n in nodes], self.edges(con))
        for n in nodes:
            g.add_node(n.pop("name"), **n)
        return g

    def task_tree(self, task: str) -> list[str]:
        """The task tree (parent + parent_class links within a dataset) holding TASK, root first."""
        tasks = self.tasks()
        if task not in tasks:
            raise UserError(f"TASK: unknown task {task!r}")
        return task_tree(tasks, task)

    # --- label versions ----------------------------------------------------------------

    def record_label_matrix(self, task: TaskRecord, *, path: str, content_hash: str, dataset_hash: str,
                            source_versions: Mapping[str, Any], num_rows: int, inputs_key: str, num_entries: int,
                            faults: list[dict[str, Any]]) -> LabelMatrixRecord:
        """Record TASK's next label-matrix version (the file is already written)."""
        with self.write() as con:
            v = _next_version(con, "label_matrices", task.name)
            now = _now()
            con.execute(
                "INSERT INTO label_matrices (task, version, content_hash, path, dataset_hash, source_versions, "
                "task_fingerprint, num_rows, created_at, inputs_key, num_entries, report) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [task.name, v, content_hash, path, dataset_hash, json.dumps(source_versions, sort_keys=True),
                 task.fingerprint, num_rows, now, inputs_key, num_entries, json.dumps(faults)])
            con.execute("DELETE FROM task_faults WHERE task = ? AND stage = 'label apply'", [task.name])
        return LabelMatrixRecord(task.name, v, path, content_hash, dataset_hash, dict(source_versions),
                                 task.fingerprint, num_rows, inputs_key, num_entries, list(faults), now)

    def record_slice_membership(self, task: TaskRecord, *, path: str, content_hash: str, dataset_hash: str,
                                slice_versions: Mapping[str, Any], inputs_key: str, num_rows: int,
                                sizes: Mapping[str, int], faults: list[dict[str, Any]]) -> SliceMembershipRecord:
        """Record TASK's next slice-membership version (the file is already written)."""
        with self.write() as con:
            self._task(con, task.name, with_sources=False)
            v = _next_version(con, "slice_memberships", task.name)
            now = _now()
            con.execute(
                "INSERT INTO slice_memberships (task, version, path, content_hash, dataset_hash, slice_versions, "
                "inputs_key, num_rows, sizes, faults, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [task.name, v, path, content_hash, dataset_hash, json.dumps(slice_versions, sort_keys=True),
                 inputs_key, num_rows, json.dumps(dict(sizes), sort_keys=True), json.dumps(faults), now])
        return SliceMembershipRecord(task.name, v, path, content_hash, dataset_hash, dict(slice_versions), inputs_key,
                                     num_rows, dict(sizes), list(faults), now)

    def slice_memberships(self, task: str) -> list[SliceMembershipRecord]:
        """Every slice-membership version of TASK, newest first."""
        with self.read() as con:
            self._task(con, task, with_sources=False)
            return [_membership(r) for r in _rows(con.execute(
                f"SELECT {_MEMBERSHIP_COLS} FROM slice_memberships WHERE task = ? ORDER BY version DESC", [task]))]

    def record_prob_labels(self, task: TaskRecord, *, label_matrix_version: int, model: str, path: str,
                           content_hash: str, metrics: Mapping[str, Any], config: Mapping[str, Any]) -> ProbLabelsRecord:
        """Record TASK's next probabilistic-labels version (the file is already written)."""
        with self.write() as con:
            v = _next_version(con, "prob_labels", task.name)
            now = _now()
            con.execute(
                "INSERT INTO prob_labels (task, version, label_matrix_version, model, content_hash, path, "
                "task_fingerprint, metrics, created_at, config) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [task.name, v, label_matrix_version, model, content_hash, path, task.fingerprint,
                 json.dumps(metrics), now, json.dumps(config, default=str)])
            con.execute("DELETE FROM task_faults WHERE task = ? AND stage = 'label fit'", [task.name])
        return ProbLabelsRecord(task.name, v, label_matrix_version, model, path, content_hash, task.fingerprint,
                                dict(metrics), json.loads(json.dumps(config, default=str)), now)

    def label_matrix(self, task: str, version: int | None = None) -> LabelMatrixRecord | None:
        """TASK's label-matrix version VERSION (default: the latest), or None."""
        with self.read() as con:
            r = _row(con.execute(f"SELECT {_MATRIX_COLS} FROM label_matrices WHERE task = ? AND version = coalesce(?, "
                                 "(SELECT max(version) FROM label_matrices WHERE task = ?))", [task, version, task]))
        return _matrix(r) if r else None

    def latest_prob_labels(self, task: str, fresh: bool = True) -> ProbLabelsRecord | None:
        """TASK's newest probabilistic labels; with `fresh`, only ones fit for its current fingerprint."""
        with self.read() as con:
            r = _row(con.execute(
                f"SELECT {', '.join('p.' + c.strip() for c in _PROBS_COLS.split(','))} FROM prob_labels p "
                "JOIN tasks t ON t.name = p.task WHERE p.task = ? AND (NOT ? OR p.task_fingerprint = t.fingerprint) "
                "ORDER BY p.version DESC LIMIT 1", [task, fresh]))
        return _probs(r) if r else None

    def prob_labels(self, task: str, version: int) -> ProbLabelsRecord:
        with self.read() as con:
            r = _row(con.execute(f"SELECT {_PROBS_COLS} FROM prob_labels WHERE task = ? AND version = ?",
                                 [task, version]))
        if r is None:
            raise UserError(f"VERSION: task {task!r} has no probabilistic-labels version {version}")
        return _probs(r)

    def read_prob_labels(self, record: ProbLabelsRecord, with_text: bool = False) -> ProbLabels:
        """A probabilistic-labels version with its dataset's splits, gold labels and (optionally) the model
        inputs the task's template builds (`TaskRecord.input_for`), aligned to dataset rows; every file
        hash-checked."""
        import numpy as np  # lazy: no pyarrow on reads
        from mothermodel.registry import gold as gold_rule  # lazy: no pyarrow on reads
        from mothermodel.registry.datasets import input_texts, split_column  # lazy: no pyarrow on reads
        from mothermodel.registry.files import read_parquet_checked  # lazy: no pyarrow on reads

        with self.read() as con:
            t = self._task(con, record.task, with_sources=False)
            d = _dataset(_row(con.execute(f"SELECT {_DATASET_COLS} FROM datasets WHERE name = ?", [t.dataset])))
            m = _row(con.execute(f"SELECT {_MATRIX_COLS} FROM label_matrices WHERE task = ? AND version = ?",
                                 [record.task, record.label_matrix_version]))
        pl = read_parquet_checked(self.ws.home, record.path, record.content_hash)
        data = self.read_dataset(d)
        n, k = d.num_rows, len(t.classes)
        rows = pl.column("row").to_numpy()
        probs = np.zeros((n, k), np.float32)
        probs[rows] = np.stack([pl.column(f"p_{j}").to_numpy() for j in range(k)], axis=1)
        pred = np.full(n, -1, np.int64)
        pred[rows] = pl.column("pred").to_numpy()
        applicable = None
        if "applicable" in pl.column_names:
            applicable = np.ones(n, np.float32)
            applicable[rows] = pl.column("applicable").to_numpy()
        split = split_column(data, d)
        gold = gold_rule.resolve(data, t, d)[0]  # a task's own gold column that no longer fits: GoldError
        hand = None
        if "hand" in pl.column_names:
            hand = np.full(n, -1, np.int64)
            hand[rows] = pl.column("hand").to_numpy().astype(np.int64)
            if gold is not None:  # a row trained on is never scored: hand-labelled rows leave every figure
                gold = np.where(hand >= 0, -1, gold)
        covered = None
        if m is not None:
            lm = read_parquet_checked(self.ws.home, m["path"], m["content_hash"])
            covered = np.zeros(n, bool)
            covered[lm.column("row").to_numpy()] = True
        inp = t.input_for(d)
        texts = input_texts(data, inp) if with_text and inp is not None else None
        return ProbLabels(record, t.classes, rows, probs, pred, split, gold, applicable, covered, texts, inp, hand)

    def record_hand_labels(self, task: str, *, path: str, content_hash: str, num_rows: int, added: int,
                           valid_rows: int, added_by: str | None, source_file: str | None,
                           replaced: bool, after: int) -> HandLabelsRecord:
        with self.write() as con:
            self._task(con, task, with_sources=False)
            # counted in the history table: a removed and re-created task does not reuse an old version number
            latest = con.execute("SELECT coalesce(max(version), 0) FROM hand_labels WHERE task = ?", [task]).fetchone()[0]
            if latest != after:
                raise StaleRead(f"task {task}: hand labels version {latest} was recorded while version {after + 1} "
                                "was being built")
            v = after + 1
            now = _now()
            src = SourceSpec(name=HAND_SOURCE, kind="hand", ref=path, code_hash=content_hash)
            con.execute("DELETE FROM sources WHERE task = ? AND kind = 'hand'", [task])
            con.execute("INSERT INTO sources (task, name, kind, ref, code, code_hash, content_hash, version, "
                        "created_at, updated_at) VALUES (?, ?, 'hand', ?, NULL, ?, ?, ?, ?, ?)",
                        [task, HAND_SOURCE, path, content_hash, src.content_hash, v, now, now])
            con.execute("INSERT INTO hand_labels (task, version, path, content_hash, num_rows, added, valid_rows, "
                        "added_by, source_file, replaced, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [task, v, path, content_hash, num_rows, added, valid_rows, added_by, source_file, replaced,
                         now])
            self._restamp(con, [task])
        return HandLabelsRecord(task, v, path, content_hash, num_rows, added, valid_rows, added_by, source_file,
                                replaced, now)

    def hand_labels(self, task: str) -> list[HandLabelsRecord]:
        with self.read() as con:
            self._task(con, task, with_sources=False)
            return [HandLabelsRecord(**r) for r in _rows(con.execute(
                "SELECT task, version, path, content_hash, num_rows, added, valid_rows, added_by, source_file, "
                "replaced, created_at FROM hand_labels WHERE task = ? ORDER BY version DESC", [task]))]

    def label_history(self, task: str) -> tuple[list[LabelMatrixRecord], list[ProbLabelsRecord]]:
        """Every label-matrix and probabilistic-labels version of TASK, newest first."""
        with self.read() as con:
            self._task(con, task, with_sources=False)
            return ([_matrix(r) for r in _rows(con.execute(f"SELECT {_MATRIX_COLS} FROM label_matrices WHERE task = ? "
                                                           "ORDER BY version DESC", [task]))],
                    [_probs(r) for r in _rows(con.execute(f"SELECT {_PROBS_COLS} FROM prob_labels WHERE task = ? "
                                                          "ORDER BY version DESC", [task]))])

    # --- models and deployables ------------------------------------------------------------

    def record_model(self, *, path: str, encoder: str | None, content_hash: str | None, metrics: Mapping[str, Any],
                     mlflow_run_id: str | None, tasks: Sequence[ModelTaskRecord]) -> ModelRecord:
        """Record the next mother-model version and, per task, the lineage it was trained on."""
        with self.write() as con:
            v = _next_version(con, "models")
            now = _now()
            con.execute("INSERT INTO models (version, path, encoder, content_hash, metrics, mlflow_run_id, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", [v, path, encoder, content_hash, json.dumps(metrics),
                                                         mlflow_run_id, now])
            con.executemany("INSERT INTO model_tasks (model_version, task, task_fingerprint, prob_label_version, "
                            "served_by, checkpoint, checkpoint_hash, guard) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [[v, t.task, t.task_fingerprint, t.prob_label_version, t.served_by, t.checkpoint,
                              t.checkpoint_hash, json.dumps(t.guard) if t.guard else None] for t in tasks])
            con.execute("DELETE FROM task_faults WHERE stage = 'train' AND list_contains(?, task)",
                        [[t.task for t in tasks]])
        return ModelRecord(v, path, encoder, content_hash, dict(metrics), mlflow_run_id, {t.task: t for t in tasks}, now)

    def set_model_run(self, version: int, mlflow_run_id: str) -> None:
        with self.write() as con:
            con.execute("UPDATE models SET mlflow_run_id = ? WHERE version = ?", [mlflow_run_id, version])

    def _models(self, con, where: str = "", params: Sequence[Any] = ()) -> list[ModelRecord]:
        rows = _rows(con.execute(f"SELECT version, path, encoder, content_hash, metrics, mlflow_run_id, created_at "
                                 f"FROM models {where} ORDER BY version", list(params)))
        if not rows:
            return []
        per: dict[int, dict[str, ModelTaskRecord]] = {}
        for r in _rows(con.execute(
                "SELECT model_version, task, task_fingerprint, prob_label_version, served_by, checkpoint, "
                "checkpoint_hash, guard FROM model_tasks "
                "WHERE model_version BETWEEN ? AND ?", [rows[0]["version"], rows[-1]["version"]])):
            mv = r.pop("model_version")
            per.setdefault(mv, {})[r["task"]] = ModelTaskRecord(**{**r, "guard": _json(r["guard"], {})})
        return [ModelRecord(**{**r, "metrics": _json(r["metrics"], {}), "tasks": per.get(r["version"], {})})
                for r in rows]

    def model(self, version: int | None = None) -> ModelRecord | None:
        """Model version VERSION (default: the latest), or None when there is none."""
        with self.read() as con:
            got = self._models(con, "WHERE version = coalesce(?, (SELECT max(version) FROM models))", [version])
        return got[0] if got else None

    def models(self) -> list[ModelRecord]:
        with self.read() as con:
            return self._models(con)

    def record_deployable(self, *, task: TaskRecord, model_version: int, student: str, path: str,
                          content_hash: str | None, mlflow_model_version: str | None,
                          metrics: Mapping[str, Any]) -> DeployableRecord:
        """Record TASK's next deployable (a distilled student built from MODEL_VERSION)."""
        with self.write() as con:
            v = _next_version(con, "deployables", task.name)
            now = _now()
            con.execute(f"INSERT INTO deployables ({_DEPLOYABLE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [task.name, v, model_version, task.fingerprint, student, path, content_hash,
                         mlflow_model_version, json.dumps(metrics), now])
        return DeployableRecord(task.name, v, model_version, task.fingerprint, student, path, content_hash,
                                mlflow_model_version, dict(metrics), now)

    def deployables(self, task: str) -> list[DeployableRecord]:
        """Every recorded deployable of TASK, oldest first."""
        with self.read() as con:
            rows = _rows(con.execute(f"SELECT {_DEPLOYABLE_COLS} FROM deployables WHERE task = ? ORDER BY version",
                                     [task]))
        return [_deployable(r) for r in rows]

    def latest_deployable(self, task: str) -> DeployableRecord | None:
        with self.read() as con:
            r = _row(con.execute(f"SELECT {_DEPLOYABLE_COLS} FROM deployables WHERE task = ? "
                                 "ORDER BY version DESC LIMIT 1", [task]))
        return _deployable(r) if r else None

    # --- staleness and impact ------------------------------------------------------------------

    def status(self) -> RegistryStatus:
        """Per task: are its labels, model and deployable stale, and why (`registry.lineage`)."""
        with self.read() as con:
            tasks = self._task_statuses(con)
            counts = _row(con.execute(
                "SELECT (SELECT count(*) FROM tasks) AS tasks, (SELECT count(*) FROM sources WHERE kind <> 'slice') AS sources, "
                "(SELECT count(*) FROM datasets) AS datasets, (SELECT max(version) FROM schema_version) AS schema"))
            latest = con.execute("SELECT max(version) FROM models").fetchone()[0]
        return RegistryStatus(latest_model_version=latest, schema_version=counts.pop("schema"),
                              counts=RegistryCounts(**counts), tasks=tuple(tasks))

    def task_status(self, name: str) -> TaskStatus:
        """`status` for task NAME alone: one task's rows, not every task's."""
        with self.read() as con:
            got = self._task_statuses(con, name)
        if not got:
            raise UserError(f"TASK: unknown task {name!r}")
        return got[0]

    def _staleness(self, con, names: Sequence[str] | None = None
                   ) -> tuple[list[tuple[dict[str, Any], dict[str, lineage.Staleness]]], ModelRecord | None]:
        """The one query behind `status`, `task_status` and `staleness`: per task (NAMES, default every task;
        in name order) its row (name, version, fingerprint, dataset) and the staleness of its labels, model and
        deployable (`lineage.task_staleness`), from its latest probabilistic labels, the latest ones fit to its
        current fingerprint, the latest model and its latest deployable; and the latest model (None before any)."""
        names = None if names is None else list(names)
        rows = _rows(con.execute(
            """WITH pl AS (SELECT task, max(version) AS v, arg_max(task_fingerprint, version) AS fp
                           FROM prob_labels GROUP BY task),
                    fr AS (SELECT p.task, max(p.version) AS v FROM prob_labels p JOIN tasks t
                           ON t.name = p.task AND p.task_fingerprint = t.fingerprint GROUP BY p.task)
               SELECT t.name, t.version, t.fingerprint, t.dataset, pl.v AS labels_version, pl.fp AS labels_fit_for,
                      fr.v AS fresh_labels_version
               FROM tasks t LEFT JOIN pl ON pl.task = t.name LEFT JOIN fr ON fr.task = t.name
               WHERE ? IS NULL OR list_contains(?, t.name)
               ORDER BY t.name""", [names, names]))
        models = self._models(con, "WHERE version = (SELECT max(version) FROM models)")
        deploy = {r["task"]: _deployable(r) for r in _rows(con.execute(
            f"SELECT {_DEPLOYABLE_COLS} FROM deployables WHERE ? IS NULL OR list_contains(?, task) "
            "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1", [names, names]))}
        model = models[0] if models else None
        heads: dict[str, list] = {}  # tasks with slice heads: their slices, for their model fingerprint
        for t, n, v, h in con.execute(
                "SELECT s.task, s.name, s.version, s.code_hash FROM sources s JOIN tasks t ON t.name = s.task "
                "WHERE s.kind = 'slice' AND t.slice_heads AND (? IS NULL OR list_contains(?, s.task))",
                [names, names]).fetchall():
            heads.setdefault(t, []).append((n, v, h))
        return [(r, lineage.task_staleness(
                    r["name"], r["fingerprint"],
                    (r["labels_version"], r["labels_fit_for"]) if r["labels_version"] is not None else None,
                    r["fresh_labels_version"], model, deploy.get(r["name"]),
                    model_fingerprint(r["fingerprint"], r["name"] in heads, heads.get(r["name"], []))))
                for r in rows], model

    def _task_statuses(self, con, name: str | None = None) -> list[TaskStatus]:
        """The state of every task (or of task NAME), by name."""
        rows, model = self._staleness(con, None if name is None else [name])
        faults: dict[str, list[TaskFault]] = {}
        for f in self._task_faults(con, name):
            faults.setdefault(f.task, []).append(f)
        slices = self._slice_staleness(con, name)
        out = []
        for r, s in rows:
            n = r["name"]
            out.append(TaskStatus(name=n, version=r["version"], fingerprint=r["fingerprint"], dataset=r["dataset"],
                                  labels=s["labels"], model=s["model"], deployable=s["deployable"],
                                  serving=lineage.serving(model.tasks.get(n) if model else None),
                                  faults=tuple(faults.get(n, ())), slices=slices.get(n)))
        return out

    def _slice_staleness(self, con, name: str | None = None) -> dict[str, Staleness]:
        """Per task with slices (or a membership): whether its latest slice membership was computed from its
        current slices and dataset (`label apply` brings it up to date)."""
        current: dict[str, dict[str, Any]] = {}
        for t, n, v, h in con.execute("SELECT task, name, version, code_hash FROM sources WHERE kind = 'slice' "
                                      "AND (? IS NULL OR task = ?)", [name, name]).fetchall():
            current.setdefault(t, {})[n] = {"version": v, "code_hash": h}
        latest = {r["task"]: r for r in _rows(con.execute(
            "SELECT m.task, m.version, m.slice_versions, m.dataset_hash = d.content_hash AS same_data "
            "FROM slice_memberships m JOIN tasks t ON t.name = m.task JOIN datasets d ON d.name = t.dataset "
            "WHERE ? IS NULL OR m.task = ? QUALIFY row_number() OVER (PARTITION BY m.task ORDER BY m.version DESC) = 1",
            [name, name]))}
        return {t: lineage.slices_staleness(current.get(t, {}), latest.get(t)) for t in set(current) | set(latest)}

    # --- per-task faults: one task's failure is recorded and reported, the others go on ----------------

    def _task_faults(self, con, name: str | None = None) -> list[TaskFault]:
        return [_fault(r) for r in _rows(con.execute(
            "SELECT f.task, f.stage, f.reason, f.fix, f.recorded_at FROM task_faults f "
            "JOIN tasks t ON t.name = f.task WHERE ? IS NULL OR f.task = ? ORDER BY f.task, f.stage", [name, name]))]

    def task_faults(self) -> list[TaskFault]:
        """Each task's current fault per stage, by task and stage."""
        with self.read() as con:
            return self._task_faults(con)

    def set_task_faults(self, stage: str, failed: Sequence[Mapping[str, Any]], succeeded: Sequence[str] = ()) -> None:
        """Record each failed task's fault at STAGE ({task, reason, fix}; replacing its previous one) and clear
        the STAGE fault of every task in SUCCEEDED, in one transaction. Writes nothing when nothing changes."""
        names = [f["task"] for f in failed] + list(succeeded)
        if not names:
            return
        if not failed:
            with self.read() as con:  # the common case: nothing failed, nothing to clear
                if not con.execute("SELECT count(*) FROM task_faults WHERE stage = ? AND list_contains(?, task)",
                                   [stage, names]).fetchall()[0][0]:
                    return
        with self.write() as con:
            con.execute("DELETE FROM task_faults WHERE stage = ? AND list_contains(?, task)", [stage, names])
            now = _now()
            con.executemany("INSERT INTO task_faults (task, stage, reason, fix, recorded_at) VALUES (?, ?, ?, ?, ?)",
                            [[f["task"], stage, f["reason"], f.get("fix"), now]
                             for f in {f["task"]: f for f in failed}.values()])

    def impact(self, name: str, kind: str = "auto") -> ImpactReport:
        """Everything a change to NAME (a task, TASK.SOURCE, TASK.SLICE or a dataset) makes stale, and why."""
        with self.read() as con:
            what, canonical, direct = self._resolve(con, name, kind)
            g = build_graph(direct, self.edges(con))
            if what == "slice":
                # A slice never votes: what it measures goes stale (its task's membership), and with slice heads
                # the task's model and deployable (records.TaskRecord.model_fingerprint); nothing downstream.
                latest = [LabelVersionRef(**r) for r in _rows(con.execute(
                    "SELECT task, 'slice_membership' AS kind, max(version) AS version FROM slice_memberships "
                    "WHERE task = ? GROUP BY task", direct))]
                heads = con.execute("SELECT slice_heads FROM tasks WHERE name = ?", direct).fetchall()[0][0]
                models, deployables = self._impacted_models(con, direct) if heads else ([], [])
                return lineage.impact_report(what, canonical, g, {direct[0]: (0, None)}, latest, models, deployables)
            reached = lineage.reach(g, direct)
            with _registered(con, "_impacted", _names(reached)):
                label_versions = [LabelVersionRef(**r) for r in _rows(con.execute(
                    """SELECT task, 'label_matrix' AS kind, version FROM label_matrices
                       WHERE task IN (SELECT name FROM _impacted)
                       UNION ALL
                       SELECT task, 'prob_labels' AS kind, version FROM prob_labels
                       WHERE task IN (SELECT name FROM _impacted)
                       ORDER BY 1, 2, 3"""))]
            models, deployables = self._impacted_models(con, list(reached))
        return lineage.impact_report(what, canonical, g, reached, label_versions, models, deployables)

    def _impacted_models(self, con, tasks: list[str]) -> tuple[list[ImpactedModel], list[ImpactedDeployable]]:
        """Only what is current goes stale: the latest model, and each task's latest deployable (older versions
        were superseded already)."""
        with _registered(con, "_impacted_m", _names(tasks)):
            models = [ImpactedModel(version=r["version"], tasks=tuple(r["tasks"])) for r in _rows(con.execute(
                "SELECT model_version AS version, list(task ORDER BY task) AS tasks FROM model_tasks "
                "WHERE task IN (SELECT name FROM _impacted_m) "
                "AND model_version = (SELECT max(version) FROM models) GROUP BY 1 ORDER BY 1"))]
            deployables = [ImpactedDeployable(**r) for r in _rows(con.execute(
                "SELECT task, version, model_version, student FROM deployables "
                "WHERE task IN (SELECT name FROM _impacted_m) "
                "QUALIFY row_number() OVER (PARTITION BY task ORDER BY version DESC) = 1 ORDER BY 1, 2"))]
        return models, deployables

    def _resolve(self, con, name: str, kind: str) -> tuple[str, str, list[str]]:
        """What NAME denotes: ('task'|'source'|'dataset', canonical name, tasks it changes directly)."""
        if kind in ("auto", "task") and con.execute("SELECT 1 FROM tasks WHERE name = ?", [name]).fetchone():
            return "task", name, [name]
        if kind in ("auto", "source") and "." in name:
            task, src = name.split(".", 1)
            found = con.execute("SELECT kind FROM sources WHERE task = ? AND name = ?", [task, src]).fetchone()
            if found:
                return "slice" if found[0] == "slice" else "source", name, [task]
        if kind in ("auto", "dataset") and con.execute("SELECT 1 FROM datasets WHERE name = ?", [name]).fetchone():
            users = [r["name"] for r in _rows(con.execute("SELECT name FROM tasks WHERE dataset = ? ORDER BY name",
                                                          [name]))]
            return "dataset", name, users
        what = {"auto": "task, TASK.SOURCE or dataset", "task": "task", "source": "TASK.SOURCE", "dataset": "dataset"}[kind]
        raise UserError(f"NAME: no {what} named {name!r}")

    # --- verify (read-only) ------------------------------------------------------------------

    def recorded_files(self) -> dict[str, list[tuple]]:
        """Every file and folder the registry records, in one read (`registry.verify`).

        Keys dataset, label_matrix, prob_labels, hand_labels, slice_membership, model, checkpoint (a guard's stage checkpoint other than
        its model's folder), deployable: ``[(path relative to .mothermodel/, sha256 or None, what)]``;
        mlflow_runs: ``[(model version, run id, checkpoint path, manifest sha256)]``;
        registered: ``[(task, deployable version, registered version, bundle path, manifest sha256)]``.
        """
        with self.read() as con:
            q = lambda sql: con.execute(sql).fetchall()  # noqa: E731
            return {
                "dataset": [(p, h, f"dataset {n}") for n, p, h in
                            q("SELECT name, path, content_hash FROM datasets ORDER BY name")],
                "label_matrix": [(p, h, f"{t} label matrix v{v}") for t, v, p, h in
                                 q("SELECT task, version, path, content_hash FROM label_matrices ORDER BY 1, 2")],
                "prob_labels": [(p, h, f"{t} probabilistic labels v{v}") for t, v, p, h in
                                q("SELECT task, version, path, content_hash FROM prob_labels ORDER BY 1, 2")],
                "hand_labels": [(p, h, f"{t} hand labels v{v}") for t, v, p, h in
                                q("SELECT task, version, path, content_hash FROM hand_labels ORDER BY 1, 2")],
                "slice_membership": [(p, h, f"{t} slice membership v{v}") for t, v, p, h in q(
                    "SELECT task, version, path, content_hash FROM slice_memberships ORDER BY 1, 2")],
                "model": [(p, h, f"model v{v}") for v, p, h in
                          q("SELECT version, path, content_hash FROM models ORDER BY version")],
                "checkpoint": [(p, h, f"model v{v}'s {t} checkpoint") for v, t, p, h in q(
                    "SELECT mt.model_version, mt.task, mt.checkpoint, mt.checkpoint_hash FROM model_tasks mt "
                    "JOIN models m ON m.version = mt.model_version WHERE mt.checkpoint IS NOT NULL "
                    "AND mt.checkpoint <> m.path QUALIFY row_number() OVER (PARTITION BY mt.checkpoint "
                    "ORDER BY mt.model_version, mt.task) = 1 ORDER BY 1, 2")],
                "deployable": [(p, h, f"deployable {t} v{v}") for t, v, p, h in
                               q("SELECT task, version, path, content_hash FROM deployables ORDER BY 1, 2")],
                "mlflow_runs": q("SELECT version, mlflow_run_id, path, content_hash FROM models "
                                 "WHERE mlflow_run_id IS NOT NULL ORDER BY version"),
                "registered": q("SELECT task, version, mlflow_model_version, path, content_hash FROM deployables "
                                "WHERE mlflow_model_version IS NOT NULL ORDER BY 1, 2"),
            }

    # --- one task's staleness, without building every task's `status` (distill; helper C, issue 25) ----------

    def staleness(self, names: Sequence[str] | None = None) -> dict[str, dict[str, lineage.Staleness]]:
        """Per task (NAMES, default every task; in name order): whether its labels, model and deployable are
        stale and why, as `status` reports them (`registry.lineage`), in one read of those tasks' rows only.
        An unknown name: exit 2 naming it."""
        with self.read() as con:
            rows, _ = self._staleness(con, names)
        found = {r["name"] for r, _ in rows}
        for n in names or ():
            if n not in found:
                raise UserError(f"TASK: unknown task {n!r}")
        return {r["name"]: s for r, s in rows}
