"""Checkpoints: exact round trips, hash-checked refusal, atomic writes under kill -9, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainer_util import synthetic_tasks, tiny_config, tiny_encoder  # noqa: E402

from mothermodel.errors import IntegrityError  # noqa: E402
from mothermodel.trainer import checkpoint as ckpt  # noqa: E402
from mothermodel.trainer.loop import train  # noqa: E402
from mothermodel.trainer.model import build_model, head_specs  # noqa: E402
from mothermodel.trainer.predict import predict_proba  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def enc_dir(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


@pytest.fixture(scope="module")
def tasks():
    return synthetic_tasks(n_sent=120, n_topic=120)


def _states_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_round_trip_is_exact(enc_dir, tasks, tmp_path):
    cfg = tiny_config(encoder=str(enc_dir), max_steps=6)
    model, tok = build_model(head_specs(tasks), cfg)
    train(model, tok, tasks, cfg, progress=False)
    folder = ckpt.save(tmp_path / "m", model, tok, step=6, config=cfg.to_dict(), meta={"fingerprints": {"a": "x"}})
    m = ckpt.verify(folder)
    assert m["step"] == 6 and m["meta"] == {"fingerprints": {"a": "x"}} and m["config"]["max_steps"] == 6
    assert set(m["files"]) >= {"model.safetensors", "encoder/config.json", "encoder/tokenizer.json"}
    assert not list(tmp_path.glob(".tmp-*"))
    loaded, tok2, _ = ckpt.load_model(folder)
    assert _states_equal(model, loaded)
    assert loaded.task_names == model.task_names and loaded.layout == model.layout
    texts = ["great song", "the vote was bad"]
    a, b = predict_proba(model, tok, texts), predict_proba(loaded, tok2, texts)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with pytest.raises(FileExistsError):
        ckpt.save(folder, model, tok)


def test_flipped_byte_is_refused(enc_dir, tasks, tmp_path):
    cfg = tiny_config(encoder=str(enc_dir))
    model, tok = build_model(head_specs(tasks), cfg)
    folder = ckpt.save(tmp_path / "m", model, tok)
    f = folder / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="model.safetensors.*corrupted"):
        ckpt.load_model(folder)
    with pytest.raises(IntegrityError):
        ckpt.load_weights(folder)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        ckpt.verify(folder)


_KILL_SCRIPT = r"""
import os, sys
sys.path.insert(0, {tests!r})
from trainer_util import synthetic_tasks, tiny_config
from mothermodel.trainer.loop import train
from mothermodel.trainer.model import build_model, head_specs
tasks = synthetic_tasks(n_sent=120, n_topic=120)
cfg = tiny_config(encoder={enc!r}, max_steps=12, checkpoint_every=4)
model, tok = build_model(head_specs(tasks), cfg)
def arm(info):
    # after the first checkpoint (step 4) is on disk, hang inside the next write
    if info.step == 5:
        os.environ["MOTHERMODEL_FAULT"] = "checkpoint_write:" + {marker!r}
train(model, tok, tasks, cfg, checkpoint_dir={root!r}, on_step=arm, progress=False)
"""


def test_kill_9_during_checkpoint_write_keeps_the_previous_one(enc_dir, tasks, tmp_path):
    root, marker = tmp_path / "ckpts", tmp_path / "marker"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(TESTS), enc=str(enc_dir), marker=str(marker), root=str(root)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MOTHERMODEL_FAULT", None)
    p = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not marker.exists():
            assert p.poll() is None, p.communicate()[1].decode()[-2000:]
            assert time.time() < deadline, "the writer never reached the fault point"
            time.sleep(0.1)
        os.kill(p.pid, signal.SIGKILL)  # mid-write: weights written, manifest not
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    cd = ckpt.CheckpointDir(root)
    assert [c.name for c in cd.all()] == ["step-00000004"]  # the half-written step 8 is invisible
    assert list(root.glob(".tmp-step-00000008-*"))  # ... though its temporary folder is there
    assert ckpt.verify(cd.latest())["step"] == 4
    # resume finishes the run from step 4; the leftover is cleaned up
    cfg = tiny_config(encoder=str(enc_dir), max_steps=12, checkpoint_every=4)
    model, tok = build_model(head_specs(tasks), cfg)
    res = train(model, tok, tasks, cfg, checkpoint_dir=root, resume=True, progress=False)
    assert (res.start_step, res.steps) == (4, 12) and res.resumed_from.name == "step-00000004"
    assert [c.name for c in cd.all()] == ["step-00000008", "step-00000012"]
    assert not list(root.glob(".tmp-*"))


def test_resume_takes_the_same_steps_as_an_uninterrupted_run(enc_dir, tasks, tmp_path):
    cfg = tiny_config(encoder=str(enc_dir), max_steps=15, checkpoint_every=5, dropout=0.1)
    full, tok = build_model(head_specs(tasks), cfg)
    ref = train(full, tok, tasks, cfg, checkpoint_dir=tmp_path / "a", progress=False)

    class Stop(Exception):
        pass

    def stop_at_12(info):
        if info.step == 12:
            raise Stop

    part, tok = build_model(head_specs(tasks), cfg)
    with pytest.raises(Stop):
        train(part, tok, tasks, cfg, checkpoint_dir=tmp_path / "b", on_step=stop_at_12, progress=False)
    assert ckpt.CheckpointDir(tmp_path / "b").latest().name == "step-00000010"
    again, tok = build_model(head_specs(tasks), cfg)  # a fresh process would start like this
    res = train(again, tok, tasks, cfg, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert (res.start_step, res.steps) == (10, 15)
    assert res.losses == ref.losses[10:]
    assert _states_equal(again, full)  # bit-identical: same batches, rates, dropout masks, Adam moments
    # a resume with different plan-shaping settings is refused, naming them
    from mothermodel.errors import UserError

    other, tok = build_model(head_specs(tasks), cfg)
    with pytest.raises(UserError, match="batch_size"):
        train(other, tok, tasks, cfg.replace(batch_size=8), checkpoint_dir=tmp_path / "b", resume=True,
              progress=False)


def test_manifest_hashes_every_file(enc_dir, tasks, tmp_path):
    cfg = tiny_config(encoder=str(enc_dir), max_steps=2)
    model, tok = build_model(head_specs(tasks), cfg)
    res = train(model, tok, tasks, cfg, checkpoint_dir=tmp_path / "c", progress=False)
    m = json.loads((res.checkpoint / "manifest.json").read_text())
    on_disk = {p.relative_to(res.checkpoint).as_posix() for p in res.checkpoint.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(m["files"])
    assert "optimizer.safetensors" in m["files"]
    # optimizer state is plain tensors (no pickle): Adam moments for every trained parameter
    from safetensors.torch import load_file

    opt = load_file(str(res.checkpoint / "optimizer.safetensors"))
    assert {k.rsplit("::", 1)[1] for k in opt} == {"step", "exp_avg", "exp_avg_sq"}
    assert len(opt) == 3 * sum(1 for p in model.parameters() if p.requires_grad)
