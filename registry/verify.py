"""`verify`: every file the registry records is there and matches its hash; no command's leftovers remain.

Read-only: it hashes what the registry records (datasets, label matrices,
probabilistic labels, model checkpoints, deployable bundles: each folder's
manifest against the recorded hash, then every file against the manifest) and
looks for what an interrupted command leaves behind. It reports; it never
deletes or rewrites anything.

What counts as a problem (exit 1) and what is only a note (exit 0):

- problem: a recorded file missing or whose bytes differ from the recorded hash;
  an orphan: anything in `tmp/`, a ``*.tmp`` file or ``.tmp-*``/``.old-*``
  folder, a label file no version records, a run folder under `models/` that
  no model version records and no in-progress marker names, a bundle folder
  under `deployables/` that no deployable records;
- note: an interrupted training run that `train --resume` can continue
  (`models/in-progress.json` and the run folder it names: legitimate state,
  not checked for leftovers), and a data file no dataset records (an older
  version of a replaced dataset keeps its file; nothing reads it).

Paths are reported relative to the workspace root, so a copied or restored
workspace is checked against itself. The MLflow side (registered versions
against deployables, artifacts of recorded runs) is `distill/verify.py`: this
module imports no MLflow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mothermodel.atomic import MANIFEST, OLD_PREFIX, TMP_PREFIX, ListedFileError, check_listed, sha256_file
from mothermodel.registry.workspace import TRAIN_MARKER as IN_PROGRESS, training_state

__all__ = ["Problem", "Report", "check_workspace"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong: what it is (`kind`), where (relative to the workspace root), and what is wrong."""

    kind: str
    path: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path, "problem": self.problem}


@dataclass
class Report:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, path: str, problem: str) -> None:
        self.problems.append(Problem(kind, path, problem))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "problems": [p.to_dict() for p in self.problems],
                "notes": list(self.notes)}


def _is_temp(name: str) -> bool:
    """A name only an atomic write in progress uses (mothermodel/atomic.py)."""
    return name.startswith((TMP_PREFIX, OLD_PREFIX)) or name.endswith(".tmp")


class _Checker:
    def __init__(self, ws, report: Report):
        self.ws, self.report = ws, report
        self.hashes: dict[Path, str] = {}  # one file recorded by several versions is hashed once

    def rel(self, p: Path) -> str:
        return p.relative_to(self.ws.root).as_posix()

    def sha(self, p: Path) -> str:
        if p not in self.hashes:
            self.hashes[p] = sha256_file(p)
            self.report.checked += 1
        return self.hashes[p]

    def file(self, kind: str, rel_path: str, digest: str | None, what: str) -> None:
        p = self.ws.home / rel_path
        if not p.is_file():
            self.report.add(kind, self.rel(p), f"missing: {what} records it")
        elif digest is not None and (got := self.sha(p)) != digest:
            self.report.add(kind, self.rel(p), f"content hash mismatch: {what} records {digest[:12]}, "
                                               f"the file has {got[:12]}")

    def folder(self, kind: str, rel_path: str, digest: str | None, what: str) -> None:
        """A checkpoint or bundle: its manifest is the one recorded, and every file it lists matches it."""
        folder = self.ws.home / rel_path
        manifest = folder / MANIFEST
        if not manifest.is_file():
            self.report.add(kind, self.rel(folder), f"missing: {what} records it" if not folder.exists()
                            else f"no {MANIFEST}: {what} records it")
            return
        before = len(self.report.problems)
        self.file(kind, f"{rel_path}/{MANIFEST}", digest, what)
        if len(self.report.problems) > before:
            return  # a changed manifest vouches for nothing
        try:
            files = json.loads(manifest.read_text())["files"]
            entries = [(name, e["sha256"], int(e["bytes"])) for name, e in files.items()]
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            self.report.add(kind, self.rel(manifest), f"not a manifest with file hashes ({what})")
            return
        for name, want, size in entries:
            try:
                check_listed(folder, name, {"sha256": want, "bytes": size}, sha256=self.sha)
            except ListedFileError as e:
                if e.problem == "name":
                    self.report.add(kind, self.rel(manifest), f"lists {name!r}, not a path inside the folder ({what})")
                elif e.problem == "missing":
                    self.report.add(kind, self.rel(folder / name), f"missing: listed in {what}'s manifest")
                else:
                    self.report.add(kind, self.rel(folder / name), f"corrupted: differs from the sha256 {what}'s "
                                                                   f"manifest records ({want[:12]})")


