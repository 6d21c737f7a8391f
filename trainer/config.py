"""The training configuration: one typed, documented object, no torch at import.

Defaults are for real data on the default encoder (a pretrained MiniLM): a
short first stage on the label model's labels (1.5 epochs at a gentle encoder
rate, 5e-5, decaying 0.6x a layer downwards; linear heads at a higher rate;
mean pooling; mixed-task batches sampled at temperature 2; word embeddings
frozen) and two self-training rounds. They were chosen on WRENCH youtube +
trec *valid* accuracy among the configurations in docs/trainer.md
("Quality"), within the 10-minute CPU budget; the encoder rate also on a
synthetic world of realistic size. The gentle rate keeps tasks from crowding
each other out of the shared encoder ("Alone vs joint"). Little data needs
more: a run with fewer than `small_data_rows` training rows in all gets 1e-4,
and every dataset under that size at least `small_data_epochs` passes in the
first stage (chemprot + yoruba, 2,750 rows: valid 0.517 / 0.455 at the plain
defaults, 0.550 / 0.550 this way; docs/trainer.md, "How many steps").
Tests override them with tiny values.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional, Sequence

from mothermodel.defaults import DEFAULT_SEED

__all__ = ["Config", "TrainConfig", "TrainOptions", "POOLINGS", "LAYOUTS", "MIXINGS", "DEFAULT_EPOCHS", "DEFAULT_LR",
           "native_bf16", "parse_settings"]

POOLINGS = ("mean", "cls")
LAYOUTS = ("flat", "hierarchical")
MIXINGS = ("heterogeneous", "homogeneous")
DEFAULT_EPOCHS = 1.5
"""First-stage passes over the training rows when `epochs` is None and no dataset is small."""
DEFAULT_LR = 5e-5
"""Encoder rate when `lr` is None and the run's rows are not few."""


