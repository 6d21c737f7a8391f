"""Records: what the registry store hands out and takes in.

Every stage (labeling, trainer, distill, the CLI) reads and records through the
store's contract (`mothermodel.registry.abstract_store.AbstractStore`, implemented
by `mothermodel.registry.store.RegistryStore`), which speaks these dataclasses and
never raw rows or JSON. They carry no behaviour beyond small derived properties and,
on the reports the commands show, `to_json()`: the documented `--json` shape, which
only the CLI asks for. They import nothing heavy: spec files and the CLI load this
module on every start.
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


def model_fingerprint(fingerprint: str, slice_heads: bool, slices: list[tuple[str, int, str | None]]) -> str:
    """A task's fingerprint for its model head: the fingerprint itself without slice heads, else a hash of it
    and the slices (name, version, code hash) the heads are trained for."""
    if not slice_heads:
        return fingerprint
    return hashlib.sha256(json.dumps([fingerprint, sorted(map(list, slices))]).encode()).hexdigest()


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

SOURCE_KINDS = ("lf", "column", "task_output", "model", "embedding", "prompt", "hand", "slice")
"""embedding / prompt: votes computed by a model over the whole dataset (labeling/apply/embedding.py,
prompted.py; `code` is their parameters as JSON); hand: a task's hand labels (`label add`; `ref` is the
labels file, `code_hash` its content hash), kept when the task's spec is resubmitted; slice: a slicing
function (labeling/lf/slicing.py; `code` as an LF's): stored, versioned and submitted with the sources, but
it never votes: a `TaskRecord` holds it in `slices`, apart from `sources`, and it is not part of the
task's fingerprint (editing a slice changes what is measured, not what the labels learn; with slice heads it
is part of the task's `model_fingerprint`)."""
HAND_SOURCE = "hand_labels"
"""The name of a task's hand-label source (one per task, versioned by `label add`)."""
EDGE_KINDS = ("parent", "task_output")


# --- what a submission normalises to ------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """One weak label source of a task, normalised.

    kind: one of SOURCE_KINDS; ref: column name, upstream task, model URI or
    hand-labels file (None for LFs); code/code_hash: an LF's code and its hash (a
    task-output source's class map, an embedding or prompted source's parameters, as JSON).
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
    slice_heads: bool = False  # the mother model trains a slice head per slice (TaskRecord.model_fingerprint)

    @property
    def slices(self) -> tuple[SourceSpec, ...]:
        """The task's slicing functions (kind "slice": in `sources` for versioning, never a voter)."""
        return tuple(s for s in self.sources if s.kind == "slice")

    def where(self, i: int) -> str:
        """How a spec names `sources[i]` (slices come after the voters): "sources[i]" or "slices[j]"."""
        n = len(self.voters)
        return f"sources[{i}]" if i < n else f"slices[{i - n}]"

    @property
    def voters(self) -> tuple[SourceSpec, ...]:
        """The sources that vote: every source but the slices (what the fingerprint is computed from)."""
        return tuple(s for s in self.sources if s.kind != "slice")

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
            {"gold": self.gold} if self.gold is not None else {}) | (  # absent: hashes stay as before
            {"slice_heads": True} if self.slice_heads else {})

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

    def to_json(self) -> dict[str, Any]:
        """One object of `dataset list --json` (without the file it was added from)."""
        return {"name": self.name, "path": self.path, "num_rows": self.num_rows, "content_hash": self.content_hash,
                "text_field": self.text_field, "split_field": self.split_field, "gold_field": self.gold_field,
                "columns": list(self.columns)}


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
class HandLabelsRecord:
    """One version of a task's hand labels (`label add`): the file and who added what, when."""

    task: str
    version: int
    path: str  # Parquet: row, label (class name), added_by, added_in (the version that set it)
    content_hash: str
    num_rows: int  # hand-labelled rows in this version
    added: int  # rows this version added or changed
    valid_rows: int  # of num_rows, rows in the valid split (left out of every valid figure)
    added_by: str | None = None
    source_file: str | None = None
    replaced: bool = False  # this version replaced the set instead of adding to it
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "version": self.version, "path": self.path, "content_hash": self.content_hash,
                "rows": self.num_rows, "added": self.added, "valid_rows": self.valid_rows, "by": self.added_by,
                "file": self.source_file, "replaced": self.replaced,
                "created_at": self.created_at.isoformat() if self.created_at else None}


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
    sources: tuple[SourceRecord, ...] = ()  # the voters (every kind but "slice")
    slices: tuple[SourceRecord, ...] = ()  # its slicing functions (kind "slice"), in name order
    created_at: datetime | None = None
    updated_at: datetime | None = None
    input: TaskInput | None = None  # None: the dataset's text field
    gold: str | None = None  # its own gold column (None: `gold_<task>` or the dataset's gold field)
    slice_heads: bool = False  # slice heads trained for its slices

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

    @property
    def model_fingerprint(self) -> str:
        """What a model's head for this task is trained from, as `model_tasks` records it: its fingerprint, and
        with slice heads its slices too (a slice edit then retrains the task, and stales nothing else: its labels
        and the tasks downstream do not depend on slices)."""
        return model_fingerprint(self.fingerprint, self.slice_heads,
                                 [(s.name, s.version, s.code_hash) for s in self.slices])

    @property
    def hand_source(self) -> "SourceRecord | None":
        """The task's hand-label source (`label add`), or None."""
        return next((s for s in self.sources if s.kind == "hand"), None)


