"""Embedding sources: votes by similarity in an encoder's space (docs/writing-tasks.md, "Embedding sources").

- Every row's text is embedded once per (dataset content, encoder files, text definition, max_length, pooling):
  mean pooling over the last hidden states, L2-normalised (the sentence-transformers convention of the bundled
  all-MiniLM-L6-v2). The vectors are cached as Parquet (float16, one fixed-size list per row, in `_row` order)
  under `.mothermodel/embeddings/<key>.parquet`, written atomically with the sha256 of the vectors in the
  file's metadata; a file that does not read back or whose vectors no longer hash to it is recomputed.
  Every embedding source of every task on that dataset reuses it, and a run with only cached vectors and
  seed rows loads no model at all.
- Prototype mode: a class's prototype is the normalised mean of its seeds (seed rows' vectors, seed texts and
  its description, each normalised); a row votes for the most similar class when that similarity is at least
  `threshold` and beats the second class by `margin`, else abstains.
- Cluster mode (`clusters: k`): k-means over the dataset's vectors; a cluster votes for the class its seeds
  (seed rows, and seed texts placed in their nearest cluster) agree on, when at least `min_agreement` of them
  do; other clusters abstain. Only seeds decide: the task's other sources' votes are not read.
- Neighbour mode (`neighbours: k`): label propagation from the task's other sources. Anchors are the rows those
  sources label (hand labels decide their rows; elsewhere a majority vote that leads by at least one) and the
  seed rows; a row no other source votes on votes for the similarity-weighted majority class of its k nearest
  anchors, when that class holds at least `min_agreement` of the weight. By default it votes only there: on
  covered rows it partly echoes the sources it learnt from, which the label model would count twice; with
  `vote_on: all` it votes on every row, where its neighbourhood can outvote a wrong LF (on youtube's valid
  split it helped, on trec's it hurt: docs/benchmarks.md). Its labels depend on the other sources', so
  label apply computes it after them and its identity includes theirs.
- Faults: a source that cannot run (an encoder that does not load, a seed row outside the dataset, a missing
  text column) gets a fatal report and no entries; the task's other sources and other tasks go on.

torch and transformers are imported by the functions that embed: `label apply` of tasks without embedding
sources imports this module and must stay light.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mothermodel.atomic import atomic_path, sha256_file
from mothermodel.defaults import (DEFAULT_ENCODER_SHA256, DEFAULT_SEED, default_encoder_dir, offline_mode,
                                  resolve_device, verify_files)
from mothermodel.errors import UserError
from mothermodel.inputs import as_text
from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.labeling.apply.core import Applied, LFReport, progress_bar
from mothermodel.registry.datasets import input_texts
from mothermodel.registry.records import DatasetRecord, SourceRecord, TaskRecord

CACHE_FORMAT = 1
"""Bumped when the way vectors are computed or stored changes: old cache files are then simply not found."""

POOLING = "mean+l2"
BATCH_SIZE = 128


class Encoder:
    """An encoder folder, identified by its files' content; the model itself is loaded on first use."""

    def __init__(self, spec: str):
        self.spec = spec  # "default" or an absolute folder, as recorded
        self.folder = default_encoder_dir() if spec == "default" else Path(spec)
        if not (self.folder / "config.json").is_file():
            raise UserError(f"encoder {spec}: not a Hugging Face model folder (no config.json)")
        if spec == "default":
            verify_files(self.folder, DEFAULT_ENCODER_SHA256)  # a damaged bundled model is refused, not used
            files = DEFAULT_ENCODER_SHA256
        else:  # every top-level file: weights, config and tokenizer all change what a vector is
            files = {p.name: sha256_file(p) for p in sorted(self.folder.iterdir())
                     if p.is_file() and not p.name.startswith(".")}
        self.content_hash = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        self._loaded: tuple[Any, Any, Any, Any] | None = None

    def _load(self):
        if self._loaded is None:
            offline_mode()  # before transformers is first imported: no hub lookups
            import torch  # lazy: torch kept off label apply of other sources
            from transformers import AutoModel, AutoTokenizer, logging  # lazy: off label apply of other sources

            device = resolve_device("auto")
            level = logging.get_verbosity()
            logging.set_verbosity_error()  # a load report about an unused pooler layer is noise
            logging.disable_progress_bar()
            try:
                model = AutoModel.from_pretrained(str(self.folder), local_files_only=True).to(device).eval()
                tok = AutoTokenizer.from_pretrained(str(self.folder), local_files_only=True)
            finally:
                logging.set_verbosity(level)
            self._loaded = (model, tok, device, torch)
        return self._loaded

    def embed(self, texts: Sequence[str], max_length: int, advance: Callable[[int], None] = lambda n: None
              ) -> np.ndarray:
        """Normalised mean-pooled vectors (float32) of `texts`, in their order."""
        model, tok, device, torch = self._load()
        dim = int(model.config.hidden_size)
        out = np.empty((len(texts), dim), np.float32)
        # Longest first, in batches of similar length: padding (wasted compute) stays small.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH_SIZE):
                idx = order[start:start + BATCH_SIZE]
                enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt").to(device)
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
                advance(len(idx))
        return out


