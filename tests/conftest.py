import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def cli_exe() -> list[str]:
    """The installed console script, next to this interpreter."""
    exe = Path(sys.executable).parent / "mothermodel"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mothermodel.cli"]


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


def run_cli(*args, ws=None) -> Result:
    """Run the CLI in-process (fast), as `mothermodel [-w ws] args...`."""
    from mothermodel.cli import main

    argv = (["-w", str(ws)] if ws else []) + [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(*args, ws=None, env=None, **kw) -> subprocess.CompletedProcess:
    argv = cli_exe() + (["-w", str(ws)] if ws else []) + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


def kill_at_fault(args, ws, marker: Path, point: str = "before_commit", timeout: float = 60, env=None) -> None:
    """Start `mothermodel -w ws args...`, wait until it hangs at fault point `point` (registry/db.py
    `fault_point`; before_commit: inside its write transaction), and SIGKILL it."""
    import signal
    import time

    import tempfile

    env = {**os.environ, **(env or {}), "MOTHERMODEL_FAULT": f"{point}:{marker}"}
    # stderr to a file, not a pipe: a chatty command must not block on a full pipe before the fault point
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cli_exe() + ["-w", str(ws), *map(str, args)], env=env,
                             stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + timeout
            while not Path(marker).exists():
                if p.poll() is not None:
                    err.seek(0)
                    raise AssertionError(f"exited {p.returncode} first: {err.read().decode()[-2000:]}")
                assert time.time() < deadline, f"never reached the fault point {point}"
                time.sleep(0.05)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == -signal.SIGKILL


def snapshot(ws) -> dict:
    """Every registry table's rows, for 'nothing changed' assertions."""
    import duckdb

    con = duckdb.connect(str(Path(ws) / ".mothermodel" / "registry.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
    finally:
        con.close()


@pytest.fixture
def ws(tmp_path):
    """A workspace with dataset `docs` (text, split, lf_a, lf_b columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(
        pa.table({
            "text": ["buy now http://x", "hello friend", "win money", "see you"],
            "split": ["train", "train", "valid", "test"],
            "lf_a": pa.array([1, -1, 1, 0], pa.int8()),
            "lf_b": pa.array([-1, 0, 1, -1], pa.int8()),
        }),
        tmp_path / "docs.parquet",
    )
    r = run_cli("dataset", "add", "docs", tmp_path / "docs.parquet", ws=root)
    assert r.code == 0, r
    return root


def write_spec(path: Path, name="spam", classes=("HAM", "SPAM"), parent=None, sources="", lf_body='1 if "http" in x.text else ABSTAIN', extra_lfs="", dataset="docs") -> Path:
    path.write_text(
        "from mothermodel import ABSTAIN, Column, Task, TaskOutput, labeling_function\n"
        f"task = Task(name={name!r}, dataset={dataset!r}, classes={list(classes)!r}, parent={parent!r}, sources=[{sources}])\n"
        "@labeling_function()\n"
        "def has_link(x):\n"
        f"    return {lf_body}\n"
        "@labeling_function()\n"
        "def says_money(x):\n"
        "    return 1 if 'money' in x.text else ABSTAIN\n"
        f"{extra_lfs}"
    )
    return path
