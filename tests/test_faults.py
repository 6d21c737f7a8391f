"""Fault drills (issue 10): kill -9 mid-command then re-run, concurrent writers while `watch` runs,
corrupted files refused by hash, malformed specs and names with path tricks refused before anything
is written, and the LF workers' memory limit.

Drills covered elsewhere, not repeated here:
- kill -9 of `task submit` / `import wrench` inside the write transaction: test_concurrency.py
- kill -9 of `label apply` inside its recording transaction, Ctrl-C while LFs run: test_labeling.py
- kill -9 of `train` mid-run, then --resume: test_train.py; mid-checkpoint-write: test_trainer_checkpoint.py
- kill -9 of `distill` while the bundle is written and after MLflow registration: test_distill.py
- 16 concurrent submits with a reader, and while training: test_concurrency.py, test_train.py
- a tampered label matrix refused by `label analyze`/`label fit`: test_labeling.py; a flipped checkpoint
  byte refused by the checkpoint API: test_trainer_checkpoint.py; a tampered model.onnx refused by
  `export`, the runner and pyfunc: test_distill.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import cli_exe, kill_at_fault, run_cli, run_proc, snapshot, write_spec

from mothermodel.registry.files import sha256_file
from mothermodel.registry.records import NAME_RE, SOURCE_NAME_RE


# --- helpers ---------------------------------------------------------------------------


def assert_consistent(ws) -> None:
    """Every file the registry records is there and matches its recorded hash; every command still reads."""
    import duckdb

    from mothermodel.distill.run_bundle import verify as verify_bundle
    from mothermodel.trainer import checkpoint as ckpt

    home = Path(ws) / ".mothermodel"
    con = duckdb.connect(str(home / "registry.duckdb"), read_only=True)
    try:
        files = con.execute("SELECT path, content_hash FROM datasets UNION ALL SELECT path, content_hash FROM "
                            "label_matrices UNION ALL SELECT path, content_hash FROM prob_labels").fetchall()
        models = con.execute("SELECT path, content_hash FROM models").fetchall()
        bundles = con.execute("SELECT path, content_hash FROM deployables").fetchall()
        orphans = con.execute("SELECT count(*) FROM model_tasks WHERE model_version NOT IN "
                              "(SELECT version FROM models)").fetchone()[0]
    finally:
        con.close()
    for path, digest in files:
        assert sha256_file(home / path) == digest, path
    for path, digest in models:
        assert sha256_file(home / path / "manifest.json") == digest, path
        ckpt.verify(home / path)
    for path, digest in bundles:
        assert sha256_file(home / path / "manifest.json") == digest, path
        verify_bundle(home / path)
    assert orphans == 0
    for cmd in (["status", "--json"], ["task", "list", "--json"], ["dataset", "list", "--json"]):
        r = run_cli(*cmd, ws=ws)
        assert r.code == 0, (cmd, r)
    # `verify` agrees: every recorded file, no orphan, MLflow's versions match the deployables
    r = run_cli("verify", "--json", ws=ws)
    assert r.code == 0 and json.loads(r.out)["problems"] == [], r


def tree(root) -> dict[str, tuple[int, int]]:
    """Every file under `root` with (size, mtime), the registry's own files aside (snapshot() covers those)."""
    out = {}
    for p in Path(root).rglob("*"):
        if p.is_file() and not p.name.startswith("registry.duckdb") and p.name != "registry.lock":
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def children(pid: int) -> list[int]:
    p = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def flip_byte(path: Path) -> bytes:
    """Flip one bit in the middle of `path`; returns the original bytes (to restore)."""
    data = path.read_bytes()
    b = bytearray(data)
    b[len(b) // 2] ^= 0x01
    path.write_bytes(bytes(b))
    return data


# --- 1. kill -9 during label apply (workers running), then re-run --------------------------


SLOW_SPEC = '''
from mothermodel import ABSTAIN, Column, Task, labeling_function
task = Task(name="big", dataset="big", classes=["A", "B"], sources=[Column("weak")])

@labeling_function()
def even(x):
    return 0 if x.n % 2 == 0 else ABSTAIN
'''
SLOW_LF = '''
@labeling_function()
def slow(x):
    import time
    time.sleep(0.002)
    return 1 if x.n % 3 == 0 else ABSTAIN
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker clean-up uses PR_SET_PDEATHSIG (Linux)")
def test_kill_9_during_label_apply_then_rerun(tmp_path):
    """Killed while its worker processes run LFs: the workers die too, the registry and the previous label
    version are as they were, and a re-run records the new version."""
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    n = 6000  # three chunks of 2000 rows: a pool of worker processes
    pq.write_table(pa.table({"n": pa.array(range(n), pa.int64()),
                             "weak": pa.array([i % 2 for i in range(n)], pa.int8())}), tmp_path / "big.parquet")
    assert run_cli("dataset", "add", "big", tmp_path / "big.parquet", "--no-text", ws=root).code == 0
    spec = tmp_path / "big.py"
    spec.write_text(SLOW_SPEC)
    assert run_cli("task", "submit", spec, ws=root).code == 0
    assert run_cli("label", "apply", ws=root).code == 0
    v1 = json.loads(run_cli("label", "log", "big", "--json", ws=root).out)["label_matrices"]
    spec.write_text(SLOW_SPEC + SLOW_LF)
    assert run_cli("task", "submit", spec, "--replace", ws=root).code == 0
    before, files_before = snapshot(root), tree(root / ".mothermodel" / "labels")

    p = subprocess.Popen(cli_exe() + ["-w", str(root), "label", "apply", "-j", "2"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while len(children(p.pid)) < 2:
            assert p.poll() is None, p.communicate()[1].decode()[-2000:]
            assert time.time() < deadline, "the applier never started its workers"
            time.sleep(0.05)
        workers = children(p.pid)
        time.sleep(0.5)  # the workers are inside the LFs
        os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    deadline = time.time() + 10
    while any(alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    orphans = [w for w in workers if alive(w)]
    for w in orphans:  # do not leave them running when the check fails
        os.kill(w, signal.SIGKILL)
    assert not orphans, "orphaned LF workers outlived the killed applier"
    assert snapshot(root) == before
    assert tree(root / ".mothermodel" / "labels") == files_before  # v1's file untouched
    assert_consistent(root)

    r = run_proc("label", "apply", "--json", ws=root)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout)["tasks"][0]
    assert res["status"] == "created" and res["version"] == 2 and res["recomputed"] == ["slow"]
    assert sorted(res["reused"]) == ["even", "weak"] and res["faults"] == []
    log = json.loads(run_cli("label", "log", "big", "--json", ws=root).out)["label_matrices"]
    assert {m["version"] for m in log} == {1, 2}
    assert next(m for m in log if m["version"] == 1) == v1[0]  # nothing recorded before is lost
    assert_consistent(root)


# --- 3. corrupted label-matrix files (the paths test_labeling.py does not cover) -------------


def test_corrupted_label_matrix_is_refused_by_apply_and_diff(ws, tmp_path):
    spec = write_spec(tmp_path / "spam.py", sources="Column('lf_a')")
    assert run_cli("task", "submit", spec, ws=ws).code == 0
    assert run_cli("label", "apply", ws=ws).code == 0
    write_spec(spec, sources="Column('lf_a')", lf_body="0")  # a changed LF: the rerun reuses v1's other entries
    assert run_cli("task", "submit", spec, "--replace", ws=ws).code == 0
    assert run_cli("label", "apply", ws=ws).code == 0
    log = json.loads(run_cli("label", "log", "spam", "--json", ws=ws).out)["label_matrices"]
    v1 = ws / ".mothermodel" / next(m["path"] for m in log if m["version"] == 1)
    flip_byte(v1)
    write_spec(spec, sources="Column('lf_a')", lf_body="1")
    assert run_cli("task", "submit", spec, "--replace", ws=ws).code == 0
    # the latest (v2) is what apply reuses from: corrupt it too, then nothing may be recorded
    v2 = ws / ".mothermodel" / next(m["path"] for m in log if m["version"] == 2)
    flip_byte(v2)
    before, files = snapshot(ws), tree(ws / ".mothermodel")
    for cmd in (["label", "apply"], ["label", "diff", "spam", "1", "2"]):
        r = run_cli(*cmd, ws=ws)
        assert r.code == 1, (cmd, r)
        assert "content hash mismatch" in r.err and ".parquet" in r.err and len(r.err.strip().splitlines()) == 1
        assert snapshot(ws) == before and tree(ws / ".mothermodel") == files


# --- a trained and distilled workspace, for the checkpoint, bundle, watch and train drills -------


@pytest.fixture(scope="module")
def tdws(tmp_path_factory):
    """Task `spam` (dataset `mail`) fit, a tiny mother model v1 trained and an n-gram student distilled."""
    from test_train import TINY, fitted_mail_workspace

    tmp = tmp_path_factory.mktemp("faults")
    root = fitted_mail_workspace(tmp)
    r = run_cli("train", "--encoder", tmp / "enc", "--max-steps", 10, "--batch-size", 16, "--max-length", 16,
                "--self-train-rounds", 0, *TINY, "--json", ws=root)
    assert r.code == 0, r
    r = run_cli("distill", "spam", "--student", "ngram", "--epochs", 1, ws=root)
    assert r.code == 0, r
    return root


def _latest(ws, table: str) -> Path:
    import duckdb

    con = duckdb.connect(str(Path(ws) / ".mothermodel" / "registry.duckdb"), read_only=True)
    try:
        (path,) = con.execute(f"SELECT path FROM {table} ORDER BY version DESC LIMIT 1").fetchone()
    finally:
        con.close()
    return Path(ws) / ".mothermodel" / path


def _mlflow_runs(ws) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{Path(ws) / '.mothermodel' / 'mlflow.db'}")
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


def test_corrupted_checkpoint_is_refused_before_anything_is_written(tdws, tmp_path):
    """predict, train (warm start) and distill refuse a model whose file or manifest changed: exit 1 (an
    IntegrityError, docs/labeling.md and docs/trainer.md), one line naming the file; no run folder, no
    in-progress marker, no MLflow run, no bundle."""
    model = _latest(tdws, "models")
    enc = tdws.parent / "enc"
    cmds = [["predict", "spam", "--split", "test", "--out", tmp_path / "p.parquet"],
            ["train", "--encoder", enc, "--max-steps", 2, "--max-length", 16, "--json"],
            ["distill", "spam", "--student", "ngram", "--epochs", 1]]

    def refused(name: str) -> None:
        before, files, runs = snapshot(tdws), tree(tdws / ".mothermodel"), _mlflow_runs(tdws)
        for cmd in cmds:
            r = run_cli(*cmd, ws=tdws)
            assert r.code == 1, (cmd, r)
            assert name in r.err and str(model) in r.err and len(r.err.strip().splitlines()) == 1, (cmd, r.err)
            assert snapshot(tdws) == before and tree(tdws / ".mothermodel") == files, cmd
            assert _mlflow_runs(tdws) == runs, cmd
        assert not (tmp_path / "p.parquet").exists()

    # One flipped bit in the weights.
    good = flip_byte(model / "model.safetensors")
    try:
        refused("model.safetensors")
    finally:
        (model / "model.safetensors").write_bytes(good)
    # A manifest edited consistently with the files (here: only its metadata) passes the checkpoint's own
    # hashes; the hash the registry recorded catches it.
    manifest = model / "manifest.json"
    good = manifest.read_bytes()
    m = json.loads(good)
    m["step"] = m.get("step", 0) + 1
    manifest.write_text(json.dumps(m))
    try:
        refused("manifest.json")
    finally:
        manifest.write_bytes(good)
    assert run_cli("predict", "spam", "--split", "test", "--json", ws=tdws).code == 0  # restored: it loads again
    assert_consistent(tdws)


@pytest.mark.parametrize("name", ["tokenizer.json", "labels.json"])
def test_corrupted_bundle_file_is_refused_by_export(tdws, tmp_path, name):
    """model.onnx is test_distill.py's case; every other bundle file is hash-checked too (exit 2, naming it)."""
    bundle = _latest(tdws, "deployables")
    good = flip_byte(bundle / name)
    before = snapshot(tdws)
    try:
        r = run_cli("export", "spam", "--out", tmp_path / "out", ws=tdws)
        assert r.code == 2 and name in r.err and len(r.err.strip().splitlines()) == 1, r
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))
        assert snapshot(tdws) == before
    finally:
        (bundle / name).write_bytes(good)
    assert run_cli("export", "spam", "--out", tmp_path / "out", ws=tdws).code == 0


def test_bundle_manifest_listing_paths_outside_is_refused(tdws, tmp_path):
    """A manifest naming "../x" must not make the runner hash, or export copy, files outside the bundle."""
    from mothermodel.distill.run_bundle import BundleError, verify

    out = tmp_path / "b"
    assert run_cli("export", "spam", "--out", out, ws=tdws).code == 0
    m = json.loads((out / "manifest.json").read_text())
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    for evil in ("../secret.txt", str(secret), "sub/../../secret.txt", "..\\secret.txt", ""):
        bad = {**m, "files": {**m["files"], evil: {"sha256": sha256_file(secret), "bytes": 9}}}
        (out / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(BundleError, match="not a plain file name"):
            verify(out)
    p = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "distill" / "run_bundle.py"), str(out),
                        "--text", "win money"], capture_output=True, text=True)
    assert p.returncode == 2 and "not a plain file name" in p.stderr, p


# --- `verify` after a crash or a restore: every fault named, nothing changed --------------------------


def test_verify_names_every_fault_and_changes_nothing(tdws, tmp_path):
    """A restored copy of a trained, distilled workspace, damaged in every way verify checks: exit 1 with one
    problem per fault (corrupted dataset, label matrix and checkpoint; a deleted bundle file; a killed command's
    temporary file and checkpoint folder; a registered MLflow version deleted, another with no deployable);
    the workspace, registry and MLflow store as they were."""
    import shutil

    from mlflow import MlflowClient

    from mothermodel.registry.workspace import Workspace

    root = tmp_path / "restored"
    shutil.copytree(tdws, root)  # a restored backup: its MLflow store names the original folder
    assert run_cli("verify", ws=root).code == 0
    home = root / ".mothermodel"
    (data,) = [home / d["path"] for d in json.loads(run_cli("dataset", "list", "--json", ws=root).out)
               if d["name"] == "mail"]
    matrix, model, bundle = (_latest(root, t) for t in ("label_matrices", "models", "deployables"))
    for p in (data, matrix, model / "model.safetensors"):
        flip_byte(p)
    (bundle / "tokenizer.json").unlink()
    leftovers = [home / "tmp" / "mail-1a2b3c.parquet.tmp", model.parent / f".tmp-{model.name}-x1y2"]
    leftovers[0].write_bytes(b"PAR1 half a file")
    leftovers[1].mkdir()
    client = MlflowClient(tracking_uri=Workspace(root).mlflow_tracking_uri)
    v1 = client.get_model_version("spam", "1")
    client.create_model_version("spam", v1.source, run_id=v1.run_id, tags=v1.tags)  # registered, never recorded
    client.delete_model_version("spam", "1")  # the deployable's version, deleted in MLflow
    before, files = snapshot(root), tree(root)

    r = run_cli("verify", "--json", ws=root)
    assert r.code == 1, r
    res = json.loads(r.out)
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    expected = {("dataset", rel(data)), ("label_matrix", rel(matrix)), ("model", rel(model / "model.safetensors")),
                ("deployable", rel(bundle / "tokenizer.json")), ("orphan", rel(leftovers[0])),
                ("orphan", rel(leftovers[1])), ("mlflow_version", "models:/spam/1"),
                ("mlflow_version", "models:/spam/2")}
    assert not res["ok"] and {(p["kind"], p["path"]) for p in res["problems"]} == expected, res["problems"]
    text = run_cli("verify", ws=root)
    assert text.code == 1 and all(path in text.out for _, path in expected) and "8 problem(s) found" in text.out
    assert snapshot(root) == before and tree(root) == files  # reported, never repaired or removed
    assert run_cli("verify", ws=tdws).code == 0  # the original is not the copy


# --- 2. sixteen concurrent CLI writers while `watch` runs -----------------------------------------


def test_16_concurrent_writers_while_watch_runs(tdws, tmp_path):
    """`watch --every 1s` ticks (relabelling and refitting what the writers add) while 8 `dataset add` and
    8 `task submit` processes run at once: all 16 land, SIGTERM stops watch cleanly, the registry is whole."""
    enc = tdws.parent / "enc"
    log = open(tmp_path / "watch.log", "w")
    watch = subprocess.Popen(cli_exe() + ["-w", str(tdws), "watch", "--every", "1s", "--encoder", str(enc),
                                          "--max-steps", "2", "--max-length", "16", "--student", "ngram",
                                          "--distill-epochs", "1"],
                             stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        # A dataset without text: tasks on it are labelled and fit by watch, never trained or distilled.
        pq.write_table(pa.table({"a": pa.array([0, 1, -1, 1, 0, 1], pa.int8()),
                                 "b": pa.array([0, -1, 1, 1, 0, -1], pa.int8())}), tmp_path / "cols.parquet")
        assert run_cli("dataset", "add", "cols", tmp_path / "cols.parquet", "--no-text", ws=tdws).code == 0
        deadline = time.time() + 120
        while "train: model" not in (tmp_path / "watch.log").read_text():  # the first tick is through
            assert watch.poll() is None, (tmp_path / "watch.log").read_text()[-2000:]
            assert time.time() < deadline, "watch never finished a tick"
            time.sleep(0.2)
        argvs = []
        for i in range(8):
            f = tmp_path / f"d{i}.parquet"
            pq.write_table(pa.table({"text": [f"row {i} {j}" for j in range(5)]}), f)
            argvs.append(["dataset", "add", f"extra_{i}", str(f)])
            s = tmp_path / f"c{i}.yaml"
            s.write_text(yaml.safe_dump({"name": f"cols_{i}", "dataset": "cols", "classes": ["X", "Y"],
                                         "sources": [{"kind": "column", "column": "a"},
                                                     {"kind": "column", "column": "b"}]}))
            argvs.append(["task", "submit", str(s)])
        writers = [subprocess.Popen(cli_exe() + ["-w", str(tdws), *a], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for a in argvs]
        results = [(w.wait(timeout=300), w.stderr.read()) for w in writers]
        assert [c for c, _ in results] == [0] * 16, results
        # Watch picks the new tasks up: a later tick labels and fits them.
        deadline = time.time() + 120
        while not all(f"label fit cols_{i}:" in (tmp_path / "watch.log").read_text() for i in range(8)):
            assert watch.poll() is None, (tmp_path / "watch.log").read_text()[-2000:]
            assert time.time() < deadline, "watch never fit the new tasks"
            time.sleep(0.2)
    finally:
        watch.send_signal(signal.SIGTERM)
        try:
            watch.wait(60)
        finally:
            if watch.poll() is None:
                watch.kill()
            log.close()
    text = (tmp_path / "watch.log").read_text()
    assert watch.returncode == 130 and "Traceback" not in text, text[-2000:]
    assert text.strip().splitlines()[-1] in ("error: aborted", "error: interrupted")  # click's Abort or ours
    datasets = {d["name"] for d in json.loads(run_cli("dataset", "list", "--json", ws=tdws).out)}
    tasks = {t["name"] for t in json.loads(run_cli("task", "list", "--json", ws=tdws).out)}
    assert {f"extra_{i}" for i in range(8)} <= datasets and {f"cols_{i}" for i in range(8)} <= tasks
    assert_consistent(tdws)
    st = {t["name"]: t for t in json.loads(run_cli("status", "--json", ws=tdws).out)["tasks"]}
    assert not st["spam"]["deployable"]["stale"] and not any(st[f"cols_{i}"]["labels"]["stale"] for i in range(8))


# --- 1. kill -9 while train records its model, with a model already there; then re-run -----------


def test_kill_9_while_train_records_keeps_the_old_model(tdws):
    """Killed inside the transaction that records model v2: v1 stays the latest and loads; the run's files
    are unrecorded; `train --resume` finishes the run (nothing left to train) and records v2."""
    from test_train import TINY

    assert run_cli("label", "fit", "spam", "--model", "label-model", ws=tdws).code == 0  # v2 has work to do
    before = snapshot(tdws)
    v1 = _latest(tdws, "models")
    args = ["train", "--encoder", tdws.parent / "enc", "--max-steps", 10, "--batch-size", 16, "--max-length", 16,
            "--self-train-rounds", 0, *TINY, "--json"]
    kill_at_fault(args, tdws, tdws.parent / "train-in-txn", timeout=240, env={"OMP_NUM_THREADS": "1"})
    assert snapshot(tdws) == before
    assert _latest(tdws, "models") == v1
    # the killed run's checkpoint is on disk, unrecorded, and marked for --resume
    assert (tdws / ".mothermodel" / "models" / "in-progress.json").is_file()
    assert_consistent(tdws)
    # a resumable run is state, not damage: verify passes, with a note naming the fix
    notes = json.loads(run_cli("verify", "--json", ws=tdws).out)["notes"]
    assert any("interrupted training run" in n and "train --resume" in n for n in notes), notes
    assert run_cli("predict", "spam", "--split", "test", "--json", ws=tdws).code == 0  # v1 still serves

    r = run_cli(*args, "--resume", ws=tdws)  # in-process: this interpreter has torch loaded already
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["trained"] and res["model_version"] == 2 and res["resumed_from"]
    models = snapshot(tdws)["models"]
    assert len(models) == 2 and models[0] == before["models"][0]  # v1's row unchanged
    assert not (tdws / ".mothermodel" / "models" / "in-progress.json").exists()
    assert_consistent(tdws)


# --- the LF workers' memory limit --------------------------------------------------------------


MEMORY_SPEC = """
from mothermodel import ABSTAIN, Task, labeling_function
task = Task(name="mem", dataset="docs", classes=["HAM", "SPAM"])

@labeling_function()
def greedy(x):
    if "money" in x.text:
        block = bytearray(512 * 2**20)  # past a 64 MB limit
        return 1 if block else 0
    return 0

@labeling_function()
def has_link(x):
    return 1 if "http" in x.text else ABSTAIN
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is enforced on Linux")
def test_lf_past_its_memory_limit_is_reported_and_the_others_land(ws, tmp_path):
    (tmp_path / "mem.py").write_text(MEMORY_SPEC)
    assert run_cli("task", "submit", tmp_path / "mem.py", ws=ws).code == 0
    r = run_cli("label", "apply", "--memory-mb=-1", ws=ws)
    assert r.code == 2 and r.err == "error: --memory-mb: must be >= 0 (0: no limit), got -1\n", r
    r = run_cli("label", "apply", "mem", "-j", "1", "--memory-mb", "64", "--json", ws=ws)
    assert r.code == 0, r
    res = json.loads(r.out)["tasks"][0]
    (fault,) = res["faults"]
    assert fault["name"] == "greedy" and fault["raised"] == 1 and fault["failed_rows"] == 1
    assert fault["first_row"] == 2 and "MemoryError" in fault["first_error"]
    from mothermodel.api import Registry
    from mothermodel.labeling import label_files

    reg = Registry.open(ws)
    rec = reg.store.snapshot().latest_matrix["mem"]
    m = label_files.read_checked(reg.ws, rec.path, rec.content_hash).to_pylist()
    got = {(e["row"], e["source"]): e["label"] for e in m}
    # greedy's other rows and every has_link vote landed; the failed row is an abstain
    assert got == {(0, "greedy"): 0, (1, "greedy"): 0, (3, "greedy"): 0, (0, "has_link"): 1}
    # --strict turns the same failure into exit 1 with nothing recorded
    before = snapshot(ws)
    r = run_cli("label", "apply", "mem", "--force", "--strict", "--memory-mb", "64", ws=ws)
    assert r.code == 1 and "greedy" in r.err and snapshot(ws) == before


# --- 4. malformed task specs (hypothesis) -------------------------------------------------------


def _bad_specs():
    """Strategies for spec mappings that are wrong in at least one way, each with the field it gets wrong."""
    from hypothesis import strategies as st

    base = {"name": "fuzzed", "dataset": "docs", "classes": ["HAM", "SPAM"]}
    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                        st.text(max_size=8))
    junk = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=4), scalars, max_size=2))
    bad_name = st.one_of(
        junk.filter(lambda v: not (isinstance(v, str) and NAME_RE.fullmatch(v))),
        st.sampled_from(["../x", "/etc/x", "a/b", "a\\b", "x\n", "\u0430bc", "\uff41bc", "", "a" * 64, "a\x00b",
                         "Spam", "1abc", "a b", "a-b", ".", ".."]),
    )

    def with_(field, values):
        return values.map(lambda v: ({**base, field: v}, field))

    def without(field):
        return st.just(({k: v for k, v in base.items() if k != field}, field))

    unknown_key = st.one_of(st.text(min_size=1, max_size=8), st.integers()).filter(
        lambda k: k not in {"name", "dataset", "classes", "parent", "parent_class", "description", "owner",
                            "sources", "<<", "="})  # YAML's merge and value keys are syntax, not fields
    bad_classes = st.one_of(
        junk.filter(lambda v: not isinstance(v, list) or not v),
        st.lists(st.one_of(st.none(), st.booleans(), st.integers(), st.just(""), st.just("  ")), min_size=1,
                 max_size=3).map(lambda cs: ["OK", *cs]),
        st.text(min_size=1, max_size=5).map(lambda c: [c, c]),
    )
    bad_source = st.one_of(
        scalars,
        st.just({"column": "lf_a"}),  # no kind
        st.just({"kind": "lf", "name": "x"}),
        st.text(max_size=6).filter(lambda k: k not in ("column", "task_output", "model")).map(lambda k: {"kind": k}),
        st.just({"kind": "column"}),
        st.just({"kind": "column", "column": "no_such_column"}),
        junk.filter(lambda v: not (isinstance(v, str) and v)).map(lambda v: {"kind": "column", "column": v}),
        # a falsy name falls back to the column's: not a bad source name
        bad_name.filter(lambda v: v and not (isinstance(v, str) and SOURCE_NAME_RE.fullmatch(v))).map(
            lambda v: {"kind": "column", "column": "lf_a", "name": v}),
        bad_name.map(lambda v: {"kind": "task_output", "task": v}),
        st.just({"kind": "task_output", "task": "ghost"}),
        junk.map(lambda v: {"kind": "model", "uri": v, "name": 5}),
    )
    return st.one_of(
        with_("name", bad_name),
        with_("dataset", st.one_of(bad_name, st.just("ghost"))),
        with_("classes", bad_classes),
        with_("parent", st.one_of(bad_name.filter(lambda v: v is not None), st.just("ghost"), st.just("fuzzed"))),
        with_("parent_class", st.text(max_size=4)),  # without a parent
        with_("description", st.one_of(st.integers(), st.lists(st.text(max_size=3), min_size=1))),
        with_("owner", st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), min_size=1))),
        with_("sources", st.one_of(junk.filter(lambda v: not isinstance(v, list) and v not in (None, "", 0, False,
                                                                                           0.0, {}, [])),
                                   st.lists(bad_source, min_size=1, max_size=2))),
        *(without(f) for f in ("name", "dataset", "classes")),
        st.tuples(unknown_key, junk).map(lambda kv: ({**base, kv[0]: kv[1]}, str(kv[0]))),
        junk.filter(lambda v: not isinstance(v, dict)).map(lambda v: (v, None)),  # not a mapping at all
    )


def test_malformed_specs_exit_2_with_one_line_and_change_nothing(ws, tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    before, files = snapshot(ws), tree(ws)
    seen = {"yaml": 0, "json": 0}

    @settings(max_examples=120, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(case=_bad_specs(), as_json=st.booleans())
    def check(case, as_json):
        data, field = case
        path = tmp_path / ("spec.yml" if as_json else "spec.yaml")
        # JSON is YAML: the same loader reads both; JSON has no NaN, so floats stay finite above
        path.write_text(json.dumps(data) if as_json else yaml.safe_dump(data, allow_unicode=True))
        seen["json" if as_json else "yaml"] += 1
        r = run_cli("task", "submit", path, ws=ws)
        assert r.code == 2, (data, r)
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), (data, r.err)
        if field is not None:
            assert f": {field}" in lines[0] or f"{field}[" in lines[0] or f"{field}." in lines[0], (data, field, r.err)
        assert snapshot(ws) == before, data

    check()
    assert seen["yaml"] and seen["json"]
    assert tree(ws) == files


# --- 5. names with path tricks are refused before anything is written --------------------------------


BAD_NAMES = ["../evil", "..", "/tmp/evil", "a/b", "a\\b", "a\x00b", "spam\n", "\u0430pple", "\uff53pam", "",
             "a" * 64, "Spam", "_x", "x.y", " x"]


def _wrench_folder(folder: Path) -> Path:
    folder.mkdir()
    (folder / "label.json").write_text(json.dumps({"0": "HAM", "1": "SPAM"}))
    for split in ("train", "valid", "test"):
        rows = {str(i): {"data": {"text": f"t {i}"}, "label": i % 2, "weak_labels": [i % 2, -1]} for i in range(4)}
        (folder / f"{split}.json").write_text(json.dumps(rows))
    return folder


@pytest.mark.parametrize("bad", BAD_NAMES, ids=lambda b: repr(b)[:24])
def test_path_trick_names_are_refused_before_anything_is_written(ws, tmp_path, bad):
    wrench = _wrench_folder(tmp_path / "wr")
    py = tmp_path / "t.py"
    before, files = snapshot(ws), tree(ws)
    out = tmp_path / "out"
    attempts = {
        "dataset add": ["dataset", "add", bad, tmp_path / "docs.parquet"],
        "import wrench": ["import", "wrench", wrench, "--task", bad],
        "distill": ["distill", bad],
        "export": ["export", bad, "--out", out],
        "label apply": ["label", "apply", bad],
    }
    for what, argv in attempts.items():
        r = run_cli(*argv, ws=ws)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, (what, r)
    # specs: the task's name, its dataset, its parent, a source's name; Python and YAML alike
    specs = {
        "py name": write_spec(py, name=bad),
        "py dataset": write_spec(tmp_path / "d.py", dataset=bad),
        "py parent": write_spec(tmp_path / "p.py", parent=bad) if bad else None,
        "py source": write_spec(tmp_path / "s.py", sources=f"Column('lf_a', name={bad!r})") if bad else None,
        "py lf": write_spec(tmp_path / "l.py", extra_lfs=(f"@labeling_function(name={bad!r})\n"
                                                           "def other(x):\n    return ABSTAIN\n")) if bad else None,
    }
    for field, value in (("name", bad), ("dataset", bad), ("parent", bad)):
        y = tmp_path / f"{field}.yaml"
        y.write_text(yaml.safe_dump({"name": "ok", "dataset": "docs", "classes": ["A", "B"], field: value}))
        specs[f"yaml {field}"] = y
    y = tmp_path / "src.yaml"
    y.write_text(yaml.safe_dump({"name": "ok", "dataset": "docs", "classes": ["A", "B"],
                                 "sources": [{"kind": "column", "column": "lf_a", "name": bad}]}))
    specs["yaml source"] = y if bad else None
    for what, spec in specs.items():
        if spec is None or (what.endswith(("source", "lf")) and SOURCE_NAME_RE.fullmatch(bad)):
            continue  # e.g. "x.y" and "Spam" are fine source names (they name no file)
        r = run_cli("task", "submit", spec, ws=ws)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, (what, r)
    assert snapshot(ws) == before
    assert tree(ws) == files
    assert not out.exists() and not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()