def _texts(table, dataset: DatasetRecord, task: TaskRecord, fld: str | None) -> tuple[dict[str, Any], list[str]]:
    """What is embedded (its JSON description, part of the cache key) and every row's text."""
    if fld is not None:
        if fld not in table.column_names:
            raise UserError(f"field {fld!r}: dataset {dataset.name} has no such column")
        return {"field": fld}, ["" if v is None else str(v) for v in table.column(fld).to_pylist()]
    inp = task.input_for(dataset)
    if inp is None:
        raise UserError(f"field: dataset {dataset.name} has no text field and the task no input: name a field")
    return {"input": inp.to_dict()}, [as_text(x) for x in input_texts(table, inp)]


def cache_path(ws, key: str) -> Path:
    return Path(ws.home) / "embeddings" / f"{key}.parquet"


def _read_cache(path: Path, n: int) -> np.ndarray | None:
    """The cached vectors (float32, n rows), or None when the file is missing, unreadable or damaged."""
    if not path.is_file():
        return None
    try:
        t = pq.read_table(path)
        meta = t.schema.metadata or {}
        col = t.column("embedding").combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False)
        if len(col) != n or hashlib.sha256(flat.tobytes()).hexdigest() != meta.get(b"sha256", b"").decode():
            return None
        return flat.reshape(n, col.type.list_size).astype(np.float32)
    except (OSError, ValueError, KeyError, pa.ArrowException):  # a torn or foreign file: recompute
        return None


def _write_cache(path: Path, vectors: np.ndarray, key_doc: dict[str, Any]) -> None:
    half = np.ascontiguousarray(vectors, np.float16)  # half the disk; cosine similarities barely move
    arr = pa.FixedSizeListArray.from_arrays(pa.array(half.ravel()), half.shape[1])
    meta = {"sha256": hashlib.sha256(half.tobytes()).hexdigest(), "key": json.dumps(key_doc, sort_keys=True)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table({"embedding": arr}).replace_schema_metadata(meta), tmp)


class _Vectors:
    """The dataset's vectors for one (encoder, text definition, max_length), from the cache or computed once
    per run, shared by every source that needs them."""

    def __init__(self, ws, dataset: DatasetRecord, table, task: TaskRecord, config: ApplyConfig):
        self.ws, self.dataset, self.table, self.task, self.config = ws, dataset, table, task, config
        self.encoders: dict[str, Encoder] = {}
        self.found: dict[str, np.ndarray] = {}

    def encoder(self, spec: str) -> Encoder:
        if spec not in self.encoders:
            self.encoders[spec] = Encoder(spec)
        return self.encoders[spec]

    def get(self, enc: Encoder, fld: str | None, max_length: int) -> tuple[np.ndarray, int, bool]:
        """(vectors, rows embedded now, whether they came from the cache)."""
        what, texts = _texts(self.table, self.dataset, self.task, fld)
        key_doc = {"format": CACHE_FORMAT, "dataset": self.dataset.content_hash, "encoder": enc.content_hash,
                   "text": what, "max_length": max_length, "pooling": POOLING}
        key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:32]
        if key in self.found:
            return self.found[key], 0, True
        path = cache_path(self.ws, key)
        vecs = _read_cache(path, len(texts))
        embedded = 0
        if vecs is None:
            bar = progress_bar(len(texts), f"embedding {self.dataset.name}", self.config.progress)
            try:
                vecs = enc.embed(texts, max_length, bar.advance)
            finally:
                bar.close()
            _write_cache(path, vecs, key_doc)
            embedded = len(texts)
        self.found[key] = vecs
        return vecs, embedded, embedded == 0


