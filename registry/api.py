"""`Registry`: the Python API that every registry CLI command is a thin twin of.

Each method opens the registry, does one unit of work in one transaction and
closes it again (see `db`), so no long-running process holds the file.

    >>> from mothermodel import Registry
    >>> reg = Registry.init("my-workspace")
    >>> reg.import_wrench("../shared/data/youtube", task="spam")
    >>> reg.show_task("spam")["classes"]
    ['HAM', 'SPAM']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from mothermodel.registry import db
from mothermodel.registry.spec import TaskSpec, load_spec
from mothermodel.registry.workspace import Workspace


class Registry:
    def __init__(self, workspace: Workspace):
        self.ws = workspace

    # --- opening ---------------------------------------------------------------
    @classmethod
    def init(cls, path: str | Path = ".") -> "Registry":
        return cls(Workspace.init(path))

    @classmethod
    def open(cls, workspace: str | Path | None = None) -> "Registry":
        """--workspace, else $MOTHERMODEL_HOME, else the nearest parent holding .mothermodel/."""
        return cls(Workspace.find(workspace))

    def read(self):
        return db.connect(self.ws, write=False)

    def write(self):
        return db.connect(self.ws, write=True)

    # --- datasets ----------------------------------------------------------------
    def add_dataset(self, name: str, file: str | Path, text_field: str | None = None,
                    split_field: str | None = None, gold_field: str | None = None,
                    replace: bool = False) -> dict[str, Any]:
        from mothermodel.registry import datasets

        table = datasets.read_table(file)
        row = datasets.stage(self.ws, name, table, text_field, split_field, gold_field, origin=str(file))
        with self.write() as con:
            return datasets.record(con, row, replace)

    def add_dataset_table(self, name: str, table, text_field: str | None = None,
                          split_field: str | None = None, gold_field: str | None = None,
                          replace: bool = False, origin: str = "<arrow>") -> dict[str, Any]:
        """Register an in-memory Arrow table as a dataset."""
        from mothermodel.registry import datasets

        row = datasets.stage(self.ws, name, table, text_field, split_field, gold_field, origin=origin)
        with self.write() as con:
            return datasets.record(con, row, replace)

    def list_datasets(self) -> list[dict[str, Any]]:
        from mothermodel.registry import datasets

        with self.read() as con:
            return datasets.list_datasets(con)

    def dataset_path(self, name: str) -> Path:
        from mothermodel.errors import UserError

        with self.read() as con:
            row = con.execute("SELECT path FROM datasets WHERE name = ?", [name]).fetchone()
        if row is None:
            raise UserError(f"dataset: unknown dataset {name!r}")
        return self.ws.home / row[0]

    def import_wrench(self, folder: str | Path, task: str, replace: bool = False) -> dict[str, Any]:
        """A WRENCH folder -> dataset TASK (gold labels kept for evaluation) + task TASK with lf_0.. sources."""
        from mothermodel.registry import datasets, tasks, wrench

        table, classes = wrench.read(folder)
        m = sum(1 for c in table.column_names if c.startswith("lf_"))
        spec = wrench.task_for(task, classes, m, origin=str(folder))
        row = datasets.stage(self.ws, task, table, "text", "split", "label", origin=str(folder))
        with self.write() as con:
            ds = datasets.record(con, row, replace)
            res = tasks.submit(con, [spec], replace=replace)
        return {"dataset": ds, "task": res["tasks"][0], "restamped": res["restamped"]}

    # --- tasks -------------------------------------------------------------------
    def submit(self, spec: str | Path | TaskSpec | Sequence[TaskSpec], replace: bool = False) -> dict[str, Any]:
        """Submit a spec file, a TaskSpec, or many TaskSpecs in one transaction."""
        from mothermodel.registry import tasks

        if isinstance(spec, (str, Path)):
            specs = [load_spec(spec)]
        elif isinstance(spec, TaskSpec):
            specs = [spec]
        else:
            specs = list(spec)
        with self.write() as con:
            return tasks.submit(con, specs, replace=replace)

    def list_tasks(self) -> list[dict[str, Any]]:
        from mothermodel.registry import tasks

        with self.read() as con:
            return tasks.list_tasks(con)

    def show_task(self, name: str) -> dict[str, Any]:
        from mothermodel.registry import tasks

        with self.read() as con:
            return tasks.show_task(con, name)

    def remove_task(self, name: str) -> dict[str, Any]:
        from mothermodel.registry import tasks

        with self.write() as con:
            return tasks.remove_task(con, name)

    # --- DAG and status ------------------------------------------------------------
    def graph(self):
        from mothermodel.registry import dag

        with self.read() as con:
            return dag.task_graph(con)

    def impact(self, name: str, kind: str = "auto") -> dict[str, Any]:
        from mothermodel.registry import dag

        with self.read() as con:
            return dag.impact(con, name, kind)

    def status(self) -> dict[str, Any]:
        from mothermodel.registry import status

        with self.read() as con:
            out = status.status(con)
        return {"workspace": str(self.ws.root), "mlflow_tracking_uri": self.ws.mlflow_tracking_uri, **out}
