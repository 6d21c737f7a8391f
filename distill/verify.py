"""`verify`'s MLflow side: registered versions match the deployables, recorded runs keep their artifacts.

Checked against the registry (`RegistryStore.recorded_files`):

- every deployable's registered version exists in the Model Registry, carries
  the deployable's bundle hash, and the bundle inside its logged model matches
  that hash file by file;
- every registered version this workspace made is recorded as a deployable (a
  distill killed between registering and recording leaves one; the next
  `distill TASK` deletes it);
- every model version's training run exists and keeps its ``manifest.json``
  artifact, equal to the checkpoint's manifest.

Runs that no record names (a killed command's run, ended as KILLED later) are
MLflow's history, not problems. Local artifact paths are resolved inside this
workspace's ``mlartifacts/`` whatever absolute path the store recorded, so a
copied or restored workspace is checked against its own files. Read-only: a
missing store is reported, never created (the one write is the rebase every
command does on a copied workspace's own store: registry/workspace.py
`rebase_mlflow`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from mothermodel.atomic import ListedFileError, check_listed, sha256_file
from mothermodel.registry.verify import Report

__all__ = ["check_mlflow", "needs_mlflow"]

# distill/pyfunc.py's tag names (TAG_WORKSPACE, TAG_BUNDLE); importing it would load mlflow.pyfunc and pandas.
TAG_WORKSPACE = "mothermodel.workspace"
TAG_BUNDLE = "mothermodel.bundle_sha256"


def tracking_uri(ws, uri: Optional[str] = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or ws.mlflow_tracking_uri


def needs_mlflow(ws, rec: dict[str, list], uri: Optional[str] = None) -> bool:
    """Whether there is anything to check in MLflow (else `verify` never imports it)."""
    own = tracking_uri(ws, uri) == ws.mlflow_tracking_uri
    return bool(rec["mlflow_runs"] or rec["registered"]) or not own or (ws.home / "mlflow.db").is_file()


def _local(uri: str, ws) -> Optional[Path]:
    """A file artifact URI as a path in this workspace (None: not a local store)."""
    u = urlparse(uri)
    if u.scheme not in ("file", ""):
        return None
    parts = Path(unquote(u.path)).parts
    # The store keeps absolute paths: re-root whatever follows .mothermodel/mlartifacts in this workspace.
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] == "mlartifacts" and parts[i - 1] == ws.home.name:
            return ws.home.joinpath("mlartifacts", *parts[i + 1:])
    return Path(*parts) if parts else None


def _store_file(uri: str) -> Optional[Path]:
    """The local file or folder of a sqlite or file tracking store (None: a server)."""
    u = urlparse(uri)
    if u.scheme.startswith("sqlite") and uri.count("/") >= 3:
        return Path(unquote(uri.split(":///", 1)[1])) if ":///" in uri else None
    return Path(unquote(u.path)) if u.scheme in ("file", "") else None


def check_mlflow(store, rec: dict[str, list], report: Report, uri: Optional[str] = None) -> Report:
    ws = store.ws
    uri = tracking_uri(ws, uri)
    own = uri == ws.mlflow_tracking_uri
    db = ws.home / "mlflow.db"
    if own and not db.is_file():
        if rec["mlflow_runs"] or rec["registered"]:
            report.add("mlflow", db.relative_to(ws.root).as_posix(),
                       "missing: recorded model runs and registered versions live in it")
        return report
    store_file = _store_file(uri)
    if store_file is not None and not store_file.exists():  # MLflow would create an empty store there
        report.add("mlflow", uri, "the tracking store does not exist")
        return report
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # before the import: MLflow configures its logger then
    from mlflow import MlflowClient, exceptions  # lazy: heavy, and `verify` needs it only with MLflow records to check

    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        client = MlflowClient(tracking_uri=uri)
        _runs(client, exceptions.MlflowException, ws, rec, report)
        _registered(client, exceptions.MlflowException, ws, rec, report, own)
    except Exception as e:  # noqa: BLE001 - a store that cannot be read is a finding, not a crash of verify
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        report.add("mlflow", uri, f"the tracking store cannot be read: {type(e).__name__}: {msg}")
    return report


def _runs(client, MlflowException, ws, rec, report: Report) -> None:
    for version, run_id, model_path, digest in rec["mlflow_runs"]:
        where = f"runs:/{run_id}"
        try:
            run = client.get_run(run_id)
        except MlflowException:
            report.add("mlflow_run", where, f"model v{version}'s MLflow run is gone")
            continue
        local = _local(run.info.artifact_uri, ws)
        if local is None:  # a remote artifact store: its presence is all that can be checked cheaply
            if "manifest.json" not in {a.path for a in client.list_artifacts(run_id)}:
                report.add("mlflow_run", f"{where}/manifest.json", f"model v{version}'s run lost its manifest artifact")
            continue
        art = local / "manifest.json"
        shown = _shown(art, ws)
        if not art.is_file():
            report.add("mlflow_artifact", shown, f"missing: model v{version}'s run logged it")
            continue
        report.checked += 1
        ckpt = ws.home / model_path / "manifest.json"
        if not ckpt.is_file() or (digest is not None and sha256_file(ckpt) != digest):
            continue  # a missing or changed checkpoint manifest is the file check's finding, not the artifact's
        try:
            same = json.loads(art.read_text()) == json.loads(ckpt.read_text())
        except (ValueError, UnicodeDecodeError):
            same = False
        if not same:
            report.add("mlflow_artifact", shown, f"differs from model v{version}'s checkpoint manifest")


def _shown(p: Path, ws) -> str:
    try:
        return p.relative_to(ws.root).as_posix()
    except ValueError:
        return str(p)


def _registered(client, MlflowException, ws, rec, report: Report, own: bool) -> None:
    recorded = {(task, str(mv)): (v, path, digest) for task, v, mv, path, digest in rec["registered"]}
    for (task, mv), (v, path, digest) in recorded.items():
        where = f"models:/{task}/{mv}"
        try:
            version = client.get_model_version(task, mv)
        except MlflowException:
            report.add("mlflow_version", where, f"deployable {task} v{v} records this registered version; "
                                                "MLflow has no such version (deleted?)")
            continue
        tags = version.tags or {}
        if tags.get(TAG_BUNDLE) != digest:
            report.add("mlflow_version", where, f"its bundle hash tag ({str(tags.get(TAG_BUNDLE))[:12]}) is not "
                                                f"deployable {task} v{v}'s ({str(digest)[:12]})")
        local = _local(version.source, ws) if version.source else None
        if local is None:
            continue
        bundle = local / "artifacts" / Path(path).name
        if not bundle.is_dir():
            bundle = local / "artifacts" / "bundle"
        _bundle(bundle, digest, f"registered version {task}/{mv}", ws, report)
    # Versions this workspace registered that no deployable records. In the workspace's own store every
    # mothermodel version is its own (the workspace tag may name the folder it was copied from).
    try:
        versions = client.search_model_versions()
    except MlflowException:
        versions = []
    for mv in versions:
        tags = mv.tags or {}
        mine = TAG_WORKSPACE in tags if own else tags.get(TAG_WORKSPACE) == str(ws.root)
        if mine and (mv.name, str(mv.version)) not in recorded:
            report.add("mlflow_version", f"models:/{mv.name}/{mv.version}",
                       f"registered, but no deployable records it (an interrupted distill; the next "
                       f"`mothermodel distill {mv.name}` deletes it)")


def _bundle(folder: Path, digest: Optional[str], what: str, ws, report: Report) -> None:
    """The bundle inside a logged model: the manifest the deployable recorded, every file as it lists."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        report.add("mlflow_artifact", _shown(folder, ws), f"missing: {what}'s bundle")
        return
    report.checked += 1
    if digest is not None and sha256_file(manifest) != digest:
        report.add("mlflow_artifact", _shown(manifest, ws), f"differs from the manifest the deployable records "
                                                            f"({digest[:12]}) ({what})")
        return
    try:
        files: dict[str, Any] = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        report.add("mlflow_artifact", _shown(manifest, ws), f"not a bundle manifest ({what})")
        return

    def counted(p: Path) -> str:
        report.checked += 1
        return sha256_file(p)

    for name, entry in files.items():
        try:  # the sha256 only, as the bundle runner checks (run_bundle.verify)
            check_listed(folder, name, {"sha256": entry.get("sha256") if isinstance(entry, dict) else None},
                         flat=True, sha256=counted)
        except ListedFileError as e:
            if e.problem == "name":
                report.add("mlflow_artifact", _shown(manifest, ws), f"lists {name!r}, not a plain file name ({what})")
            elif e.problem == "missing":
                report.add("mlflow_artifact", _shown(folder / name, ws), f"missing: listed in {what}'s bundle manifest")
            else:
                report.add("mlflow_artifact", _shown(folder / name, ws), f"corrupted: differs from {what}'s bundle "
                                                                         "manifest")
