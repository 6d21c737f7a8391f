"""The distillation configuration (DistillConfig) and how a run reports (DistillOptions): typed, documented
objects, no torch at import.

Defaults were chosen on WRENCH youtube + trec *valid* accuracy against the
default mother model (docs/distill.md); tests and the demo override them with
tiny values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from mothermodel.defaults import DEFAULT_SEED
from mothermodel.trainer.config import Config

__all__ = ["DistillConfig", "DistillOptions", "STUDENTS"]

STUDENTS = ("tiny", "ngram", "chars")


@dataclass(frozen=True)
class DistillConfig(Config):
    """Settings of one distillation (student architecture, KD training, export checks).

    Attributes:
        student: 'tiny' (a small transformer on the teacher's tokenizer),
            'ngram' (hashed token n-grams + a linear layer, fastText-like) or
            'chars' (hashed character n-grams + a linear layer, on a character
            tokenizer of its own: for text the teacher's tokenizer fits badly).
        hidden_size: tiny: width of the transformer.
        num_layers: tiny: transformer layers.
        num_heads: tiny: attention heads (hidden_size must divide by it).
        intermediate_size: tiny: width of the feed-forward layer.
        max_vocab: tiny: the student keeps the (at most this many) most frequent
            token ids of the task's dataset; others map to the unknown token
            inside the graph. The teacher's 30k-row embedding matrix alone would
            be 4M parameters at width 128, more than the whole student budget.
        ngram_orders: ngram: n-gram lengths over token ids (1 = the tokens themselves).
        ngram_buckets: ngram: hash buckets (rows of the embedding table).
        ngram_dim: ngram: embedding width before the linear layer.
        char_orders: chars: character n-gram lengths.
        max_chars: chars: characters per text (the character tokenizer truncates there).
        fallback: also try the `chars` student where the encoder fits the task's text badly
            (mothermodel.textfit) or the student falls more than `fallback_margin` below its
            teacher on valid, and keep whichever is more accurate on valid (gold labels there;
            without them the configured student stays).
        fallback_margin: see `fallback` (accuracy, 0.02 = 2 points).
        temperature: KD temperature: student and teacher distributions are both
            softened by it, and the loss scaled by its square (Hinton et al.).
        epochs: passes over the task's rows (all of them: no gold labels are used).
        batch_size: rows per optimizer step.
        lr: peak AdamW learning rate (linear warm-up over 10% of the steps, linear decay).
        weight_decay: AdamW decoupled weight decay.
        dropout: tiny: dropout inside the transformer while training.
        max_length: tokens per text (the teacher's when None).
        seed: initialisation and batch order.
        num_threads: torch CPU threads while training; None leaves torch's default.
        check_rows: rows on which onnxruntime's logits are compared with PyTorch's at export.
        check_tolerance: the largest allowed absolute difference of those logits.
        latency_rows: texts timed one at a time for the bundle's batch-1 latency.
        teacher_batch_size: batch size of the teacher's predictions.
    """

    student: str = "tiny"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 512
    max_vocab: int = 16384
    ngram_orders: tuple[int, ...] = (1, 2, 3)
    ngram_buckets: int = 65536
    ngram_dim: int = 32
    char_orders: tuple[int, ...] = (1, 2, 3, 4, 5)
    max_chars: int = 512
    fallback: bool = True
    fallback_margin: float = 0.02
    temperature: float = 2.0
    epochs: float = 20.0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    dropout: float = 0.1
    max_length: Optional[int] = None
    seed: int = DEFAULT_SEED
    num_threads: Optional[int] = None
    check_rows: int = 64
    check_tolerance: float = 1e-4
    latency_rows: int = 50
    teacher_batch_size: int = 128

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"DistillConfig.{field}: {why}, got {getattr(self, field)!r}")

        if self.student not in STUDENTS:
            raise bad("student", f"must be one of {STUDENTS}")
        for f in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "ngram_buckets", "ngram_dim",
                  "batch_size", "check_rows", "latency_rows", "teacher_batch_size"):
            if getattr(self, f) < 1:
                raise bad(f, "must be >= 1")
        if self.hidden_size % self.num_heads:
            raise bad("hidden_size", f"must be a multiple of num_heads ({self.num_heads})")
        if self.max_vocab < 8:
            raise bad("max_vocab", "must be >= 8")
        for f in ("ngram_orders", "char_orders"):
            object.__setattr__(self, f, tuple(int(n) for n in getattr(self, f)))
            if not getattr(self, f) or any(n < 1 or n > 5 for n in getattr(self, f)):
                raise bad(f, "must be lengths between 1 and 5")
        if self.max_chars < 8:
            raise bad("max_chars", "must be >= 8")
        if not 0 <= self.fallback_margin < 1:
            raise bad("fallback_margin", "must be in [0, 1)")
        for f in ("temperature", "epochs", "lr", "check_tolerance"):
            if not getattr(self, f) > 0:
                raise bad(f, "must be > 0")
        if not self.weight_decay >= 0:
            raise bad("weight_decay", "must be >= 0")
        if not 0 <= self.dropout < 1:
            raise bad("dropout", "must be in [0, 1)")
        if self.max_length is not None and self.max_length < 4:
            raise bad("max_length", "must be >= 4")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON- and MLflow-params-ready)."""
        return {**super().to_dict(), "ngram_orders": list(self.ngram_orders), "char_orders": list(self.char_orders)}


@dataclass
class DistillOptions:
    """How `distill` reports (the student's settings are in `DistillConfig`).

    Attributes:
        tracking_uri: MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the workspace's own store).
        progress: progress lines while the student trains.
    """

    tracking_uri: Optional[str] = None
    progress: bool = True
