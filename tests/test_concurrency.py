"""Concurrent CLI processes and a real kill in the middle of a write."""

import json
import subprocess
import sys
import time

import pytest
from conftest import SHARED_DATA, cli_exe, kill_at_fault, run_proc, snapshot, write_spec


def test_16_concurrent_submits_while_a_reader_loops(ws, tmp_path):
    specs = [write_spec(tmp_path / f"t{i}.py", name=f"task_{i:02d}", sources="Column('lf_a')") for i in range(16)]
    stop, reading = tmp_path / "stop", tmp_path / "reading"
    # The reader: task list in a loop, in its own process, until told to stop; it marks its first read.
    reader_code = (
        "import json, os, subprocess, sys\n"
        f"exe, ws, stop, reading = {cli_exe()!r}, {str(ws)!r}, {str(stop)!r}, {str(reading)!r}\n"
        "n = fails = 0\n"
        "while not os.path.exists(stop):\n"
        "    p = subprocess.run(exe + ['-w', ws, 'task', 'list', '--json'], capture_output=True, text=True)\n"
        "    n += 1\n"
        "    if p.returncode != 0:\n"
        "        fails += 1; sys.stderr.write(p.stderr)\n"
        "    else:\n"
        "        json.loads(p.stdout)\n"
        "    open(reading, 'a').close()\n"
        "print(json.dumps({'reads': n, 'fails': fails}))\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", reader_code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the writers start once the reader is reading (its first read done), not after a guessed delay
    deadline = time.monotonic() + 60
    while not reading.exists():
        assert reader.poll() is None, reader.communicate()
        assert time.monotonic() < deadline, "the reader never finished a read"
        time.sleep(0.02)
    procs = [subprocess.Popen(cli_exe() + ["-w", str(ws), "task", "submit", str(s)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in specs]
    results = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    stop.write_text("")
    out, err = reader.communicate(timeout=60)
    assert all(code == 0 for code, _ in results), results
    stats = json.loads(out)
    assert stats["fails"] == 0 and stats["reads"] >= 1, (stats, err)
    p = run_proc("task", "list", "--json", ws=ws)
    names = sorted(t["name"] for t in json.loads(p.stdout))
    assert names == [f"task_{i:02d}" for i in range(16)]


def test_kill_during_submit_leaves_registry_as_before(ws, tmp_path):
    spec = write_spec(tmp_path / "a.py", name="a")
    assert run_proc("task", "submit", spec, ws=ws).returncode == 0
    before = snapshot(ws)
    write_spec(spec, name="a", lf_body="0")  # a change: the killed replace would bump versions
    kill_at_fault(["task", "submit", spec, "--replace"], ws, tmp_path / "in_txn")
    assert snapshot(ws) == before
    # The registry still works for readers and writers afterwards.
    assert run_proc("task", "submit", spec, "--replace", ws=ws).returncode == 0
    assert json.loads(run_proc("task", "show", "a", "--json", ws=ws).stdout)["version"] == 2


@pytest.mark.skipif(not (SHARED_DATA / "youtube").is_dir(), reason="../shared/data absent")
def test_kill_during_wrench_import(ws, tmp_path):
    before = snapshot(ws)
    kill_at_fault(["import", "wrench", SHARED_DATA / "youtube", "--task", "spam"], ws, tmp_path / "in_txn")
    assert snapshot(ws) == before
    p = run_proc("task", "list", "--json", ws=ws)
    assert p.returncode == 0 and json.loads(p.stdout) == []
    # No half-written files: only complete, content-addressed Parquet in data/.
    assert not any(f.name.endswith(".tmp") for f in (ws / ".mothermodel" / "data").iterdir())
    assert run_proc("import", "wrench", SHARED_DATA / "youtube", "--task", "spam", ws=ws).returncode == 0
