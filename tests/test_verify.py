"""`mothermodel verify` / `Registry.verify` (registry/verify.py, distill/verify.py): recorded files against their
hashes, leftovers of interrupted commands, MLflow's registered versions against the deployables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, snapshot, write_spec


def verify(ws) -> dict:
    r = run_cli("verify", "--json", ws=ws)
    assert r.code in (0, 1), r
    res = json.loads(r.out)
    assert r.code == (0 if res["ok"] else 1), r
    assert set(res) == {"ok", "checked", "problems", "notes"}
    return res


def problems(res: dict) -> dict[tuple[str, str], str]:
    return {(p["kind"], p["path"]): p["problem"] for p in res["problems"]}


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its bytes) and folder under root: verify must change none of them."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
            if p.name not in ("registry.duckdb.wal", "registry.lock")}


def flip_byte(path: Path) -> None:
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0x01
    path.write_bytes(bytes(b))


@pytest.fixture
def lws(ws, tmp_path):
    """`ws` with task spam labelled and fit: a dataset, a label matrix and probabilistic labels recorded."""
    assert run_cli("task", "submit", write_spec(tmp_path / "spam.py", sources="Column('lf_a')"), ws=ws).code == 0
    assert run_cli("label", "apply", ws=ws).code == 0
    assert run_cli("label", "fit", "spam", "--model", "majority", ws=ws).code == 0
    return ws


def _recorded(ws, table: str) -> Path:
    import duckdb

    con = duckdb.connect(str(Path(ws) / ".mothermodel" / "registry.duckdb"), read_only=True)
    try:
        order = "name" if table == "datasets" else "version DESC"
        (path,) = con.execute(f"SELECT path FROM {table} ORDER BY {order} LIMIT 1").fetchone()
    finally:
        con.close()
    return Path(ws) / ".mothermodel" / path


def _rel(ws, p: Path) -> str:
    return p.relative_to(ws).as_posix()


# --- a registry-only workspace ---------------------------------------------------------------


def test_clean_workspace_text_and_json(lws):
    r = run_cli("verify", ws=lws)
    assert r.code == 0 and r.out.strip().splitlines()[-1] == "clean: 3 files checked", r
    assert verify(lws) == {"ok": True, "checked": 3, "problems": [], "notes": []}
    from mothermodel.api import Registry

    assert Registry.open(lws).verify().ok  # the Python twin


def test_verify_starts_without_torch_or_mlflow(lws):
    from test_packaging import _imported_modules

    mods = _imported_modules(lws, "verify")
    assert not {"torch", "transformers", "mlflow"} & mods, sorted(mods)


def test_corrupted_and_missing_recorded_files_are_named(lws):
    data, lm, pl = (_recorded(lws, t) for t in ("datasets", "label_matrices", "prob_labels"))
    flip_byte(data)
    lm.write_bytes(lm.read_bytes()[:-10])
    pl.unlink()
    before, files = snapshot(lws), tree(lws)
    r = run_cli("verify", ws=lws)
    assert r.code == 1 and "3 problem(s) found" in r.out, r
    for p in (data, lm, pl):
        assert _rel(lws, p) in r.out
    got = problems(verify(lws))
    assert got.keys() == {("dataset", _rel(lws, data)), ("label_matrix", _rel(lws, lm)), ("prob_labels", _rel(lws, pl))}
    assert "content hash mismatch: dataset docs records" in got[("dataset", _rel(lws, data))]
    assert "content hash mismatch: spam label matrix v1" in got[("label_matrix", _rel(lws, lm))]
    assert got[("prob_labels", _rel(lws, pl))].startswith("missing: spam probabilistic labels v1")
    assert snapshot(lws) == before and tree(lws) == files  # reported, nothing repaired or removed


def test_orphans_are_named_and_never_removed(lws):
    home = lws / ".mothermodel"
    made = [home / "tmp" / "docs-x.parquet.tmp", home / "tmp" / ".tmp-dir", home / "data" / ".docs.parquet.1.tmp",
            home / "labels" / "spam" / "lm-00000000deadbeef.parquet", home / "models" / "run-20260101-000000-abcdef",
            home / "deployables" / "spam" / ".tmp-m1-ngram-1", home / "deployables" / "spam" / "m1-ngram-0badf00d"]
    for p in made:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix in (".tmp", ".parquet"):
            p.write_bytes(b"half")
        else:
            (p / "stage-0").mkdir(parents=True)
    (home / "deployables" / "spam" / ".lock").write_text("")  # distill's lock file: legitimate
    # A data file no dataset records (a replaced dataset's older version): a note, not a problem.
    old = home / "data" / "docs-0123456789abcdef.parquet"
    shutil.copy(_recorded(lws, "datasets"), old)
    files = tree(lws)
    res = verify(lws)
    assert not res["ok"] and problems(res).keys() == {("orphan", _rel(lws, p)) for p in made}
    assert "distill spam` removes it" in problems(res)[("orphan", _rel(lws, made[-1]))]
    assert "no label version records" in problems(res)[("orphan", _rel(lws, made[3]))]
    assert [n for n in res["notes"] if n.startswith(_rel(lws, old))], res["notes"]
    assert tree(lws) == files  # never deleted
    for p in made:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    res = verify(lws)
    assert res["ok"] and len(res["notes"]) == 1


def test_interrupted_train_is_a_note_and_a_superseded_run_an_orphan(lws):
    """A run `train --resume` can continue is legitimate state (exit 0, a note naming the fix); the same folder
    once no marker names it is an interrupted run's leftover (exit 1)."""
    models = lws / ".mothermodel" / "models"
    run = models / "run-20260101-000000-abcdef"
    (run / "stage-0" / ".tmp-step-00000004-x").mkdir(parents=True)  # killed mid-checkpoint: resume removes it
    (models / "in-progress.json").write_text(json.dumps({"run_dir": "models/" + run.name, "lineage": {}, "config": {}}))
    res = verify(lws)
    assert res["ok"] and res["problems"] == [], res
    (note,) = res["notes"]
    assert "interrupted training run .mothermodel/models/run-20260101" in note and "train --resume" in note
    r = run_cli("verify", ws=lws)
    assert r.code == 0 and "note: interrupted training run" in r.out and "clean: 3 files checked" in r.out, r
    (models / "in-progress.json").unlink()
    got = problems(verify(lws))
    assert list(got) == [("orphan", _rel(lws, run))]
    assert "no in-progress marker names" in got[("orphan", _rel(lws, run))]