@dataclass(frozen=True)
class SliceMembershipRecord:
    """One version of a task's slice membership (`label apply`): which rows are in which slice."""

    task: str
    version: int
    path: str  # Parquet: row (int64), slice (dictionary string), one line per member row and slice
    content_hash: str
    dataset_hash: str
    slice_versions: dict[str, Any]  # slice -> {"version", "code_hash"} it was computed from
    inputs_key: str
    num_rows: int  # the dataset's rows
    sizes: dict[str, int]  # slice -> member rows
    faults: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "path": self.path, "content_hash": self.content_hash,
                "slices": {n: {**self.slice_versions.get(n, {}), "rows": self.sizes.get(n, 0)}
                           for n in sorted(self.slice_versions)},
                "faults": self.faults, "created_at": _iso(self.created_at)}


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
    least one non-abstain vote in the label matrix the labels came from (a
    hand-labelled row counts as covered); hand: the task's hand labels, whose
    rows are out of `gold` (a row trained on is never scored).
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
    hand: Any | None = None  # np.ndarray int64: the hand label's class per row, -1 none (gold is -1 there)


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
    latest_membership: dict[str, SliceMembershipRecord] = field(default_factory=dict)

    def graph(self, kinds: tuple[str, ...] = EDGE_KINDS):
        from mothermodel.registry.graph import build_graph  # lazy: cycle: graph.py imports Edge from here

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


# --- what the store's reads report --------------------------------------------------
# Records with datetimes as datetimes; `to_json()` is the documented `--json` shape, which only the CLI
# (and callers that want JSON) asks for.


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


@dataclass(frozen=True)
class TaskSummary:
    """One task as `task list` shows it."""

    name: str
    dataset: str
    classes: tuple[str, ...]
    parent: str | None
    version: int
    fingerprint: str
    num_sources: int
    owner: str | None
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dataset": self.dataset, "classes": list(self.classes), "parent": self.parent,
                "version": self.version, "fingerprint": self.fingerprint, "num_sources": self.num_sources,
                "owner": self.owner, "updated_at": _iso(self.updated_at)}