def _seeds(p: dict[str, Any], vecs: np.ndarray, enc: Encoder, k: int
           ) -> tuple[list[np.ndarray], list[tuple[int, np.ndarray]]]:
    """Per class its seed rows' vectors, and (class, vector) of every seed text and description, embedded now."""
    n = len(vecs)
    rows: list[np.ndarray] = [np.empty((0, vecs.shape[1]), np.float32) for _ in range(k)]
    for c, ids in p["seed_rows"].items():
        bad = [r for r in ids if r >= n]
        if bad:
            raise UserError(f"seed_rows: row {bad[0]} is outside the dataset (rows 0..{n - 1})")
        rows[int(c)] = vecs[ids]
    texts = [(int(c), t) for c, ts in p["seeds"].items() for t in ts]
    texts += [(int(c), t) for c, t in p["descriptions"].items()]
    tv = enc.embed([t for _, t in texts], p["max_length"]) if texts else []
    return rows, [(c, v) for (c, _), v in zip(texts, tv)]


def _prototype_votes(vecs: np.ndarray, rows: list[np.ndarray], texts: list[tuple[int, np.ndarray]],
                     threshold: float, margin: float) -> np.ndarray:
    """Each row's vote (class index, -1 = abstain) by cosine similarity to the class prototypes."""
    k = len(rows)
    seeds = [np.concatenate([rows[c]] + [v[None, :] for cc, v in texts if cc == c]) for c in range(k)]
    has = np.array([len(x) > 0 for x in seeds])
    protos = np.stack([x.mean(0) if len(x) else np.zeros(vecs.shape[1], np.float32) for x in seeds])
    protos /= np.maximum(np.linalg.norm(protos, axis=1, keepdims=True), 1e-12)
    sims = vecs @ protos.T
    sims[:, ~has] = -np.inf  # a class without seeds cannot win
    best = sims.argmax(1)
    top = sims.max(1)
    second = np.partition(sims, -2, axis=1)[:, -2] if k > 1 else np.full(len(vecs), -np.inf, np.float32)
    return np.where((top >= threshold) & (top - second >= margin), best, -1)


def _cluster_votes(vecs: np.ndarray, p: dict[str, Any], seeds_text: list[tuple[int, np.ndarray]], k: int
                   ) -> np.ndarray:
    """Each row's vote through k-means clusters labelled by the seeds they hold."""
    from sklearn.cluster import KMeans  # lazy: scikit-learn kept off label apply of other sources

    n_clusters = min(int(p["clusters"]), len(vecs))
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=DEFAULT_SEED).fit(vecs)
    seed_cluster = [(int(c), int(km.labels_[r])) for c, rows in p["seed_rows"].items() for r in rows]
    if seeds_text:
        placed = km.predict(np.stack([v for _, v in seeds_text]))
        seed_cluster += [(c, int(cl)) for (c, _), cl in zip(seeds_text, placed)]
    counts = np.zeros((n_clusters, k), np.int64)
    np.add.at(counts, (np.array([cl for _, cl in seed_cluster]), np.array([c for c, _ in seed_cluster])), 1)
    total = counts.sum(1)
    agree = counts.max(1) >= p["min_agreement"] * np.maximum(total, 1)
    cluster_class = np.where((total > 0) & agree, counts.argmax(1), -1)
    return cluster_class[km.labels_]


MAX_ANCHORS = 50_000
"""Neighbour mode compares each uncovered row with at most this many anchors (a seeded sample beyond it):
the cost stays (uncovered rows x MAX_ANCHORS) on any dataset."""
QUERY_BLOCK = 2048


