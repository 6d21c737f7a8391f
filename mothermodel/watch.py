"""`watch`: the periodic loop the product promises: relabel, retrain and redistil what is stale.

Each tick: `label apply` for every task (only stale sources run), `label fit`
for every task whose labels are stale, upstream first, with that task's last
fit settings, then `train --if-changed`, then `distill --all` (every task
whose deployable is stale), so a changed LF ends in a new deployable. The registry is opened only for each
step's short reads and writes, never held across a tick. SIGINT and SIGTERM
stop the loop at any moment: every file is written to a temporary name and
renamed, every registry write is one transaction, so an interrupted tick
leaves the registry as the last completed step left it.
"""

from __future__ import annotations

import signal
import time
from dataclasses import replace
from typing import Any, Callable

from mothermodel.distill.config import DistillOptions
from mothermodel.errors import UserError
from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.registry import faults
from mothermodel.trainer.outcome import TrainOutcome


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '1d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip().lower()
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise UserError(f"--every: {text!r} is not a duration (e.g. 90s, 15m, 2h)") from None
    if value <= 0:
        raise UserError(f"--every: {text!r} must be positive")
    return value


def tick(reg, train_config, train_options, echo: Callable[[str], None] = print,
         distill_config=None) -> dict[str, Any]:
    """One pass: relabel and refit what is stale, retrain if anything the model learns from moved,
    then redistil every stale deployable (`distill_config`: a DistillConfig; None = the defaults).

    One task's failure never stops the others (registry/faults.py): a task whose labels cannot be applied
    or fit, or that cannot train, is left out, recorded as its fault and listed in "failed"; a step that
    fails as a whole (the registry stayed locked, say) is listed in "errors" and the tick goes on with the
    next step. Either makes `watch --once` exit 1."""
    progress = train_options.progress
    failed: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []

    def step_failed(stage: str, e: Exception) -> None:
        if not faults.isolatable(e):
            raise e
        reason = faults.describe("", stage, e)["reason"]
        errors.append({"stage": stage, "reason": reason})
        echo(f"{stage}: failed: {reason}")

    def report(res_failed: list[dict[str, Any]]) -> None:
        for f in res_failed:
            failed.append(f)
            echo(f"{f['stage']} {f['task']}: failed, left out: {f['reason']} (fix: {f['fix']})")

    created: list[str] = []
    left_out: set[str] = set()
    try:
        applied = reg.label_apply(config=ApplyConfig(progress=progress), isolate=True)
        created = [t["task"] for t in applied["tasks"] if t["status"] == "created"]
        if created:
            echo(f"label apply: new label matrices for {', '.join(created)}")
        report(applied["failed"])
        left_out = {f["task"] for f in applied["failed"]}  # reported once: their fit would fail the same way
        for t in applied["tasks"]:  # an LF stopped as a whole (labeling/apply/core.py LFReport.fatal): exit 1 too
            for f in t.get("faults", []):
                if f.get("fatal"):
                    why = ((f["first_error"] or "").strip().splitlines() or [""])[-1]
                    errors.append({"stage": faults.APPLY, "reason": f"{t['task']}: LF {f['name']} stopped "
                                   f"({f['fatal']}), none of its votes kept: {why}"})
                    echo(f"label apply {t['task']}: LF {f['name']} stopped ({f['fatal']})")
    except Exception as e:  # noqa: BLE001 - see step_failed
        step_failed(faults.APPLY, e)
    fitted: list[dict[str, Any]] = []
    try:
        fitted, fit_failed = reg.label_fit_stale(apply_config=ApplyConfig(progress=progress), skip=left_out,
                                                 echo=echo)
        report(fit_failed)
    except Exception as e:  # noqa: BLE001 - see step_failed
        step_failed(faults.FIT, e)
    trained = TrainOutcome(model_version=None, trained=False, changes={})
    try:
        trained = reg.train(train_config, options=replace(train_options, isolate=True), if_changed=True)
        if trained.status != "failed":
            echo(f"train: model v{trained.model_version} " + ("trained" if trained.trained else "up to date"))
        report(trained.failed)
    except Exception as e:  # noqa: BLE001 - see step_failed
        step_failed(faults.TRAIN, e)
    distilled = {"distilled": [], "skipped": [], "up_to_date": []}
    try:
        distilled = reg.distill(all_tasks=True, config=distill_config,
                                options=DistillOptions(tracking_uri=train_options.tracking_uri, progress=progress),
                                echo=echo)
    except Exception as e:  # noqa: BLE001 - see step_failed
        step_failed("distill", e)
    for d in distilled["distilled"]:
        echo(f"distill {d['task']}: deployable v{d['deployable_version']} (MLflow model {d['task']} "
             f"version {d['registered_model']['version']})")
    return {"label_apply": created, "label_fit": fitted,
            "train": {"model_version": trained.model_version, "trained": trained.trained, "changes": trained.changes},
            "distill": {"distilled": [{k: d[k] for k in ("task", "deployable_version", "registered_model")}
                                      for d in distilled["distilled"]],
                        "skipped": distilled["skipped"], "up_to_date": distilled["up_to_date"]},
            "failed": failed, "errors": errors}


def tick_failed(t: dict[str, Any]) -> bool:
    """Whether a tick left a task out or a step failed (`watch --once` then exits 1)."""
    return bool(t.get("failed") or t.get("errors"))


def watch(reg, every_s: float | None, once: bool, train_config, train_options,
          echo: Callable[[str], None] = print, distill_config=None) -> list[dict[str, Any]]:
    """Tick now, then every `every_s` seconds until SIGINT/SIGTERM (or once). A periodic loop logs a tick that
    failed (`tick_failed`) and keeps going; the CLI exits 1 when a `--once` tick failed."""
    ticks: list[dict[str, Any]] = []
    stop = {"now": False}

    def on_term(signum, frame):  # SIGTERM behaves like Ctrl-C: unwinds, nothing half-written
        stop["now"] = True
        faults.stopping()  # whatever the interrupt surfaces as inside a step, it is no task's fault
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    old_int = signal.signal(signal.SIGINT, on_term)
    try:
        while True:
            started = time.monotonic()
            if once or every_s is None:
                ticks.append(tick(reg, train_config, train_options, echo, distill_config))
                return ticks
            try:
                ticks.append(tick(reg, train_config, train_options, echo, distill_config))
            except Exception as e:  # noqa: BLE001 - a periodic loop logs a failed tick and keeps going
                if stop["now"] or not faults.isolatable(e):
                    raise
                ticks.append({"errors": [{"stage": "tick", "reason": faults.describe("", "tick", e)["reason"]}],
                              "failed": []})
                echo(f"tick failed: {ticks[-1]['errors'][0]['reason']}")
            if stop["now"]:  # the interrupt was swallowed somewhere inside the tick
                raise KeyboardInterrupt
            wait = max(0.0, every_s - (time.monotonic() - started))
            echo(f"next tick in {wait:.0f}s (Ctrl-C stops)")
            time.sleep(wait)
    except BaseException:
        # The signal may land inside a DuckDB query, which turns the KeyboardInterrupt into its own
        # "Query interrupted" error (the transaction rolls back all the same): still a stop, not a failure.
        if stop["now"]:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        faults.stopping(False)
