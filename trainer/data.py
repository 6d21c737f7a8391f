"""The trainer's in-memory input and its batches.

* :class:`TaskData` -- one task's rows: texts, splits, soft labels, coverage, gold.
* :func:`tokenize` -- every text tokenised once (fast tokenizer, no padding).
* :class:`TrainingSet` -- the tasks' training targets over tokenised datasets.
* :func:`plan_batches` -- which rows make up each optimizer step: tasks sampled
  in proportion to size (with a temperature), mixed within a batch or not,
  length-bucketed. Deterministic for a seed, so a resumed run replays it.
* :func:`collate` -- one batch's tensors, padded to its own longest row.

Rows and datasets. Tasks that name the same ``dataset`` label the same rows
(same texts, same order: a task tree on one dataset). Those rows are tokenised
and encoded once per draw and every task of the dataset learns from them, so
sampling works on datasets: a dataset with ``n`` training rows is drawn with
probability proportional to ``n ** (1 / temperature)``. When every task has its
own dataset (the common case) this is exactly task sampling by size.

Which rows teach a task (its per-row loss weight):

* only rows of the ``train`` split;
* rows at least one weak source covered count fully; uncovered rows count
  ``uncovered_weight`` (default 0: dropped). Their label-model posterior is the
  class prior, which says nothing about the row's text and would pull every
  prediction toward the majority class (docs/trainer.md);
* a child task in a tree weighs a row by ``applicable`` = P(the task applies),
  the label model's probability that the parent has the child's parent class;
* a hand-labelled row (``hand``, from `label add`) counts ``hand_weight``, in
  whatever split it is, and its target is its hand label, one-hot.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

import numpy as np
import torch

from mothermodel.labeling.model.votes import one_hot_where
from mothermodel.trainer.config import DEFAULT_EPOCHS, DEFAULT_LR, TrainConfig

__all__ = ["TaskData", "Tokenized", "tokenize", "TrainingSet", "plan_batches", "Batch", "collate", "pad_marks",
           "steps_for", "train_rows", "resolve_config"]


@dataclass
class TaskData:
    """One task's rows, in the order of its dataset.

    Attributes:
        name: the task name (a head of the model).
        classes: class names; index = class id.
        texts: every row's text (train, valid, test, ... rows alike).
        split: every row's split name ('train', 'valid', 'test', ...).
        probs: (rows, classes) float32 soft labels (the label model's
            posteriors); only train rows are read. None: a task with nothing to
            learn (prediction or evaluation only).
        covered: (rows,) bool, True where at least one weak source voted.
            None = every row covered.
        gold: (rows,) int gold class, -1 where unknown. Evaluation only.
        parent: the parent task's name in a task tree, or None.
        parent_class: the parent's class index this task refines (with `parent`).
        applicable: (rows,) float P(this task applies to the row) for a child
            task; None = always applies.
        dataset: tasks with the same dataset share rows (identical texts, same
            order); None = a dataset of its own, named after the task.
        slices: slice name -> (rows,) bool membership (optional slice heads).
        spans: how many marked spans the task's input has (mothermodel.inputs markers); its head also
            reads the encoder's vectors at each opening marker. 0 = none.
        hand: (rows,) int hand label (`label add`) per row, -1 where none; None = no hand labels.
            Those rows' gold is already -1 (never scored).
        measured: slice name -> (rows,) bool membership of the task's declared slices (`label apply`),
            measured by `evaluate` (figures under the split ``<split>/slice:<name>``), not trained on:
            `slices` above is what slice heads train.
    """

    name: str
    classes: Sequence[str]
    texts: Sequence[str]
    split: Any
    probs: Optional[np.ndarray] = None
    covered: Optional[np.ndarray] = None
    gold: Optional[np.ndarray] = None
    parent: Optional[str] = None
    parent_class: Optional[int] = None
    applicable: Optional[np.ndarray] = None
    dataset: Optional[str] = None
    slices: dict[str, np.ndarray] = field(default_factory=dict)
    spans: int = 0
    hand: Optional[np.ndarray] = None
    measured: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.texts)
        self.classes = [str(c) for c in self.classes]
        self.split = np.asarray(self.split, dtype=object)
        if len(self.classes) < 2:
            raise ValueError(f"task {self.name!r}: needs at least 2 classes, got {self.classes}")
        if self.split.shape != (n,):
            raise ValueError(f"task {self.name!r}: split has {self.split.shape} entries for {n} texts")
        if self.probs is not None:
            self.probs = np.asarray(self.probs, dtype=np.float32)
            if self.probs.shape != (n, len(self.classes)):
                raise ValueError(f"task {self.name!r}: probs has shape {self.probs.shape}, "
                                 f"expected ({n}, {len(self.classes)})")
        for attr, dtype in (("covered", bool), ("gold", np.int64), ("applicable", np.float32), ("hand", np.int64)):
            v = getattr(self, attr)
            if v is not None:
                v = np.asarray(v, dtype=dtype)
                if v.shape != (n,):
                    raise ValueError(f"task {self.name!r}: {attr} has shape {v.shape}, expected ({n},)")
                setattr(self, attr, v)
        if self.gold is not None and (self.gold >= len(self.classes)).any():
            raise ValueError(f"task {self.name!r}: a gold label is >= the number of classes ({len(self.classes)})")
        if self.hand is not None and (self.hand >= len(self.classes)).any():
            raise ValueError(f"task {self.name!r}: a hand label is >= the number of classes ({len(self.classes)})")
        if self.parent_class is not None and self.parent is None:
            raise ValueError(f"task {self.name!r}: parent_class given without a parent")
        self.slices = {str(k): np.asarray(v, dtype=bool) for k, v in (self.slices or {}).items()}
        self.measured = {str(k): np.asarray(v, dtype=bool) for k, v in (self.measured or {}).items()}
        for k, v in [*self.slices.items(), *self.measured.items()]:
            if v.shape != (n,):
                raise ValueError(f"task {self.name!r}: slice {k!r} has shape {v.shape}, expected ({n},)")
        if self.dataset is None:
            self.dataset = self.name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def hand_rows(self) -> np.ndarray:
        """(rows,) bool: rows with a hand label."""
        return self.hand >= 0 if self.hand is not None else np.zeros(len(self.texts), bool)

    def hand_only(self) -> "TaskData":
        """This task learning from its hand-labelled rows alone (the last, clean stage; config.hand_epochs):
        those rows, in whatever split, are its only weighted rows, their targets their hand labels."""
        h = self.hand_rows
        probs = one_hot_where(np.zeros((len(self.texts), self.num_classes), np.float32), self.hand)
        return replace(self, probs=probs if h.any() else None, covered=h, applicable=None,
                       split=np.where(h, "train", "not-hand").astype(object))

    def targets(self) -> np.ndarray:
        """Soft training targets: `clean_probs`, with hand-labelled rows one-hot on their hand label."""
        if self.probs is None:
            return np.full((len(self.texts), self.num_classes), 1.0 / self.num_classes, np.float32)
        return one_hot_where(self.clean_probs(), self.hand)

    def train_weights(self, uncovered_weight: float = 0.0, hand_weight: float = 1.0) -> np.ndarray:
        """(rows,) float32 loss weight of each row for this task (see the module doc)."""
        n = len(self.texts)
        if self.probs is None:
            return np.zeros(n, np.float32)
        w = (self.split == "train").astype(np.float32)
        if self.covered is not None:
            w *= np.where(self.covered, 1.0, uncovered_weight).astype(np.float32)
        if self.applicable is not None:
            w *= np.clip(np.nan_to_num(self.applicable, nan=0.0), 0.0, 1.0)
        bad = ~np.isfinite(self.probs).all(axis=1)
        w[bad] = 0.0  # a row without a usable posterior (e.g. NaN where a child does not apply) teaches nothing
        w[self.hand_rows] = hand_weight
        return w

    def clean_probs(self) -> np.ndarray:
        """Soft labels with unusable rows (NaN, negative, all zero) made uniform and rows renormalised."""
        k = len(self.classes)
        p = np.array(self.probs, dtype=np.float32, copy=True)
        bad = ~np.isfinite(p).all(axis=1) | (p < 0).any(axis=1) | (p.sum(axis=1) <= 0)
        p[bad] = 1.0 / k
        return p / p.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- #
# Tokenisation
# --------------------------------------------------------------------------- #
@dataclass
class Tokenized:
    """Token ids of many texts, flat: text i is ``ids[offsets[i]:offsets[i+1]]``.

    ``marks`` (texts, spans) int64: for marked inputs (mothermodel.inputs.MarkedText), the token position
    of each span's opening marker, -1 where the row has no such span or it was truncated away; None when
    no text is marked.
    """

    ids: np.ndarray  # int32
    offsets: np.ndarray  # int64, len = texts + 1
    marks: Optional[np.ndarray] = None

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1


def tokenize(tokenizer: Any, texts: Sequence[Any], max_length: int, chunk: int = 8192) -> Tokenized:
    """Tokenise `texts` once (special tokens added, truncated to `max_length`, no padding). A text may be a
    (text, text_pair) tuple (a pair input, mothermodel.inputs): encoded as the tokenizer's pair, the longer
    of the two truncated first."""
    parts: list[np.ndarray] = []
    lengths = np.zeros(len(texts), np.int64)
    width = max((len(getattr(t, "marks", ())) for t in texts), default=0)
    marks = np.full((len(texts), width), -1, np.int64) if width else None
    for s in range(0, len(texts), chunk):
        raw = texts[s:s + chunk]
        pairs = any(isinstance(t, tuple) for t in raw)
        if pairs:
            first = ["" if not isinstance(t, tuple) else str(t[0]) for t in raw]
            second = ["" if t is None else (str(t[1]) if isinstance(t, tuple) else str(t)) for t in raw]
        else:
            first, second = ["" if t is None else str(t) for t in raw], None
        enc = tokenizer(first, second, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
        if marks is not None:
            _mark_tokens(enc, raw, marks[s:s + len(raw)])
        enc = enc["input_ids"]
        for j, ids in enumerate(enc):
            lengths[s + j] = len(ids)
        parts.append(np.fromiter((t for ids in enc for t in ids), dtype=np.int32, count=int(lengths[s:s + len(enc)].sum())))
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return Tokenized(ids, offsets, marks)


def _mark_tokens(enc: Any, raw: Sequence[Any], out: np.ndarray) -> None:
    """Fill `out` (rows, spans) with the token holding each marked character (fast tokenizers map
    characters to tokens; a slow one leaves -1, and the model then reads the first token)."""
    if not getattr(enc, "is_fast", False):
        return
    for j, t in enumerate(raw):
        for k, c in enumerate(getattr(t, "marks", ())):
            if c >= 0:
                tok = enc.char_to_token(j, c)
                if tok is not None:
                    out[j, k] = tok


# --------------------------------------------------------------------------- #
# Training set
# --------------------------------------------------------------------------- #
class TrainingSet:
    """The tasks' training targets over their tokenised datasets.

    A *unit* is one dataset row with a non-zero weight for at least one task;
    units are numbered globally, dataset after dataset.

    Attributes:
        tasks: the tasks, in the given order.
        datasets: dataset names, in order of first appearance.
        task_dataset: dataset index of each task.
        tokens: per dataset, its rows' token ids.
        targets: per task, (rows, classes) float32 soft labels (cleaned).
        weights: per task, (rows,) float32 loss weights.
        unit_rows: per dataset, the rows that are units (int64, ascending).
        unit_offsets: global unit id of each dataset's first unit (len = datasets + 1).
    """

    def __init__(self, tasks: Sequence[TaskData], tokenizer: Any, max_length: int, uncovered_weight: float = 0.0,
                 tokens: Optional[dict[str, Tokenized]] = None, hand_weight: float = 1.0):
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names repeat: {names}")
        self.tasks = list(tasks)
        self.datasets: list[str] = []
        first: dict[str, TaskData] = {}
        for t in self.tasks:
            if t.dataset not in first:
                first[t.dataset] = t
                self.datasets.append(t.dataset)
            elif len(first[t.dataset].texts) != len(t.texts):
                raise ValueError(f"tasks {first[t.dataset].name!r} and {t.name!r} share dataset {t.dataset!r} "
                                 f"but have {len(first[t.dataset].texts)} and {len(t.texts)} rows")
        d_index = {d: i for i, d in enumerate(self.datasets)}
        self.task_dataset = [d_index[t.dataset] for t in self.tasks]
        tokens = dict(tokens or {})
        self.tokens = [tokens.get(d) or tokenize(tokenizer, first[d].texts, max_length) for d in self.datasets]
        self.targets, self.weights = [], []
        for t in self.tasks:
            self.targets.append(t.targets())
            self.weights.append(t.train_weights(uncovered_weight, hand_weight))
        units = _unit_rows(self.tasks, self.weights)
        self.unit_rows = [units[d] for d in self.datasets]
        self.unit_offsets = np.zeros(len(self.datasets) + 1, np.int64)
        np.cumsum([len(r) for r in self.unit_rows], out=self.unit_offsets[1:])

    @property
    def num_units(self) -> int:
        return int(self.unit_offsets[-1])

    def unit_lengths(self) -> list[np.ndarray]:
        """Per dataset, the token count of each unit."""
        return [self.tokens[d].lengths[self.unit_rows[d]] for d in range(len(self.datasets))]

    def unit_location(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dataset index, row) of each global unit id."""
        d = np.searchsorted(self.unit_offsets, units, side="right") - 1
        rows = np.empty(len(units), np.int64)
        for di in np.unique(d):
            m = d == di
            rows[m] = self.unit_rows[di][units[m] - self.unit_offsets[di]]
        return d, rows


