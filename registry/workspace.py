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

import contextlib
import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse
from urllib.request import url2pathname

from mothermodel.errors import UserError
from mothermodel.registry import db

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
        # Every use of the workspace's own MLflow store goes through here: a copied, moved or restored
        # workspace's store is rebased onto this folder before MLflow reads a location from it.
        rebase_mlflow(self)
        return f"sqlite:///{(self.home / 'mlflow.db').as_posix()}"

    @property
    def mlflow_artifact_uri(self) -> str:
        return (self.home / "mlartifacts").as_uri()

    @classmethod
    def init(cls, path: str | Path = ".") -> "Workspace":
        """Create (or re-open) a workspace at `path`; idempotent."""
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


# The MLflow store's columns that hold artifact locations (absolute file:// URIs: MLflow resolves
# relative ones against the current directory, so they are rebased instead), and the tag naming the
# workspace that wrote a run or a registered version (distill's leftover cleanup matches on it).
_MLFLOW_LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("model_versions", "source"),
                     ("model_versions", "storage_location"), ("logged_models", "artifact_location"))
_MLFLOW_WORKSPACE_TAGS = ("tags", "model_version_tags")
TAG_WORKSPACE = "mothermodel.workspace"


def rebase_mlflow(ws: Workspace) -> list[str]:
    """Point the workspace's MLflow store at `ws` when it records another root (the workspace was copied,
    moved or restored from a backup): every artifact location and workspace tag under the recorded root
    is rewritten onto `ws.root` in one transaction, so the copy's runs, artifacts and registered models
    are its own and nothing is written into the original. Returns the old roots rebased (usually none:
    then it only read). A store it cannot write (a read-only copy) is left as it is.
    """
    db = ws.home / "mlflow.db"
    if not db.is_file():
        return []
    new_uri = ws.home.as_uri()
    marker = f"/{DIRNAME}/mlartifacts"

    def old_homes(con) -> list[str]:
        locs = [r[0] for r in con.execute("SELECT artifact_location FROM experiments")]
        return sorted({loc.rstrip("/")[:-len("/mlartifacts")] for loc in locs if isinstance(loc, str)
                       and loc.startswith("file://") and loc.rstrip("/").endswith(marker)} - {new_uri})

    try:
        con = sqlite3.connect(str(db), timeout=60, isolation_level=None)
    except sqlite3.Error:
        return []
    try:
        try:
            if not old_homes(con):
                return []
            con.execute("BEGIN IMMEDIATE")  # one writer; another process may have rebased meanwhile
        except sqlite3.Error:
            return []  # not an MLflow store yet, or read-only
        olds = old_homes(con)
        columns = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")}
                   for t in {t for t, _ in _MLFLOW_LOCATIONS} | set(_MLFLOW_WORKSPACE_TAGS)}
        for old in olds:
            old_home = url2pathname(urlparse(old).path)
            for prefix, new in ((old, new_uri), (old_home, str(ws.home))):  # URIs, and plain paths if any
                for table, col in _MLFLOW_LOCATIONS:
                    if col in columns[table]:
                        con.execute(f"UPDATE {table} SET {col} = ? || substr({col}, ?) "
                                    f"WHERE substr({col}, 1, ?) = ? AND substr({col}, ?, 1) IN ('', '/')",
                                    [new, len(prefix) + 1, len(prefix), prefix, len(prefix) + 1])
            for table in _MLFLOW_WORKSPACE_TAGS:
                if {"key", "value"} <= columns[table]:
                    con.execute(f"UPDATE {table} SET value = ? WHERE key = ? AND value = ?",
                                [str(ws.root), TAG_WORKSPACE, str(Path(old_home).parent)])
        con.execute("COMMIT")
        return olds
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


TRAIN_MARKER = "in-progress.json"  # trainer/run.py's IN_PROGRESS: the run folder and lineage of a run not yet recorded
TRAIN_LOCK = "train.lock"


@contextlib.contextmanager
def training(ws: Workspace) -> Iterator[dict[str, Any] | None]:
    """Held (shared: concurrent runs stay possible) while a `train` runs, so that `status` can tell a
    running training run from an interrupted one by its marker alone. Yields `training_state` as found just
    before the lock was taken (once held, this run's own lock makes any marker look "running")."""
    ws.models_dir.mkdir(parents=True, exist_ok=True)
    before = training_state(ws)
    with open(ws.models_dir / TRAIN_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        try:
            yield before
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def training_state(ws: Workspace) -> dict[str, Any] | None:
    """The training run that `train` left unrecorded: ``{"state": "running" | "interrupted", "run_dir",
    "resume"}``, or None when every run was recorded."""
    marker = ws.models_dir / TRAIN_MARKER
    try:
        run_dir = json.loads(marker.read_text()).get("run_dir")
    except (OSError, ValueError, AttributeError):
        return None
    state = "interrupted"
    lock = ws.models_dir / TRAIN_LOCK
    if lock.is_file():
        with open(lock) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            except BlockingIOError:
                state = "running"
    return {"state": state, "run_dir": run_dir, "resume": "mothermodel train --resume"}
