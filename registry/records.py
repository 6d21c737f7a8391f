"""Typed records: what the registry store hands out and takes in.

Every stage (labeling, trainer, distill, the CLI) reads and records through
`mothermodel.registry.store.RegistryStore`, which speaks these dataclasses and
never raw rows. They carry no behaviour beyond small derived properties, and
import nothing heavy: spec files and the CLI load this module on every start.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mothermodel.inputs import TaskInput

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""Task and dataset names: they become folder names, so no path tricks fit."""
SOURCE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")


def is_name(value: object) -> bool:
    """Whether `value` is a valid task or dataset name. fullmatch, not match: `$` also
    matches before a trailing newline, so NAME_RE.match accepts "spam\n"."""
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def is_source_name(value: object) -> bool:
    """Whether `value` is a valid source name (the whole string; see `is_name`)."""
    return isinstance(value, str) and SOURCE_NAME_RE.fullmatch(value) is not None


def class_names_problem(classes: object) -> str | None:
    """What is wrong with a task's class names (None: nothing): shared by spec submit and `import wrench`."""
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or not classes:
        return "must be a non-empty list of class names"
    for c in classes:
        if isinstance(c, bool):
            return f"class {c!r} is a boolean, not a name (YAML reads NO/YES/ON/OFF as booleans: quote them)"
        if not isinstance(c, str) or not c.strip():
            return f"class {c!r}: every class name must be a non-empty string"
    dup = sorted({c for c in classes if list(classes).count(c) > 1})
    return f"duplicate class name {dup[0]!r}" if dup else None


def declarative_params(code: str | None) -> dict[str, Any] | None:
    """A declarative LF's recorded parameters: its `code` is their JSON object (with its "kind");
    None for a Python LF's code."""
    if not code or not code.startswith("{"):
        return None
    try:
        params = json.loads(code)
    except ValueError:
        return None
    return params if isinstance(params, dict) else None

SOURCE_KINDS = ("lf", "column", "task_output", "model")
EDGE_KINDS = ("parent", "task_output")


# --- what a submission normalises to ------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """One weak label source of a task, normalised.

    kind: lf | column | task_output | model; ref: column name, upstream task or
    model URI (None for LFs); code/code_hash: an LF's code and its hash (a
    task-output source's class map as JSON).
    """

    name: str
    kind: str
    ref: str | None = None
    code: str | None = None
    code_hash: str | None = None

    @property
    def content_hash(self) -> str:
        """What decides this source's version: a change here bumps it."""
        return hashlib.sha256(
            json.dumps([self.kind, self.ref, self.code_hash], sort_keys=True).encode()
        ).hexdigest()


@dataclass(frozen=True)
class TaskSpec:
    """A task checked in shape (no registry needed), ready for `RegistryStore.submit`."""

    name: str
    dataset: str
    classes: tuple[str, ...]
    parent: str | None
    description: str
    owner: str | None
    sources: tuple[SourceSpec, ...]
    origin: str = "<api>"  # the spec file, for error messages
    source_text: str | None = None  # a Python spec's module text: apply re-runs exactly this
    parent_class: str | None = None
    input: TaskInput | None = None  # how the model input is built from a row; None = the dataset's text field
    gold: str | None = None  # the task's own gold column; None = `gold_<task>` or the dataset's gold field

    @property
    def upstream_tasks(self) -> list[tuple[str, str]]:
        """(upstream task, edge kind) pairs this task depends on."""
        ups = [(self.parent, "parent")] if self.parent else []
        ups += [(s.ref, "task_output") for s in self.sources if s.kind == "task_output"]
        return ups  # type: ignore[return-value]

    def spec_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dataset": self.dataset,
            "classes": list(self.classes),
            "parent": self.parent,
            "parent_class": self.parent_class,
            "description": self.description,
            "owner": self.owner,
            "sources": [
                {"name": s.name, "kind": s.kind, "ref": s.ref, "code_hash": s.code_hash}
                for s in self.sources
            ],
        } | ({"input": self.input.to_dict()} if self.input is not None else {}) | (
            {"gold": self.gold} if self.gold is not None else {})  # absent: hashes stay as before

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.spec_dict(), sort_keys=True).encode()).hexdigest()


# --- what the registry holds ----------------------------------------------------


@dataclass(frozen=True)
class DatasetRecord:
    """A registered dataset: a content-addressed Parquet file with a `_row` id column."""

    name: str
    path: str  # relative to .mothermodel/
    num_rows: int
    content_hash: str
    text_field: str | None
    split_field: str | None
    gold_field: str | None  # evaluation only, never training
    columns: tuple[str, ...]
    source_file: str | None = None

    def gold_column(self, task) -> str | None:
        """A task's gold labels (a TaskRecord, or a task name): its own `gold:` column, else column
        `gold_<task>` if the dataset has it, else the dataset's gold field (registry/gold.py checks it fits)."""
        own = getattr(task, "gold", None)
        if own:
            return own
        name = getattr(task, "name", task)
        return f"gold_{name}" if f"gold_{name}" in self.columns else self.gold_field


