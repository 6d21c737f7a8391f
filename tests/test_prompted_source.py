"""Prompted sources (issue 21): a YAML prompt source against a real OpenAI-compatible HTTP server started on
127.0.0.1 (round trip submit/show/apply/analyze/fit, the answer cache, time limits, retries, a server that dies
mid-run), and local tiny random Hugging Face models (zero-shot NLI, text-to-text). No downloads."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import cli_exe, run_cli

from mothermodel.labeling.apply import prompted

N = 40
TEXTS = [f"check out my channel {i}" if i % 2 else f"great song number {i}" for i in range(N)]
TEXTS[3] = "slow check out this"  # the slow server below takes its time on these two
TEXTS[10] = "slow song"
TEXTS[7] = "check out shrug"  # the server's answer names no class: abstain


class Server:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that answers by rule: "spam" when the prompt has
    "check", else "ham" ("I don't know" for "shrug"). It records each prompt it answered."""

    def __init__(self, port: int = 0, slow: float = 0.0, fail_first: int = 0, die_after: int | None = None,
                 delay: float = 0.0):
        self.answered: list[str] = []
        self.keys: set[str | None] = set()  # Authorization headers seen
        self.requests = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                with server.lock:
                    server.keys.add(self.headers.get("Authorization"))
                    server.requests += 1
                    n = server.requests
                    dead = server.die_after is not None and len(server.answered) >= server.die_after
                if dead:  # died: cut the connection without an answer
                    self.close_connection = True
                    return
                if n <= server.fail_first:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if body.get("model") != "tiny-chat":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if server.slow and "slow" in prompt:
                    time.sleep(server.slow)
                time.sleep(server.delay)
                answer = "I don't know" if "shrug" in prompt else ("It is spam." if "check" in prompt else "ham")
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": answer}}],
                                   "usage": {"prompt_tokens": 10, "completion_tokens": 2}}).encode()
                with server.lock:
                    if server.die_after is not None and len(server.answered) >= server.die_after:
                        self.close_connection = True
                        return
                    server.answered.append(prompt)
                    last = server.die_after is not None and len(server.answered) == server.die_after
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
                if last:  # the process dies right after its last answer: nothing listens any more
                    threading.Thread(target=server.stop, daemon=True).start()

        self.slow, self.fail_first, self.die_after, self.delay = slow, fail_first, die_after, delay
        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that gave up: a broken pipe, as expected
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(prompted, "BACKOFF_S", 0.01)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy in the environment must not stand in the way
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def pws(tmp_path):
    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(pa.table({"text": TEXTS, "topic": [("check this", "music", None)[i % 3] for i in range(N)],
                             "split": (["train"] * 4 + ["valid", "test"]) * (N // 6) +
                             ["train"] * (N % 6)}), tmp_path / "msgs.parquet")
    assert run_cli("dataset", "add", "msgs", tmp_path / "msgs.parquet", ws=root).code == 0
    return root


def spec(tmp_path: Path, url: str, name="spam", extra: str = "", template="Is this spam or ham? {text}",
         keyword="check") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""name: {name}
dataset: msgs
classes: [HAM, SPAM]
sources:
  - {{kind: keyword, name: kw, keywords: [{keyword}], label: SPAM}}
  - kind: prompt
    name: ask
    endpoint: {url}
    model: tiny-chat
    template: "{template}"
    verbalizer: {{SPAM: [spam, junk]}}
    cost_per_1k_tokens: 0.5
    batch_size: 4
{extra}""")
    return p


def apply(ws, *tasks):
    r = run_cli("label", "apply", *tasks, "--json", ws=ws)
    assert r.code in (0, 1), r
    return r.code, {t["task"]: t for t in json.loads(r.out)["tasks"]}


def votes(ws, task="spam", source="ask") -> dict[int, int]:
    """Row -> label of one source in the task's latest label matrix."""
    import duckdb

    con = duckdb.connect(str(Path(ws) / ".mothermodel" / "registry.duckdb"), read_only=True)
    try:
        path = con.execute("SELECT path FROM label_matrices WHERE task = ? ORDER BY version DESC LIMIT 1",
                           [task]).fetchone()[0]
    finally:
        con.close()
    tbl = pq.read_table(Path(ws) / ".mothermodel" / path)
    names = tbl.column("source").combine_chunks()
    out = {}
    for row, s, lab in zip(tbl.column("row").to_pylist(), names.to_pylist(), tbl.column("label").to_pylist()):
        if s == source:
            out[row] = lab
    return out


def cached(ws) -> int:
    con = sqlite3.connect(str(Path(ws) / ".mothermodel" / prompted.CACHE_FILE))
    try:
        return con.execute("SELECT count(*) FROM answers").fetchone()[0]
    finally:
        con.close()


def expected(i: int) -> int | None:
    return None if "shrug" in TEXTS[i] else (1 if "check" in TEXTS[i] else 0)


def test_round_trip_cache_and_reuse(pws, tmp_path, server):
    r = run_cli("task", "submit", spec(tmp_path, server.url), ws=pws)
    assert r.code == 0, r
    r = run_cli("task", "show", "spam", "--json", ws=pws)
    assert r.code == 0 and "ask" in r.out, r
    code, out = apply(pws)
    assert code == 0
    st = out["spam"]["sources"]["ask"]
    assert (st["backend"], st["rows"], st["asked"], st["cached"], st["failed"]) == ("http", N, N, 0, 0)
    assert (st["prompt_tokens"], st["completion_tokens"]) == (10 * N, 2 * N)
    assert st["cost"] == pytest.approx(12 * N / 1000 * 0.5)
    assert len(server.answered) == N and out["spam"]["faults"] == []
    assert votes(pws) == {i: expected(i) for i in range(N) if expected(i) is not None}  # "I don't know" abstains
    r = run_cli("label", "analyze", "spam", "--json", ws=pws)
    assert r.code == 0, r
    by = {lf["name"]: lf for lf in json.loads(r.out)["lfs"]}
    assert by["ask"]["coverage"] == (N - 1) / N and sorted(by["ask"]["polarity"]) == ["HAM", "SPAM"]
    r = run_cli("label", "fit", "spam", "--json", ws=pws)
    assert r.code == 0, r
    # Nothing changed: up to date, nobody asked.
    code, out = apply(pws)
    assert out["spam"]["status"] == "up to date" and len(server.answered) == N
    # An unrelated source changed: the prompt source is reused from the previous matrix.
    assert run_cli("task", "submit", spec(tmp_path, server.url, keyword="channel"), "--replace", ws=pws).code == 0
    code, out = apply(pws)
    assert out["spam"]["reused"] == ["ask"] and len(server.answered) == N
    # Its settings changed but not what it asks (a row cap): recomputed from the cache, nobody asked.
    assert run_cli("task", "submit", spec(tmp_path, server.url, keyword="channel", extra="    max_rows: 30\n"),
                   "--replace", ws=pws).code == 0
    code, out = apply(pws)
    st = out["spam"]["sources"]["ask"]
    assert (st["rows"], st["asked"], st["cached"]) == (30, 0, 30) and len(server.answered) == N
    assert max(votes(pws)) < 30
    # A changed template asks again, every row.
    assert run_cli("task", "submit", spec(tmp_path, server.url, template="Spam or ham? {text}"), "--replace",
                   ws=pws).code == 0
    code, out = apply(pws)
    assert out["spam"]["sources"]["ask"]["asked"] == N and len(server.answered) == 2 * N
    assert cached(pws) == 2 * N


def test_time_limit_abstains_and_is_reported(pws, tmp_path):
    s = Server(slow=3.0)
    try:
        assert run_cli("task", "submit", spec(tmp_path, s.url, extra="    timeout: 1\n    retries: 1\n"),
                       ws=pws).code == 0
        t0 = time.monotonic()
        code, out = apply(pws)
        assert time.monotonic() - t0 < 20
        assert code == 0  # some rows failed: reported, not fatal
        f = next(f for f in out["spam"]["faults"] if f["name"] == "ask")
        assert f["timed_out"] == 2 and f["failed_rows"] == 2 and "within 1 s" in f["first_error"] and not f["fatal"]
        got = votes(pws)
        assert 3 not in got and 10 not in got
        assert got == {i: expected(i) for i in range(N) if expected(i) is not None and i not in (3, 10)}
        assert out["spam"]["sources"]["ask"]["failed"] == 2
        # The next apply asks those two again (the rest come from the cache): a fast server answers them.
        s.slow = 0.0
        code, out = apply(pws)
        st = out["spam"]["sources"]["ask"]
        assert (st["asked"], st["cached"], st["failed"]) == (2, N - 2, 0) and out["spam"]["faults"] == []
        assert votes(pws)[3] == 1 and votes(pws)[10] == 0
    finally:
        s.stop()


def test_server_dies_mid_run(pws, tmp_path):
    s = Server(die_after=12)
    port = s.port
    assert run_cli("task", "submit", spec(tmp_path, s.url, extra="    retries: 2\n"), ws=pws).code == 0
    # A second task asking the same server the same prompts (its answers are the same cache entries).
    assert run_cli("task", "submit", spec(tmp_path, s.url, name="other", keyword="song"), ws=pws).code == 0
    code, out = apply(pws)  # both tasks in one run; the server dies after its 12th answer
    assert code == 0  # rows without an answer: recorded and reported, exit 0 (fatal only if nothing came back)
    assert {t["status"] for t in out.values()} == {"created"}
    for task in ("spam", "other"):
        st = out[task]["sources"]["ask"]
        f = next(f for f in out[task]["faults"] if f["name"] == "ask")
        assert st["failed"] == f["failed_rows"] == N - 12 and not f["fatal"] and "stopped asking" in f["first_error"]
        got = votes(pws, task)
        assert len(got) in (11, 12) and all(got[i] == expected(i) for i in got)
        assert votes(pws, task, source="kw")  # the task's other source is labelled
    assert sum(out[t]["sources"]["ask"]["cached"] for t in out) == 12  # the first asked, the second found 12
    assert cached(pws) == 12  # every answer received is in the cache, nothing else
    # The server is back on its port: the next apply asks only the rows not answered yet, once.
    s2 = Server(port=port)
    try:
        code, out = apply(pws)
        assert code == 0 and len(s2.answered) == N - 12 and cached(pws) == N
        assert sorted(out[t]["sources"]["ask"]["asked"] for t in out) == [0, N - 12]
        for task in ("spam", "other"):
            assert out[task]["sources"]["ask"]["failed"] == 0 and out[task]["faults"] == []
            assert votes(pws, task) == {i: expected(i) for i in range(N) if expected(i) is not None}
        code, out = apply(pws)  # every row answered now: up to date
        assert {t["status"] for t in out.values()} == {"up to date"} and len(s2.answered) == N - 12
    finally:
        s2.stop()


def test_retries_after_503_and_refusal_is_not_retried(pws, tmp_path):
    s = Server(fail_first=3)
    try:
        assert run_cli("task", "submit", spec(tmp_path, s.url), ws=pws).code == 0
        code, out = apply(pws)
        st = out["spam"]["sources"]["ask"]
        assert code == 0 and st["retries"] == 3 and st["failed"] == 0 and len(s.answered) == N
        # A model the server does not have (404): not retried; five rows in a row fail and the source stops;
        # nothing came back, so the source is stopped as a whole (exit 1) and the keyword source still votes.
        p = spec(tmp_path, s.url).read_text().replace("model: tiny-chat", "model: nope")
        (tmp_path / "nope.yaml").write_text(p.replace("name: spam", "name: spam2"))
        assert run_cli("task", "submit", tmp_path / "nope.yaml", ws=pws).code == 0
        before = s.requests
        code, out = apply(pws, "spam2")
        f = next(f for f in out["spam2"]["faults"] if f["name"] == "ask")
        assert code == 1 and f["fatal"] == "every row" and "HTTP 404" in f["first_error"]
        assert out["spam2"]["sources"]["ask"]["retries"] == 0 and s.requests - before < N // 2
        assert votes(pws, task="spam2", source="kw")
    finally:
        s.stop()


def test_a_field_and_duplicate_texts(pws, tmp_path, server):
    """`field` asks about another column; a text seen twice is asked once, and a missing one not at all."""
    assert run_cli("task", "submit", spec(tmp_path, server.url, extra="    field: topic\n"), ws=pws).code == 0
    code, out = apply(pws)
    st = out["spam"]["sources"]["ask"]
    with_topic = [i for i in range(N) if i % 3 != 2]
    assert code == 0 and (st["rows"], st["asked"], st["cached"]) == (len(with_topic), 2, 0)
    assert sorted(server.answered) == ["Is this spam or ham? check this", "Is this spam or ham? music"]
    assert votes(pws) == {i: int(i % 3 == 0) for i in with_topic}


def test_api_key_from_the_environment_and_rate_limit(pws, tmp_path, server, monkeypatch):
    extra = "    api_key_env: TINY_CHAT_KEY\n    rate_limit: 20\n"
    assert run_cli("task", "submit", spec(tmp_path, server.url, extra=extra), ws=pws).code == 0
    # No key in the environment: that source cannot run (exit 1, fatal "unusable"), the keyword source votes.
    monkeypatch.delenv("TINY_CHAT_KEY", raising=False)
    code, out = apply(pws)
    f = next(f for f in out["spam"]["faults"] if f["name"] == "ask")
    assert code == 1 and f["fatal"] == "unusable" and "TINY_CHAT_KEY" in f["first_error"] and server.requests == 0
    assert votes(pws, source="kw") and not votes(pws)
    monkeypatch.setenv("TINY_CHAT_KEY", "sk-secret")
    code, out = apply(pws)
    st = out["spam"]["sources"]["ask"]
    assert code == 0 and server.keys == {"Bearer sk-secret"} and st["asked"] == N
    assert st["seconds"] >= (N - 1) / 20 * 0.95  # 20 requests a second at most, 4 at a time
    assert "sk-secret" not in (pws / ".mothermodel" / "registry.duckdb").read_bytes().decode("latin-1")


def test_a_broken_cache_file_stops_only_the_prompt_source(pws, tmp_path, server):
    assert run_cli("task", "submit", spec(tmp_path, server.url), ws=pws).code == 0
    path = pws / ".mothermodel" / prompted.CACHE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database" * 100)
    code, out = apply(pws)
    f = next(f for f in out["spam"]["faults"] if f["name"] == "ask")
    assert code == 1 and f["fatal"] == "unusable" and "move it aside" in f["first_error"]
    assert votes(pws, source="kw") and server.requests == 0
    path.unlink()
    code, out = apply(pws)
    assert code == 0 and out["spam"]["sources"]["ask"]["asked"] == N and out["spam"]["faults"] == []


def test_killed_apply_keeps_the_answers_it_got(pws, tmp_path):
    """kill -9 of `label apply` while it asks: the cache holds whole answers only, and the next run asks only
    the rows it lacks."""
    s = Server(delay=0.2)
    try:
        assert run_cli("task", "submit", spec(tmp_path, s.url), ws=pws).code == 0
        env = {**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        p = subprocess.Popen(cli_exe() + ["-w", str(pws), "label", "apply"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while len(s.answered) < 24:
                assert p.poll() is None and time.time() < deadline
                time.sleep(0.01)
            time.sleep(0.1)  # the answers on their way reach it
            os.kill(p.pid, signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        got = len(s.answered)
        con = sqlite3.connect(str(pws / ".mothermodel" / prompted.CACHE_FILE))
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        kept = con.execute("SELECT count(*) FROM answers WHERE answer IS NOT NULL").fetchone()[0]
        con.close()
        assert 0 < kept <= got < N  # committed 16 at a time or each second: at most the last few lost
        code, out = apply(pws)
        st = out["spam"]["sources"]["ask"]
        assert code == 0 and (st["asked"], st["cached"]) == (N - kept, kept) and cached(pws) == N
    finally:
        s.stop()


def test_a_py_spec_and_a_yaml_spec_record_the_same_source(pws, tmp_path):
    (tmp_path / "p.py").write_text(
        "from mothermodel import Prompt, Task, KeywordLF\n"
        "task = Task(name='spam', dataset='msgs', classes=['HAM', 'SPAM'], sources=[\n"
        "    Prompt(name='ask', endpoint='http://127.0.0.1:9/v1', model='tiny-chat',\n"
        "           template='Is this spam or ham? {text}', verbalizer={1: ['spam', 'junk']},\n"
        "           params={'cost_per_1k_tokens': 0.5, 'batch_size': 4})])\n")
    assert run_cli("task", "submit", tmp_path / "p.py", ws=pws).code == 0
    assert run_cli("task", "submit", spec(tmp_path, "http://127.0.0.1:9/v1/", name="spam_y"), ws=pws).code == 0

    def ask(name):
        r = run_cli("task", "show", name, "--json", ws=pws)
        return next(s for s in json.loads(r.out)["sources"] if s["name"] == "ask")
    a, b = ask("spam"), ask("spam_y")
    assert a["code_hash"] == b["code_hash"] and a["kind"] == "prompt"
    (tmp_path / "q.py").write_text((tmp_path / "p.py").read_text().replace("params={", "params={'endpoint': 'x', "))
    r = run_cli("task", "submit", tmp_path / "q.py", ws=pws)
    assert r.code == 2 and "endpoint" in r.err and "both" in r.err


def test_bad_prompt_specs_are_refused(pws, tmp_path):
    base = "name: t\ndataset: msgs\nclasses: [HAM, SPAM]\nsources:\n  - {kind: prompt, "
    for body, field in [("model: m}", "sources[0].template"),
                        ("endpoint: 'ftp://x', model: m, template: '{text}'}", "sources[0].endpoint"),
                        ("endpoint: 'http://x', model: m, template: 'no text'}", "sources[0].template"),
                        ("endpoint: 'http://x', model: m, template: '{text}', timeout: -1}", "sources[0].timeout"),
                        ("endpoint: 'http://x', model: m, template: '{text}', verbalizer: {NOPE: x}}",
                         "sources[0].verbalizer.NOPE"),
                        ("endpoint: 'http://x', model: m, template: '{text}', api_key_env: 'sk-123'}",
                         "sources[0].api_key_env")]:
        (tmp_path / "bad.yaml").write_text(base + body + "\n")
        r = run_cli("task", "submit", tmp_path / "bad.yaml", ws=pws)
        assert r.code == 2 and field in r.err, (body, r)


# --- local Hugging Face models -----------------------------------------------------------------


def tiny_nli(folder: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    from mothermodel.trainer.encoder import write_tiny_encoder

    write_tiny_encoder(folder, words=["song", "channel", "spam", "ham"])
    cfg = BertConfig.from_pretrained(folder)
    cfg.num_labels = 3
    cfg.id2label, cfg.label2id = {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}, {"ENTAILMENT": 0,
                                                                                        "NEUTRAL": 1,
                                                                                        "CONTRADICTION": 2}
    BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder


def tiny_text_to_text(folder: Path, kind: str) -> Path:
    """A tiny random GPT-2 (causal) or T5 (encoder-decoder) with write_tiny_encoder's WordPiece tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    from mothermodel.trainer.encoder import write_tiny_encoder

    write_tiny_encoder(folder, words=["song", "channel", "spam", "ham"])
    (folder / "config.json").unlink()
    tok = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(0)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                                           bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                                           pad_token_id=tok.pad_token_id))
    else:
        model = T5ForConditionalGeneration(T5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=1,
                                                    num_heads=2, pad_token_id=tok.pad_token_id,
                                                    decoder_start_token_id=tok.pad_token_id,
                                                    eos_token_id=tok.sep_token_id))
    model.save_pretrained(folder)
    return folder


def local_spec(tmp_path: Path, folder: Path, how: str, extra: str = "") -> Path:
    p = tmp_path / "local.yaml"
    p.write_text(f"""name: local
dataset: msgs
classes: [HAM, SPAM]
sources:
  - kind: prompt
    name: zs
    model: {folder}
    {how}
    batch_size: 16
{extra}""")
    return p


def test_local_nli_zero_shot(pws, tmp_path):
    folder = tiny_nli(tmp_path / "nli")
    assert run_cli("task", "submit", local_spec(tmp_path, folder, 'hypothesis: "This text is about {label}."'),
                   ws=pws).code == 0
    code, out = apply(pws)
    st = out["local"]["sources"]["zs"]
    assert code == 0 and (st["backend"], st["rows"], st["asked"], st["cached"], st["failed"]) == ("nli", N, N, 0, 0)
    got = votes(pws, task="local", source="zs")
    assert sorted(got) == list(range(N)) and set(got.values()) <= {0, 1}  # threshold 0: every row votes
    assert st["prompt_tokens"] > 0 and cached(pws) == N
    # A threshold only changes how answers become votes: recomputed from the cache, the model not run.
    assert run_cli("task", "submit", local_spec(tmp_path, folder, 'hypothesis: "This text is about {label}."',
                                                "    threshold: 0.99\n"), "--replace", ws=pws).code == 0
    code, out = apply(pws)
    st = out["local"]["sources"]["zs"]
    assert (st["asked"], st["cached"]) == (0, N) and len(votes(pws, task="local", source="zs")) < N
    # A folder that is not there: that source is unusable (exit 1), recorded, the run goes on.
    assert run_cli("task", "submit", local_spec(tmp_path, tmp_path / "gone", 'hypothesis: "About {label}."'),
                   "--replace", ws=pws).code == 0
    code, out = apply(pws)
    f = out["local"]["faults"][0]
    assert code == 1 and f["fatal"] == "unusable" and "no config.json" in f["first_error"]


@pytest.mark.parametrize("kind", ["gpt2", "t5"])
def test_local_text_to_text(pws, tmp_path, kind):
    folder = tiny_text_to_text(tmp_path / kind, kind)
    how = 'template: "Is this spam or ham? {text} Answer:"\n    max_tokens: 3'
    assert run_cli("task", "submit", local_spec(tmp_path, folder, how), ws=pws).code == 0
    code, out = apply(pws)
    st = out["local"]["sources"]["zs"]
    assert code == 0 and (st["backend"], st["asked"], st["failed"]) == ("generate", N, 0)
    assert 0 < st["completion_tokens"] <= 3 * N and cached(pws) == N
    con = sqlite3.connect(str(pws / ".mothermodel" / prompted.CACHE_FILE))
    assert all(isinstance(a, str) for (a,) in con.execute("SELECT answer FROM answers"))
    con.close()
    # The same prompts asked by a source of another name: answered from the cache, the model not run.
    (tmp_path / "l2.yaml").write_text(local_spec(tmp_path, folder, how).read_text().replace("name: zs", "name: zs2"))
    assert run_cli("task", "submit", tmp_path / "l2.yaml", "--replace", ws=pws).code == 0
    code, out = apply(pws)
    st = out["local"]["sources"]["zs2"]
    assert (st["asked"], st["cached"]) == (0, N)