def _unit_rows(tasks: Sequence[TaskData], weights: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Per dataset (in order of first appearance), the rows some task has a non-zero weight on."""
    any_w: dict[str, np.ndarray] = {}
    for t, w in zip(tasks, weights):
        any_w[t.dataset] = (w > 0) if t.dataset not in any_w else (any_w[t.dataset] | (w > 0))
    return {d: np.flatnonzero(m) for d, m in any_w.items()}


def train_rows(tasks: Sequence[TaskData], uncovered_weight: float = 0.0) -> dict[str, int]:
    """Per dataset (in order of first appearance), how many rows some task learns from (`TrainingSet`'s
    units)."""
    units = _unit_rows(tasks, [t.train_weights(uncovered_weight) for t in tasks])
    return {d: len(r) for d, r in units.items()}


def resolve_config(config: TrainConfig, tasks: Sequence[TaskData]) -> TrainConfig:
    """`config` with `epochs` and `lr` set where they are None, from the rows `tasks` learn
    from (`train_rows`).

    The rate: `small_data_lr` when the rows in all are fewer than `small_data_rows`, else `DEFAULT_LR`.
    The epochs: `DEFAULT_EPOCHS`, or more where a dataset under `small_data_rows` rows would otherwise get
    fewer than `small_data_epochs` passes from its share of the draws (`draw_shares`' rule): too few steps
    was why small relation and non-English sets lost to their labels (docs/trainer.md, "How many steps")."""
    if config.epochs is not None and config.lr is not None:
        return config
    sizes = [n for n in train_rows(tasks, config.uncovered_weight).values() if n > 0]
    total = sum(sizes)
    lr = config.lr
    if lr is None:
        lr = config.small_data_lr if 0 < total < config.small_data_rows else DEFAULT_LR
    epochs = config.epochs
    if epochs is None:
        epochs = DEFAULT_EPOCHS
        if sizes:
            shares = _dataset_probs(sizes, config.temperature)
            epochs = max([epochs] + [config.small_data_epochs * n / (total * p)
                                     for n, p in zip(sizes, shares) if n < config.small_data_rows])
        epochs = round(float(epochs), 3)
    return config.replace(epochs=epochs, lr=lr)


def steps_for(num_units: int, global_batch: int, epochs: float, max_steps: Optional[int]) -> int:
    """Optimizer steps of a run: `max_steps`, else enough batches for `epochs` passes."""
    if max_steps is not None:
        return int(max_steps)
    return max(1, int(np.ceil(epochs * num_units / global_batch)))


def _dataset_probs(sizes: Sequence[int], temperature: float) -> np.ndarray:
    s = np.asarray(sizes, np.float64)
    w = np.where(s > 0, s ** (1.0 / temperature), 0.0)
    return w / w.sum()


def draw_shares(sizes: Sequence[int], temperature: float, focus: Optional[Sequence[int]] = None,
                replay: float = 0.0) -> np.ndarray:
    """Each dataset's share of the draws: ``n ** (1/temperature)``, normalised.

    With `focus` (dataset indices; a warm-started run that teaches new or
    changed tasks), the focus datasets share ``1 - replay`` of the draws and
    the others ``replay``, each group split by the same rule: the unchanged
    tasks keep seeing some of their rows, so the shared encoder does not drift
    away from them, yet most of the (short) run goes where something changed.
    """
    p = _dataset_probs(sizes, temperature)
    if focus is None:
        return p
    f = np.zeros(len(p), bool)
    f[list(focus)] = True
    f &= p > 0
    if not f.any():
        raise ValueError("no training rows in the focus tasks' datasets")
    rest = ~f & (p > 0)
    out = np.zeros_like(p)
    out[f] = p[f] / p[f].sum() * (1.0 - replay if rest.any() else 1.0)
    if rest.any():
        out[rest] = p[rest] / p[rest].sum() * replay
    return out


def round_units(ts: "TrainingSet", focus: Optional[Sequence[int]] = None, replay: float = 0.0) -> int:
    """Draws in one round (one epoch): every unit, or with `focus` one pass over the focus
    datasets' units plus the replay draws that come with them."""
    if focus is None:
        return ts.num_units
    focus = set(focus)
    n = sum(len(ts.unit_rows[d]) for d in focus)
    others = any(len(r) for d, r in enumerate(ts.unit_rows) if d not in focus)
    return max(1, int(np.ceil(n / (1.0 - replay)))) if others else max(1, n)


def _split_counts(total: int, p: np.ndarray) -> np.ndarray:
    """Integer counts summing to `total` in proportions `p` (largest remainders)."""
    raw = total * p
    c = np.floor(raw).astype(np.int64)
    rest = total - int(c.sum())
    if rest > 0:
        c[np.argsort(-(raw - c), kind="stable")[:rest]] += 1
    return c


class _Stream:
    """An endless sequence of one dataset's units: shuffled pass after shuffled pass."""

    def __init__(self, units: np.ndarray, rng: np.random.Generator):
        self.units, self.rng, self.buf = units, rng, np.zeros(0, np.int64)

    def take(self, k: int) -> np.ndarray:
        while len(self.buf) < k:
            self.buf = np.concatenate([self.buf, self.rng.permutation(self.units)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


def _bucket(draws: np.ndarray, lengths: np.ndarray, batch: int, pool: int, rng: np.random.Generator,
            enabled: bool) -> list[np.ndarray]:
    """Cut `draws` into batches; with bucketing, sort each pool of `pool` batches by length first."""
    out: list[np.ndarray] = []
    step = batch * pool if enabled else len(draws) or 1
    for s in range(0, len(draws), step):
        chunk = draws[s:s + step]
        if enabled:
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        bs = [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
        if enabled:
            bs = [bs[i] for i in rng.permutation(len(bs))]  # long and short batches in random order
        out.extend(bs)
    return out


def plan_batches(ts: TrainingSet, steps: int, global_batch: int, *, mixing: str = "heterogeneous",
                 temperature: float = 1.0, bucketing: bool = True, bucket_pool: int = 50,
                 seed: int = 0, focus: Optional[Sequence[int]] = None, replay: float = 0.0) -> np.ndarray:
    """(steps, global_batch) int64 global unit ids: the rows of every optimizer step.

    Built one *round* at a time; a round draws as many units as there are
    (one epoch at temperature 1), split over datasets by
    ``n_d ** (1/temperature)``; each dataset's draws walk through shuffled
    passes of its rows, so at temperature 1 every row is seen once per epoch.

    * heterogeneous: a round's draws are shuffled together, so batches mix tasks;
    * homogeneous: each dataset's draws are cut into batches of their own, and
      the batches are shuffled.

    With bucketing, draws are sorted by length within pools of `bucket_pool`
    batches before cutting, and the pool's batches are shuffled: batches pad to
    similar lengths, yet long and short batches alternate at random.
    Every batch is full: draws left over at the end of a round (fewer than a
    batch) open the next round's first batch.

    With `focus` (dataset indices), a round is one pass over the focus
    datasets' units and the shares follow :func:`draw_shares`.
    """
    if mixing not in ("heterogeneous", "homogeneous"):
        raise ValueError(f"mixing must be 'heterogeneous' or 'homogeneous', got {mixing!r}")
    if ts.num_units == 0:
        raise ValueError("no training rows: no task has a train-split row with a weight > 0")
    rng = np.random.default_rng([int(seed), 7])
    sizes = [len(r) for r in ts.unit_rows]
    p = draw_shares(sizes, temperature, focus, replay)
    lengths = np.concatenate(ts.unit_lengths()) if ts.num_units else np.zeros(0, np.int64)
    streams = [_Stream(np.arange(ts.unit_offsets[d], ts.unit_offsets[d + 1]), np.random.default_rng([int(seed), 11, d]))
               for d in range(len(sizes))]
    per_round = max(round_units(ts, focus, replay), global_batch)
    batches: list[np.ndarray] = []
    # draws that did not fill a batch wait for the next round (no row repeats within a round)
    carry = [np.zeros(0, np.int64) for _ in range(len(sizes) if mixing == "homogeneous" else 1)]
    while len(batches) < steps:
        counts = _split_counts(per_round, p)
        if mixing == "heterogeneous":
            draws = np.concatenate([streams[d].take(int(c)) for d, c in enumerate(counts)])
            draws = np.concatenate([carry[0], draws[rng.permutation(len(draws))]])
            cut = len(draws) - len(draws) % global_batch
            carry[0] = draws[cut:]
            batches.extend(_bucket(draws[:cut], lengths, global_batch, bucket_pool, rng, bucketing))
        else:
            rb: list[np.ndarray] = []
            for d, c in enumerate(counts):
                draws = np.concatenate([carry[d], streams[d].take(int(c))])
                cut = len(draws) - len(draws) % global_batch
                carry[d] = draws[cut:]
                rb.extend(_bucket(draws[:cut], lengths, global_batch, bucket_pool, rng, bucketing))
            batches.extend(rb[i] for i in rng.permutation(len(rb)))
    return np.stack(batches[:steps]).astype(np.int64)


# --------------------------------------------------------------------------- #
# Batches
# --------------------------------------------------------------------------- #
@dataclass
class Batch:
    """One process's share of one step.

    Attributes:
        input_ids, attention_mask: (B, L) int64, padded to the batch's longest row.
        tasks: task index -> (positions in the batch, (k, C) soft targets, (k,) weights)
            for each task whose dataset has rows in the batch.
        slices: task index -> slice name -> (B,) float membership (tasks with slices only).
        size: B.
        marks: (B, spans) int64 token positions of the opening markers (`Tokenized.marks`, 0 where a row
            has none), or None when no row in the batch is marked.
    """

    input_ids: Any
    attention_mask: Any
    tasks: dict[int, tuple[Any, Any, Any]]
    slices: dict[int, dict[str, Any]]
    size: int
    marks: Any = None

    def to(self, device: Any) -> "Batch":
        nb = device.type == "cuda"
        mv = lambda x: x.to(device, non_blocking=nb)  # noqa: E731
        return Batch(mv(self.input_ids), mv(self.attention_mask),
                     {k: (mv(a), mv(b), mv(c)) for k, (a, b, c) in self.tasks.items()},
                     {k: {s: mv(m) for s, m in v.items()} for k, v in self.slices.items()}, self.size,
                     None if self.marks is None else mv(self.marks))


def pad_ids(tokens: Sequence[Tokenized], dataset: np.ndarray, rows: np.ndarray, pad_id: int,
            multiple: int = 1) -> tuple[Any, Any]:
    """(input_ids, attention_mask) int64 tensors for the given rows, padded to their longest."""
    lens = np.array([tokens[d].offsets[r + 1] - tokens[d].offsets[r] for d, r in zip(dataset, rows)], np.int64)
    L = int(lens.max()) if len(lens) else 1
    if multiple > 1:
        L = -(-L // multiple) * multiple
    ids = np.full((len(rows), L), pad_id, np.int64)
    mask = np.zeros((len(rows), L), np.int64)
    for i, (d, r) in enumerate(zip(dataset, rows)):
        s, e = tokens[d].offsets[r], tokens[d].offsets[r + 1]
        ids[i, :e - s] = tokens[d].ids[s:e]
        mask[i, :e - s] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def pad_marks(tokens: Sequence[Tokenized], dataset: np.ndarray, rows: np.ndarray) -> Any:
    """(B, spans) int64 marker positions of the given rows (0 = the first token where a row has none),
    or None when none of their datasets is marked."""
    width = max((tokens[d].marks.shape[1] for d in set(dataset.tolist()) if tokens[d].marks is not None), default=0)
    if not width:
        return None
    out = np.zeros((len(rows), width), np.int64)
    for i, (d, r) in enumerate(zip(dataset, rows)):
        m = tokens[d].marks
        if m is not None:
            out[i, :m.shape[1]] = np.maximum(m[r], 0)
    return torch.from_numpy(out)


def collate(ts: TrainingSet, units: np.ndarray, pad_id: int, pad_multiple: int = 1) -> Batch:
    """The tensors of one batch of global unit ids."""
    d, rows = ts.unit_location(np.asarray(units, np.int64))
    input_ids, attention_mask = pad_ids(ts.tokens, d, rows, pad_id, pad_multiple)
    tasks: dict[int, tuple[Any, Any, Any]] = {}
    slices: dict[int, dict[str, Any]] = {}
    for ti, t in enumerate(ts.tasks):
        pos = np.flatnonzero(d == ts.task_dataset[ti])
        if len(pos) == 0:
            continue
        r = rows[pos]
        tasks[ti] = (torch.from_numpy(pos), torch.from_numpy(ts.targets[ti][r]), torch.from_numpy(ts.weights[ti][r]))
        if t.slices:
            full = {}
            for name, member in t.slices.items():
                m = np.zeros(len(units), np.float32)
                m[pos] = member[r]
                full[name] = torch.from_numpy(m)
            slices[ti] = full
    return Batch(input_ids, attention_mask, tasks, slices, len(units), pad_marks(ts.tokens, d, rows))
