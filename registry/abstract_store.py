"""The registry store's contract: what every stage may ask of the registry, and the records it answers with.

As MLflow's `AbstractStore` and its `SqlAlchemyStore`: `AbstractStore` names every read and write, with
its arguments and its records (`mothermodel.registry.records`); `mothermodel.registry.store.RegistryStore`
is the one implementation, over DuckDB. A second backend (PostgreSQL) is one more subclass: nothing above
the store speaks SQL or sees a row.

The contract, for every implementation:
- Reads return records (dataclasses, datetimes as datetimes), never rows or JSON; `to_json()` on the
  report records gives the CLI's documented `--json` shapes.
- Each call is one unit of work: a read sees one consistent registry; a write is one transaction, all or
  nothing, and takes version numbers (`max(version) + 1`) inside it, so concurrent recorders never collide.
- No call holds the registry open after it returns.
- Bad input (an unknown task, dataset or version; a submit the rules refuse) raises
  `mothermodel.errors.UserError` naming the field, with nothing written.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, Sequence

from mothermodel.registry.records import (
    DatasetRecord,
    DeployableRecord,
    Edge,
    HandLabelsRecord,
    ImpactReport,
    LabelMatrixRecord,
    ModelRecord,
    ModelTaskRecord,
    ProbLabels,
    ProbLabelsRecord,
    RegistryStatus,
    SliceMembershipRecord,
    Snapshot,
    Staleness,
    TaskDetail,
    TaskFault,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TaskSummary,
)


class AbstractStore(abc.ABC):
    """One workspace's registry. `ws` is its `mothermodel.registry.workspace.Workspace` (files live under
    `ws.home`, paths in records are relative to it)."""

    ws: Any

    # --- datasets --------------------------------------------------------------------

    @abc.abstractmethod
    def record_dataset(self, row: Mapping[str, Any], replace: bool) -> dict[str, Any]:
        """Record a staged dataset (`registry.datasets.stage`'s row); a changed file restamps the tasks that
        read it. Returns `dataset add --json`'s object (its "status": created | unchanged | updated)."""

    @abc.abstractmethod
    def record_dataset_and_tasks(self, row: Mapping[str, Any], specs: Sequence[TaskSpec],
                                 replace: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """A dataset and the tasks on it in one transaction (`import wrench`): `record_dataset`'s and
        `submit`'s results."""

    @abc.abstractmethod
    def datasets(self) -> dict[str, DatasetRecord]:
        """Every dataset, by name."""

    @abc.abstractmethod
    def dataset(self, name: str) -> DatasetRecord:
        """Dataset NAME (UserError when there is none)."""

    @abc.abstractmethod
    def list_datasets(self) -> list[DatasetRecord]:
        """Every dataset, by name (`dataset list`)."""

    @abc.abstractmethod
    def read_dataset(self, dataset: DatasetRecord):
        """The dataset's Arrow table, hash-checked (row i is `_row` i)."""

    # --- tasks -----------------------------------------------------------------------

    @abc.abstractmethod
    def submit(self, specs: Sequence[TaskSpec], replace: bool = False) -> dict[str, Any]:
        """Validate and write task specs in one transaction (`registry.tasks` holds the rules):
        ``{"tasks": [per-task result], "restamped": [names]}``."""

    @abc.abstractmethod
    def list_tasks(self) -> list[TaskSummary]:
        """Every task, by name."""

    @abc.abstractmethod
    def show_task(self, name: str) -> TaskDetail:
        """Task NAME with its sources and neighbours (UserError when there is none)."""

    @abc.abstractmethod
    def remove_task(self, name: str) -> dict[str, Any]:
        """Remove a task no other task depends on; its version history stays.
        ``{"removed": name, "sources_removed": n}``."""

    @abc.abstractmethod
    def task(self, name: str) -> TaskRecord:
        """Task NAME with its sources (UserError when there is none)."""

    @abc.abstractmethod
    def tasks(self) -> dict[str, TaskRecord]:
        """Every task with its sources (in kind, then name order: the label matrix's column order)."""

    @abc.abstractmethod
    def edges(self) -> list[Edge]:
        """Every edge of the task DAG."""

    @abc.abstractmethod
    def snapshot(self) -> Snapshot:
        """Tasks, datasets, edges and each task's latest label versions, in one read."""

    @abc.abstractmethod
    def graph(self):
        """All tasks and typed edges as a networkx DiGraph (node attrs: dataset, n_classes, parent, version,
        n_sources) for rendering."""

    @abc.abstractmethod
    def task_tree(self, task: str) -> list[str]:
        """The task tree (parent + parent_class links within a dataset) holding TASK, root first."""

    # --- label versions ----------------------------------------------------------------

    @abc.abstractmethod
    def record_label_matrix(self, task: TaskRecord, *, path: str, content_hash: str, dataset_hash: str,
                            source_versions: Mapping[str, Any], num_rows: int, inputs_key: str, num_entries: int,
                            faults: list[dict[str, Any]]) -> LabelMatrixRecord:
        """Record TASK's next label-matrix version (the file is already written)."""

    @abc.abstractmethod
    def record_slice_membership(self, task: TaskRecord, *, path: str, content_hash: str, dataset_hash: str,
                                slice_versions: Mapping[str, Any], inputs_key: str, num_rows: int,
                                sizes: Mapping[str, int], faults: list[dict[str, Any]]) -> SliceMembershipRecord:
        """Record TASK's next slice-membership version (the file is already written): which rows are in
        which of its slices, computed from `slice_versions` over the dataset `dataset_hash`."""

    @abc.abstractmethod
    def slice_memberships(self, task: str) -> list[SliceMembershipRecord]:
        """Every slice-membership version of TASK, newest first."""

    @abc.abstractmethod
    def record_prob_labels(self, task: TaskRecord, *, label_matrix_version: int, model: str, path: str,
                           content_hash: str, metrics: Mapping[str, Any], config: Mapping[str, Any]) -> ProbLabelsRecord:
        """Record TASK's next probabilistic-labels version (the file is already written)."""

    @abc.abstractmethod
    def label_matrix(self, task: str, version: int | None = None) -> LabelMatrixRecord | None:
        """TASK's label-matrix version VERSION (default: the latest), or None."""

    @abc.abstractmethod
    def latest_prob_labels(self, task: str, fresh: bool = True) -> ProbLabelsRecord | None:
        """TASK's newest probabilistic labels; with `fresh`, only ones fit for its current fingerprint."""

    @abc.abstractmethod
    def prob_labels(self, task: str, version: int) -> ProbLabelsRecord:
        """TASK's probabilistic-labels version VERSION (UserError when there is none)."""

    @abc.abstractmethod
    def read_prob_labels(self, record: ProbLabelsRecord, with_text: bool = False) -> ProbLabels:
        """A probabilistic-labels version with its dataset's splits and gold labels (and, optionally, the model
        inputs), aligned to dataset rows; every file hash-checked."""

    @abc.abstractmethod
    def record_hand_labels(self, task: str, *, path: str, content_hash: str, num_rows: int, added: int,
                           valid_rows: int, added_by: str | None, source_file: str | None,
                           replaced: bool, after: int) -> HandLabelsRecord:
        """Record TASK's hand-labels version `after` + 1 (the file is already written) as a new version of its
        hand-label source, in one transaction: TASK's fingerprint and those downstream move. `after` is the
        version the new set was built from (0: none); when another one was recorded since, raise
        errors.StaleRead and record nothing (two concurrent `label add`s must not drop each other's rows)."""

    @abc.abstractmethod
    def hand_labels(self, task: str) -> list[HandLabelsRecord]:
        """Every hand-labels version of TASK, newest first (empty: none)."""

    @abc.abstractmethod
    def label_history(self, task: str) -> tuple[list[LabelMatrixRecord], list[ProbLabelsRecord]]:
        """Every label-matrix and probabilistic-labels version of TASK, newest first."""

    # --- models and deployables ------------------------------------------------------------

    @abc.abstractmethod
    def record_model(self, *, path: str, encoder: str | None, content_hash: str | None, metrics: Mapping[str, Any],
                     mlflow_run_id: str | None, tasks: Sequence[ModelTaskRecord]) -> ModelRecord:
        """Record the next mother-model version and, per task, the lineage it was trained on."""

    @abc.abstractmethod
    def set_model_run(self, version: int, mlflow_run_id: str) -> None:
        """Attach model VERSION's MLflow run."""

    @abc.abstractmethod
    def model(self, version: int | None = None) -> ModelRecord | None:
        """Model version VERSION (default: the latest), or None when there is none."""

    @abc.abstractmethod
    def models(self) -> list[ModelRecord]:
        """Every model version, oldest first."""

    @abc.abstractmethod
    def record_deployable(self, *, task: TaskRecord, model_version: int, student: str, path: str,
                          content_hash: str | None, mlflow_model_version: str | None,
                          metrics: Mapping[str, Any]) -> DeployableRecord:
        """Record TASK's next deployable (a distilled student built from MODEL_VERSION)."""

    @abc.abstractmethod
    def deployables(self, task: str) -> list[DeployableRecord]:
        """Every recorded deployable of TASK, oldest first."""

    @abc.abstractmethod
    def latest_deployable(self, task: str) -> DeployableRecord | None:
        """TASK's newest deployable, or None."""

    # --- staleness, faults and impact -------------------------------------------------------

    @abc.abstractmethod
    def status(self) -> RegistryStatus:
        """Per task: are its labels, model and deployable stale, and why (`registry.lineage`); what serves it;
        its current faults."""

    @abc.abstractmethod
    def task_status(self, name: str) -> TaskStatus:
        """`status` for task NAME alone (UserError when there is none)."""

    @abc.abstractmethod
    def staleness(self, names: Sequence[str] | None = None) -> dict[str, dict[str, Staleness]]:
        """Per task (NAMES, default every task; in name order): {"labels", "model", "deployable"} staleness, as
        `status` reports it, reading those tasks' rows only (UserError naming an unknown task)."""

    @abc.abstractmethod
    def task_faults(self) -> list[TaskFault]:
        """Each task's current fault per stage, by task and stage."""

    @abc.abstractmethod
    def set_task_faults(self, stage: str, failed: Sequence[Mapping[str, Any]], succeeded: Sequence[str] = ()) -> None:
        """Record each failed task's fault at STAGE ({task, reason, fix}; replacing its previous one) and clear
        the STAGE fault of every task in SUCCEEDED, in one transaction."""

    @abc.abstractmethod
    def impact(self, name: str, kind: str = "auto") -> ImpactReport:
        """Everything current that a change to NAME (a task, TASK.SOURCE or a dataset; KIND: auto | task |
        source | dataset) makes stale, and why (UserError when NAME is none of them)."""

    # --- verify (read-only) ------------------------------------------------------------------

    @abc.abstractmethod
    def recorded_files(self) -> dict[str, list[tuple]]:
        """Every file and folder the registry records, in one read (`registry.verify`; the DuckDB store
        documents the keys and tuples)."""
