"""Workspaces: a directory holding `.mothermodel/`, found the way git finds `.git`.

Layout of `.mothermodel/`:
    registry.duckdb   the registry (tasks, sources, datasets, edges, versions)
    registry.lock     advisory lock file that serialises registry access
    data/             dataset Parquet files, content-addressed
    labels/           label matrices and probabilistic labels (later: DVC-tracked)
    models/           mother-model checkpoints
    deployables/      distilled per-task models
    mlflow.db, mlartifacts/   the MLflow tracking store
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mothermodel.errors import UserError

DIRNAME = ".mothermodel"
ENV_HOME = "MOTHERMODEL_HOME"
SUBDIRS = ("data", "labels", "models", "deployables", "mlartifacts", "tmp")


@dataclass(frozen=True)
class Workspace:
    """A mothermodel workspace rooted at `root` (the folder that holds `.mothermodel/`)."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / DIRNAME

    @property
    def db_path(self) -> Path:
        return self.home / "registry.duckdb"

    @property
    def lock_path(self) -> Path:
        return self.home / "registry.lock"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def labels_dir(self) -> Path:
        return self.home / "labels"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def tmp_dir(self) -> Path:
        # Same filesystem as the targets, so os.replace() is atomic.
        return self.home / "tmp"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{(self.home / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifact_uri(self) -> str:
        return (self.home / "mlartifacts").as_uri()

    @classmethod
    def init(cls, path: str | Path = ".") -> "Workspace":
        """Create (or re-open) a workspace at `path`; idempotent."""
        from mothermodel.registry import db

        root = Path(path).resolve()
        if root.exists() and not root.is_dir():
            raise UserError(f"{root}: exists and is not a directory")
        ws = cls(root)
        for sub in SUBDIRS:
            (ws.home / sub).mkdir(parents=True, exist_ok=True)
        db.ensure_schema(ws)
        return ws

    @classmethod
    def find(cls, workspace: str | Path | None = None, start: str | Path | None = None) -> "Workspace":
        """`--workspace`, else $MOTHERMODEL_HOME, else the nearest parent holding `.mothermodel/`."""
        explicit = workspace or os.environ.get(ENV_HOME)
        if explicit:
            root = Path(explicit).resolve()
            if root.name == DIRNAME:
                root = root.parent
            if not (root / DIRNAME / "registry.duckdb").is_file():
                what = "--workspace" if workspace else ENV_HOME
                raise UserError(f"{what}: {root} is not a mothermodel workspace (run `mothermodel init {root}`)")
            return cls(root)
        here = Path(start or Path.cwd()).resolve()
        for d in (here, *here.parents):
            if (d / DIRNAME / "registry.duckdb").is_file():
                return cls(d)
        raise UserError(
            f"{here}: not inside a mothermodel workspace (run `mothermodel init`, or pass --workspace)"
        )
