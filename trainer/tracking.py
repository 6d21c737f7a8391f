"""A thin layer over MLflow's Python API for training runs.

The workspace's store is database-backed (``sqlite:///<ws>/.mothermodel/mlflow.db``)
with artifacts inside the workspace; any other tracking URI (a shared server)
works the same. mlflow is imported with this module, which only the train and
distill glue import (trainer/run.py, distill/run.py), so the CLI starts without it.

Per-step losses are buffered and sent with ``log_batch`` (one database
transaction per `flush_every` steps, not one per step).

Logging never loses a run: metric and parameter names are made safe for MLflow
(:func:`safe_key`: a split named ``test (2024)`` becomes ``test _2024_``), and a
logging call MLflow still refuses is reported as one warning on stderr, not
raised, so the model a run trained is recorded all the same.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Optional

# MLflow's store logs its first-use migrations at INFO, on a logger it configures when imported: set before it.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from mothermodel.registry.metric_key import MetricKey, flatten  # noqa: E402

__all__ = ["Tracker", "flatten_params", "safe_key"]

_PARAM_MAX = 6000  # MLflow's limit on a parameter value's length
_KEY_MAX = 250  # MLflow's limit on a metric or parameter name's length
# MLflow's allowed characters; colons only off Windows, where MLflow takes them (a slice's figures are named
# `.../slice:NAME/...`: docs/writing-tasks.md, "Slices")
_UNSAFE = re.compile(r"[^/\w.\- ]" if os.name == "nt" else r"[^/\w.\-: ]")


def safe_key(key: str) -> str:
    """`key` as a name MLflow accepts: other characters become ``_``, and empty, ``.`` or ``..`` path parts
    (which MLflow refuses as names that resolve to other names) become ``_``."""
    parts = [p if p not in ("", ".", "..") else "_" for p in _UNSAFE.sub("_", str(key)).split("/")]
    out = "/".join(parts)[:_KEY_MAX]
    return out if posixpath.normpath(out) == out else "_" + out.strip("/")[:_KEY_MAX - 1]


def flatten_params(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts -> ``a.b.c`` keys; lists and other values as JSON/str, cut to MLflow's length limit."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_params(v, key + "."))
        else:
            s = v if isinstance(v, str) else json.dumps(v, default=str)
            out[safe_key(key)] = s if len(s) <= _PARAM_MAX else s[:_PARAM_MAX - 3] + "..."
    return out


class Tracker:
    """One MLflow run: params, per-step losses, metrics, artifacts.

    Args:
        tracking_uri: e.g. ``sqlite:////abs/ws/.mothermodel/mlflow.db`` or ``http://server:5000``.
        experiment: experiment name (created when missing).
        artifact_location: where a *new* experiment keeps artifacts (e.g. a
            ``file://`` URI inside the workspace); ignored when it exists.
        run_name, tags: of the new run.
        flush_every: buffered step metrics sent every this many entries.

    Use as a context manager: the run ends FINISHED, or FAILED / KILLED when
    the block raises (KeyboardInterrupt = KILLED).
    """

    def __init__(self, tracking_uri: str, *, experiment: str = "mothermodel",
                 artifact_location: Optional[str] = None, run_name: Optional[str] = None,
                 tags: Optional[dict[str, str]] = None, flush_every: int = 200):
        for noisy in ("mlflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.experiment_id = self._experiment(experiment, artifact_location)
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id: str = run.info.run_id
        self.flush_every = flush_every
        self._buf: list[Any] = []
        self._ended = False
        self.warnings: list[str] = []  # logging calls MLflow refused (each reported once on stderr)

    def _safely(self, what: str, call: Any, *args: Any, **kw: Any) -> None:
        """Run one logging call; a failure is a warning, never the run's end (its model matters more)."""
        try:
            call(*args, **kw)
        except Exception as e:  # noqa: BLE001 - any MLflow or store error
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            msg = f"MLflow refused to log {what} for run {self.run_id}: {first}"
            if msg not in self.warnings:
                self.warnings.append(msg)
                sys.stderr.write(f"warning: {msg} (the run's results are recorded regardless)\n")

    def _experiment(self, name: str, artifact_location: Optional[str]) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:  # another process created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # ----------------------------------------------------------------- logging
    def log_params(self, params: dict[str, Any]) -> None:
        """Log (nested) parameters, 100 per batch (MLflow's limit)."""
        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for s in range(0, len(items), 100):
            self._safely("parameters", self.client.log_batch, self.run_id, params=items[s:s + 100])

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Buffer one step's metrics (e.g. ``{"loss": x, "loss/spam": y}``)."""
        ts = int(time.time() * 1000)
        self._buf.extend(Metric(safe_key(k), float(v), ts, int(step)) for k, v in metrics.items())
        if len(self._buf) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        while self._buf:
            chunk, self._buf = self._buf[:1000], self._buf[1000:]
            self._safely("step metrics", self.client.log_batch, self.run_id, metrics=chunk)

    def log_metrics(self, metrics: Mapping[MetricKey | str, float], step: Optional[int] = None) -> None:
        """Log final metrics: a task's figures by `MetricKey` (logged as ``task/dataset/split/metric``, the
        one place they are flattened for MLflow), run-wide ones (``train_seconds``) by name."""
        ts = int(time.time() * 1000)
        items = [Metric(safe_key(k), float(v), ts, int(step or 0)) for k, v in flatten(metrics).items()]
        for s in range(0, len(items), 1000):
            self._safely("metrics", self.client.log_batch, self.run_id, metrics=items[s:s + 1000])

    def set_tags(self, tags: dict[str, str]) -> None:
        self._safely("tags", self.client.log_batch, self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | os.PathLike, artifact_path: Optional[str] = None) -> None:
        """Copy a file (or a folder, recursively) into the run's artifacts."""
        p = Path(path)
        log = self.client.log_artifacts if p.is_dir() else self.client.log_artifact
        self._safely(f"artifact {p.name}", log, self.run_id, str(p), artifact_path)

    def log_dict(self, obj: Any, name: str) -> None:
        """Store a JSON-ready object as the artifact `name` (e.g. ``manifest.json``)."""
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self._safely(f"artifact {name}", self.client.log_artifact, self.run_id, str(f),
                         os.path.dirname(name) or None)

    # --------------------------------------------------------------- lifetime
    def end(self, status: str = "FINISHED") -> None:
        if self._ended:
            return
        try:
            self.flush()
        finally:
            self._safely("the run's end", self.client.set_terminated, self.run_id, status)
            self._ended = True

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            try:
                self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")
            except Exception:
                pass  # the original error matters more
