"""The registry's content-addressed files: Parquet named by its hash, and reads checked against recorded hashes.

Atomic writes and hashing are generic: mothermodel/atomic.py (every layer imports them from there).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from mothermodel.atomic import publish, sha256_file, temp_file
from mothermodel.errors import IntegrityError

__all__ = ["write_parquet_addressed", "read_parquet_checked"]


def write_parquet_addressed(table, folder: Path, prefix: str, tmp_dir: Path) -> tuple[Path, str]:
    """Write `table` to `folder/<prefix>-<hash16>.parquet`, named by its content hash.

    Written to `tmp_dir` (same filesystem) and renamed: a killed process leaves
    at most a `.tmp` file behind, never a half-written Parquet under its final name.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_file(tmp_dir, f"{prefix}-", ".parquet.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        digest = sha256_file(tmp)
        final = folder / f"{prefix}-{digest[:16]}.parquet"
        publish(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final, digest


def read_parquet_checked(home: Path, rel_path: str, expected_hash: str):
    """Read a Parquet file the registry recorded, refusing it when its bytes no longer match the hash."""
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
