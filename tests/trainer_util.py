"""Shared helpers of the trainer tests: a tiny encoder and a synthetic two-task world."""

from __future__ import annotations

from pathlib import Path

import numpy as np

POS = ["great", "love", "good", "happy", "nice", "best"]
NEG = ["bad", "awful", "hate", "poor", "sad", "worst"]
TOPICS = {0: ["goal", "match", "team", "score"], 1: ["vote", "law", "president", "party"],
          2: ["music", "song", "album", "guitar"]}
FILLER = ["the", "a", "this", "that", "is", "was", "very", "so", "and", "it", "of", "we", "they", "today"]
WORDS = POS + NEG + [w for ws in TOPICS.values() for w in ws] + FILLER


def tiny_encoder(folder: Path, **kw) -> Path:
    from mothermodel.trainer.encoder import write_tiny_encoder

    return write_tiny_encoder(folder, words=WORDS, **kw)


def _sentences(rng, n, key_words, lo=3, hi=12):
    out = []
    for i in range(n):
        k = int(rng.integers(lo, hi))
        ws = list(rng.choice(FILLER, size=k))
        ws.insert(int(rng.integers(0, len(ws) + 1)), key_words[i])
        out.append(" ".join(ws))
    return out


def synthetic_tasks(n_sent=300, n_topic=360, seed=0, noise=0.15, cover=0.85):
    """Two tasks on two datasets: `sentiment` (2 classes) and `topic` (3 classes).

    Each text holds one key word that decides its gold class. The soft labels
    are a noisy label model's: covered rows put 0.8 on a class that is wrong
    with probability `noise`; uncovered rows carry the class prior.
    """
    from mothermodel.trainer.data import TaskData

    rng = np.random.default_rng(seed)

    def make(name, n, k, vocab_by_class):
        gold = rng.integers(0, k, n)
        keys = [str(rng.choice(vocab_by_class[int(g)])) for g in gold]
        texts = _sentences(rng, n, keys)
        split = np.array(["train"] * int(n * 0.7) + ["valid"] * int(n * 0.1), dtype=object)
        split = np.concatenate([split, np.array(["test"] * (n - len(split)), dtype=object)])
        noisy = np.where(rng.random(n) < noise, (gold + rng.integers(1, k, n)) % k, gold)
        probs = np.full((n, k), 0.2 / (k - 1), np.float32)
        probs[np.arange(n), noisy] = 0.8
        covered = rng.random(n) < cover
        probs[~covered] = 1.0 / k
        return TaskData(name=name, classes=[f"c{i}" for i in range(k)], texts=texts, split=split, probs=probs,
                        covered=covered, gold=gold)

    sent = make("sentiment", n_sent, 2, {0: NEG, 1: POS})
    topic = make("topic", n_topic, 3, TOPICS)
    return [sent, topic]


def tiny_config(**kw):
    from mothermodel.trainer.config import TrainConfig

    base = dict(max_length=32, batch_size=16, epochs=6, lr=1e-2, head_lr=2e-2, warmup_fraction=0.1,
                dropout=0.0, device="cpu", log_every=5, num_threads=1,
                bf16=False,  # float32: the same numbers on every CI machine, bf16 instructions or not
                # a random encoder must learn its word embeddings; one stage unless a test asks for more
                freeze_embeddings=False, temperature=1.0, self_train_rounds=0)
    base.update(kw)
    return TrainConfig(**base)
