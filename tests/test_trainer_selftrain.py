"""Self-training: sharpening, confident-row selection, staged fit with resume."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainer_util import synthetic_tasks, tiny_config, tiny_encoder  # noqa: E402

from mothermodel.trainer import checkpoint as ckpt  # noqa: E402
from mothermodel.trainer.model import build_model, head_specs  # noqa: E402
from mothermodel.trainer.selftrain import fit, refresh_targets, sharpen  # noqa: E402


def test_sharpen_is_soft_frequency():
    p = np.array([[0.6, 0.4], [0.5, 0.5], [0.9, 0.1]], np.float32)
    f = p.sum(0)
    expect = p ** 2 / f
    expect /= expect.sum(1, keepdims=True)
    np.testing.assert_allclose(sharpen(p), expect, rtol=1e-6)
    assert sharpen(p)[2, 0] > 0.9  # confident rows get more confident
    # the frequent class does not win ties: a row at 0.5/0.5 leans to the rarer class
    assert sharpen(p)[1, 1] > 0.5


def test_fit_self_trains_and_resumes_inside_a_later_stage(tmp_path):
    enc = tiny_encoder(tmp_path / "enc")
    tasks = synthetic_tasks(n_sent=120, n_topic=120)
    cfg = tiny_config(encoder=str(enc), max_steps=8, self_train_rounds=1, self_train_epochs=1.0,
                      self_train_threshold=0.0, checkpoint_every=4)
    model, tok = build_model(head_specs(tasks), cfg)
    refreshed = refresh_targets(model, tok, tasks, threshold=0.0, max_length=32)
    for t, r in zip(tasks, refreshed):
        train = t.split == "train"
        assert r.covered[train].all() and not r.covered[~train].any()  # every train row, covered or not
        np.testing.assert_allclose(r.probs[train].sum(1), 1.0, atol=1e-5)
    steps = []
    ref = fit(model, tok, tasks, cfg, checkpoint_dir=tmp_path / "a", progress=False,
              on_step=lambda s: steps.append(s.step))
    assert len(ref) == 2 and ref[0].steps == 8
    n_train = sum(int((t.split == "train").sum()) for t in tasks)
    assert ref[1].steps == int(np.ceil(n_train / 16))  # one epoch over every train row
    assert steps == list(range(1, 8 + ref[1].steps + 1))  # one step axis across stages

    class Stop(Exception):
        pass

    def stop(s):
        if s.step == 8 + 5:
            raise Stop

    part, tok = build_model(head_specs(tasks), cfg)
    with pytest.raises(Stop):
        fit(part, tok, tasks, cfg, checkpoint_dir=tmp_path / "b", progress=False, on_step=stop)
    again, tok = build_model(head_specs(tasks), cfg)
    res = fit(again, tok, tasks, cfg, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert len(res) == 1 and res[0].start_step == 4  # stage 0 skipped, stage 1 resumed from its step 4
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ckpt.read_manifest(ckpt.CheckpointDir(tmp_path / "b" / "stage-1").latest())["meta"]["stage"] == 1
