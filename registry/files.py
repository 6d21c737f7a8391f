"""Atomic file writes: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes 0600 files)."""
    um = os.umask(0)
    os.umask(um)
    return 0o666 & ~um


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_parquet_addressed(table, folder: Path, prefix: str, tmp_dir: Path) -> tuple[Path, str]:
    """Write `table` to `folder/<prefix>-<hash16>.parquet`, named by its content hash.

    Written to `tmp_dir` (same filesystem) and renamed: a killed process leaves
    at most a `.tmp` file behind, never a half-written Parquet under its final name.
    """
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".parquet.tmp", dir=tmp_dir)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        digest = sha256_file(Path(tmp))
        final = folder / f"{prefix}-{digest[:16]}.parquet"
        os.chmod(tmp, umask_mode())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final, digest


def read_parquet_checked(home: Path, rel_path: str, expected_hash: str):
    """Read a Parquet file the registry recorded, refusing it when its bytes no longer match the hash."""
    import pyarrow.parquet as pq

    from mothermodel.errors import IntegrityError

    path = Path(home) / rel_path
    if not path.is_file():
        raise IntegrityError(f"{path}: recorded in the registry but missing "
                             "(restore it with `dvc checkout` or re-run label apply)")
    found = sha256_file(path)
    if found != expected_hash:
        raise IntegrityError(
            f"{path}: content hash mismatch (recorded {expected_hash[:12]}, found {found[:12]}): "
            "the file changed outside mothermodel; restore it with `dvc checkout` or re-run with --force"
        )
    return pq.read_table(path)