def check_workspace(store, report: Report | None = None, rec: dict[str, list] | None = None) -> Report:
    """Hash every file the registry records and look for orphans; the MLflow side is not checked here.

    `rec`: `store.recorded_files()`, when the caller read it already."""
    ws = store.ws
    report = report or Report()
    rec = rec if rec is not None else store.recorded_files()
    c = _Checker(ws, report)
    for kind in ("dataset", "label_matrix", "prob_labels", "hand_labels", "slice_membership"):
        for path, digest, what in rec.get(kind, []):
            c.file(kind, path, digest, what)
    for kind in ("model", "checkpoint", "deployable"):
        for path, digest, what in rec[kind]:
            c.folder(kind, path, digest, what)
    _orphans(ws, rec, report)
    return report


def _orphans(ws, rec: dict[str, list], report: Report) -> None:
    home = ws.home

    def rel(p: Path) -> str:
        return p.relative_to(ws.root).as_posix()

    def orphan(p: Path, why: str) -> None:
        report.add("orphan", rel(p), why)

    def entries(folder: Path) -> list[Path]:
        return sorted(folder.iterdir()) if folder.is_dir() else []

    for p in entries(ws.tmp_dir):
        orphan(p, "left in the workspace's tmp folder by an interrupted command")
    recorded_data = {Path(path).name for path, _, _ in rec["dataset"]}
    for p in entries(ws.data_dir):
        if _is_temp(p.name):
            orphan(p, "temporary file of an interrupted write")
        elif p.suffix == ".parquet" and p.name not in recorded_data:
            report.notes.append(f"{rel(p)}: no dataset records this file (an older version of a replaced dataset, "
                                "or an interrupted `dataset add`); nothing reads it")
    recorded_labels = {path for kind in ("label_matrix", "prob_labels", "hand_labels", "slice_membership")
                       for path, _, _ in rec.get(kind, [])}
    for task_dir in entries(ws.labels_dir):
        for p in entries(task_dir) if task_dir.is_dir() else []:
            if _is_temp(p.name):
                orphan(p, "temporary file of an interrupted write")
            elif p.suffix == ".parquet" and p.name.startswith(("lm-", "pl-", "hl-", "sm-")) \
                    and p.relative_to(home).as_posix() not in recorded_labels:
                orphan(p, "no label version records this file (an interrupted `label apply`, `label fit` or "
                          "`label add`); nothing reads it")
    _model_orphans(ws, rec, report, orphan)
    recorded_bundles = {path for path, _, _ in rec["deployable"]}
    for task_dir in entries(home / "deployables"):
        for p in entries(task_dir) if task_dir.is_dir() else []:
            if p.name == ".lock":
                continue  # distill's per-task lock file
            if _is_temp(p.name):
                orphan(p, "temporary folder of an interrupted distill")
            elif p.relative_to(home).as_posix() not in recorded_bundles:
                orphan(p, f"no deployable records this bundle (an interrupted distill; the next "
                          f"`mothermodel distill {task_dir.name}` removes it)")


def _model_orphans(ws, rec: dict[str, list], report: Report, orphan) -> None:
    home, models = ws.home, ws.models_dir
    recorded_runs = {PurePosixPath(path).parts[1] for kind in ("model", "checkpoint") for path, _, _ in rec[kind]
                     if len(PurePosixPath(path).parts) > 1}
    in_progress = None
    marker = models / IN_PROGRESS
    state = training_state(ws)
    if state is not None and isinstance(state.get("run_dir"), str):
        in_progress = (home / state["run_dir"]).resolve()
        run = in_progress.relative_to(ws.root).as_posix() if in_progress.is_relative_to(ws.root) else state["run_dir"]
        report.notes.append(
            f"a `mothermodel train` is running ({run}); its files are not checked: verify again when it ends"
            if state["state"] == "running" else
            f"interrupted training run {run} ({marker.relative_to(ws.root).as_posix()}): resume it with "
            "`mothermodel train --resume`, or start over with `mothermodel train`")
    elif marker.exists():
        report.add("train", marker.relative_to(ws.root).as_posix(),
                   "unreadable in-progress marker: start over with `mothermodel train`")
    for p in sorted(models.iterdir()) if models.is_dir() else []:
        if p.name == IN_PROGRESS or (in_progress is not None and p.resolve() == in_progress):
            continue  # a resumable run's state, leftovers of its own included: `train --resume` takes them over
        if _is_temp(p.name):
            orphan(p, "temporary file of an interrupted write")
        elif p.is_dir() and p.name not in recorded_runs:
            orphan(p, "training run folder that no model version records and no in-progress marker names "
                      "(an interrupted `train` a later run superseded)")
        elif p.is_dir():
            for q in sorted(p.rglob("*")):
                if q.is_dir() and q.name.startswith((TMP_PREFIX, OLD_PREFIX)):
                    orphan(q, "temporary folder of an interrupted checkpoint write")