@dataclass(frozen=True)
class SourceRecord:
    """A task's weak label source as stored (see `SourceSpec`), with its version."""

    task: str
    name: str
    kind: str
    ref: str | None
    code: str | None
    code_hash: str | None
    version: int


@dataclass(frozen=True)
class Edge:
    """`downstream` depends on `upstream` (its parent, or a task whose output it uses)."""

    upstream: str
    downstream: str
    kind: str


@dataclass(frozen=True)
class TaskRecord:
    """A task as the registry knows it now."""

    name: str
    dataset: str
    classes: tuple[str, ...]
    parent: str | None
    parent_class: str | None
    version: int
    fingerprint: str
    description: str = ""
    owner: str | None = None
    spec_origin: str | None = None
    spec_source: str | None = None  # a Python spec's module text
    sources: tuple[SourceRecord, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None
    input: TaskInput | None = None  # None: the dataset's text field
    gold: str | None = None  # its own gold column (None: `gold_<task>` or the dataset's gold field)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def input_for(self, dataset: "DatasetRecord") -> TaskInput | None:
        """The input the task's models read: its own template, else its dataset's text field (None: no text)."""
        if self.input is not None:
            return self.input
        return TaskInput.text(dataset.text_field) if dataset.text_field else None

    def source_names(self) -> list[str]:
        return [s.name for s in self.sources]


@dataclass(frozen=True)
class LabelMatrixRecord:
    """One version of a task's label matrix (sparse Parquet: row, source, label)."""

    task: str
    version: int
    path: str
    content_hash: str
    dataset_hash: str
    source_versions: dict[str, Any]  # source -> identity it was computed from
    task_fingerprint: str
    num_rows: int | None
    inputs_key: str | None = None
    num_entries: int | None = None
    faults: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None


@dataclass(frozen=True)
class ProbLabelsRecord:
    """One version of a task's probabilistic labels (Parquet: row, pred, p_0..p_{k-1}[, applicable])."""

    task: str
    version: int
    label_matrix_version: int
    model: str  # majority | label-model | hierarchical
    path: str
    content_hash: str
    task_fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)  # the fit's settings: `watch` refits with them
    created_at: datetime | None = None


@dataclass(frozen=True)
class ProbLabels:
    """A probabilistic-labels version read back, aligned to the dataset's rows (row i is `_row` i).

    probs: (num_rows, k) float32; pred: int64 (-1 where the file has no row);
    split: per-row split name ('train' for all when the dataset has no split
    field); gold: int64 (-1 = none; evaluation only); applicable: P(task
    applies) for a child in a task tree, else None; covered: a row had at
    least one non-abstain vote in the label matrix the labels came from.
    """

    record: ProbLabelsRecord
    classes: tuple[str, ...]
    rows: Any  # np.ndarray int64: the rows the file holds
    probs: Any
    pred: Any
    split: Any
    gold: Any | None
    applicable: Any | None
    covered: Any | None = None
    texts: list[Any] | None = None  # the model input of every row: a string, or a (text, text_pair) tuple
    input: TaskInput | None = None  # the template that built `texts`


@dataclass(frozen=True)
class ModelTaskRecord:
    """What a model version learned for one task: the lineage that decides its staleness."""

    task: str
    task_fingerprint: str
    prob_label_version: int | None
    served_by: str | None = None  # 'model' | 'labels': the guard's choice (None: a model from before the guard)
    checkpoint: str | None = None  # the stage checkpoint that serves the task (relative to .mothermodel/)
    checkpoint_hash: str | None = None  # sha256 of that checkpoint's manifest
    guard: dict[str, Any] = field(default_factory=dict)  # the figures the choice was made on


@dataclass(frozen=True)
class ModelRecord:
    """A mother-model version (a checkpoint folder) and the tasks it was trained on."""

    version: int
    path: str
    encoder: str | None
    content_hash: str | None
    metrics: dict[str, Any]
    mlflow_run_id: str | None
    tasks: dict[str, ModelTaskRecord]
    created_at: datetime | None = None


@dataclass(frozen=True)
class DeployableRecord:
    """A distilled per-task model built from a mother-model version."""

    task: str
    version: int
    model_version: int
    task_fingerprint: str
    student: str
    path: str
    content_hash: str | None
    mlflow_model_version: str | None
    metrics: dict[str, Any]
    created_at: datetime | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything labeling runs need, read in one short read."""

    tasks: dict[str, TaskRecord]
    datasets: dict[str, DatasetRecord]
    edges: list[Edge]
    latest_matrix: dict[str, LabelMatrixRecord]
    latest_probs: dict[str, ProbLabelsRecord]

    def graph(self, kinds: tuple[str, ...] = EDGE_KINDS):
        from mothermodel.registry.graph import build_graph

        return build_graph(self.tasks, self.edges, kinds)


@dataclass(slots=True)
class Staleness:
    """Whether one artefact of a task is stale, and why (None when fresh)."""

    version: int | None
    stale: bool
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """{"version", "stale"}, plus "reason" when stale."""
        out: dict[str, Any] = {"version": self.version, "stale": self.stale}
        if self.stale:
            out["reason"] = self.reason
        return out
