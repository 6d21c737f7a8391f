"""Checkpoints and saved models: safetensors + a JSON manifest of hashes, written atomically.

A checkpoint is a folder::

    manifest.json            structure, step, config, metadata, sha256 + size of every other file
    model.safetensors        encoder.* and heads.* weights
    optimizer.safetensors    AdamW moments and step counts, by parameter name (training checkpoints)
    encoder/config.json      the encoder's architecture
    encoder/tokenizer*.json  the tokenizer (plus vocab files it uses)

Writing (mothermodel/atomic.py's sealed folder): every file goes into a
temporary folder beside the target, every file and folder is fsync'ed, then the
folder is renamed onto its final name in one ``rename`` and the parent folder
fsync'ed. A reader sees a complete checkpoint or none; a process killed
mid-write leaves only a ``.tmp-*`` folder, which readers ignore and the next
writer removes.

Reading: :func:`verify` re-hashes every file against the manifest and raises
:class:`~mothermodel.errors.IntegrityError` on any difference, and weights are
parsed from the very bytes that were hashed. Nothing is unpickled: tensors come
from safetensors, everything else from JSON. The learning-rate schedule and
dropout randomness are functions of the step (loop.py), so no scheduler or RNG
state needs saving.

Training runs write ``<root>/step-<8 digits>/`` checkpoints (:class:`CheckpointDir`);
a finished model is saved the same way under any new folder name (:func:`save`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mothermodel.atomic import (OLD_PREFIX, TMP_PREFIX, ListedFileError, file_entry, read_listed, seal_folder,
                                sha256_file, temp_folder, write_entry, write_manifest)
from mothermodel.errors import IntegrityError
from mothermodel.registry.db import fault_point
from mothermodel.trainer.encoder import encoder_from_config, offline_mode
from mothermodel.trainer.model import MotherModel

__all__ = ["FORMAT", "save", "verify", "verify_recorded", "read_manifest", "load_model", "load_weights",
           "load_optimizer", "optimizer_tensors", "CheckpointDir"]

FORMAT = "mothermodel-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def _fault_point(name: str) -> None:
    # Test hook shared with the registry (MOTHERMODEL_FAULT=name:MARKER): costs one lookup otherwise.
    if os.environ.get("MOTHERMODEL_FAULT", "").split(":", 1)[0] == name:
        fault_point(name)


def _state_tensors(model: Any) -> dict[str, Any]:
    """The model's tensors, contiguous, on CPU, with no storage shared between two names."""
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            t = t.clone()  # tied weights: safetensors stores each storage once
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def optimizer_tensors(optimizer: Any, param_names: Sequence[str]) -> dict[str, Any]:
    """An optimizer's per-parameter state as named tensors (``<param>::<state key>``).

    `param_names` lists the parameter names in the order of
    ``[p for g in optimizer.param_groups for p in g["params"]]``.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if len(params) != len(param_names):
        raise ValueError(f"{len(param_names)} parameter names for {len(params)} optimizer parameters")
    out: dict[str, Any] = {}
    for p, name in zip(params, param_names):
        for key, val in optimizer.state.get(p, {}).items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(float(val))
            out[f"{name}::{key}"] = t.detach().to("cpu").contiguous().clone()
    return out


def save(folder: str | os.PathLike, model: Any, tokenizer: Any = None, *, step: int = 0,
         optimizer: Any = None, param_names: Optional[Sequence[str]] = None, config: Optional[dict] = None,
         meta: Optional[dict] = None, replace: bool = False) -> Path:
    """Write `model` (a MotherModel) as the checkpoint folder `folder`, atomically.

    Args:
        folder: the checkpoint's final path. Must not exist unless `replace`
            (then the old folder is moved aside and removed after the swap).
        tokenizer: saved under ``encoder/`` (None: none saved).
        step: optimizer steps taken.
        optimizer, param_names: also save the optimizer's state (see :func:`optimizer_tensors`).
        config: the TrainConfig as a dict (recorded in the manifest).
        meta: any JSON-ready metadata (the registry glue's fingerprints, label versions, run id...).
    """
    folder = Path(folder)
    if folder.exists() and not replace:
        raise FileExistsError(f"checkpoint {folder} exists")
    with temp_folder(folder) as tmp:
        files: dict[str, Any] = {}
        files["model.safetensors"] = write_entry(tmp / "model.safetensors", st_save(_state_tensors(model)))
        _fault_point("checkpoint_write")
        if optimizer is not None:
            files["optimizer.safetensors"] = write_entry(
                tmp / "optimizer.safetensors", st_save(optimizer_tensors(optimizer, param_names or [])))
        enc_dir = tmp / "encoder"
        enc_dir.mkdir()
        model.encoder.config.save_pretrained(str(enc_dir))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(enc_dir))
        for p in sorted(enc_dir.rglob("*")):
            if p.is_file():
                files[p.relative_to(tmp).as_posix()] = file_entry(p)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "step": int(step),
            "model": model.describe(),
            "config": config,
            "meta": meta or {},
            "files": files,
        }
        write_manifest(tmp, manifest)
        seal_folder(tmp, folder)
    return folder


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest, checked for format (not yet the file hashes: see :func:`verify`)."""
    p = Path(folder) / MANIFEST
    if not p.is_file():
        raise IntegrityError(f"checkpoint {folder}: no {MANIFEST} (incomplete or not a checkpoint)")
    try:
        m = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"checkpoint {folder}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        raise IntegrityError(f"checkpoint {folder}: {MANIFEST} is not a {FORMAT} manifest")
    if m.get("format_version", 0) > FORMAT_VERSION:
        raise IntegrityError(f"checkpoint {folder}: format version {m['format_version']} is newer than this "
                             f"mothermodel reads ({FORMAT_VERSION})")
    return m


def _read_checked(folder: Path, name: str, manifest: dict[str, Any]) -> bytes:
    entry = manifest["files"].get(name)
    if entry is None:
        raise IntegrityError(f"checkpoint {folder}: {name} is not in the manifest")
    try:
        return read_listed(folder, name, entry)
    except ListedFileError as e:
        if e.problem == "missing":
            raise IntegrityError(f"checkpoint {folder}: {name} is missing") from None
        if e.problem == "name":
            raise IntegrityError(f"checkpoint {folder}: {MANIFEST} lists {name!r}, not a path inside the "
                                 "checkpoint; refusing to load it") from None
        raise IntegrityError(f"checkpoint {folder}: {name} has sha256 {str(e.got)[:12]}..., the manifest records "
                             f"{str(entry.get('sha256'))[:12]}...: the file is corrupted; refusing to load it"
                             ) from None


def verify(folder: str | os.PathLike) -> dict[str, Any]:
    """Check every file of a checkpoint against its manifest; return the manifest.

    Raises IntegrityError naming the first file that is missing or differs.
    """
    folder = Path(folder)
    m = read_manifest(folder)
    for name in m["files"]:
        _read_checked(folder, name, m)
    return m


def verify_recorded(folder: str | os.PathLike, manifest_sha256: Optional[str]) -> dict[str, Any]:
    """`verify`, and the manifest is the one the registry recorded for this model (its sha256).

    A checkpoint whose files and manifest were replaced together passes `verify`
    alone; the recorded hash catches that too. Callers run this before they write
    anything (a run folder, an MLflow run), so a corrupted model changes nothing.
    `manifest_sha256` None (a record without a hash): `verify` only.
    """
    folder = Path(folder)
    read_manifest(folder)
    got = sha256_file(folder / MANIFEST)
    if manifest_sha256 is not None and got != manifest_sha256:
        raise IntegrityError(f"checkpoint {folder}: {MANIFEST} has sha256 {got[:12]}..., the registry records "
                             f"{manifest_sha256[:12]}...: the file was changed; refusing to load it")
    return verify(folder)


def load_weights(folder: str | os.PathLike, manifest: Optional[dict] = None, name: str = "model.safetensors"
                 ) -> dict[str, Any]:
    """A checkpoint's tensors (hash-checked, parsed from the checked bytes; no pickle)."""
    folder = Path(folder)
    m = manifest or read_manifest(folder)
    return st_load(_read_checked(folder, name, m))


def load_model(folder: str | os.PathLike, *, device: Any = "cpu", attn_implementation: Optional[str] = "sdpa",
               verify_all: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild (MotherModel, tokenizer, manifest) from a checkpoint folder.

    Every file is hash-checked first (`verify_all`); the tokenizer comes from
    ``encoder/`` (None when the checkpoint has none).
    """
    folder = Path(folder)
    m = verify(folder) if verify_all else read_manifest(folder)
    cfg = json.loads(_read_checked(folder, "encoder/config.json", m))
    encoder = encoder_from_config(cfg, attn_implementation=attn_implementation)
    model = MotherModel.from_description(encoder, m["model"])
    state = load_weights(folder, m)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise IntegrityError(f"checkpoint {folder}: weights do not fit the recorded structure "
                             f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    model.to(torch.device(device) if isinstance(device, str) else device)
    tokenizer = None
    if any(k.startswith("encoder/tokenizer") for k in m["files"]):
        offline_mode()
        from transformers import AutoTokenizer  # lazy: transformers reads the switches offline_mode() sets on import

        tokenizer = AutoTokenizer.from_pretrained(str(folder / "encoder"), local_files_only=True)
    return model, tokenizer, m


def load_optimizer(folder: str | os.PathLike, optimizer: Any, param_names: Sequence[str],
                   manifest: Optional[dict] = None) -> None:
    """Restore an optimizer's per-parameter state saved by :func:`save` (same parameter names)."""
    folder = Path(folder)
    m = manifest or read_manifest(folder)
    if "optimizer.safetensors" not in m["files"]:
        raise IntegrityError(f"checkpoint {folder} has no optimizer state (a saved model, not a training checkpoint)")
    tensors = load_weights(folder, m, "optimizer.safetensors")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    by_name = dict(zip(param_names, params))
    state: dict[Any, dict[str, Any]] = {}
    for key, t in tensors.items():
        pname, skey = key.rsplit("::", 1)
        p = by_name.get(pname)
        if p is None:
            raise IntegrityError(f"checkpoint {folder}: optimizer state for unknown parameter {pname!r}")
        state.setdefault(p, {})[skey] = t if skey == "step" else t.to(p.device)
    optimizer.state.clear()
    for p, s in state.items():
        optimizer.state[p] = s


@dataclass
class CheckpointDir:
    """A training run's checkpoints: ``<root>/step-<8 digits>/``, the newest `keep` kept."""

    root: Path
    keep: int = 2

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def all(self) -> list[Path]:
        """Complete checkpoints (by name; hashes are checked on load), oldest first."""
        if not self.root.is_dir():
            return []
        out = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit()]
        return sorted(out, key=lambda p: int(p.name[5:]))

    def latest(self) -> Optional[Path]:
        a = self.all()
        return a[-1] if a else None

    def path(self, step: int) -> Path:
        return self.root / f"step-{int(step):08d}"

    def write(self, step: int, model: Any, tokenizer: Any, **kw: Any) -> Path:
        """Save step `step` (no-op if it exists), then drop leftovers and all but the newest `keep`."""
        target = self.path(step)
        if not target.exists():
            save(target, model, tokenizer, step=step, **kw)
        for p in self.root.iterdir():
            if p.name.startswith((TMP_PREFIX, OLD_PREFIX)) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)  # a killed writer's leftovers
        for old in self.all()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target
