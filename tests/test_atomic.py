"""mothermodel/atomic.py: the one implementation of atomic writes, sealed folders and hashed manifests."""

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from mothermodel import atomic


def _umask() -> int:
    um = os.umask(0)
    os.umask(um)
    return um


def test_write_atomic_gives_plain_open_mode_and_leaves_no_temp(tmp_path):
    p = tmp_path / "sub" / "a.txt"
    atomic.write_text_atomic(p, "one")
    atomic.write_text_atomic(p, "two")
    assert p.read_text() == "two"
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~_umask()  # not mkstemp's 0600
    assert [q.name for q in p.parent.iterdir()] == ["a.txt"]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(p) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["t.csv"]


def test_seal_folder_swaps_an_old_folder_out(tmp_path):
    final = tmp_path / "bundle"
    for text in ("first", "second"):
        with atomic.temp_folder(final) as tmp:
            assert tmp.name.startswith(".tmp-bundle-")
            atomic.write_entry(tmp / "sub" / "x.bin", text.encode())
            atomic.seal_folder(tmp, final)
    assert (final / "sub" / "x.bin").read_text() == "second"
    assert [q.name for q in tmp_path.iterdir()] == ["bundle"]  # no .tmp-* or .old-* left
    assert stat.S_IMODE(final.stat().st_mode) == 0o777 & ~_umask()


def test_temp_folder_is_removed_when_building_fails(tmp_path):
    with pytest.raises(ValueError):
        with atomic.temp_folder(tmp_path / "ckpt") as tmp:
            (tmp / "a").write_text("x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_manifest_format_is_byte_stable(tmp_path):
    """The registry records the sha256 of manifest.json: its bytes must not change with this module."""
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_bytes(b"{}")
    (tmp_path / "model.bin").write_bytes(b"abc")
    files = atomic.file_entries(tmp_path)
    assert files == {"enc/config.json": {"sha256": hashlib.sha256(b"{}").hexdigest(), "bytes": 2},
                     "model.bin": {"sha256": hashlib.sha256(b"abc").hexdigest(), "bytes": 3}}
    m = {"format": "x", "files": files}
    atomic.write_manifest(tmp_path, m)
    assert (tmp_path / "manifest.json").read_bytes() == json.dumps(m, indent=2, sort_keys=True).encode()
    assert atomic.file_entries(tmp_path) == files  # the manifest is not listed in itself


@pytest.mark.parametrize("flat, name, problem", [
    (False, "model.bin", None), (False, "enc/config.json", None), (True, "enc/config.json", "name"),
    (False, "../model.bin", "name"), (False, "/etc/passwd", "name"), (False, "gone.bin", "missing"),
])
def test_listed_files_checked(tmp_path, flat, name, problem):
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "config.json").write_bytes(b"abc")
    (tmp_path / "model.bin").write_bytes(b"abc")
    entry = {"sha256": hashlib.sha256(b"abc").hexdigest(), "bytes": 3}
    for check in (lambda: atomic.read_listed(tmp_path, name, entry, flat=flat),
                  lambda: atomic.check_listed(tmp_path, name, entry, flat=flat)):
        if problem is None:
            check()
        else:
            with pytest.raises(atomic.ListedFileError) as e:
                check()
            assert e.value.problem == problem and e.value.name == name


def test_listed_file_corrupted(tmp_path):
    (tmp_path / "m").write_bytes(b"abd")
    entry = {"sha256": hashlib.sha256(b"abc").hexdigest(), "bytes": 3}
    with pytest.raises(atomic.ListedFileError) as e:
        atomic.read_listed(tmp_path, "m", entry)
    assert e.value.problem == "corrupted" and e.value.got == hashlib.sha256(b"abd").hexdigest()
    with pytest.raises(atomic.ListedFileError, match="corrupted"):
        atomic.check_listed(tmp_path, "m", entry)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_predict_out_file_gets_plain_open_mode(tmp_path, suffix):
    """`predict --out` wrote through mkstemp and left its 0600 mode on the user's file (and did not fsync)."""
    import pyarrow as pa

    from mothermodel.cli import _write_table

    out = tmp_path / "out" / f"preds{suffix}"
    _write_table(pa.table({"row": [0, 1], "pred": [1, 0]}), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~_umask()
    assert [q.name for q in out.parent.iterdir()] == [out.name]


def test_checkpoint_manifest_hash_unchanged_for_recorded_folders(tmp_path):
    """A folder written before this module still verifies: the checkpoint reader checks the same fields."""
    from mothermodel.errors import IntegrityError
    from mothermodel.trainer import checkpoint as ckpt

    folder = tmp_path / "step-00000001"
    (folder / "encoder").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "encoder" / "config.json").write_bytes(b"{}")
    files = {"model.safetensors": {"sha256": hashlib.sha256(b"weights").hexdigest(), "bytes": 7},
             "encoder/config.json": {"sha256": hashlib.sha256(b"{}").hexdigest(), "bytes": 2}}
    m = {"format": ckpt.FORMAT, "format_version": 1, "files": files}
    text = json.dumps(m, indent=2, sort_keys=True).encode()  # checkpoint.save's bytes before atomic.py
    (folder / "manifest.json").write_bytes(text)
    assert ckpt.verify_recorded(folder, hashlib.sha256(text).hexdigest())["files"] == files
    (folder / "model.safetensors").write_bytes(b"weightz")
    with pytest.raises(IntegrityError, match="model.safetensors has sha256"):
        ckpt.verify(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(IntegrityError, match="model.safetensors is missing"):
        ckpt.verify(folder)


def test_atomic_is_a_base_module():
    """Every layer imports it, so it imports nothing of mothermodel and nothing outside the standard library;
    trainer and distill take generic file services from it, not from the registry."""
    import ast
    import sys

    from conftest import REPO

    tree = ast.parse((REPO / "mothermodel" / "atomic.py").read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert {m.split(".")[0] for m in mods} - set(sys.stdlib_module_names) <= {"__future__"}
    for layer in ("trainer", "distill"):
        for path in (REPO / layer).rglob("*.py"):
            assert "mothermodel.registry.files" not in path.read_text(), path
