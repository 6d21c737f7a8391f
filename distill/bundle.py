"""The export bundle (DESIGN section 4): written atomically, verified before every load.

    model.onnx      input_ids, attention_mask -> logits (dynamic batch and length)
    tokenizer.json  the teacher's tokenizer, truncating to the student's max length
    labels.json     {"0": class name, ...}
    manifest.json   task, fingerprint, model version, label versions, student kind, metrics,
                    the onnxruntime-vs-PyTorch check, and sha256 + size of every other file

Writing (mothermodel/atomic.py's sealed folder): every file goes into a
``.tmp-*`` folder beside the target, is fsync'ed, and the folder is renamed onto
its final name; a killed writer leaves only ``.tmp-*``/``.old-*`` folders, which
:func:`remove_leftovers` deletes.
Reading: :func:`verify` (the standalone runner's check) refuses any file whose
hash differs from the manifest's, with a :class:`~mothermodel.errors.UserError`.
Exporting: :func:`export` (`mothermodel export TASK`) copies a task's latest
deployable out; no torch, no MLflow on its path.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from mothermodel.atomic import (
    OLD_PREFIX,
    TMP_PREFIX,
    file_entries,
    seal_folder,
    sha256_file,
    temp_folder,
    write_manifest,
)
from mothermodel.distill.run_bundle import BundleError, verify as verify_files
from mothermodel.errors import UserError
from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.db import fault_point

__all__ = ["FORMAT", "FORMAT_VERSION", "write", "verify", "copy_to", "remove_leftovers", "size_bytes", "export"]

FORMAT = "mothermodel-bundle"
FORMAT_VERSION = 1


def write(final: Path, build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build a bundle into a temporary folder with `build(tmp)` and rename it onto `final`.

    `build` writes model.onnx, tokenizer.json and labels.json into `tmp` and
    returns the manifest's other fields. Returns the manifest.
    """
    with temp_folder(final) as tmp:
        fields = build(tmp)
        files = file_entries(tmp)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields, "files": files}
        write_manifest(tmp, manifest)
        fault_point("distill_bundle")  # kill tests: every file written, the folder not yet renamed
        seal_folder(tmp, final)
    return manifest


def verify(folder: Path) -> dict[str, Any]:
    """The bundle's manifest after checking every file's sha256; UserError naming the file otherwise."""
    try:
        return verify_files(folder)
    except BundleError as e:
        raise UserError(str(e)) from None


def size_bytes(manifest: dict[str, Any]) -> int:
    return int(sum(f["bytes"] for f in manifest["files"].values()))


def _check_replaceable(out: Path) -> None:
    """UserError unless `out` is absent, an empty folder, or an earlier bundle and nothing else.

    Replacing a folder deletes it whole, so only one this command could have written qualifies: its
    manifest is a mothermodel bundle's and it holds exactly the files that manifest lists (a file of
    the user's beside them, say a copy of run_bundle.py, makes it the user's folder).
    """
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink() or not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder; choose another (nothing was written)")
    names = {p.name for p in out.iterdir()}
    if not names:
        return
    why = None
    try:
        m = json.loads((out / "manifest.json").read_text())
        listed = set(m["files"]) | {"manifest.json"} if isinstance(m, dict) and m.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, TypeError):
        listed = None
    if listed is None:
        why = "is not an empty folder or an earlier mothermodel bundle"
    elif names - listed:
        why = f"holds files that are not the earlier bundle's ({', '.join(sorted(names - listed)[:3])})"
    elif any(not (out / n).is_file() or (out / n).is_symlink() for n in names):
        why = "holds something other than the earlier bundle's files"
    if why:
        raise UserError(f"--out: {out} {why}; choose another folder (nothing was written or removed)")


def copy_to(src: Path, out: Path) -> dict[str, Any]:
    """Copy the verified bundle `src` to `out` atomically; `out` must be absent, empty, or a bundle."""
    manifest = verify(src)
    _check_replaceable(out)
    with temp_folder(out) as tmp:
        for name in [*manifest["files"], "manifest.json"]:
            shutil.copyfile(src / name, tmp / name)
        verify(tmp)  # what was copied is what the manifest records
        if out.exists() and not any(out.iterdir()):
            out.rmdir()
        seal_folder(tmp, out)
    return manifest


def remove_leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Delete a killed run's leftovers in `folder`: ``.tmp-*`` folders and bundles no deployable records.

    `keep`: names of the bundle folders the registry records. Returns what was removed.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for p in sorted(folder.iterdir()):
        if p.is_dir() and (p.name.startswith((TMP_PREFIX, OLD_PREFIX)) or p.name not in keep):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed


def export(store: AbstractStore, task: str, out: str | Path, fmt: str = "onnx") -> dict[str, Any]:
    """`export TASK`: copy TASK's latest deployable bundle to OUT (hash-checked, atomically). Here, not in
    distill/run.py, so that `mothermodel export` imports no torch or MLflow."""
    if fmt != "onnx":
        raise UserError(f"--format: {fmt!r} is not supported (onnx)")
    store.task(task)
    rec = store.latest_deployable(task)
    if rec is None:
        raise UserError(f"TASK: {task} has no deployable yet; run `mothermodel distill {task}`")
    src = store.ws.home / rec.path
    if not (src / "manifest.json").is_file() or sha256_file(src / "manifest.json") != rec.content_hash:
        raise UserError(f"TASK: deployable {task} v{rec.version} at {src} is missing or its manifest differs from "
                        f"what the registry recorded; run `mothermodel distill {task}` again")
    manifest = copy_to(src, Path(out))
    st = store.staleness([task])[task]["deployable"]
    return {"task": task, "out": str(Path(out).resolve()), "format": fmt, "deployable_version": rec.version,
            "model_version": rec.model_version, "student": rec.student, "registered_version": rec.mlflow_model_version,
            "files": sorted([*manifest["files"], "manifest.json"]), "metrics": manifest["metrics"],
            "onnx_check": manifest["onnx_check"], "stale": st.stale, "stale_reason": st.reason}
