"""Atomic writes, sealed folders and hashed manifests: one implementation for every layer.

Standard library only, so registry/, labeling/, trainer/ and distill/ (and the CLI) share it
without importing each other (docs/architecture.md: a base module, like errors.py).

- A file: written to a temporary file beside its target (or in a folder on the same
  filesystem), fsync'ed, given the mode a plain ``open()`` would give it (``mkstemp``
  makes 0600 files), renamed onto its name in one ``os.replace``, the folder fsync'ed
  (:func:`write_bytes_atomic`, :func:`write_text_atomic`, :func:`atomic_path`, :func:`publish`).
- A folder (a checkpoint, an export bundle): built in a ``.tmp-*`` folder beside its target,
  then :func:`seal_folder` fsyncs every file and folder in it and renames it onto its name,
  moving an old folder there aside (``.old-*``) and removing it after the swap. A reader sees
  the old folder or the new one; a killed writer leaves only ``.tmp-*``/``.old-*`` folders
  (their owners remove them; ``mothermodel verify`` reports them).
- A manifest: ``{name: {"sha256": ..., "bytes": ...}}`` for a folder's files (:func:`file_entries`),
  written as ``json.dumps(indent=2, sort_keys=True)`` (:func:`write_manifest`: the byte format the
  registry's recorded manifest hashes depend on), and checked file by file (:func:`read_listed`,
  :func:`check_listed`, raising :class:`ListedFileError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Optional

__all__ = ["MANIFEST", "TMP_PREFIX", "OLD_PREFIX", "umask_mode", "fsync_dir", "sha256_file", "temp_file", "publish", "atomic_path",
           "write_bytes_atomic", "write_text_atomic", "temp_folder", "seal_folder", "write_entry", "file_entry",
           "file_entries", "write_manifest", "ListedFileError", "read_listed", "check_listed"]

MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def _umask() -> int:
    um = os.umask(0)
    os.umask(um)
    return um


def umask_mode(folder: bool = False) -> int:
    """The mode a plain open() (or mkdir(), `folder`) would give a new file: mkstemp/mkdtemp make 0600/0700."""
    return (0o777 if folder else 0o666) & ~_umask()


def fsync_dir(path: Path) -> None:
    """fsync a folder, so a rename inside it survives a power cut (best effort: some filesystems refuse)."""
    try:
        _fsync(path)
    except OSError:
        pass


def _fsync_file(path: Path) -> None:
    _fsync(path)  # a file that cannot be opened is an error; one that cannot be synced is not


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def temp_file(folder: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """A new empty temporary file in `folder` (created), for :func:`publish` to rename later."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: Path) -> None:
    """Make the finished temporary file `tmp` the file `path`: fsync, plain-open mode, rename, fsync the folder.

    `tmp` must be on `path`'s filesystem (beside it, or the workspace's tmp/), so the rename is atomic.
    """
    _fsync_file(tmp)
    os.chmod(tmp, umask_mode())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextmanager
def atomic_path(path: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` to write to (with any writer: pyarrow, matplotlib...); on a clean exit it
    becomes `path` (:func:`publish`), on an error it is removed and `path` is untouched.

    `suffix`: the temporary name's ending, for writers that choose a format by it (``.png``).
    """
    path = Path(path)
    tmp = temp_file(path.parent, f".{path.name}.", suffix)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


@contextmanager
def temp_folder(final: Path) -> Iterator[Path]:
    """A new ``.tmp-<name>-*`` folder beside `final` to build a folder in; removed if the block raises.

    Hand it to :func:`seal_folder` inside the block.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def seal_folder(tmp: Path, final: Path) -> Path:
    """fsync every file and folder in `tmp`, then rename it onto `final` in one rename (an old `final` is moved
    aside first and removed after the swap), and fsync the parent. Returns `final`."""
    for p in sorted(tmp.rglob("*"), reverse=True):  # files before the folders that hold them
        if p.is_symlink():
            continue
        if p.is_dir():
            fsync_dir(p)
        else:
            _fsync_file(p)
    fsync_dir(tmp)
    os.chmod(tmp, umask_mode(folder=True))  # mkdtemp's 0700 is not what a plain mkdir gives
    if final.exists():
        old = final.parent / f"{OLD_PREFIX}{final.name}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_dir(final.parent)
    return final


def _entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def write_entry(path: Path, data: bytes) -> dict[str, Any]:
    """Write `data` to `path` inside a folder being built (sealing syncs it); its manifest entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return _entry(data)


def file_entry(path: Path) -> dict[str, Any]:
    """The manifest entry of an existing file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def file_entries(folder: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> dict[str, dict[str, Any]]:
    """Manifest entries of every file under `folder`, by path relative to it (``encoder/config.json``)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        name = p.relative_to(folder).as_posix()
        if p.is_file() and name not in exclude:
            out[name] = file_entry(p)
    return out


def write_manifest(folder: Path, manifest: dict[str, Any], name: str = MANIFEST) -> None:
    """Write `manifest` into a folder being built, in the one byte format recorded manifest hashes depend on."""
    (folder / name).write_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode())


class ListedFileError(ValueError):
    """A file a manifest lists is not as listed: `problem` is ``name`` (not a path inside the folder),
    ``missing`` or ``corrupted`` (`got`: the file's sha256)."""

    def __init__(self, name: str, problem: str, got: Optional[str] = None):
        super().__init__(f"{name}: {problem}")
        self.name, self.problem, self.got = name, problem, got


def _inside(name: Any, flat: bool) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    if flat:
        return "/" not in name and name not in (".", "..")
    parts = PurePosixPath(name).parts
    return not PurePosixPath(name).is_absolute() and ".." not in parts


def read_listed(folder: Path, name: str, entry: dict[str, Any], *, flat: bool = False) -> bytes:
    """The bytes of ``folder/name``, checked against its manifest `entry` (sha256, and size when listed).

    The bytes returned are the ones hashed, so a caller parses exactly what was checked.
    `flat`: names must be plain file names (a bundle); else relative paths inside `folder`.
    """
    if not _inside(name, flat):
        raise ListedFileError(name, "name")
    try:
        data = (Path(folder) / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ListedFileError(name, "missing") from None
    got = hashlib.sha256(data).hexdigest()
    if got != entry.get("sha256") or ("bytes" in entry and len(data) != entry["bytes"]):
        raise ListedFileError(name, "corrupted", got)
    return data


def check_listed(folder: Path, name: str, entry: dict[str, Any], *, flat: bool = False,
                 sha256: Callable[[Path], str] = sha256_file) -> None:
    """:func:`read_listed` without holding the file in memory (`sha256`: a caching hasher, say)."""
    if not _inside(name, flat):
        raise ListedFileError(name, "name")
    p = Path(folder) / name
    if not p.is_file():
        raise ListedFileError(name, "missing")
    if "bytes" in entry and p.stat().st_size != entry["bytes"]:
        raise ListedFileError(name, "corrupted")
    got = sha256(p)
    if got != entry.get("sha256"):
        raise ListedFileError(name, "corrupted", got)