@dataclass(frozen=True)
class TaskDetail:
    """One task as `task show` shows it: the record, its sources in display order, its neighbours."""

    task: TaskRecord  # its sources in the label matrix's column order (kind, name); its slices
    sources: tuple[SourceRecord, ...]  # display order: columns, LFs (lf2 before lf10), then the others
    upstream: tuple[Edge, ...]  # the edges into the task
    downstream: tuple[Edge, ...]  # the edges out of it, by downstream task

    def to_json(self) -> dict[str, Any]:
        t = self.task
        return {
            "name": t.name, "dataset": t.dataset, "classes": list(t.classes), "parent": t.parent,
            "parent_class": t.parent_class, "description": t.description, "owner": t.owner, "version": t.version,
            "fingerprint": t.fingerprint, "input": t.input.to_dict() if t.input is not None else None,
            "gold": t.gold, "slice_heads": t.slice_heads, "spec_origin": t.spec_origin, "created_at": _iso(t.created_at),
            "updated_at": _iso(t.updated_at),
            "sources": [{"name": s.name, "kind": s.kind, "version": s.version, "ref": s.ref, "code_hash": s.code_hash}
                        for s in self.sources],
            "slices": [{"name": s.name, "version": s.version, "code_hash": s.code_hash, **_slice_form(s)}
                       for s in t.slices],
            "upstream": [{"task": e.upstream, "kind": e.kind} for e in self.upstream],
            "downstream": [{"task": e.downstream, "kind": e.kind} for e in self.downstream],
        }


def _slice_form(s: SourceRecord) -> dict[str, Any]:
    """How a slice was declared: a declarative one's kind and parameters, else {"kind": "python"}."""
    params = declarative_params(s.code)
    if not params:
        return {"kind": "python"}
    return {k: v for k, v in params.items() if k != "label"}


@dataclass(frozen=True)
class TaskFault:
    """A task's current fault at one stage (registry/faults.py): gone when the stage next succeeds for it."""

    task: str
    stage: str
    reason: str
    fix: str | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "stage": self.stage, "reason": self.reason, "fix": self.fix, "at": _iso(self.at)}


@dataclass(frozen=True)
class Serving:
    """What serves a task in the latest model: the guard's choice (`ModelTaskRecord.guard`), for `status`."""

    served_by: str  # 'model' | 'labels'
    stage: int | None
    final_stage: int | None
    margin: float | None  # the model's margin over its labels on `split`, in points
    split: str | None
    below_labels: bool
    agreement: float | None
    reason: str | None
    cause: str | None = None  # the likely cause when the model is below its labels
    encoder_fit: dict[str, Any] | None = None  # only when the encoder fits the text poorly

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"served_by": self.served_by, "stage": self.stage, "final_stage": self.final_stage,
                               "margin": self.margin, "split": self.split, "below_labels": self.below_labels,
                               "agreement": self.agreement, "reason": self.reason}
        if self.cause:
            out["cause"] = self.cause
        if self.encoder_fit is not None:
            out["encoder_fit"] = self.encoder_fit
        return out


@dataclass(frozen=True)
class TaskStatus:
    """One task in `status`: whether its labels, model and deployable are stale and why, what serves it, its
    current faults."""

    name: str
    version: int
    fingerprint: str
    dataset: str
    labels: Staleness
    model: Staleness
    deployable: Staleness
    serving: Serving | None  # None: no model, or one from before the guard
    faults: tuple[TaskFault, ...] = ()
    slices: Staleness | None = None  # its slice membership; None: a task that never had slices

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "fingerprint": self.fingerprint, "dataset": self.dataset,
               "labels": self.labels.to_dict(), "model": self.model.to_dict(), "deployable": self.deployable.to_dict(),
               "serving": self.serving.to_json() if self.serving is not None else None,
               "faults": [{k: v for k, v in f.to_json().items() if k != "task"} for f in self.faults]}
        if self.slices is not None:
            out["slices"] = self.slices.to_dict()
        return out


@dataclass(frozen=True)
class RegistryCounts:
    tasks: int
    sources: int
    datasets: int


