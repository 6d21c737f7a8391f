"""The name of one of a task's figures, ``task/dataset/split/metric``: built and read here only.

A model version's and a deployable's metrics are recorded (and shown by `--json`) under these names, and
MLflow logs them under the same ones (trainer/tracking.py makes them safe for MLflow). The trainer,
distill, the CLI and the demo build and read them through :class:`MetricKey`, never by formatting or
splitting strings themselves. Standard library only: every layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Union

__all__ = ["MetricKey", "flatten", "per_split"]


@dataclass(frozen=True)
class MetricKey:
    """One figure of TASK on DATASET's SPLIT, e.g. ``MetricKey("spam", "mail", "test", "accuracy")``."""

    task: str
    dataset: str
    split: str
    metric: str

    def flat(self) -> str:
        """``task/dataset/split/metric``: the name the registry records and MLflow logs."""
        return f"{self.task}/{self.dataset}/{self.split}/{self.metric}"

    @classmethod
    def parse(cls, key: str) -> "MetricKey | None":
        """The key a flat name stands for; None for a run-wide figure (``train_seconds``, ``bundle_bytes``).
        Task, dataset and metric names hold no ``/`` (registry/records.py NAME_RE); a split name may."""
        parts = key.split("/")
        if len(parts) < 4:
            return None
        return cls(parts[0], parts[1], "/".join(parts[2:-1]), parts[-1])


Key = Union[MetricKey, str]


def flatten(metrics: Mapping[Key, float]) -> dict[str, float]:
    """``{MetricKey: x}`` (run-wide figures by plain name beside them) as ``{"task/dataset/split/metric": x}``,
    in the same order."""
    return {k.flat() if isinstance(k, MetricKey) else k: v for k, v in metrics.items()}


def per_split(task: str, dataset: str, splits: Mapping[str, Mapping[str, float]], names: Iterable[str],
              prefix: str = "", cast: bool = True) -> dict[MetricKey, float]:
    """One key per split and metric name present: ``{split: {"accuracy": x}}`` -> ``{MetricKey(.., split,
    prefix + "accuracy"): x}``, splits in their order, then NAMES' order within a split. `cast=False` keeps a
    value as recorded (the label fit's figures are logged as they were stored)."""
    names = tuple(names)
    return {MetricKey(task, dataset, split, prefix + k): (float(m[k]) if cast else m[k])
            for split, m in splits.items() for k in names if k in m}
