"""Prompted sources: votes a model gives when asked (docs/writing-tasks.md, "Prompted sources").

Three backends, named by the spec's normaliser (mothermodel/spec.py `_prompt_spec`):
- "http": an OpenAI-compatible server (vLLM, llama.cpp's llama-server, ...): POST {endpoint}/chat/completions,
  a few requests at a time (`batch_size` threads), paced to `rate_limit` requests/s, each limited to `timeout`
  seconds and retried (`retries`, exponential backoff) after a connection error, a 429 or a 5xx answer.
- "nli": a local sequence-classification model fine-tuned on NLI: the row's text entails "hypothesis" with each
  class's label word; the answer is the classes' entailment logits.
- "generate": a local text-to-text model (encoder-decoder or causal LM), greedy decoding.
A text answer is turned into a class by the verbaliser: the earliest whole word (case-insensitive) that names a
class; none = abstain.

Answers are cached in one SQLite file per workspace (`prompt_cache/answers.sqlite`, WAL) keyed by (backend id:
endpoint + model name or the local model's content hash; prompt version; row hash: sha256 of what was asked).
Answers are committed in small transactions as they arrive, so a run that is killed or whose server dies keeps
every answer committed so far and a reader never sees half an entry; the next run asks only what is missing.
Rows that got no answer abstain and count as failed in the source's report (fatal only when no row has an answer);
label_apply asks such a source again on the next run rather than reusing it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mothermodel.atomic import sha256_file
from mothermodel.defaults import offline_mode
from mothermodel.errors import UserError
from mothermodel.inputs import as_text
from mothermodel.labeling.apply.config import ApplyConfig
from mothermodel.labeling.apply.core import Applied, LFReport, progress_bar
from mothermodel.registry.datasets import input_texts
from mothermodel.registry.records import DatasetRecord, SourceRecord, TaskRecord

CACHE_FILE = Path("prompt_cache") / "answers.sqlite"
"""Under the workspace's home folder."""
BACKOFF_S = 0.5
"""First wait before a retry; doubled each time, at most MAX_BACKOFF_S (a Retry-After header wins if shorter)."""
MAX_BACKOFF_S = 8.0
STOP_AFTER = 5
"""Rows that failed in a row (after their retries) before a source stops asking: a dead server is not asked
once per remaining row. The rows not asked abstain and count as failed."""
COMMIT_EVERY = 16
"""Answers per cache transaction (and at least once a second): what a killed run may lose at most."""


