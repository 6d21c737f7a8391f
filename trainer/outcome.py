"""What `train` returns: a typed outcome, per task the figures and the guard's choice.

No torch here: the CLI and `watch` read these fields (the CLI turns them into `train --json` with
`TrainOutcome.to_json()`, the only place that shape is built). A task's figures are named by
`MetricKey` (registry/metric_key.py), flattened to ``task/dataset/split/metric`` only for MLflow, the
registry's record and the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from mothermodel.registry.metric_key import MetricKey, flatten, per_split

__all__ = ["TaskResult", "TrainRun", "TrainOutcome"]

Figures = dict[str, dict[str, Any]]  # split -> {"accuracy", "macro_f1", "n", ...}


@dataclass
class TaskResult:
    """One task of a trained model version.

    Attributes:
        metrics: per split, the figures of the model stage the guard chose for the task.
        label_metrics: per split, the figures of the labels it learned from (their `label fit`).
        stage_metrics: per stage, per split, every stage's figures (the guard's candidates).
        guard: the guard's choice (trainer/guard.py `Choice.to_dict()`: served_by, stage, final_stage,
            margin, split, reason, below_labels, agreement, ...; with encoder_fit and cause where known).
    """

    task: str
    dataset: str
    metrics: Figures
    label_metrics: Figures
    stage_metrics: dict[int, Figures]
    guard: dict[str, Any]

    @property
    def served_by(self) -> str:
        """'model' or 'labels'."""
        return self.guard["served_by"]

    @property
    def served_metrics(self) -> Figures:
        """Per split, the figures of what serves the task (the chosen stage, or its labels)."""
        return self.label_metrics if self.served_by == "labels" else self.metrics

    def metric_keys(self) -> dict[MetricKey, float]:
        """The task's figures as the run records them: the chosen stage's (`accuracy`, `macro_f1`), each
        stage's (`stage<i>_accuracy`, when there is more than one), the labels' (`label_model_*`, as the label
        fit recorded them) and what serves (`served_*`)."""
        acc_f1 = ("accuracy", "macro_f1")
        out = per_split(self.task, self.dataset, self.metrics, acc_f1)
        if len(self.stage_metrics) > 1:
            for s, figures in self.stage_metrics.items():
                out.update(per_split(self.task, self.dataset, figures, ("accuracy",), prefix=f"stage{s}_"))
        out.update(per_split(self.task, self.dataset, self.label_metrics, acc_f1, prefix="label_model_", cast=False))
        out.update(per_split(self.task, self.dataset, self.served_metrics, acc_f1, prefix="served_"))
        # a declared slice's size beside its figures (split "<split>/slice:<name>": trainer/evaluate.py)
        out.update(per_split(self.task, self.dataset, {s: m for s, m in self.metrics.items() if "/slice:" in s},
                             ("n",)))
        return out


@dataclass
class TrainRun:
    """How a training run went (a trained outcome only)."""

    path: str
    mlflow_run_id: Optional[str]
    mlflow_tracking_uri: str
    seconds: float
    examples_per_s: float
    steps: int
    stages: int
    warm_start: Optional[dict[str, Any]] = None
    focus: Optional[list[str]] = None
    resumed_from: Optional[str] = None


@dataclass
class TrainOutcome:
    """What one `train` did.

    Attributes:
        model_version: the model version trained, or the latest one (None: there is none).
        trained: whether a model version was recorded.
        changes: tasks new to, changed since, unchanged since and removed from the latest model.
        status: None when trained; 'up to date' (`--if-changed`, nothing changed) or 'failed' (every task).
        tasks: per task, its figures and the guard's choice (trained only).
        recorded_metrics: not trained: the latest model's recorded figures (flat names, as recorded).
        run: how the run went (trained only).
        failed: the tasks left out, each ``{"task", "stage", "reason", "fix"}`` (registry/faults.py).
    """

    model_version: Optional[int]
    trained: bool
    changes: dict[str, list[str]]
    status: Optional[str] = None
    tasks: dict[str, TaskResult] = field(default_factory=dict)
    recorded_metrics: dict[str, float] = field(default_factory=dict)
    run: Optional[TrainRun] = None
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[MetricKey | str, float]:
        """Every task's figures by `MetricKey` (trained), else the latest model's recorded ones by name."""
        if self.run is None:
            return dict(self.recorded_metrics)
        out: dict[MetricKey | str, float] = {}
        for r in self.tasks.values():
            out.update(r.metric_keys())
        return out

    @property
    def guard(self) -> dict[str, dict[str, Any]]:
        """The guard's choice per task."""
        return {n: r.guard for n, r in self.tasks.items()}

    def to_json(self) -> dict[str, Any]:
        """`train --json` (docs/cli.md)."""
        if self.run is None:
            return {"model_version": self.model_version, "trained": self.trained, "status": self.status,
                    "changes": self.changes, "metrics": flatten(self.metrics), "failed": self.failed}
        r = self.run
        return {"model_version": self.model_version, "trained": self.trained, "metrics": flatten(self.metrics),
                "changes": self.changes, "guard": self.guard, "warm_start": r.warm_start, "focus": r.focus,
                "path": r.path, "mlflow_run_id": r.mlflow_run_id, "mlflow_tracking_uri": r.mlflow_tracking_uri,
                "seconds": r.seconds, "examples_per_s": r.examples_per_s, "steps": r.steps, "stages": r.stages,
                "resumed_from": r.resumed_from, "failed": self.failed}
