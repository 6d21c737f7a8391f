"""Per-task faults: in a registry shared by many owners, one task's failure never stops the others.

`label apply`, `train` and `watch` over more than one task catch a task's
failure (bad gold labels, an LF whose code is not stored, a source that cannot
be built, stale labels, ...), leave that task out, go on with every healthy
task, record the fault (`RegistryStore.set_task_faults`; `status` shows it with
its reason and fix until the stage next succeeds for that task) and exit 1 at
the end, so cron and systemd notice. A run over one task (named, or the only
one) fails as before: its one-line error, exit 2 for bad input.
"""

from __future__ import annotations

from typing import Any, Sequence

from mothermodel.errors import CommandFailed, RegistryBusy, UserError

APPLY, FIT, TRAIN = "label apply", "label fit", "train"


class TasksFailed(CommandFailed):
    """Some tasks failed and were left out; the healthy ones went on (exit 1, after the report)."""

    exit_code = 1

    def __init__(self, failed: Sequence[dict[str, Any]], what: str = ""):
        self.failed = list(failed)
        names = ", ".join(f"{f['task']} ({f['stage']})" for f in self.failed[:5])
        more = f" and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
        super().__init__(f"{len(self.failed)} task(s) failed{what} and were left out: {names}{more}; "
                         "`mothermodel status` shows each reason and fix")


def with_fix(error: Exception, fix: str) -> Exception:
    """ERROR carrying the fix a fault report shows for it."""
    error.fix = fix  # type: ignore[attr-defined]
    return error


_stopping = {"now": False}


def stopping(now: bool = True) -> None:
    """A stop was requested (watch's SIGTERM/SIGINT handler): from now on no error counts as one task's."""
    _stopping["now"] = now


def isolatable(error: BaseException) -> bool:
    """Whether ERROR is one task's failure (left out, reported) rather than the whole run's: not an
    interrupt (Ctrl-C, SIGTERM, which DuckDB turns into its own 'Query interrupted' error) and not a
    registry that stayed locked."""
    if _stopping["now"] or not isinstance(error, Exception) or isinstance(error, RegistryBusy):
        return False
    return type(error).__name__ != "InterruptException" and "Query interrupted" not in str(error)


def describe(task: str, stage: str, error: BaseException) -> dict[str, Any]:
    """{task, stage, reason, fix} for a task's failure at STAGE: the error's one line, and what to do."""
    text = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, UserError):
        reason = text or type(error).__name__
        default_fix = f"fix it, then run `mothermodel {stage} {task}` to check it alone"
    else:
        reason = f"internal error: {type(error).__name__}: {text}"
        default_fix = f"run `mothermodel {stage} {task}` with MOTHERMODEL_DEBUG=1 for a traceback"
    return {"task": task, "stage": stage, "reason": reason, "fix": getattr(error, "fix", None) or default_fix}


def upstream_failed(task: str, stage: str, upstream: str) -> dict[str, Any]:
    return {"task": task, "stage": stage, "reason": f"its upstream task {upstream} failed",
            "fix": f"fix {upstream} first (`mothermodel status`)"}
