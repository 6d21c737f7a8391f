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


def test_keep_targets_are_the_warm_models_outputs_on_the_rows_a_run_can_draw(tmp_path):
    from mothermodel.trainer.predict import predict_proba
    from mothermodel.trainer.selftrain import keep_targets

    enc = tiny_encoder(tmp_path / "enc")
    sent, topic = synthetic_tasks(n_sent=200, n_topic=400)
    cfg = tiny_config(encoder=str(enc), replay=0.2, warm_epochs=0.5, self_train_rounds=1)
    model, tok = build_model(head_specs([sent, topic]), cfg)
    out = keep_targets(model, tok, [sent, topic], ["sentiment"], cfg, tokens={})
    assert out[0] is sent  # the focus task keeps its label model's labels
    kept = out[1]
    rows = np.flatnonzero(kept.covered)
    # a pool as large as the run's replay draws: 0.2/0.8 x 140 focus train rows x 0.5 epochs x 2 stages = 35 rows
    assert len(rows) == 35 and (topic.split[rows] == "train").all()
    want = predict_proba(model, tok, [topic.texts[i] for i in rows], tasks=["topic"], max_length=cfg.max_length)["topic"]
    np.testing.assert_allclose(kept.probs[rows], want, atol=1e-5)


def test_warm_epochs_count_a_focus_task_in_its_own_rows():
    """A changed child task that applies to a third of its dataset's rows gets a warm run three times as
    long (its own rows then see `warm_epochs` passes); a task on all rows keeps `warm_epochs`; the cap holds."""
    from mothermodel.trainer.config import TrainConfig
    from mothermodel.trainer.data import TaskData
    from mothermodel.trainer.selftrain import WARM_EPOCHS_CAP, warm_epochs

    n = 300
    split = np.array(["train"] * n, object)
    probs = np.full((n, 2), 0.5, np.float32)
    parent = TaskData("topic", ["a", "b"], ["x"] * n, split, probs=probs, dataset="d")
    applies = (np.arange(n) % 3 == 0).astype(np.float32)
    child = TaskData("kind", ["c", "d"], ["x"] * n, split, probs=probs, dataset="d", parent="topic",
                     parent_class=0, applicable=applies)
    rare = TaskData("rare", ["c", "d"], ["x"] * n, split, probs=probs, dataset="d", parent="topic",
                    parent_class=1, applicable=(np.arange(n) == 0).astype(np.float32))
    cfg = TrainConfig(warm_epochs=0.4)
    assert warm_epochs([parent, child], ["topic"], cfg) == pytest.approx(0.4)
    assert warm_epochs([parent, child], ["kind"], cfg) == pytest.approx(1.2)
    assert warm_epochs([parent, child, rare], ["rare"], cfg) == pytest.approx(0.4 * WARM_EPOCHS_CAP)


def test_the_clean_stage_learns_hand_rows_alone_and_resumes_inside_it(tmp_path):
    """A task with hand labels gets a last stage over its hand-labelled rows alone (TrainConfig.hand_epochs),
    checkpointed in its own folder; a run stopped inside it resumes there, to the same weights."""
    from dataclasses import replace

    enc = tiny_encoder(tmp_path / "enc")
    tasks = synthetic_tasks(n_sent=120, n_topic=120)
    hand = np.full(len(tasks[0].texts), -1)
    rows = np.flatnonzero(tasks[0].split == "valid")
    hand[rows] = tasks[0].gold[rows]
    tasks = [replace(tasks[0], hand=hand, gold=np.where(hand >= 0, -1, tasks[0].gold)), *tasks[1:]]
    cfg = tiny_config(encoder=str(enc), max_steps=4, self_train_rounds=1, self_train_epochs=0.5,
                      self_train_threshold=0.0, checkpoint_every=2, hand_epochs=4.0)
    model, tok = build_model(head_specs(tasks), cfg)
    steps = []
    ref = fit(model, tok, tasks, cfg, checkpoint_dir=tmp_path / "a", progress=False,
              on_step=lambda s: steps.append(s.step))
    assert len(ref) == 3  # weak stage, self-training round, the clean stage
    assert ref[2].steps == int(np.ceil(4 * len(rows) / 16))  # 4 passes over the hand rows, nothing else
    assert ckpt.read_manifest(ckpt.CheckpointDir(tmp_path / "a" / "stage-2").latest())["meta"]["hand"] is True
    assert steps == list(range(1, len(steps) + 1))
    stop_at = ref[0].steps + ref[1].steps + 3

    class Stop(Exception):
        pass

    def stop(s):
        if s.step == stop_at:
            raise Stop

    part, tok = build_model(head_specs(tasks), cfg)
    with pytest.raises(Stop):
        fit(part, tok, tasks, cfg, checkpoint_dir=tmp_path / "b", progress=False, on_step=stop)
    again, tok = build_model(head_specs(tasks), cfg)
    res = fit(again, tok, tasks, cfg, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert len(res) == 1 and res[0].start_step == 2  # both weak stages done, the clean one resumed at step 2
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