def _neighbour_votes(vecs: np.ndarray, anchor_class: np.ndarray, query: np.ndarray, k_nn: int,
                     min_share: float, k: int) -> np.ndarray:
    """Each row's vote through its k_nn most similar anchors (anchor_class >= 0), on the `query` rows only."""
    votes = np.full(len(vecs), -1, np.int64)
    anchors = np.flatnonzero(anchor_class >= 0)
    if len(anchors) > MAX_ANCHORS:
        anchors = np.sort(np.random.default_rng(DEFAULT_SEED).choice(anchors, MAX_ANCHORS, replace=False))
    rows = np.flatnonzero(query)
    if not len(anchors) or not len(rows):
        return votes
    a_vecs, a_cls = vecs[anchors], anchor_class[anchors]
    nn = min(k_nn, len(anchors))
    for start in range(0, len(rows), QUERY_BLOCK):
        q = rows[start:start + QUERY_BLOCK]
        sims = vecs[q] @ a_vecs.T
        sims[anchors[None, :] == q[:, None]] = -np.inf  # a row is not its own neighbour
        top = np.argpartition(-sims, nn - 1, axis=1)[:, :nn]
        w = np.maximum(np.take_along_axis(sims, top, 1), 0.0)  # an opposite-facing row carries no weight
        score = np.zeros((len(q), k))
        np.add.at(score, (np.repeat(np.arange(len(q)), nn), a_cls[top].ravel()), w.ravel())
        total = score.sum(1)
        best = score.argmax(1)
        ok = (total > 0) & (score.max(1) >= min_share * np.maximum(total, 1e-12))
        votes[q] = np.where(ok, best, -1)
    return votes


def anchors_from(counts: np.ndarray, hand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(anchor class per row, -1 = none; covered rows) from the other sources' vote counts (rows x classes) and
    the hand label per row (-1 = none): a hand label decides its row, elsewhere a majority leading by one."""
    covered = counts.sum(1) > 0
    top2 = np.sort(counts, 1)[:, -2:]  # a task has at least two classes
    cls = np.where(top2[:, 1] - top2[:, 0] >= 1, counts.argmax(1), -1)
    return np.where(hand >= 0, hand, cls), covered


def entries(ws, dataset: DatasetRecord, table, task: TaskRecord, sources: Sequence[SourceRecord],
            config: ApplyConfig, others: tuple[np.ndarray, np.ndarray] | None = None
            ) -> tuple[Applied, dict[str, dict[str, Any]]]:
    """Label entries of TASK's embedding `sources` over `table` (the dataset, `_row` aligned), and per
    source what it cost ({"rows", "embedded", "cached", "seconds", "rows_per_s", "encoder", "coverage"}).
    `others`: for neighbour-mode sources, (anchor class per row, rows covered) from `anchors_from`."""
    names = [s.name for s in sources]
    reports = {n: LFReport(n) for n in names}
    stats: dict[str, dict[str, Any]] = {}
    rows_out, cols_out, labels_out = [], [], []
    row_ids = table.column("_row").to_numpy()
    k, n = len(task.classes), table.num_rows
    vectors = _Vectors(ws, dataset, table, task, config)
    for j, s in enumerate(sources):
        t0 = time.perf_counter()
        p = json.loads(s.code)
        try:
            enc = vectors.encoder(p["encoder"])
            vecs, embedded, cached = vectors.get(enc, p["field"], p["max_length"])
            rows, texts = _seeds(p, vecs, enc, k)
            if p.get("neighbours"):
                if others is None:
                    raise UserError("neighbours: the task's other sources' votes were not given")
                anchor_class = others[0].copy()
                for c, ids in p["seed_rows"].items():
                    anchor_class[ids] = int(c)
                query = ~others[1] if p.get("vote_on", "uncovered") == "uncovered" else np.ones(n, bool)
                votes = _neighbour_votes(vecs, anchor_class, query, int(p["neighbours"]),
                                         p["min_agreement"], k)
            elif p["clusters"]:
                votes = _cluster_votes(vecs, p, texts, k)
            else:
                votes = _prototype_votes(vecs, rows, texts, p["threshold"], p["margin"])
        except Exception as e:  # noqa: BLE001 - one source that cannot run must not stop the others
            rep = reports[s.name]
            msg = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
            rep.raised, rep.first_error, rep.fatal = n, msg.splitlines()[0] if msg else type(e).__name__, "unusable"
            continue
        keep = votes >= 0
        rows_out.append(row_ids[keep]); cols_out.append(np.full(int(keep.sum()), j, np.int32))
        labels_out.append(votes[keep])
        seconds = time.perf_counter() - t0
        stats[s.name] = {"rows": n, "embedded": embedded, "cached": cached, "seconds": round(seconds, 3),
                         "rows_per_s": round(n / seconds, 1) if seconds > 0 else None, "encoder": p["encoder"],
                         "coverage": round(float(keep.mean()), 4) if n else 0.0}
    if not rows_out:
        return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16), names, reports), stats
    return Applied(np.concatenate(rows_out).astype(np.int64), np.concatenate(cols_out),
                   np.concatenate(labels_out).astype(np.int16), names, reports), stats
