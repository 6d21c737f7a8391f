"""DDP through torchrun: 2 CPU processes on the gloo backend train one model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
if not torch.distributed.is_available():
    pytest.skip("torch.distributed is not available", allow_module_level=True)

from trainer_util import tiny_encoder  # noqa: E402

TESTS = Path(__file__).resolve().parent

_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, {tests!r})
import torch
from safetensors.torch import save_file
from trainer_util import synthetic_tasks, tiny_config
from mothermodel.trainer.evaluate import evaluate
from mothermodel.trainer.loop import train
from mothermodel.trainer.model import build_model, head_specs
out = {out!r}
tasks = synthetic_tasks()
cfg = tiny_config(encoder={enc!r}, batch_size=8, dropout=0.1)  # 8 per rank: global batches of 16
model, tok = build_model(head_specs(tasks), cfg)
res = train(model, tok, tasks, cfg, checkpoint_dir=os.path.join(out, "ckpt"), progress=False)
rank = torch.distributed.get_rank()
save_file({{k: v.contiguous() for k, v in model.state_dict().items()}}, os.path.join(out, f"rank{{rank}}.safetensors"))
m = evaluate(model, tok, tasks, tokens=res.tokens, splits=["test"])
json.dump({{"world": res.world_size, "steps": res.steps, "first": res.losses[:5], "last": res.losses[-5:],
           "acc": {{t: m[t]["test"]["accuracy"] for t in m}}}}, open(os.path.join(out, f"rank{{rank}}.json"), "w"))
torch.distributed.destroy_process_group()
"""


def test_torchrun_two_cpu_processes_gloo(tmp_path):
    enc = tiny_encoder(tmp_path / "enc")
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "ddp_train.py"
    script.write_text(_SCRIPT.format(tests=str(TESTS), out=str(out), enc=str(enc)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MOTHERMODEL_FAULT", None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    from safetensors.torch import load_file

    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0)  # gradients were averaged: one model on both ranks
    info = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert info[0]["world"] == 2 and info[0]["steps"] == info[1]["steps"]
    # each rank saw different rows (its own half of each global batch), yet both learned the same model
    assert sum(info[0]["last"]) < sum(info[0]["first"])
    assert min(info[0]["acc"].values()) >= 0.8, info[0]
    # only rank 0 wrote checkpoints, and the last one holds the shared weights
    ck = sorted((out / "ckpt").glob("step-*"))
    assert [c.name for c in ck] == [f"step-{info[0]['steps']:08d}"]
    from mothermodel.trainer import checkpoint as ckpt

    saved = ckpt.load_weights(ck[-1])
    assert all(torch.equal(saved[k], r0[k]) for k in r0)