# --- a trained and distilled workspace: checkpoints, bundles, MLflow --------------------------------


@pytest.fixture(scope="module")
def dws(tmp_path_factory):
    """Task spam fit, a tiny model v1 trained and an n-gram student distilled (registered as MLflow spam/1)."""
    from test_train import TINY, fitted_mail_workspace

    tmp = tmp_path_factory.mktemp("verify")
    root = fitted_mail_workspace(tmp)
    r = run_cli("train", "--encoder", tmp / "enc", "--max-steps", 4, "--batch-size", 16, "--max-length", 16,
                "--self-train-rounds", 0, *TINY, "--json", ws=root)
    assert r.code == 0, r
    r = run_cli("distill", "spam", "--student", "ngram", "--epochs", 1, ws=root)
    assert r.code == 0, r
    return root


@pytest.fixture
def cws(dws, tmp_path):
    """A copy of `dws` in another folder (its MLflow store records the original's absolute paths)."""
    root = tmp_path / "copy"
    shutil.copytree(dws, root)
    return root


def _client(ws):
    from mlflow import MlflowClient

    from mothermodel.registry.workspace import Workspace

    return MlflowClient(tracking_uri=Workspace(Path(ws)).mlflow_tracking_uri)


def _artifact_bundle(ws) -> Path:
    (p,) = (Path(ws) / ".mothermodel" / "mlartifacts").glob("*/artifacts/model/artifacts/m1-*")
    return p


def test_trained_workspace_is_clean_and_checks_models_bundles_and_mlflow(dws):
    res = verify(dws)
    assert res == {"ok": True, "checked": res["checked"], "problems": [], "notes": []}
    model, bundle = _recorded(dws, "models"), _recorded(dws, "deployables")
    n_model = len(json.loads((model / "manifest.json").read_text())["files"]) + 1
    n_bundle = len(json.loads((bundle / "manifest.json").read_text())["files"]) + 1
    # 3 label/data files, the checkpoint and the bundle, the train run's manifest artifact, the registered bundle
    assert res["checked"] == 3 + n_model + n_bundle + 1 + n_bundle


def test_a_plain_train_gives_up_an_interrupted_run_and_leaves_no_orphan(dws, cws):
    """`train` without --resume starts over: the interrupted run's folder goes with it (verify stays clean)."""
    from test_train import TINY

    models = cws / ".mothermodel" / "models"
    run = models / "run-20260101-000000-abcdef"
    (run / "stage-0").mkdir(parents=True)
    (run / "stage-0" / "model.safetensors").write_bytes(b"half a checkpoint")
    (models / "in-progress.json").write_text(json.dumps({"run_dir": "models/" + run.name, "lineage": {}, "config": {}}))
    recorded = _recorded(cws, "models")
    r = run_cli("train", "--encoder", dws.parent / "enc", "--max-steps", 2, "--batch-size", 16,
                "--max-length", 16, "--self-train-rounds", 0, *TINY, ws=cws)
    assert r.code == 0, r
    assert not run.exists() and recorded.is_dir()  # the recorded model's folder stays
    assert verify(cws)["problems"] == []