class Config:
    """Dict round trips for the frozen config dataclasses (TrainConfig here, distill's DistillConfig)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON- and MLflow-params-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The inverse of `to_dict`; unknown keys are refused (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(extra)}")
        return cls(**d)

    def replace(self, **changes: Any):
        """A copy with `changes`, checked like a new one."""
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class TrainConfig(Config):
    """Settings of one mother-model training run.

    Attributes:
        encoder: a Hugging Face model directory (config, weights, tokenizer), or
            None for the default pretrained MiniLM (`encoder.default_encoder_dir`).
        max_length: tokens per text after truncation (special tokens included).
        batch_size: examples per optimizer step on each process (DDP: per rank).
        epochs: passes over the training rows (fractional allowed); ignored when
            `max_steps` is set. One epoch = as many draws as there are training rows.
            None = `DEFAULT_EPOCHS`, raised where needed so that every dataset with
            fewer than `small_data_rows` rows gets `small_data_epochs` passes
            (`data.resolve_config`).
        max_steps: optimizer steps in all; None = from `epochs`.
        lr: peak learning rate of the encoder. None = `DEFAULT_LR`, or
            `small_data_lr` when the run has fewer than `small_data_rows` rows.
        small_data_rows, small_data_epochs, small_data_lr: the rule above (rows =
            training rows with a weight, i.e. LF-covered train rows).
        head_lr: peak learning rate of the task heads (new, randomly initialised
            layers learn faster than pretrained ones).
        layer_decay: layer-wise rate decay: encoder layer l (of L, embeddings = 0)
            gets lr * layer_decay ** (L - l). 1.0 = one rate for the whole encoder.
        weight_decay: AdamW decoupled weight decay on matrices (not on biases or
            LayerNorm weights).
        warmup_fraction: share of the steps over which the rate rises linearly from 0.
        decay: after warm-up, 'linear' decay to 0 or 'constant'.
        grad_clip: clip the global gradient norm to this (0 = off).
        freeze_embeddings: keep the encoder's input (word) embedding matrix
            fixed: about half of a MiniLM's weights, and its dense AdamW update
            is ~15% of a CPU step; position embeddings and the layers still train.
        dropout: dropout on the pooled representation before the heads.
        pooling: 'mean' (mean of token vectors, padding masked) or 'cls' (first token).
        span_pooling: a task whose input marks spans (mothermodel.inputs markers, e.g. a relation's two
            entities) also reads the encoder's vector at each opening marker (entity-start pooling);
            False gives it the pooled vector only.
        layout: 'flat' (every head reads the pooled text vector) or 'hierarchical'
            (HierMTL: a child task's head also reads its parent head's class probabilities).
        mixing: 'heterogeneous' (tasks mixed within a batch) or 'homogeneous'
            (each batch draws from one dataset's tasks).
        temperature: task sampling temperature: a dataset with n training rows is
            drawn with probability proportional to n ** (1 / temperature); 1 =
            proportional to size, larger flattens toward uniform.
        bucketing: sort draws by length inside pools of `bucket_pool` batches so
            that each batch pads to a similar length (dynamic padding either way).
        bucket_pool: batches per sorting pool (larger = less padding, less randomness).
        uncovered_weight: loss weight of train rows that no weak source covered.
            Their posterior is the label model's class prior (or, with the text
            view, a bag-of-words guess): 0 drops them (see docs/trainer.md).
        warm_epochs: a warm-started run that keeps some tasks' heads (new or
            changed tasks beside unchanged ones) trains its first stage and each
            self-training round for this many passes over the rows of the new and
            changed tasks' datasets, instead of `epochs` / `self_train_epochs`
            over every dataset: what did not change was learnt already.
        warm_self_train_rounds: self-training rounds of such a warm run (at
            most `self_train_rounds`): one round is most of the gain for a new
            task, and a run that adds a task should cost a fraction of a full one.
        replay: share of a warm run's draws taken from datasets that hold only
            unchanged tasks, so that the shared encoder does not drift away from them.
        warm_lr_scale: a warm run's encoder rate is lr times this (head rates
            unchanged): the encoder has learnt already, and what a new or
            changed task needs most is its head; a gentler encoder keeps the
            unchanged tasks where they were (docs/trainer.md, the sweep).
        self_train_rounds: rounds of self-training after the first stage
            (selftrain.py: the model's own sharpened, confident predictions on
            every train row become the targets); 0 = off.
        self_train_epochs: epochs of each self-training round.
        self_train_threshold: a row joins a round when its sharpened target's
            top class probability is at least this.
        self_train_lr_scale: a round's peak rates are lr and head_lr times this.
        hand_weight: loss weight of a hand-labelled row (`label add`; its target is
            its hand label, one-hot) in every stage, next to weak rows' 1.
        hand_epochs: passes of a last stage over the hand-labelled rows alone, at
            `lr` and `head_lr` (0 = none): weak labels first, clean labels last, the
            order "Weaker Than You Think" (Zhu et al., ACL 2023) found best. Tasks
            without hand labels learn nothing in it; the guard still picks each
            task's best stage on valid. 20 was chosen on trec's valid split (half
            of it as hand labels, the other half scored: 10 passes 0.892, 20
            passes 0.904; docs/trainer.md, "The clean stage").
        device: 'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:i'.
        bf16: bfloat16 autocast; None = on for CUDA, and on a CPU with native
            bf16 instructions (AVX512-BF16 or AMX: forward 2x, step 1.3x faster
            on this AMD EPYC, same accuracy), off elsewhere (see `native_bf16`).
        compile: torch.compile the encoder (GPU only; ignored on CPU).
        seed: seed of initialisation, sampling and dropout.
        checkpoint_every: write a checkpoint every this many steps (0 = at the end only).
        keep_checkpoints: complete checkpoints kept on disk (older ones removed).
        log_every: progress line (non-terminal) and step callback cadence, in steps.
        eval_batch_size: batch size of prediction and evaluation.
        num_threads: torch CPU threads; None leaves torch's default.
    """

    encoder: Optional[str] = None
    max_length: int = 128
    batch_size: int = 32
    epochs: Optional[float] = None
    max_steps: Optional[int] = None
    lr: Optional[float] = None
    small_data_rows: int = 4000
    small_data_epochs: float = 3.0
    small_data_lr: float = 1e-4
    head_lr: float = 1e-3
    layer_decay: float = 0.6
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    decay: str = "linear"
    grad_clip: float = 1.0
    freeze_embeddings: bool = True
    dropout: float = 0.1
    pooling: str = "mean"
    span_pooling: bool = True
    layout: str = "flat"
    mixing: str = "heterogeneous"
    temperature: float = 2.0
    bucketing: bool = True
    bucket_pool: int = 50
    uncovered_weight: float = 0.0
    warm_epochs: float = 0.4
    warm_self_train_rounds: int = 1
    replay: float = 0.2
    warm_lr_scale: float = 0.1
    self_train_rounds: int = 2
    self_train_epochs: float = 1.0
    self_train_threshold: float = 0.9
    self_train_lr_scale: float = 0.5
    hand_weight: float = 1.0
    hand_epochs: float = 20.0
    device: str = "auto"
    bf16: Optional[bool] = None
    compile: bool = False
    seed: int = DEFAULT_SEED
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_batch_size: int = 128
    num_threads: Optional[int] = None

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{field}: {why}, got {getattr(self, field)!r}")

        if self.max_length < 4:
            raise bad("max_length", "must be >= 4")
        if self.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        if self.epochs is not None and not self.epochs > 0:
            raise bad("epochs", "must be > 0 (or set max_steps)")
        if self.max_steps is not None and self.max_steps < 1:
            raise bad("max_steps", "must be >= 1")
        for f in ("lr", "head_lr", "small_data_lr", "small_data_epochs"):
            if getattr(self, f) is not None and not getattr(self, f) > 0:
                raise bad(f, "must be > 0")
        if not 0 < self.layer_decay <= 1:
            raise bad("layer_decay", "must be in (0, 1]")
        if not self.weight_decay >= 0:
            raise bad("weight_decay", "must be >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise bad("warmup_fraction", "must be in [0, 1)")
        if self.decay not in ("linear", "constant"):
            raise bad("decay", "must be 'linear' or 'constant'")
        if not 0 <= self.dropout < 1:
            raise bad("dropout", "must be in [0, 1)")
        if self.pooling not in POOLINGS:
            raise bad("pooling", f"must be one of {POOLINGS}")
        if self.layout not in LAYOUTS:
            raise bad("layout", f"must be one of {LAYOUTS}")
        if self.mixing not in MIXINGS:
            raise bad("mixing", f"must be one of {MIXINGS}")
        if not self.temperature > 0:
            raise bad("temperature", "must be > 0")
        if self.bucket_pool < 1:
            raise bad("bucket_pool", "must be >= 1")
        if not self.uncovered_weight >= 0:
            raise bad("uncovered_weight", "must be >= 0")
        if not self.warm_epochs > 0:
            raise bad("warm_epochs", "must be > 0")
        if self.warm_self_train_rounds < 0:
            raise bad("warm_self_train_rounds", "must be >= 0")
        if not 0 <= self.replay < 1:
            raise bad("replay", "must be in [0, 1)")
        if not 0 < self.warm_lr_scale <= 1:
            raise bad("warm_lr_scale", "must be in (0, 1]")
        if self.self_train_rounds < 0:
            raise bad("self_train_rounds", "must be >= 0")
        if not self.hand_weight >= 0:
            raise bad("hand_weight", "must be >= 0")
        if not self.hand_epochs >= 0:
            raise bad("hand_epochs", "must be >= 0")


        if not self.self_train_epochs > 0:
            raise bad("self_train_epochs", "must be > 0")
        if not 0 <= self.self_train_threshold <= 1:
            raise bad("self_train_threshold", "must be in [0, 1]")
        if not self.self_train_lr_scale > 0:
            raise bad("self_train_lr_scale", "must be > 0")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise bad("device", "must be 'auto', 'cpu', 'cuda' or 'cuda:i'")
        if self.checkpoint_every < 0:
            raise bad("checkpoint_every", "must be >= 0")
        if self.keep_checkpoints < 1:
            raise bad("keep_checkpoints", "must be >= 1")
        if self.log_every < 1:
            raise bad("log_every", "must be >= 1")
        if self.eval_batch_size < 1:
            raise bad("eval_batch_size", "must be >= 1")


@dataclass
class TrainOptions:
    """How `train` decides and reports (the model's hyper-parameters are in `TrainConfig`).

    Attributes:
        tasks: tasks to train (default: every task whose dataset has a text field).
        if_changed: train only when the task set, a fingerprint or a labels version changed since the latest model.
        resume: continue the interrupted run recorded in `models/in-progress.json`.
        tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the workspace's own store).
        progress: progress bar on a terminal, plain lines otherwise.
        changed_policy: a changed task's head is 'finetune'd (default) or 'reinit'ialised on a warm start.
        fresh: train a fresh model (the encoder's own weights, new heads) even where a warm start from the
            latest model is possible: after a task set changed a lot, or to compare from scratch.
        isolate: a task whose labels are stale or unreadable is left out of the run (its head is not in the
            model version recorded) and reported in "failed", and the others train; default: when more than
            one task trains (one task fails with its own error, exit 2, as before). `watch` always isolates.
    """

    tasks: Optional[Sequence[str]] = None
    if_changed: bool = False
    resume: bool = False
    tracking_uri: Optional[str] = None
    progress: bool = True
    changed_policy: str = "finetune"
    fresh: bool = False
    isolate: Optional[bool] = None


def parse_settings(items) -> dict[str, Any]:
    """`field=value` strings (`train --set`, the benchmarks' `--set`) as a dict; values are JSON where they
    parse (1, 0.5, true, null), else strings. A malformed item raises ValueError."""
    out: dict[str, Any] = {}
    for it in items:
        k, eq, v = it.partition("=")
        if not eq or not k.strip():
            raise ValueError(f"expected FIELD=VALUE, got {it!r}")
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def native_bf16(device) -> bool:
    """Whether bf16 autocast pays on `device` (a torch.device): CUDA, or a CPU with AVX512-BF16 / AMX.

    Without those instructions a CPU emulates bf16 and runs slower than float32.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    import torch  # lazy: torch; this module stays torch-free (the CLI imports it when it loads)

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # older torch: no probe, no risk
        return False