@dataclass(frozen=True)
class RegistryStatus:
    """The registry's part of `status`: every task's state, in name order."""

    latest_model_version: int | None
    counts: RegistryCounts
    schema_version: int
    tasks: tuple[TaskStatus, ...]

    @property
    def stale(self) -> dict[str, int]:
        """How many tasks' labels, model and deployable are stale."""
        return {k: sum(getattr(t, k).stale for t in self.tasks) for k in ("labels", "model", "deployable")}

    @property
    def failed(self) -> list[TaskFault]:
        """Every task's current faults, by task and stage."""
        return [f for t in self.tasks for f in t.faults]

    def task(self, name: str) -> TaskStatus | None:
        return next((t for t in self.tasks if t.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"latest_model_version": self.latest_model_version,
                "counts": {"tasks": self.counts.tasks, "sources": self.counts.sources,
                           "datasets": self.counts.datasets},
                "schema_version": self.schema_version, "stale": self.stale,
                "tasks": [t.to_json() for t in self.tasks], "failed": [f.to_json() for f in self.failed]}


@dataclass(frozen=True)
class StatusReport:
    """`status`: the workspace, its MLflow store, the registry's state and a training run `train` has not
    recorded (`registry.workspace.training_state`: {"state": "running" | "interrupted", "run_dir", "resume"},
    None when every run was recorded)."""

    workspace: str
    mlflow_tracking_uri: str
    registry: RegistryStatus
    training: dict[str, Any] | None = None
    # per declared slice, the latest model's figures: {task, slice, split, n, served_accuracy, overall}
    slices: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {"workspace": self.workspace, "mlflow_tracking_uri": self.mlflow_tracking_uri,
               **self.registry.to_json(), "training": self.training}
        if self.slices:
            out["slices"] = self.slices
        return out


@dataclass(frozen=True)
class ImpactedTask:
    """A task a change reaches: `depth` edges from it, reached via task `via` over an edge of kind `edge`
    (both None for a task the change touches directly)."""

    name: str
    depth: int
    via: str | None
    edge: str | None


@dataclass(frozen=True)
class LabelVersionRef:
    task: str
    kind: str  # 'label_matrix' | 'prob_labels'
    version: int


@dataclass(frozen=True)
class ImpactedModel:
    """The latest model, trained on impacted tasks."""

    version: int
    tasks: tuple[str, ...]  # the impacted tasks it was trained on

    @property
    def reason(self) -> str:
        return f"trained on {', '.join(self.tasks)}"


@dataclass(frozen=True)
class ImpactedDeployable:
    """An impacted task's latest deployable."""

    task: str
    version: int
    model_version: int
    student: str

    @property
    def reason(self) -> str:
        return f"distilled for {self.task} from model v{self.model_version}"


@dataclass(frozen=True)
class ImpactReport:
    """`dag impact`: everything current that a change to a task, TASK.SOURCE or dataset makes stale, and why."""

    kind: str  # what changed: 'task' | 'source' | 'slice' | 'dataset'
    name: str  # its canonical name
    tasks: tuple[ImpactedTask, ...]  # by depth, then name
    label_versions: tuple[LabelVersionRef, ...]
    models: tuple[ImpactedModel, ...]
    deployables: tuple[ImpactedDeployable, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": {"kind": self.kind, "name": self.name},
            "tasks": [{"name": t.name, "depth": t.depth, "via": t.via, "edge": t.edge} for t in self.tasks],
            "label_versions": [{"task": v.task, "kind": v.kind, "version": v.version} for v in self.label_versions],
            "models": [m.version for m in self.models],
            "deployables": [{"task": d.task, "version": d.version, "model_version": d.model_version,
                             "student": d.student} for d in self.deployables],
            "reasons": {"models": {str(m.version): m.reason for m in self.models},
                        "deployables": {f"{d.task} v{d.version}": d.reason for d in self.deployables}},
        }