class AnswerCache:
    """The workspace's prompt answers: (backend, prompt version, row hash) -> answer text and token counts."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # WAL: another `label apply` may read while this one writes; busy_timeout waits out its commits.
        self.con = sqlite3.connect(str(path), timeout=30)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("CREATE TABLE IF NOT EXISTS answers (backend TEXT, prompt_version TEXT, row_hash TEXT, "
                         "answer TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, "
                         "created REAL, PRIMARY KEY (backend, prompt_version, row_hash))")
        self.con.commit()
        self.pending: list[tuple] = []
        self.last_commit = time.monotonic()

    def get(self, backend: str, version: str, hashes: Sequence[str]) -> dict[str, str]:
        """The cached answers among `hashes` (row hash -> answer)."""
        out: dict[str, str] = {}
        uniq = sorted(set(hashes))
        for i in range(0, len(uniq), 500):  # SQLite's limit on bound parameters
            part = uniq[i:i + 500]
            q = (f"SELECT row_hash, answer FROM answers WHERE backend = ? AND prompt_version = ? "
                 f"AND row_hash IN ({','.join('?' * len(part))})")
            out.update(self.con.execute(q, [backend, version, *part]).fetchall())
        return out

    def put(self, backend: str, version: str, row_hash: str, answer: str, prompt_tokens: int,
            completion_tokens: int) -> None:
        self.pending.append((backend, version, row_hash, answer, prompt_tokens, completion_tokens, time.time()))
        if len(self.pending) >= COMMIT_EVERY or time.monotonic() - self.last_commit > 1:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with self.con:  # one transaction: all of these answers or none
                self.con.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)", self.pending)
            self.pending = []
        self.last_commit = time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.con.close()


def entries(ws, dataset: DatasetRecord, table, task: TaskRecord, sources: Sequence[SourceRecord],
            config: ApplyConfig) -> tuple[Applied, dict[str, dict[str, Any]]]:
    """Label entries of TASK's prompted `sources` over `table` (the dataset, `_row` aligned), and per
    source what it cost ({"rows", "asked", "cached", "failed", "retries", "seconds", tokens, "cost", ...})."""
    row_ids = table.column("_row").to_numpy()
    R, C, L = [], [], []
    reports: dict[str, LFReport] = {}
    stats: dict[str, dict[str, Any]] = {}
    try:
        cache = AnswerCache(ws.home / CACHE_FILE)
    except sqlite3.Error as e:  # e.g. not a database any more: these sources stop, nothing else does
        error = f"prompt cache {ws.home / CACHE_FILE}: {e} (move it aside: it is rebuilt)"
        reports = {s.name: LFReport(s.name, first_error=error) for s in sources}
        for rep in reports.values():
            rep.drop("unusable", table.num_rows)
        return Applied(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int16),
                       [s.name for s in sources], reports), {}
    try:
        for j, s in enumerate(sources):
            p = json.loads(s.code)
            rep = reports[s.name] = LFReport(s.name)
            st = stats[s.name] = {"backend": p["backend"], "model": p["model"], "rows": 0, "asked": 0, "cached": 0,
                                  "failed": 0, "retries": 0, "seconds": 0.0, "prompt_tokens": 0,
                                  "completion_tokens": 0, "cost": None}
            t0 = time.monotonic()
            try:
                votes = _source_votes(p, s.name, dataset, table, task, cache, rep, st, config)
            except Exception as e:  # noqa: BLE001 - one source that cannot run must not stop the others
                cache.flush()  # answers got before it failed stay
                rep.first_error = f"{type(e).__name__}: {e}".splitlines()[0] if not isinstance(e, UserError) else str(e)
                votes = None
            st["seconds"] = round(time.monotonic() - t0, 3)
            if p["cost_per_1k_tokens"] is not None:
                st["cost"] = round((st["prompt_tokens"] + st["completion_tokens"]) / 1000 * p["cost_per_1k_tokens"], 6)
            if votes is None:  # it could not run at all (no model folder, no such column, ...)
                rep.drop("unusable", table.num_rows)
            elif st["rows"] and rep.failed_rows >= st["rows"]:  # not one answer, from the cache or the model
                rep.drop("every row", st["rows"])
            st["failed"] = rep.failed_rows
            if rep.fatal:
                continue
            keep = votes >= 0
            R.append(row_ids[keep].astype(np.int64)); C.append(np.full(int(keep.sum()), j, np.int32))
            L.append(votes[keep].astype(np.int16))
    finally:
        cache.close()
    if not R:
        R, C, L = [np.empty(0, np.int64)], [np.empty(0, np.int32)], [np.empty(0, np.int16)]
    return Applied(np.concatenate(R), np.concatenate(C), np.concatenate(L), [s.name for s in sources], reports), stats


def _source_votes(p: dict[str, Any], name: str, dataset: DatasetRecord, table, task: TaskRecord,
                  cache: AnswerCache, rep: LFReport, st: dict[str, Any], config: ApplyConfig) -> np.ndarray:
    """One source's vote per table row: a class index, or -1 (abstain: an empty text, past max_rows, no
    answer, an answer naming no class). Rows that got no answer are counted in `rep`."""
    n, row_ids = table.num_rows, table.column("_row").to_numpy()
    texts = _texts(p, dataset, table, task)
    if p["max_rows"] is not None:
        texts = texts[:p["max_rows"]]
    asked = [i for i, x in enumerate(texts) if x]  # an empty text is not worth a request
    st["rows"] = len(asked)
    votes = np.full(n, -1, np.int64)
    if not asked:
        return votes
    classes = list(task.classes)
    backend, payloads = _backend(p, classes)
    if p["backend"] == "nli":
        requests = {i: json.dumps([texts[i], payloads]) for i in asked}  # premise and hypotheses
    else:
        requests = {i: _render(p["template"], texts[i], classes) for i in asked}
    hashes = {i: hashlib.sha256(r.encode()).hexdigest() for i, r in requests.items()}
    rows_of: dict[str, list[int]] = {}  # the same prompt (a duplicate text) is asked once
    for i, h in hashes.items():
        rows_of.setdefault(h, []).append(i)
    answers = cache.get(backend, p["prompt_version"], list(rows_of))
    st["cached"] = sum(len(rows_of[h]) for h in answers)
    todo = [(h, requests[rows[0]]) for h, rows in rows_of.items() if h not in answers]
    if todo:
        def got(h: str, answer: str, prompt_tokens: int, completion_tokens: int) -> None:
            answers[h] = answer
            st["prompt_tokens"] += prompt_tokens
            st["completion_tokens"] += completion_tokens
            cache.put(backend, p["prompt_version"], h, answer, prompt_tokens, completion_tokens)

        def fail(h: str, error: str, timed_out: bool = False) -> None:
            if timed_out:
                rep.timed_out += len(rows_of[h])
            else:
                rep.raised += len(rows_of[h])
            if rep.first_error is None:
                rep.first_row, rep.first_error = int(row_ids[rows_of[h][0]]), error

        bar = progress_bar(len(todo), f"{task.name}/{name}: asking", config.progress, min_total=50)
        try:
            ask = {"http": _ask_http, "nli": _ask_nli, "generate": _ask_generate}[p["backend"]]
            ask(p, todo, got, fail, rep, st, bar)
        finally:
            bar.close()
            cache.flush()
    word = _verbalizer(p, classes)
    for h, rows in rows_of.items():
        a = answers.get(h)
        if a is not None:
            votes[rows] = _nli_vote(json.loads(a), p["threshold"]) if p["backend"] == "nli" else word(a)
    return votes


def _texts(p: dict[str, Any], dataset: DatasetRecord, table, task: TaskRecord) -> list[str | None]:
    """Each row's text asked about: the source's field, else the task's input as text."""
    if p["field"] is not None:
        if p["field"] not in table.column_names:
            raise UserError(f"field: dataset {dataset.name} has no column {p['field']!r}")
        return [None if v is None else str(v) for v in table.column(p["field"]).to_pylist()]
    inp = task.input_for(dataset)
    if inp is None:
        raise UserError(f"dataset {dataset.name} has no text field: give the source a field")
    return [as_text(x) for x in input_texts(table, inp)]


