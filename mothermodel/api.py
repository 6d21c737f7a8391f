"""`Registry`: the Python API that every CLI command is a thin twin of.

It sits on top of the stages: registry commands go to the typed registry store
(an `AbstractStore`, mothermodel/registry/abstract_store.py, that `registry.backends.open_store` chooses),
label commands to the labeling layer, which itself reads and records through the store. Each call opens the
registry only for its own short reads and writes (see `registry.db`), so no
long-running process holds the file.

    >>> from mothermodel import Registry
    >>> reg = Registry.init("my-workspace")
    >>> reg.import_wrench("../shared/data/youtube", task="spam")
    >>> reg.show_task("spam").task.classes
    ('HAM', 'SPAM')
    >>> reg.label_fit("spam").metrics["test"]["accuracy"]
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mothermodel.defaults import DEFAULT_SEED, UI_HOST, UI_PORT
from mothermodel.errors import UserError
from mothermodel.registry import faults
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.backends import open_store
from mothermodel.registry.graph import topological
from mothermodel.registry.metric_key import MetricKey
from mothermodel.registry.records import (
    DatasetRecord,
    ImpactReport,
    StatusReport,
    TaskDetail,
    TaskFault,
    TaskSpec,
    TaskSummary,
    declarative_params,
)
from mothermodel.registry.workspace import Workspace, training_state
from mothermodel.spec import Task, from_task, load_spec

if TYPE_CHECKING:
    from mothermodel.registry.verify import Report


class Registry:
    """One workspace's registry and the stages around it."""

    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.store: AbstractStore = open_store(workspace)

    # --- opening ---------------------------------------------------------------
    @classmethod
    def init(cls, path: str | Path = ".") -> "Registry":
        return cls(Workspace.init(path))

    @classmethod
    def open(cls, workspace: str | Path | None = None) -> "Registry":
        """--workspace, else $MOTHERMODEL_HOME, else the nearest parent holding .mothermodel/."""
        return cls(Workspace.find(workspace))

    # --- datasets ----------------------------------------------------------------
    def add_dataset(self, name: str, file: str | Path, text_field: str | None = None,
                    split_field: str | None = None, gold_field: str | None = None,
                    replace: bool = False, no_text: bool = False) -> dict[str, Any]:
        """`dataset add`: register a .parquet, .csv or .jsonl file as dataset NAME (it needs a text column
        unless `no_text`; split values must be train, valid or test)."""
        from mothermodel.registry import datasets

        return self.add_dataset_table(name, datasets.read_table(file), text_field, split_field, gold_field,
                                      replace, origin=str(file), no_text=no_text)

    def add_dataset_table(self, name: str, table, text_field: str | None = None,
                          split_field: str | None = None, gold_field: str | None = None,
                          replace: bool = False, origin: str = "<arrow>", no_text: bool = False) -> dict[str, Any]:
        """Register an in-memory Arrow table as a dataset."""
        from mothermodel.registry import datasets

        self._refuse_taken(name, replace)
        return self._stage_and_record(
            lambda: datasets.stage(self.ws, name, table, text_field, split_field, gold_field, origin=origin,
                                   no_text=no_text),
            lambda row: self.store.record_dataset(row, replace))

    def _stage_and_record(self, stage, record):
        """Write a dataset file (`stage()`), then `record(row)` it; when the record is refused, the file this
        call brought is removed again (not one an existing dataset already had: files are content-addressed),
        so bad input leaves no orphan."""
        folder = self.ws.data_dir
        before = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        row = stage()
        try:
            return record(row)
        except BaseException:
            path = self.ws.home / row["path"]
            if path.name not in before:
                path.unlink(missing_ok=True)
            raise

    def _refuse_taken(self, name: str, replace: bool) -> None:
        """A taken dataset name without --replace is refused before the data file is written (the
        transaction checks again: a concurrent add can at most leave an unreferenced file)."""
        if not replace and name in self.store.datasets():
            raise UserError(f"NAME: dataset {name!r} already exists (use --replace to change it)")

    def list_datasets(self) -> list[DatasetRecord]:
        """`dataset list`: every dataset, by name (`.to_json()`: one object of `dataset list --json`)."""
        return self.store.list_datasets()

    def dataset_path(self, name: str) -> Path:
        return self.ws.home / self.store.dataset(name).path

    def import_wrench(self, folder: str | Path, task: str, replace: bool = False) -> dict[str, Any]:
        """`import wrench`: a WRENCH folder -> dataset TASK (gold labels kept for evaluation) + task TASK
        with sources lf_0..lf_{m-1}."""
        from mothermodel.registry import datasets, wrench

        table, classes = wrench.read(folder)
        m = sum(1 for c in table.column_names if c.startswith("lf_"))
        relation = all(c in table.column_names for c in wrench.RELATION_FIELDS)
        spec = wrench.task_for(task, classes, m, origin=str(folder), relation=relation)
        self._refuse_taken(task, replace)
        ds, res = self._stage_and_record(
            lambda: datasets.stage(self.ws, task, table, "text", "split", "label", origin=str(folder)),
            lambda row: self.store.record_dataset_and_tasks(row, [spec], replace))
        return {"dataset": ds, "task": res["tasks"][0], "restamped": res["restamped"],
                "input": spec.input.to_dict() if spec.input is not None else None}

    # --- tasks -------------------------------------------------------------------
    def submit(self, spec, replace: bool = False) -> dict[str, Any]:
        """`task submit`: a spec file, a `Task` built in Python (its LFs' code is recorded, so `label apply` runs
        them later), a TaskSpec, or a list of these submitted in one transaction."""
        def one(s) -> TaskSpec:
            if isinstance(s, (str, Path)):
                return load_spec(s)
            if isinstance(s, Task):
                return from_task(s)
            if isinstance(s, TaskSpec):
                return s
            raise UserError(f"submit: expected a Task, a TaskSpec or a spec file, got {type(s).__name__}")

        if isinstance(spec, (str, Path, Task, TaskSpec)):
            specs = [one(spec)]
        elif hasattr(spec, "__iter__"):  # a list, a tuple, a generator of them
            specs = [one(s) for s in spec]
        else:
            specs = [one(spec)]  # refused, naming the type
        known = self.store.datasets()  # one read for both checks
        specs = self._fill_text_fields(specs, known)
        self._check_column_types(specs, known)
        return self.store.submit(specs, replace=replace)

    def _fill_text_fields(self, specs: Sequence[TaskSpec], known: dict[str, DatasetRecord]) -> list[TaskSpec]:
        """A keyword/regex source that names no `field` reads its dataset's text field (not a column that
        happens to be called "text"). Filled in before recording, so the stored code names the column it reads;
        a dataset whose text field is "text" records exactly what it did before (same hashes, no new versions)."""
        from mothermodel.labeling.apply.sources import DECLARATIVE

        out = []
        for s in specs:
            ds = known.get(s.dataset)
            sources = list(s.sources)
            for i, src in enumerate(sources):
                params = declarative_params(src.code) if src.kind in ("lf", "slice") else None
                if not params or params.get("kind") not in ("keyword", "regex") or params.get("field") is not None:
                    continue
                if ds is not None and ds.text_field is None:
                    raise UserError(f"{s.origin}: {s.where(i)}.field: {src.name}: dataset {ds.name!r} has no text "
                                    "field; name the column it reads")
                params["field"] = ds.text_field if ds is not None else "text"
                lf = DECLARATIVE[params.pop("kind")](name=src.name, **params)
                sources[i] = dataclasses.replace(src, code=lf.code, code_hash=lf.code_hash)
            out.append(dataclasses.replace(s, sources=tuple(sources)))
        return out

    def _check_column_types(self, specs: Sequence[TaskSpec], known: dict[str, DatasetRecord]) -> None:
        """Each source reads a column of the type it needs (keyword/regex: text; column: class indices, integers;
        threshold: numbers), else refused naming the source, the column and its type: apply would only abstain.
        Unknown datasets and columns are left to the registry's checks."""
        import pyarrow.parquet as pq  # lazy: pyarrow (~0.1 s) stays off the other registry commands

        from mothermodel.registry.columns import column_problem

        for s in specs:
            ds = known.get(s.dataset)
            if ds is None:
                continue
            path = self.ws.home / ds.path
            schema = pq.read_schema(path)
            for i, src in enumerate(s.sources):
                params = declarative_params(src.code) if src.kind in ("lf", "slice") else None
                col = src.ref if src.kind == "column" else (params or {}).get("field")
                if not isinstance(col, str) or col not in schema.names:
                    continue
                kind = src.kind if src.kind == "column" else params.get("kind")
                # a float column read by a column source is read, to refuse fractions (NaN/null abstain)
                problem = column_problem(schema, col, kind, values=lambda: pq.read_table(path, columns=[col]).column(0))
                if problem:
                    raise UserError(f"{s.origin}: {s.where(i)} ({src.name}): {problem} (dataset {s.dataset!r})")

    def list_tasks(self) -> list[TaskSummary]:
        """`task list`: every task, by name (`.to_json()`: one object of `task list --json`)."""
        return self.store.list_tasks()

    def show_task(self, name: str) -> TaskDetail:
        """`task show NAME`: the task's record, its sources in display order, its up- and downstream edges
        (`.to_json()`: `task show --json`)."""
        return self.store.show_task(name)

    def remove_task(self, name: str) -> dict[str, Any]:
        """`task remove NAME`."""
        return self.store.remove_task(name)

    # --- DAG and status ------------------------------------------------------------
    def graph(self):
        """`dag show`: the task DAG as a networkx DiGraph."""
        return self.store.graph()

    def impact(self, name: str, kind: str = "auto") -> ImpactReport:
        """`dag impact NAME`: every current thing a change to NAME makes stale, and why
        (`.to_json()`: `dag impact --json`)."""
        return self.store.impact(name, kind)

    def status(self) -> StatusReport:
        """`status`: per task, whether labels, model and deployable are stale, and why; what serves it; its
        faults; a training run not yet recorded (`.to_json()`: `status --json`)."""
        # "training": a run `train` has not recorded (running, or interrupted: `train --resume` continues it)
        registry = self.store.status()
        return StatusReport(workspace=str(self.ws.root), mlflow_tracking_uri=self.ws.mlflow_tracking_uri,
                            registry=registry, training=training_state(self.ws),
                            slices=self._slice_figures() if any(t.slices for t in registry.tasks) else [])

    def _slice_figures(self) -> list[dict[str, Any]]:
        """Per task, slice and split (valid, test): what serves the task, inside the slice and overall, as the
        latest model recorded it (a slice declared since shows up after the next `train`)."""
        model = self.store.model()
        if model is None:
            return []
        out = []
        for flat, n in model.metrics.items():
            k = MetricKey.parse(flat)
            if k is None or k.metric != "n" or "/slice:" not in k.split:
                continue
            split, name = k.split.split("/slice:", 1)
            if split not in ("valid", "test"):  # train rows are what the model learnt from
                continue
            get = lambda s, m: model.metrics.get(MetricKey(k.task, k.dataset, s, m).flat())  # noqa: E731
            out.append({"task": k.task, "slice": name, "split": split, "n": int(n),
                        "served_accuracy": get(k.split, "served_accuracy"), "overall": get(split, "served_accuracy")})
        return sorted(out, key=lambda r: (r["task"], r["slice"], r["split"] == "test"))

    def verify(self, tracking_uri: str | None = None) -> Report:
        """`verify`: every recorded file exists and matches its hash, no interrupted command's leftovers
        remain, MLflow's registered versions match the deployables. Reports, changes nothing: a
        `registry.verify.Report` (`ok`, `checked`, `problems`, `notes`; `.to_dict()`: `verify --json`)."""
        from mothermodel.distill.verify import check_mlflow, needs_mlflow
        from mothermodel.registry.verify import check_workspace

        rec = self.store.recorded_files()
        report = check_workspace(self.store, rec=rec)

        if needs_mlflow(self.ws, rec, tracking_uri):  # MLflow is imported only when there is something to check
            check_mlflow(self.store, rec, report, tracking_uri)
        return report

    # --- labeling --------------------------------------------------------------------
    def label_apply(self, tasks: Sequence[str] | None = None, config=None, force: bool = False,
                    strict: bool = False, isolate: bool | None = None) -> dict[str, Any]:
        """`label apply [TASK...]`: every stale source, in DAG order, into new label-matrix versions.

        config: a `mothermodel.labeling.apply.core.ApplyConfig` (processes, time limit, engine).
        isolate (default: when more than one task is applied): a task that fails is left out, listed in
        "failed" ({task, stage, reason, fix}) and recorded as its fault; the others go on."""
        from mothermodel.labeling import label_apply

        return label_apply.apply(self.store, list(tasks) if tasks else None, config, force=force, strict=strict,
                                 isolate=isolate)

    def task_faults(self) -> list[TaskFault]:
        """Each task's current fault per stage, by task and stage (also in `status`)."""
        return self.store.task_faults()

    def label_analyze(self, task: str, split: str | None = None) -> dict[str, Any]:
        """`label analyze TASK`: per LF polarity, coverage, overlaps, conflicts, empirical accuracy."""
        from mothermodel.labeling.analysis import analyze

        res = analyze(self.store, task, split)
        fit = self.encoder_fit(task, split)
        if fit is not None:
            res["encoder_fit"] = fit
            if fit["poor"]:
                res.setdefault("warnings", []).append(
                    f"{fit['advice']} (whole-word share {fit['whole_word_share']:.2f}, "
                    f"{fit['pieces_per_word']:.2f} pieces a word)")
        return res

    def encoder_fit(self, task: str, split: str | None = None) -> dict[str, Any] | None:
        """How well the encoder's tokenizer fits TASK's inputs (mothermodel.textfit): the latest model's encoder,
        else the default; None when that encoder has no tokenizer.json."""
        from mothermodel.registry import datasets
        from mothermodel.textfit import measure, tokenizer_file
        from mothermodel.trainer.encoder import default_encoder_dir

        t = self.store.task(task)
        ds = self.store.dataset(t.dataset)
        inp = t.input_for(ds)
        model = self.store.model()
        encoder = model.encoder if model and model.encoder and model.encoder != "default" else None
        tok = tokenizer_file(encoder or default_encoder_dir())
        if inp is None or tok is None:
            return None
        table = self.store.read_dataset(ds)
        if split is not None:
            rows = [i for i, s in enumerate(datasets.split_column(table, ds)) if s == split]
            table = table.take(rows)
        return measure(tok, datasets.input_texts(table, inp)).to_dict()

    def label_fit(self, task: str, model: str = "label-model", use_dev: bool | None = None,
                  seed: int = DEFAULT_SEED, text_view: bool = True, apply_config=None,
                  select_on: str | None = None):
        """`label fit TASK`: a new probabilistic-labels version from the current label matrix; returns a
        `mothermodel.labeling.label_fit.FitOutcome` (`.to_json()`: `label fit --json`).

        select_on: None (default) keeps the most accurate on the valid split's gold labels of majority
        vote, the label model and the label model + text view when valid has gold labels; 'valid' insists;
        'none' keeps the gold-free default (`--select-on`)."""
        from mothermodel.labeling import label_fit

        return label_fit.fit(self.store, task, model=model, use_dev=use_dev, seed=seed,
                             apply_config=apply_config, text_view=text_view, select_on=select_on)

    def label_fit_stale(self, apply_config=None, skip=(), echo=lambda s: None
                        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """`label fit` (no TASK): every task whose labels are stale, upstream first, each with its last fit's
        settings (a FitSettings, --no-text-view included). One task's failure never stops the others
        (registry/faults.py): it is recorded as the task's fault and returned in the second list; a
        successful fit clears its own. Returns ([{task, version, model}], [{task, stage, reason, fix}])."""
        from mothermodel.labeling.label_fit import last_settings

        stale = {t.name for t in self.store.status().tasks if t.labels.stale}
        fitted, done, failed = [], set(), []
        for name in topological(self.graph()):
            if name not in stale or name in done or name in skip:
                continue
            try:
                settings = last_settings(self.store, name)
                res = self.label_fit(name, apply_config=apply_config, **settings.kwargs())
            except Exception as e:  # noqa: BLE001 - one task's fault, unless an interrupt
                if not faults.isolatable(e):
                    raise
                failed.append(faults.describe(name, faults.FIT, e))
                continue
            done |= {t["task"] for t in res.tree or []} | {name}  # a hierarchical fit relabels the whole tree
            fitted.append({"task": name, "version": res.version, "model": res.model})
            echo(f"label fit {name}: probabilistic labels v{res.version} ({res.model})")
            for w in res.warnings:
                echo(f"warning: {w}")
        self.store.set_task_faults(faults.FIT, failed)
        return fitted, failed

    def label_add(self, task: str, file: str | Path, by: str | None = None, replace: bool = False) -> dict[str, Any]:
        """`label add TASK FILE`: hand labels (CSV/JSONL/Parquet: `row` or `text`, and `label`) into TASK's next
        hand-labels version (labeling/hand_labels.py); `replace` starts the set anew instead of adding to it."""
        from mothermodel.labeling import hand_labels

        return hand_labels.add(self.store, task, file, added_by=by, replace=replace)

    def hand_labels(self, task: str) -> list[dict[str, Any]]:
        """`label add TASK --list`: every hand-labels version of TASK (who, when, how many), newest first."""
        from mothermodel.labeling import hand_labels

        return hand_labels.history(self.store, task)

    def label_log(self, task: str) -> dict[str, Any]:
        """`label log TASK`."""
        from mothermodel.labeling import label_history

        return label_history.log(self.store, task)

    def label_diff(self, task: str, v1: int, v2: int, slices: bool = False) -> dict[str, Any]:
        """`label diff TASK V1 V2`: label-matrix versions; with `slices`, slice-membership versions."""
        from mothermodel.labeling import label_history

        if slices:
            return label_history.diff_slices(self.store, task, v1, v2)
        return label_history.diff(self.store, task, v1, v2)

    # --- the mother model --------------------------------------------------------------
    def train(self, config=None, options=None, *, if_changed: bool | None = None, resume: bool | None = None,
              fresh: bool | None = None, echo=lambda s: None):
        """`train`: the mother model on every task's fresh labels (a `mothermodel.trainer.config.TrainConfig`,
        a `mothermodel.trainer.config.TrainOptions`); returns a `mothermodel.trainer.outcome.TrainOutcome`
        (model_version, trained, per task its figures and the guard's choice; `.to_json()`: `train --json`)."""
        from mothermodel.trainer.config import TrainConfig, TrainOptions
        from mothermodel.trainer.run import train

        options = options or TrainOptions()
        if if_changed is not None:
            options = dataclasses.replace(options, if_changed=if_changed)
        if resume is not None:
            options = dataclasses.replace(options, resume=resume)
        if fresh is not None:
            options = dataclasses.replace(options, fresh=fresh)
        return train(self.store, config or TrainConfig(), options, echo=echo)

    def predict(self, task: str, split: str | None = None, input_file: str | None = None, device: str = "auto",
                echo=lambda s: None):
        """`predict TASK`: probabilities and predicted classes from what serves TASK (the guard's choice of a
        stage of the latest mother model, or its labels) as an Arrow table (row, text, pred, p_<class>...)."""
        from mothermodel.trainer.run import predict

        return predict(self.store, task, split=split, input_file=input_file, device=device, echo=echo)

    # --- deployables ----------------------------------------------------------------------
    def distill(self, task: str | None = None, all_tasks: bool = False, config=None, options=None,
                echo=lambda s: None) -> dict[str, Any]:
        """`distill TASK` or `distill --all`: a student per task from the latest mother model, exported,
        registered in MLflow and recorded (a `mothermodel.distill.config.DistillConfig`,
        a `mothermodel.distill.config.DistillOptions`)."""
        from mothermodel.distill.config import DistillConfig
        from mothermodel.distill.run import distill, distill_all

        if bool(task) == bool(all_tasks):
            raise UserError("TASK: give a task name or --all (not both)")
        config = config or DistillConfig()
        if all_tasks:
            return distill_all(self.store, config, options, echo=echo)
        return distill(self.store, task, config, options, echo=echo)

    def export(self, task: str, out: str | Path, fmt: str = "onnx") -> dict[str, Any]:
        """`export TASK --format onnx --out DIR`: TASK's latest deployable as a self-contained bundle."""
        from mothermodel.distill.bundle import export

        return export(self.store, task, out, fmt)

    def ui(self, host: str = UI_HOST, port: int = UI_PORT, wait: bool = True, output=None):
        """`ui [--host H] [--port N]`: MLflow's server and UI over this workspace's runs, artifacts and registered
        models, started as a child process (default 127.0.0.1:5000). Returns a `mothermodel.ui.UIServer`
        (`.url`; `.serve()` blocks, `.stop()` ends it; a context manager):

            >>> with reg.ui(port=5001) as server:
            ...     print(server.url)
        """
        from mothermodel.ui import start

        return start(self.ws, host, port, wait=wait, output=output)

    def watch(self, every: str | None = None, once: bool = False, config=None, options=None,
              echo=print, distill_config=None) -> list[dict[str, Any]]:
        """`watch [--every D] [--once]`: relabel, refit, retrain and redistil what is stale, periodically.
        Each tick's "failed" lists the tasks it left out (recorded as their faults), "errors" the steps that
        failed as a whole; the other tasks go on (mothermodel/watch.py)."""
        from mothermodel.trainer.config import TrainConfig, TrainOptions
        from mothermodel.watch import parse_duration, watch

        every_s = parse_duration(every) if every else None
        if every_s is None and not once:
            raise UserError("--every: give a period (e.g. --every 15m) or --once")
        return watch(self, every_s, once, config or TrainConfig(), options or TrainOptions(), echo=echo,
                     distill_config=distill_config)
