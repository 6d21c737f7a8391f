"""The mother model and its objective: learning from soft labels, the loss, layouts, batching, warm starts."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from trainer_util import synthetic_tasks, tiny_config, tiny_encoder  # noqa: E402

from mothermodel.trainer.data import TaskData, TrainingSet, collate, plan_batches  # noqa: E402
from mothermodel.trainer.encoder import load_encoder  # noqa: E402
from mothermodel.trainer.evaluate import evaluate, metric_keys  # noqa: E402
from mothermodel.trainer.loop import lr_factor, multitask_loss, soft_cross_entropy, train  # noqa: E402
from mothermodel.trainer.model import HeadSpec, MotherModel, build_model, head_specs, reconcile_heads  # noqa: E402
from mothermodel.trainer.predict import predict_proba  # noqa: E402


@pytest.fixture(scope="module")
def enc_dir(tmp_path_factory):
    return tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny")


@pytest.fixture(scope="module")
def tasks():
    return synthetic_tasks()


def test_learns_two_tasks_from_soft_labels(enc_dir, tasks):
    cfg = tiny_config(encoder=str(enc_dir))
    model, tok = build_model(head_specs(tasks), cfg)
    steps_seen = []
    res = train(model, tok, tasks, cfg, on_step=lambda s: steps_seen.append(s.step), progress=False)
    assert steps_seen == list(range(1, res.steps + 1))  # the callback sees every step, in order
    assert np.mean(res.losses[-10:]) < np.mean(res.losses[:10])
    m = evaluate(model, tok, tasks, tokens=res.tokens)
    # held-out rows, gold labels; chance is 0.5 and 0.33, the labels are 15% wrong
    assert m["sentiment"]["test"]["accuracy"] >= 0.85, m
    assert m["topic"]["test"]["accuracy"] >= 0.85, m
    keys = metric_keys(m, {"sentiment": "sent_ds", "topic": "topic_ds"})
    assert keys["sentiment/sent_ds/test/accuracy"] == m["sentiment"]["test"]["accuracy"]
    assert "topic/topic_ds/valid/macro_f1" in keys


def test_soft_cross_entropy_and_log_c_scaling():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 6)).astype(np.float32)
    q = rng.dirichlet(np.ones(6), size=5).astype(np.float32)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    expect = -(q * logp).sum(1)
    got = soft_cross_entropy(torch.from_numpy(z), torch.from_numpy(q)).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5)

    # a batch of 4 rows: rows 0, 2 for task a (2 classes), rows 1, 2, 3 for task b (6 classes)
    za, zb = rng.normal(size=(4, 2)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
    qa, qb = rng.dirichlet(np.ones(2), 2).astype(np.float32), rng.dirichlet(np.ones(6), 3).astype(np.float32)
    wa, wb = np.array([1.0, 0.5], np.float32), np.array([1.0, 1.0, 0.0], np.float32)
    pa, pb = np.array([0, 2]), np.array([1, 2, 3])

    class B:
        input_ids = torch.zeros(4, 3, dtype=torch.long)
        tasks = {0: (torch.from_numpy(pa), torch.from_numpy(qa), torch.from_numpy(wa)),
                 1: (torch.from_numpy(pb), torch.from_numpy(qb), torch.from_numpy(wb))}
        slices: dict = {}
        size = 4

    out = {"a": {"logits": torch.from_numpy(za)}, "b": {"logits": torch.from_numpy(zb)}}
    loss, per_task = multitask_loss(out, B, ["a", "b"], [2, 6])

    def ce(z, q):
        lp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -(q * lp).sum(1)

    ta = (wa * ce(za[pa], qa)).sum() / math.log(2)
    tb = (wb * ce(zb[pb], qb)).sum() / math.log(6)
    assert float(loss) == pytest.approx((ta + tb) / 4, rel=1e-5)
    assert float(per_task["a"]) == pytest.approx((wa * ce(za[pa], qa)).sum() / wa.sum(), rel=1e-5)
    # a uniform guess costs exactly 1 per row for every task after scaling: the point of 1/log C
    for k in (2, 6, 50):
        u = soft_cross_entropy(torch.zeros(1, k), torch.full((1, k), 1.0 / k))
        assert float(u) / math.log(k) == pytest.approx(1.0, rel=1e-6)


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] == pytest.approx(1 / 90)


def test_hierarchical_child_reads_parent_output(enc_dir):
    enc, _ = load_encoder(enc_dir)
    specs = [HeadSpec("parent", ("x", "y", "z")), HeadSpec("child", ("u", "v"), parent="parent", parent_class=1)]
    model = MotherModel(enc, specs, layout="hierarchical", dropout=0.0)
    h = torch.randn(4, model.hidden)
    child = model.heads["child"].out
    assert child.in_features == model.hidden + 3
    with torch.no_grad():  # the child sees only the parent's probabilities
        child.weight.zero_()
        child.weight[:, model.hidden:] = torch.tensor([[5.0, 0.0, -5.0], [0.0, 2.0, 1.0]])
        child.bias.copy_(torch.tensor([0.1, -0.2]))
    out = model.heads_forward(h)
    pp = torch.softmax(out["parent"]["logits"], -1)
    expect = pp @ child.weight[:, model.hidden:].T + child.bias
    torch.testing.assert_close(out["child"]["logits"], expect)
    with torch.no_grad():  # move the parent: the child moves with it
        model.heads["parent"].out.bias += torch.tensor([4.0, -4.0, 0.0])
    assert not torch.allclose(model.heads_forward(h)["child"]["logits"], out["child"]["logits"])
    flat = MotherModel(enc, specs, layout="flat", dropout=0.0)
    assert flat.heads["child"].out.in_features == model.hidden  # flat: every head reads h only


def test_hierarchical_three_levels(enc_dir):
    """A grandchild (the demo's refund_reason) reads its parent, which reads the root: any order in, parents first."""
    enc, _ = load_encoder(enc_dir)
    specs = [HeadSpec("reason", ("dup", "cancel", "lost"), parent="kind", parent_class=0),
             HeadSpec("topic", ("billing", "tech")), HeadSpec("kind", ("refund", "invoice"), parent="topic", parent_class=0)]
    model = MotherModel(enc, specs, layout="hierarchical", dropout=0.0)
    assert model.task_names == ["topic", "kind", "reason"]
    assert model.heads["kind"].out.in_features == model.hidden + 2
    assert model.heads["reason"].out.in_features == model.hidden + 2
    h = torch.randn(4, model.hidden)
    out = model.heads_forward(h)
    with torch.no_grad():  # move the root: the grandchild moves through its parent
        model.heads["topic"].out.bias += torch.tensor([6.0, -6.0])
    assert not torch.allclose(model.heads_forward(h)["reason"]["logits"], out["reason"]["logits"])
    rebuilt = MotherModel.from_description(enc, model.describe())
    assert rebuilt.task_names == model.task_names


def _trainset(tasks, enc_dir, max_length=32):
    _, tok = load_encoder(enc_dir)
    return TrainingSet(tasks, tok, max_length), tok


def test_heterogeneous_batches_mix_tasks_homogeneous_do_not(enc_dir, tasks):
    ts, _ = _trainset(tasks, enc_dir)
    het = plan_batches(ts, 40, 16, mixing="heterogeneous", seed=1)
    ds_of = lambda b: set(ts.unit_location(b)[0].tolist())  # noqa: E731
    mixed = [len(ds_of(b)) > 1 for b in het]
    assert np.mean(mixed) > 0.9
    hom = plan_batches(ts, 40, 16, mixing="homogeneous", seed=1)
    assert all(len(ds_of(b)) == 1 for b in hom)
    # both visit both datasets in proportion to their number of training rows
    sizes = np.array([len(r) for r in ts.unit_rows], float)
    for plan in (het, hom):
        d = ts.unit_location(plan.ravel())[0]
        share = np.bincount(d, minlength=2) / len(d)
        np.testing.assert_allclose(share, sizes / sizes.sum(), atol=0.08)
    # one epoch at temperature 1 draws every training row exactly once
    one = plan_batches(ts, ts.num_units // 16, 16, seed=3).ravel()
    assert len(set(one.tolist())) == len(one)
    # a collated heterogeneous batch carries targets for both tasks
    b = collate(ts, het[0], pad_id=0)
    assert set(b.tasks) == {0, 1} and b.input_ids.shape[0] == 16


def test_temperature_flattens_task_shares(enc_dir):
    small, big = synthetic_tasks(n_sent=60, n_topic=600, seed=2)
    ts, _ = _trainset([small, big], enc_dir)
    share = {}
    for temp in (1.0, 100.0):
        d = ts.unit_location(plan_batches(ts, 60, 16, temperature=temp, seed=0).ravel())[0]
        share[temp] = np.mean(d == 0)
    n0, n1 = len(ts.unit_rows[0]), len(ts.unit_rows[1])
    assert share[1.0] == pytest.approx(n0 / (n0 + n1), abs=0.03)
    assert share[100.0] == pytest.approx(0.5, abs=0.05)


def test_focus_spends_a_warm_run_on_the_changed_dataset_with_replay(enc_dir):
    from mothermodel.trainer.data import round_units

    small, big = synthetic_tasks(n_sent=200, n_topic=600, seed=3)
    ts, _ = _trainset([small, big], enc_dir)
    n0 = len(ts.unit_rows[0])
    # one round = one pass over the focus dataset's units plus the replay draws that come with them
    assert round_units(ts) == ts.num_units
    assert round_units(ts, [0], 0.2) == math.ceil(n0 / 0.8)
    assert round_units(ts, [0, 1], 0.2) == ts.num_units  # nothing to replay: no extra draws
    d = ts.unit_location(plan_batches(ts, 200, 16, temperature=1.0, seed=0, focus=[0], replay=0.2).ravel())[0]
    assert np.mean(d == 1) == pytest.approx(0.2, abs=0.03)  # the unchanged dataset gets the replay share
    # a focus run of the same epochs is shorter than a full one, in proportion to the rows that changed
    cfg = tiny_config(epochs=1.0, self_train_rounds=0, replay=0.2)
    model, tok = build_model(head_specs([small, big]), cfg.replace(encoder=str(enc_dir)))
    full = train(model, tok, [small, big], cfg.replace(encoder=str(enc_dir)), progress=False)
    part = train(model, tok, [small, big], cfg.replace(encoder=str(enc_dir)), progress=False, focus=["sentiment"])
    assert part.steps == math.ceil(math.ceil(n0 / 0.8) / cfg.batch_size) < full.steps


def test_bucketing_pads_less_than_fixed_or_unsorted_padding(enc_dir):
    rng = np.random.default_rng(0)
    n = 800
    texts = [" ".join(["the"] * int(k)) for k in rng.integers(1, 60, n)]  # lengths 3..61 tokens
    t = TaskData("t", ["a", "b"], texts, ["train"] * n, probs=np.full((n, 2), 0.5, np.float32))
    ts, _ = _trainset([t], enc_dir, max_length=64)
    lengths = np.concatenate(ts.unit_lengths())
    real = lengths.sum() * 2  # two epochs of real tokens

    def padded(plan):
        return sum(len(b) * lengths[b].max() for b in plan)

    steps = 2 * n // 16
    bucketed = padded(plan_batches(ts, steps, 16, bucketing=True, seed=0))
    dynamic = padded(plan_batches(ts, steps, 16, bucketing=False, seed=0))
    fixed = steps * 16 * 64
    assert bucketed < 0.7 * dynamic < 0.7 * fixed
    assert bucketed < 1.15 * real  # almost no padding left


def test_uncovered_rows_are_dropped_by_default_and_weighted_on_request():
    n = 6
    t = TaskData("t", ["a", "b"], ["x"] * n, ["train", "train", "train", "valid", "test", "train"],
                 probs=np.full((n, 2), 0.5, np.float32), covered=[True, False, True, True, True, False],
                 applicable=[1.0, 1.0, 0.25, 1.0, 1.0, np.nan])
    np.testing.assert_allclose(t.train_weights(), [1, 0, 0.25, 0, 0, 0])
    np.testing.assert_allclose(t.train_weights(uncovered_weight=0.5), [1, 0.5, 0.25, 0, 0, 0])


def test_predict_proba_keeps_input_order(enc_dir, tasks):
    cfg = tiny_config(encoder=str(enc_dir))
    model, tok = build_model(head_specs(tasks), cfg)
    texts = ["great match today", "the", "awful vote of the party was so very bad and poor", "song"]
    together = predict_proba(model, tok, texts, max_length=32, batch_size=3, bf16=False)
    for i, t in enumerate(texts):
        alone = predict_proba(model, tok, [t], max_length=32, bf16=False)
        for name in ("sentiment", "topic"):
            np.testing.assert_allclose(together[name][i], alone[name][0], atol=1e-5)
    assert together["topic"].shape == (4, 3)
    np.testing.assert_allclose(together["topic"].sum(1), 1.0, atol=1e-5)


def test_warm_start_keeps_unchanged_heads_and_drops_removed(enc_dir):
    enc, _ = load_encoder(enc_dir)
    old = [HeadSpec("keep", ("a", "b")), HeadSpec("gone", ("a", "b")), HeadSpec("relabel", ("a", "b", "c")),
           HeadSpec("reshape", ("a", "b"))]
    model = MotherModel(enc, old, seed=5)
    with torch.no_grad():  # as if trained: weights no fresh init would give
        for p in model.heads.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = [HeadSpec("keep", ("a", "b")), HeadSpec("relabel", ("a", "b", "c")), HeadSpec("reshape", ("a", "b", "c")),
           HeadSpec("fresh", ("x", "y"))]
    ws = reconcile_heads(model, new, changed={"relabel"})
    assert ws.to_dict() == {"kept": ["keep"], "finetuned": ["relabel"], "reinitialized": ["reshape"],
                            "added": ["fresh"], "removed": ["gone"]}
    after = model.state_dict()
    for k, v in before.items():
        if k.startswith(("encoder.", "heads.keep.", "heads.relabel.")):
            assert torch.equal(after[k], v), k  # bit-identical
    assert not any(k.startswith("heads.gone.") for k in after)
    assert after["heads.reshape.out.weight"].shape == (3, model.hidden)
    assert set(model.task_names) == {"keep", "relabel", "reshape", "fresh"}
    # a new head's init depends only on (seed, name): the same as in a model built with it from the start
    alone = MotherModel(enc, [HeadSpec("fresh", ("x", "y"))], seed=5)
    assert torch.equal(alone.heads["fresh"].out.weight, model.heads["fresh"].out.weight)
    # 'reinit' policy for changed tasks
    ws2 = reconcile_heads(model, new, changed={"keep"}, changed_policy="reinit")
    assert ws2.reinitialized == ["keep"]
    assert not torch.equal(model.state_dict()["heads.keep.out.weight"], before["heads.keep.out.weight"])


def test_warm_start_keeps_adds_and_drops_slice_heads(enc_dir):
    """Slices alone changed: the head keeps its weights and the kept slices' experts; a new slice enters with
    zero output weights (predictions unchanged until trained); a dropped slice's weights go."""
    enc, tok = load_encoder(enc_dir)
    model = MotherModel(enc, [HeadSpec("t", ("a", "b", "c"), slices=("long", "short"))], seed=5)
    with torch.no_grad():  # as if trained
        for p in model.heads.parameters():
            p.add_(torch.randn_like(p))
    old = {k: v.clone() for k, v in model.heads["t"].state_dict().items()}
    x = tok(["the match was great", "a vote"], padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        before = model(x["input_ids"], x["attention_mask"])["t"]["logits"]
    ws = reconcile_heads(model, [HeadSpec("t", ("a", "b", "c"), slices=("long", "numbers", "short"))])
    assert ws.finetuned == ["t"] and ws.reinitialized == []
    assert ws.to_dict()["slices"] == {"t": {"kept": ["long", "short"], "added": ["numbers"], "dropped": []}}
    head = model.heads["t"]
    for s in ("long", "short"):
        for part in ("indicators", "experts"):
            for w in ("weight", "bias"):
                assert torch.equal(getattr(head, part)[s].state_dict()[w], old[f"{part}.{s}.{w}"])
    h = model.hidden
    assert torch.equal(head.out.weight[:, :h], old["out.weight"][:, :h])
    assert torch.equal(head.out.weight[:, h + 3:h + 6], torch.zeros(3, 3))  # 'numbers': the middle block
    assert torch.equal(head.out.weight[:, h + 6:], old["out.weight"][:, h + 3:])  # 'short' moved with its name
    model.eval()
    with torch.no_grad():
        after = model(x["input_ids"], x["attention_mask"])["t"]["logits"]
    assert torch.allclose(before, after, atol=1e-6)  # an added slice changes nothing until trained
    ws = reconcile_heads(model, [HeadSpec("t", ("a", "b", "c"), slices=("numbers",))])
    assert ws.slices == {"t": {"kept": ["numbers"], "added": [], "dropped": ["long", "short"]}}
    assert set(model.heads["t"].experts) == {"numbers"} and model.heads["t"].out.weight.shape == (3, h + 3)
    # other structure changes still re-initialise
    assert reconcile_heads(model, [HeadSpec("t", ("a", "b"), slices=("numbers",))]).reinitialized == ["t"]


def test_hierarchical_tree_with_slices_trains(enc_dir):
    """A task tree on one dataset (hierarchical layout) with a slice head: every row is encoded once for both tasks."""
    sent, _ = synthetic_tasks(n_sent=300, seed=4)
    # child: among positive rows, does the text say 'love'? (applies only where the parent is class 1)
    gold_c = np.array([1 if "love" in t else 0 for t in sent.texts])
    applies = sent.gold == 1
    child_probs = np.eye(2, dtype=np.float32)[gold_c] * 0.8 + 0.1
    child = TaskData("child", ["other", "love"], sent.texts, sent.split, probs=child_probs,
                     gold=np.where(applies, gold_c, -1), parent="sentiment", parent_class=1,
                     applicable=sent.probs[:, 1], dataset="reviews")
    parent = TaskData("sentiment", sent.classes, sent.texts, sent.split, probs=sent.probs, covered=sent.covered,
                      gold=sent.gold, dataset="reviews",
                      slices={"short": np.array([len(t.split()) < 6 for t in sent.texts])})
    cfg = tiny_config(encoder=str(enc_dir), layout="hierarchical", epochs=6)
    model, tok = build_model(head_specs([parent, child]), cfg)
    assert model.task_names == ["sentiment", "child"]
    assert set(model.heads["sentiment"].experts) == {"short"}
    res = train(model, tok, [child, parent], cfg, progress=False)
    ts = TrainingSet([child, parent], tok, 32)
    # one dataset: each train row is one unit (encoded once per draw for both tasks); the child's
    # P(applies) > 0 everywhere, so even rows the parent's sources missed teach the child
    assert ts.datasets == ["reviews"] and ts.num_units == int((sent.split == "train").sum())
    m = evaluate(model, tok, [parent, child], tokens=res.tokens)
    assert m["sentiment"]["test"]["accuracy"] >= 0.8, m
    assert m["child"]["test"]["n"] == int(((sent.split == "test") & applies).sum())


def test_freeze_embeddings_keeps_the_word_embeddings(enc_dir, tasks):
    cfg = tiny_config(encoder=str(enc_dir), max_steps=3, freeze_embeddings=True)
    model, tok = build_model(head_specs(tasks), cfg)
    emb = model.encoder.get_input_embeddings().weight.detach().clone()
    layer = next(p for n, p in model.encoder.named_parameters() if "layer.0." in n).detach().clone()
    train(model, tok, tasks, cfg, progress=False)
    assert torch.equal(model.encoder.get_input_embeddings().weight, emb)
    assert not torch.equal(next(p for n, p in model.encoder.named_parameters() if "layer.0." in n), layer)


def test_param_groups_layer_decay_and_no_decay_on_biases(enc_dir):
    from mothermodel.trainer.loop import param_groups

    enc, _ = load_encoder(enc_dir)  # 2 layers
    model = MotherModel(enc, [HeadSpec("a", ("x", "y"))])
    cfg = tiny_config(encoder=str(enc_dir), lr=1.0, head_lr=5.0, layer_decay=0.5, weight_decay=0.1)
    groups, names = param_groups(model, cfg)
    lr_of, wd_of = {}, {}
    for g in groups:
        for p in g["params"]:
            lr_of[id(p)], wd_of[id(p)] = g["lr"], g["weight_decay"]
    params = dict(model.named_parameters())
    assert sorted(names) == sorted(params)
    assert lr_of[id(params["encoder.embeddings.word_embeddings.weight"])] == 0.25
    assert lr_of[id(params["encoder.encoder.layer.0.attention.self.query.weight"])] == 0.5
    assert lr_of[id(params["encoder.encoder.layer.1.output.dense.weight"])] == 1.0
    assert lr_of[id(params["heads.a.out.weight"])] == 5.0
    assert wd_of[id(params["heads.a.out.weight"])] == 0.1 and wd_of[id(params["heads.a.out.bias"])] == 0.0
    assert wd_of[id(params["encoder.encoder.layer.0.output.LayerNorm.weight"])] == 0.0


def test_bf16_autocast_trains(enc_dir, tasks):
    cfg = tiny_config(encoder=str(enc_dir), bf16=True)
    model, tok = build_model(head_specs(tasks), cfg)
    res = train(model, tok, tasks, cfg, progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay float32
    m = evaluate(model, tok, tasks, tokens=res.tokens)
    assert min(m[t]["test"]["accuracy"] for t in m) >= 0.8, m


def test_marked_inputs_feed_their_spans_to_the_head(enc_dir):
    """A markers task's head reads the encoder's vectors at each opening marker (entity-start pooling): the
    tokenizer finds the marker's token, the head's logits follow the marks, a plain head ignores them, and
    prediction builds the same marks as training."""
    from mothermodel.inputs import MarkedText, TaskInput
    from mothermodel.trainer.data import tokenize

    inp = TaskInput.marked("text", ["s1", "s2"])
    rows = [{"text": "alpha beta gamma delta", "s1": [6, 10], "s2": [17, 22]},
            {"text": "alpha beta gamma delta", "s1": [17, 22], "s2": [0, 5]},
            {"text": "gamma", "s1": [0, 5], "s2": None}]
    texts = [inp.render(r) for r in rows]
    assert isinstance(texts[0], MarkedText) and texts[0] == "alpha << beta >> gamma [[ delta ]]"
    assert [texts[0][m:m + 2] for m in texts[0].marks] == ["<<", "[["] and texts[2].marks == (0, -1)
    cfg = tiny_config(encoder=str(enc_dir))
    model, tok = build_model([HeadSpec("rel", ("A", "B", "C"), spans=2), HeadSpec("plain", ("x", "y"))], cfg)
    tokens = tokenize(tok, texts, 64)
    assert tokens.marks.shape == (3, 2) and tokens.marks[2, 1] == -1
    for i, t in enumerate(texts):
        ids = tokens.ids[tokens.offsets[i]:tokens.offsets[i + 1]]
        for k, pos in enumerate(tokens.marks[i]):
            if pos >= 0:
                assert tok.convert_ids_to_tokens(int(ids[pos])) == ("<" if k == 0 else "[")
    assert tokenize(tok, [str(t) for t in texts], 64).marks is None  # plain strings carry no marks
    # Same sentence, the two pairs asked about: the marks decide the spans head's input.
    model.eval()
    ids = torch.tensor([tokens.ids[tokens.offsets[0]:tokens.offsets[1]]], dtype=torch.long)
    mask = torch.ones_like(ids)
    m = torch.from_numpy(tokens.marks[:1])
    a, b = model(ids, mask, m), model(ids, mask, m.flip(1))
    assert not torch.allclose(a["rel"]["logits"], b["rel"]["logits"])
    assert torch.equal(a["plain"]["logits"], b["plain"]["logits"])
    p = predict_proba(model, tok, texts[:1], max_length=64)
    assert np.allclose(p["rel"], torch.softmax(a["rel"]["logits"], -1).detach().numpy(), atol=1e-5)
    # The head's structure round-trips through a checkpoint's description; old descriptions read as before.
    assert HeadSpec.from_dict(HeadSpec("rel", ("A", "B"), spans=2).to_dict()).spans == 2
    assert "spans" not in HeadSpec("plain", ("x", "y")).to_dict()
    assert head_specs([TaskData("r", ["a", "b"], ["x"], ["train"], spans=2)], span_pooling=False)[0].spans == 0


def test_epochs_and_rate_follow_the_amount_of_data():
    """Left unset, epochs and the encoder rate come from the data: little data gets 1e-4 and every small
    dataset at least `small_data_epochs` passes from its share of the draws; plenty keeps the defaults; a
    value given wins."""
    from mothermodel.trainer.config import DEFAULT_EPOCHS, DEFAULT_LR, TrainConfig
    from mothermodel.trainer.data import draw_shares, resolve_config

    def tasks(sizes):  # one task a dataset, every row a covered train row
        return [TaskData(f"t{i}", ["a", "b"], ["x"] * n, ["train"] * n, probs=np.full((n, 2), 0.5))
                for i, n in enumerate(sizes)]

    big = resolve_config(TrainConfig(), tasks([9000, 5000]))
    assert (big.epochs, big.lr) == (DEFAULT_EPOCHS, DEFAULT_LR)
    for sizes in ([1400, 1250], [1380, 4800], [300]):
        c = resolve_config(TrainConfig(), tasks(sizes))
        shares = draw_shares(sizes, c.temperature)
        passes = [c.epochs * sum(sizes) * p / n for n, p in zip(sizes, shares) if n < c.small_data_rows]
        assert min(passes) == pytest.approx(c.small_data_epochs, rel=1e-3) and c.epochs > DEFAULT_EPOCHS
        assert c.lr == (c.small_data_lr if sum(sizes) < c.small_data_rows else DEFAULT_LR)
    given = resolve_config(TrainConfig(epochs=2.0, lr=3e-5), tasks([300]))
    assert (given.epochs, given.lr) == (2.0, 3e-5)
    with pytest.raises(ValueError, match="small_data_lr"):
        TrainConfig(small_data_lr=0)