def _render(template: str, text: str, classes: list[str]) -> str:
    # Plain replacement, not str.format: a prompt may hold braces of its own (JSON examples).
    return template.replace("{classes}", ", ".join(classes)).replace("{text}", text)


def _backend(p: dict[str, Any], classes: list[str]) -> tuple[str, list[str]]:
    """The cache's backend id, and for NLI the hypotheses (one per class)."""
    if p["backend"] == "http":
        return f"http:{p['endpoint']}|{p['model']}", []
    folder = Path(p["model"])
    if not (folder / "config.json").is_file():
        raise UserError(f"model: {folder} is not a Hugging Face model folder (no config.json)")
    hyps = [p["hypothesis"].replace("{label}", p["verbalizer"][str(c)][0]) for c in range(len(classes))] \
        if p["backend"] == "nli" else []
    return f"{p['backend']}:{_folder_hash(folder)}", hyps


def _folder_hash(folder: Path) -> str:
    """A local model's content hash: its files' names and contents (hidden folders, e.g. a download's .cache, aside)."""
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            h.update(f"{rel.as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _verbalizer(p: dict[str, Any], classes: list[str]) -> Callable[[str], int]:
    """answer -> the class its earliest whole word (case-insensitive) names, or -1."""
    owner = {w.lower(): int(c) for c, words in p["verbalizer"].items() for w in words}
    # Longest first, so "not spam" wins over "spam" where both are answer words.
    rx = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in sorted(owner, key=len, reverse=True)) + r")(?!\w)",
                    re.IGNORECASE)

    def word(answer: str) -> int:
        m = rx.search(answer)
        return owner[m.group(1).lower()] if m else -1
    return word


def _nli_vote(logits: list[float], threshold: float) -> int:
    z = np.asarray(logits, np.float64)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    best = int(probs.argmax())
    return best if probs[best] >= threshold else -1


# --- an OpenAI-compatible endpoint ------------------------------------------------------------


class _Retryable(Exception):
    """A failed request worth another try (connection error, 429, 5xx); `wait`: the server's Retry-After."""

    def __init__(self, msg: str, wait: float | None = None):
        super().__init__(msg)
        self.wait = wait