def test_checkpoint_and_bundle_faults_are_named(cws):
    model, bundle = _recorded(cws, "models"), _recorded(cws, "deployables")
    flip_byte(model / "model.safetensors")
    (bundle / "labels.json").unlink()
    got = problems(verify(cws))
    assert got.keys() == {("model", _rel(cws, model / "model.safetensors")),
                          ("deployable", _rel(cws, bundle / "labels.json"))}
    assert got[("deployable", _rel(cws, bundle / "labels.json"))] == "missing: listed in deployable spam v1's manifest"
    # A manifest edited together with the files passes its own hashes; the recorded hash catches it.
    m = json.loads((model / "manifest.json").read_text())
    m["step"] += 1
    (model / "manifest.json").write_text(json.dumps(m))
    got = problems(verify(cws))
    # named once, as the checkpoint's: not again as its MLflow artifact, nor its files against a changed manifest
    assert got.keys() == {("model", _rel(cws, model / "manifest.json")),
                          ("deployable", _rel(cws, bundle / "labels.json"))}
    assert got[("model", _rel(cws, model / "manifest.json"))].startswith("content hash mismatch: model v1 records")


def test_mlflow_versions_and_artifacts_against_the_registry(dws, cws):
    assert verify(cws)["ok"]  # the copy checks its own store and artifacts, not the original's
    art = _artifact_bundle(cws)
    flip_byte(art / "model.onnx")
    (train_art,) = (cws / ".mothermodel" / "mlartifacts").glob("*/artifacts/manifest.json")
    train_art.unlink()
    client = _client(cws)
    v1 = client.get_model_version("spam", "1")
    # a version registered by a distill killed before it recorded the deployable
    client.create_model_version("spam", v1.source, run_id=v1.run_id, tags=v1.tags)
    got = problems(verify(cws))
    assert got.keys() == {("mlflow_artifact", _rel(cws, art / "model.onnx")), ("mlflow_artifact", _rel(cws, train_art)),
                          ("mlflow_version", "models:/spam/2")}, got
    assert "no deployable records it" in got[("mlflow_version", "models:/spam/2")]
    assert "model v1's run logged it" in got[("mlflow_artifact", _rel(cws, train_art))]
    client.delete_model_version("spam", "1")
    got = problems(verify(cws))
    assert "MLflow has no such version" in got[("mlflow_version", "models:/spam/1")]
    assert verify(dws)["ok"]  # the original is untouched


def test_missing_mlflow_store_is_named(cws):
    (cws / ".mothermodel" / "mlflow.db").unlink()
    got = problems(verify(cws))
    assert list(got) == [("mlflow", ".mothermodel/mlflow.db")]
    assert not (cws / ".mothermodel" / "mlflow.db").exists()  # verify creates no store


def test_absent_tracking_store_is_named_not_created(dws, tmp_path):
    uri = f"sqlite:///{tmp_path}/no/such/folder/mlflow.db"
    r = run_cli("verify", "--json", "--tracking-uri", uri, ws=dws)
    assert r.code == 1, r
    (p,) = json.loads(r.out)["problems"]
    assert p == {"kind": "mlflow", "path": uri, "problem": "the tracking store does not exist"}
    assert not (tmp_path / "no").exists()


def test_a_guard_stage_checkpoint_is_checked_too(cws):
    """A task the guard serves from an earlier stage's checkpoint (model_tasks.checkpoint, not the model's own
    folder): that folder is checked against its recorded hash as well."""
    import duckdb

    from mothermodel.registry.files import sha256_file

    model = _recorded(cws, "models")
    checked = verify(cws)["checked"]
    stage = model.parent.parent / "stage-9" / "step-00000001"  # stands in for an earlier stage's last checkpoint
    shutil.copytree(model, stage)
    rel = stage.relative_to(cws / ".mothermodel").as_posix()
    con = duckdb.connect(str(cws / ".mothermodel" / "registry.duckdb"))
    try:
        con.execute("UPDATE model_tasks SET checkpoint = ?, checkpoint_hash = ?",
                    [rel, sha256_file(stage / "manifest.json")])
    finally:
        con.close()
    res = verify(cws)
    assert res["ok"] and res["checked"] == checked + len(json.loads((stage / "manifest.json").read_text())["files"]) + 1
    flip_byte(stage / "model.safetensors")
    got = problems(verify(cws))
    assert list(got) == [("checkpoint", _rel(cws, stage / "model.safetensors"))]
    assert "model v1's spam checkpoint" in got[("checkpoint", _rel(cws, stage / "model.safetensors"))]
