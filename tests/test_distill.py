"""Distillation through the CLI: students and their ONNX graphs, distill/export/status, the standalone
runner, MLflow registry + pyfunc + `mlflow models serve`, kill -9 and re-run, tampered bundles,
distill --all and watch. One tiny mother model (random 32-wide encoder) is trained once for the module."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO, kill_at_fault, run_cli, run_proc
from test_train import fitted_mail_workspace

RUNNER = REPO / "distill" / "run_bundle.py"
FAST = ("--epochs", "4")


@pytest.fixture(scope="module")
def dws(tmp_path_factory):
    """A workspace with task `spam` (dataset `mail`), labels fit and a tiny mother model trained."""
    tmp = tmp_path_factory.mktemp("distill")
    root = fitted_mail_workspace(tmp)
    r = run_cli("train", "--encoder", tmp / "enc", "--max-steps", 40, "--batch-size", 16, "--max-length", 16,
                "--lr", "1e-3", "--json", ws=root)
    assert r.code == 0, r
    return root


def _tracking(ws) -> str:
    return f"sqlite:///{Path(ws) / '.mothermodel' / 'mlflow.db'}"


def _client(ws):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=_tracking(ws))


def _test_rows(ws):
    t = pq.read_table(Path(ws).parent / "mail.parquet").to_pandas()
    t = t[t["split"] == "test"]
    return t["text"].tolist(), t["label"].to_numpy()


def test_students_export_with_dynamic_batch_and_length(tmp_path):
    """Both students run in onnxruntime at any batch and length (1 token included), matching PyTorch."""
    import torch

    from mothermodel.distill.onnx_export import export, max_abs_diff
    from mothermodel.distill.students import NgramStudent, TinyStudent

    rng = np.random.default_rng(0)
    ngram = NgramStudent(3, orders=(1, 2, 3), buckets=997, dim=8)
    tiny = TinyStudent(torch.arange(500) % 50, 50, 3, hidden_size=16, num_heads=2, intermediate_size=32,
                       max_positions=64)
    for student in (ngram, tiny):
        path = export(student, tmp_path / f"{student.kind}.onnx",
                      (torch.ones(2, 5, dtype=torch.int64), torch.ones(2, 5, dtype=torch.int64)))
        batches = []
        for b, n in [(1, 1), (1, 2), (3, 17), (8, 60)]:
            ids = rng.integers(0, 500, (b, n)).astype(np.int64)
            mask = np.ones((b, n), np.int64)
            mask[0, n // 2 + 1:] = 0  # padding
            batches.append((ids, mask))
        assert max_abs_diff(path, student, batches) <= 1e-5
    # The n-gram hash sees order: the same ids as a bigram differ from both unigrams.
    with torch.no_grad():
        e = NgramStudent(2, orders=(2,), buckets=10**6, dim=4)
        one = e(torch.tensor([[5, 7]]), torch.ones(1, 2, dtype=torch.int64))
        swapped = e(torch.tensor([[7, 5]]), torch.ones(1, 2, dtype=torch.int64))
    assert not torch.allclose(one, swapped)


def test_distill_export_run_bundle_pyfunc_and_tamper(dws, tmp_path, monkeypatch):
    # Before any distillation: export has nothing to export (exit 2, nothing written).
    r = run_cli("export", "spam", "--format", "onnx", "--out", tmp_path / "none", ws=dws)
    assert r.code == 2 and "distill spam" in r.err and not (tmp_path / "none").exists()
    assert run_cli("distill", "nosuch", ws=dws).code == 2
    assert run_cli("distill", ws=dws).code == 2  # neither TASK nor --all

    r = run_cli("distill", "spam", "--student", "tiny", *FAST, "--json", ws=dws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["deployable_version"] == 1 and res["registered_model"] == {"name": "spam", "version": "1"}
    assert res["onnx_max_abs_diff"] <= 1e-4 and res["bundle_bytes"] > 0 and res["latency_ms_batch1"] > 0
    for split in ("train", "valid", "test"):
        for key in ("accuracy", "macro_f1", "agreement", "teacher_accuracy"):
            assert 0 <= res["metrics"][f"spam/mail/{split}/{key}"] <= 1
    # The words decide the class; a student that learnt the teacher agrees with it on most rows.
    assert res["metrics"]["spam/mail/test/agreement"] > 0.7

    st = {t["name"]: t for t in json.loads(run_cli("status", "--json", ws=dws).out)["tasks"]}
    assert st["spam"]["deployable"] == {"version": 1, "stale": False}
    imp = json.loads(run_cli("dag", "impact", "spam", "--json", ws=dws).out)
    assert imp["deployables"] == [{"task": "spam", "version": 1, "model_version": 1, "student": "tiny"}]

    out = tmp_path / "bundle"
    r = run_cli("export", "spam", "--format", "onnx", "--out", out, "--json", ws=dws)
    assert r.code == 0, r
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "manifest.json", "model.onnx", "tokenizer.json"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["task"] == "spam" and m["model_version"] == 1 and m["student"] == "tiny"
    assert m["fingerprint"] == st["spam"]["fingerprint"]
    assert m["label_versions"] == {"spam": {"prob_labels": 1, "label_matrix": 1}}
    assert m["onnx_check"]["passed"] and m["onnx_check"]["max_abs_diff"] <= 1e-4
    assert set(m["files"]) == {"labels.json", "model.onnx", "tokenizer.json"}
    assert json.loads((out / "labels.json").read_text()) == {"0": "HAM", "1": "SPAM"}

    # The standalone runner, in a fresh interpreter: its predictions score what PyTorch's did, and it
    # imports nothing of torch, transformers, mlflow or mothermodel.
    texts, gold = _test_rows(dws)
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    p = subprocess.run([sys.executable, "-X", "importtime", str(RUNNER), str(out), "--input",
                        str(tmp_path / "texts.jsonl")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    preds = [json.loads(line)["label"] for line in p.stdout.splitlines()]
    acc = float(np.mean(np.array([["HAM", "SPAM"].index(x) for x in preds]) == gold))
    assert acc == pytest.approx(m["metrics"]["student"]["test"]["accuracy"])
    mods = {ln.rsplit("|", 1)[1].strip().split(".")[0] for ln in p.stderr.splitlines()
            if ln.startswith("import time:") and "|" in ln}
    assert "onnxruntime" in mods and "tokenizers" in mods
    assert not {"torch", "transformers", "mlflow", "mothermodel", "pandas"} & mods

    # MLflow: the registered version carries its lineage and loads through pyfunc.
    import mlflow.pyfunc
    import pandas as pd

    mv = _client(dws).get_model_version("spam", "1")
    assert mv.tags["mothermodel.model_version"] == "1"
    assert mv.tags["mothermodel.task_fingerprint"] == m["fingerprint"]
    assert json.loads(mv.tags["mothermodel.label_versions"]) == m["label_versions"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _tracking(dws))  # the environment, not mlflow's process-wide setting
    model = mlflow.pyfunc.load_model("models:/spam/1")
    assert list(model.predict(pd.DataFrame({"text": texts}))) == preds
    run = _client(dws).get_run(res["mlflow_run_id"])
    assert run.data.metrics["param_count"] == res["param_count"] and "spam/mail/test/teacher_accuracy" in run.data.metrics

    # Tampering: a changed model.onnx is refused by the runner, by export and by the pyfunc loader.
    with open(out / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    p = subprocess.run([sys.executable, str(RUNNER), str(out), "--text", "hi"], capture_output=True, text=True)
    assert p.returncode == 2 and "model.onnx" in p.stderr and "modified" in p.stderr
    inside = dws / ".mothermodel" / res["path"] / "model.onnx"
    good = inside.read_bytes()
    inside.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    r = run_cli("export", "spam", "--format", "onnx", "--out", tmp_path / "again", ws=dws)
    assert r.code == 2 and "model.onnx" in r.err and not (tmp_path / "again").exists()
    inside.write_bytes(good)
    registered, = (dws / ".mothermodel" / "mlartifacts").glob(f"**/{res['mlflow_run_id']}/artifacts/model/artifacts/*/model.onnx")
    registered.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(Exception, match="model.onnx"):
        mlflow.pyfunc.load_model("models:/spam/1")
    registered.write_bytes(good)


def test_ngram_student_and_distill_all(dws, tmp_path):
    r = run_cli("distill", "spam", "--student", "ngram", *FAST, "--json", ws=dws)
    assert r.code == 0, r
    res = json.loads(r.out)
    assert res["student"] == "ngram" and res["onnx_max_abs_diff"] <= 1e-4
    # Everything is fresh: --all has nothing to do.
    res = json.loads(run_cli("distill", "--all", *FAST, "--json", ws=dws).out)
    assert res == {"distilled": [], "skipped": [], "up_to_date": ["spam"]}
    # A refit moves the model's lineage: the deployable is stale, but so is the model, so --all waits for it.
    assert run_cli("label", "fit", "spam", "--model", "label-model", ws=dws).code == 0
    res = json.loads(run_cli("distill", "--all", *FAST, "--json", ws=dws).out)
    assert res["distilled"] == [] and res["skipped"][0]["task"] == "spam"
    assert run_cli("distill", "spam", ws=dws).code == 2  # "the mother model is stale for it"
    # One watch tick retrains and redistils: the deployable is fresh again.
    r = run_cli("watch", "--once", "--encoder", dws.parent / "enc", "--max-steps", 10, "--max-length", 16,
                "--distill-epochs", 2, "--json", ws=dws)
    assert r.code == 0, r
    tick = json.loads(r.out)
    assert tick["train"]["trained"] and [d["task"] for d in tick["distill"]["distilled"]] == ["spam"]
    st = {t["name"]: t for t in json.loads(run_cli("status", "--json", ws=dws).out)["tasks"]}
    assert not st["spam"]["deployable"]["stale"]


def test_kill_9_during_distill_leaves_nothing_half_done(dws, tmp_path):
    """Killed after registering in MLflow but before the registry recorded it: the re-run removes the
    bundle folder and the registered version, ends the killed run, and completes."""
    from mothermodel.api import Registry

    reg = Registry.open(dws)
    before = {d.version for d in reg.store.deployables("spam")}
    client = _client(dws)
    versions_before = {v.version for v in client.search_model_versions("name = 'spam'")}
    kill_at_fault(["distill", "spam", "--student", "tiny", *FAST], dws, tmp_path / "at-fault",
                  point="distill_registered", timeout=120)
    orphan = set(v.version for v in client.search_model_versions("name = 'spam'")) - versions_before
    assert len(orphan) == 1  # registered, never recorded
    recorded = {Path(d.path).name for d in reg.store.deployables("spam")}
    folder = dws / ".mothermodel" / "deployables" / "spam"
    assert {p.name for p in folder.iterdir() if p.is_dir()} - recorded  # the killed run's bundle
    assert {d.version for d in reg.store.deployables("spam")} == before

    r = run_cli("distill", "spam", "--student", "tiny", *FAST, "--json", ws=dws)
    assert r.code == 0, r
    recs = reg.store.deployables("spam")
    assert {p.name for p in folder.iterdir() if p.is_dir()} == {Path(d.path).name for d in recs}
    registered = {str(v.version) for v in client.search_model_versions("name = 'spam'")}
    assert registered == {d.mlflow_model_version for d in recs}
    killed = client.search_runs([client.get_experiment_by_name("mothermodel").experiment_id],
                                "tags.`mothermodel.kind` = 'distill' AND attributes.status = 'KILLED'")
    assert len(killed) == 1


def test_kill_9_while_the_bundle_is_written_leaves_nothing(dws, tmp_path):
    """Killed with the bundle's files in its hidden .tmp- folder: no bundle, registered version or deployable
    appears; the re-run removes the leftover folder and completes."""
    from mothermodel.api import Registry

    reg = Registry.open(dws)
    before = {d.version for d in reg.store.deployables("spam")}
    client = _client(dws)
    versions_before = {v.version for v in client.search_model_versions("name = 'spam'")}
    folder = dws / ".mothermodel" / "deployables" / "spam"
    dirs_before = {p.name for p in folder.iterdir() if p.is_dir()}
    kill_at_fault(["distill", "spam", "--student", "tiny", *FAST], dws, tmp_path / "at-fault", point="distill_bundle",
                  timeout=120)
    new = {p.name for p in folder.iterdir() if p.is_dir()} - dirs_before
    assert new and all(n.startswith(".tmp-") for n in new)  # only the hidden, half-written folder
    assert {v.version for v in client.search_model_versions("name = 'spam'")} == versions_before
    assert {d.version for d in reg.store.deployables("spam")} == before

    r = run_cli("distill", "spam", "--student", "tiny", *FAST, "--json", ws=dws)
    assert r.code == 0, r
    recs = reg.store.deployables("spam")
    assert len(recs) == len(before) + 1
    assert {p.name for p in folder.iterdir() if p.is_dir()} == {Path(d.path).name for d in recs}
    assert {str(v.version) for v in client.search_model_versions("name = 'spam'")} == {d.mlflow_model_version for d in recs}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_models_serve_answers_invocations(dws, tmp_path):
    """`mlflow models serve -m models:/spam/<v> --env-manager local` on 127.0.0.1 answers /invocations."""
    from mothermodel.api import Registry

    rec = Registry.open(dws).store.latest_deployable("spam")
    if rec is None:
        assert run_cli("distill", "spam", *FAST, ws=dws).code == 0
        rec = Registry.open(dws).store.latest_deployable("spam")
    mlflow_exe = Path(sys.executable).parent / "mlflow"
    if not mlflow_exe.exists():
        pytest.skip("no `mlflow` executable beside this interpreter")
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(mlflow_exe), "models", "serve", "-m", f"models:/spam/{rec.mlflow_model_version}",
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                            # mlflow execs `uvicorn` by name: this interpreter's bin first on PATH
                            env={**os.environ, "MLFLOW_TRACKING_URI": _tracking(dws),
                                 "PATH": f"{mlflow_exe.parent}{os.pathsep}{os.environ.get('PATH', '')}"}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                text = (tmp_path / "serve.log").read_text()
                if "Address already in use" in text or "No module named" in text:
                    pytest.skip(f"mlflow models serve could not start here: {text[-300:]}")
                pytest.fail(f"mlflow models serve exited {proc.returncode}: {text[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not answer /ping within 120 s: "
                        + (tmp_path / "serve.log").read_text()[-2000:])
        texts = ["cheap money win click free", "hello friend thanks for lunch"]
        body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            got = json.loads(resp.read())["predictions"]
        from mothermodel.distill.run_bundle import Bundle

        assert got == Bundle(dws / ".mothermodel" / rec.path).predict(texts)
        assert set(got) <= {"HAM", "SPAM"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