class _Pace:
    """At most `per_s` requests a second, across threads."""

    def __init__(self, per_s: float | None):
        self.gap, self.next, self.lock = (1.0 / per_s if per_s else 0.0), 0.0, threading.Lock()

    def wait(self) -> None:
        if not self.gap:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.gap
        time.sleep(max(0.0, at - now))


@dataclass
class _Outcome:
    h: str  # the row hash asked about
    answer: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    error: str | None = None
    timed_out: bool = False
    sent: bool = True


def _ask_http(p: dict[str, Any], todo: list[tuple[str, str]], got, fail, rep: LFReport, st: dict[str, Any],
              bar) -> None:
    """Ask the endpoint each (row hash, prompt) of `todo`, `batch_size` at a time; `got`/`fail` are called here,
    in the calling thread (the cache's SQLite connection is not shared with the workers)."""
    url = p["endpoint"] + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if p["api_key_env"]:
        key = os.environ.get(p["api_key_env"])
        if not key:
            raise UserError(f"api_key_env: environment variable {p['api_key_env']} is not set")
        headers["Authorization"] = f"Bearer {key}"
    pace, stop = _Pace(p["rate_limit"]), threading.Event()

    def one(h: str, prompt: str) -> _Outcome:
        if stop.is_set():
            return _Outcome(h, sent=False)
        body = json.dumps({"model": p["model"], "messages": [{"role": "user", "content": prompt}],
                           "max_tokens": p["max_tokens"], "temperature": 0}).encode()
        out = _Outcome(h)
        for attempt in range(p["retries"] + 1):
            pace.wait()
            try:
                reply = _post(url, body, headers, p["timeout"])
                out.answer = str(reply["choices"][0]["message"]["content"] or "")
                usage = reply.get("usage") or {}
                out.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                out.completion_tokens = int(usage.get("completion_tokens") or 0)
                return out
            except TimeoutError:  # a time limit is per row: not tried again in this run
                out.error, out.timed_out = f"no answer within {p['timeout']:g} s", True
                return out
            except _Retryable as e:
                out.error = str(e)
                if attempt == p["retries"] or stop.is_set():
                    return out
                out.retries += 1
                back = min(MAX_BACKOFF_S, BACKOFF_S * 2 ** attempt)
                time.sleep(min(back, e.wait) if e.wait is not None else back)
            except (KeyError, IndexError, TypeError, ValueError) as e:
                out.error = f"unexpected answer from {url}: {type(e).__name__}: {e}"
                return out
            except urllib.error.HTTPError as e:  # 4xx: a request the server refuses; asking again will not help
                out.error = f"{url}: HTTP {e.code} {e.reason}: {_body(e)}"
                return out
        return out

    in_a_row = 0
    pool = ThreadPoolExecutor(max_workers=p["batch_size"])
    try:
        for fut in as_completed([pool.submit(one, h, prompt) for h, prompt in todo]):
            o = fut.result()
            st["retries"] += o.retries
            st["asked"] += int(o.sent)
            if o.answer is not None:
                in_a_row = 0
                got(o.h, o.answer, o.prompt_tokens, o.completion_tokens)
            elif not o.sent:
                fail(o.h, f"not asked: {STOP_AFTER} rows failed in a row")
            else:
                fail(o.h, o.error or "no answer", o.timed_out)
                in_a_row += 1
                if in_a_row >= STOP_AFTER and not stop.is_set():
                    stop.set()  # the server is gone or refuses everything: the rest abstain
                    rep.first_error = f"{rep.first_error}; stopped asking after {STOP_AFTER} rows failed in a row"
            bar.advance(1)
    finally:
        stop.set()  # on Ctrl-C too: requests not started are dropped, not sent
        pool.shutdown(wait=True, cancel_futures=True)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if e.code == 429 or e.code >= 500:
            after = e.headers.get("Retry-After") if e.headers else None
            raise _Retryable(f"{url}: HTTP {e.code} {e.reason}",
                             float(after) if after and after.isdigit() else None) from None
        raise
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise TimeoutError(str(e.reason)) from None
        raise _Retryable(f"{url}: {e.reason}") from None
    except (OSError, http.client.HTTPException) as e:  # reset or cut mid-answer (a server that died)
        if isinstance(e, TimeoutError):
            raise
        raise _Retryable(f"{url}: {type(e).__name__}: {e}") from None


