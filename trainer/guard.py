"""The per-task guard: no task is served by a model worse than its own labels.

After a training run, every task has several candidate sources: the model at
the end of each stage (the first stage on the label model's labels, then each
self-training round; every stage's last checkpoint is kept) and the labels the
model learnt from. The guard picks, per task, the one to serve, on the split
the rules allow for selection (``valid``, when it has gold labels):

1. the best stage by valid accuracy (ties: the later stage);
2. that stage, unless the labels are more accurate on valid: then the labels
   (the model is recorded as *below its labels* by that margin).

A task without gold valid labels keeps the final model; its *agreement* with
the labels on LF-covered rows is reported (a gold-free check: it says how far
the model moved from what it was taught, not which is right).

`predict` and `distill` then use the chosen source for that task; `status`,
`train --json`, MLflow (a tag per task) and the demo table say which and by how
much. Pure: figures in, a choice out (no torch, no registry).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["SELECT_SPLIT", "Choice", "choose", "agreement"]

SELECT_SPLIT = "valid"


@dataclass
class Choice:
    """What serves one task, and the figures the choice was made on.

    Attributes:
        task: the task.
        served_by: 'model' or 'labels'.
        stage: the model stage chosen (0 = the first stage; the best stage even when the labels serve).
        final_stage: the run's last stage.
        split: the split the choice was made on (None: no gold labels there).
        candidates: candidate -> accuracy on `split` ('stage-0', ..., 'labels').
        margin: the chosen stage's accuracy minus the labels' on `split`, in points (None without gold).
        agreement: share of LF-covered rows where the chosen stage's class is the labels' class.
        reason: one sentence for people.
    """

    task: str
    served_by: str
    stage: int
    final_stage: int
    split: Optional[str]
    candidates: dict[str, float] = field(default_factory=dict)
    margin: Optional[float] = None
    agreement: Optional[float] = None
    reason: str = ""

    @property
    def below_labels(self) -> bool:
        return self.margin is not None and self.margin < 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "below_labels": self.below_labels}


def choose(task: str, stages: Mapping[int, Mapping[str, Mapping[str, float]]],
           labels: Mapping[str, Mapping[str, float]], split: str = SELECT_SPLIT) -> Choice:
    """The guard's choice for TASK.

    Args:
        stages: stage -> split -> {"accuracy", ...}: each stage's figures (evaluate's shape).
        labels: split -> {"accuracy", ...}: the labels' figures (`label fit`'s metrics).
        split: the selection split.
    """
    if not stages:
        raise ValueError(f"task {task!r}: no stage to choose from")
    final = max(stages)
    acc = {s: (m.get(split) or {}).get("accuracy") for s, m in stages.items()}
    lab = (labels.get(split) or {}).get("accuracy")
    if any(a is None for a in acc.values()) or lab is None:
        return Choice(task, "model", final, final, None,
                      reason=f"no gold labels on {split}: the final model serves (no check possible)")
    best = max(acc, key=lambda s: (acc[s], s))
    cands = {f"stage-{s}": float(a) for s, a in sorted(acc.items())} | {"labels": float(lab)}
    margin = round(100 * (acc[best] - lab), 2)
    where = "the final model" if best == final else f"stage {best} of {final}"
    if acc[best] < lab:
        return Choice(task, "labels", best, final, split, cands, margin,
                      reason=f"its labels beat every model stage on {split} ({lab:.3f} against {where}'s "
                             f"{acc[best]:.3f}, {margin:+.1f} points): the labels serve")
    return Choice(task, "model", best, final, split, cands, margin,
                  reason=f"{where} serves ({acc[best]:.3f} on {split}, {margin:+.1f} points over its labels)")


def agreement(model_pred: np.ndarray, label_pred: np.ndarray, covered: Optional[np.ndarray]) -> Optional[float]:
    """Share of LF-covered rows (all rows when `covered` is None) where the two predictions agree."""
    m = np.ones(len(model_pred), bool) if covered is None else np.asarray(covered, bool)
    m &= np.asarray(label_pred) >= 0
    return float((np.asarray(model_pred)[m] == np.asarray(label_pred)[m]).mean()) if m.any() else None