def _body(e: urllib.error.HTTPError) -> str:
    try:
        return e.read().decode("utf-8", "replace")[:200].replace("\n", " ")
    except OSError:
        return ""


# --- a local Hugging Face model -----------------------------------------------------------------


def _torch_transformers():
    offline_mode()  # before transformers reads the environment: no hub lookups
    import torch  # lazy: torch kept off label apply of other sources
    import transformers  # lazy: torch kept off label apply of other sources
    return torch, transformers


def _device(torch):
    return "cuda" if torch.cuda.is_available() else "cpu"  # a real NLI/T5 model is slow on CPU


def _ask_nli(p: dict[str, Any], todo: list[tuple[str, str]], got, fail, rep: LFReport, st: dict[str, Any],
             bar) -> None:
    torch, hf = _torch_transformers()
    tok = hf.AutoTokenizer.from_pretrained(p["model"])
    model = hf.AutoModelForSequenceClassification.from_pretrained(p["model"]).eval().to(_device(torch))
    ent = _entailment_index(model.config)
    k = len(json.loads(todo[0][1])[1])  # hypotheses: one per class
    limit = min(getattr(model.config, "max_position_embeddings", 512) or 512, 512)
    for b in range(0, len(todo), p["batch_size"]):
        part = [(h, json.loads(r)) for h, r in todo[b:b + p["batch_size"]]]
        premises = [prem for _, (prem, _) in part for _ in range(k)]
        hyps = [hyp for _, (_, hs) in part for hyp in hs]
        st["asked"] += len(part)
        enc = tok(premises, hyps, truncation="only_first", padding=True, max_length=limit, return_tensors="pt")
        inputs = {n: v.to(model.device) for n, v in enc.items()
                  if n in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            logits = model(**inputs).logits[:, ent].reshape(len(part), k)
        used = enc["attention_mask"].sum(1).reshape(len(part), k).sum(1)
        for (h, _), row, n_tok in zip(part, logits.tolist(), used.tolist()):
            got(h, json.dumps([round(x, 6) for x in row]), int(n_tok), 0)
        bar.advance(len(part))


def _entailment_index(config) -> int:
    """The label whose name starts with "entail" (case-insensitive); else the last one (MNLI's usual order is
    contradiction, neutral, entailment)."""
    for name, idx in (config.label2id or {}).items():
        if str(name).lower().startswith("entail"):
            return int(idx)
    return int(config.num_labels) - 1


def _ask_generate(p: dict[str, Any], todo: list[tuple[str, str]], got, fail, rep: LFReport,
                  st: dict[str, Any], bar) -> None:
    torch, hf = _torch_transformers()
    seq2seq = bool(hf.AutoConfig.from_pretrained(p["model"]).is_encoder_decoder)
    model = (hf.AutoModelForSeq2SeqLM if seq2seq else hf.AutoModelForCausalLM).from_pretrained(p["model"])
    model = model.eval().to(_device(torch))
    tok = hf.AutoTokenizer.from_pretrained(p["model"])
    if not seq2seq:
        tok.padding_side = "left"  # a causal LM continues each prompt right where it ends
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    limit = min(getattr(model.config, "max_position_embeddings", 2048) or 2048, 2048)
    room = limit - p["max_tokens"] if not seq2seq else limit
    if room < 1:
        raise UserError(f"max_tokens: {p['max_tokens']} leaves no room for the prompt ({limit} positions)")
    for b in range(0, len(todo), p["batch_size"]):
        part = todo[b:b + p["batch_size"]]
        st["asked"] += len(part)
        enc = tok([r for _, r in part], truncation=True, padding=True, max_length=room, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(input_ids=enc["input_ids"].to(model.device),
                                 attention_mask=enc["attention_mask"].to(model.device),
                                 max_new_tokens=p["max_tokens"], do_sample=False, pad_token_id=tok.pad_token_id)
        new = out if seq2seq else out[:, enc["input_ids"].shape[1]:]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        n_new = (new != tok.pad_token_id).sum(1).tolist()
        for (h, _), text, n_in, n_out in zip(part, texts, enc["attention_mask"].sum(1).tolist(), n_new):
            got(h, text.strip(), int(n_in), int(n_out))
        bar.advance(len(part))
