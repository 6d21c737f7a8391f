"""Benchmark: applying LFs, mothermodel's appliers vs Snorkel 0.10's PandasLFApplier.

    python bench/apply.py [--snorkel-python /tmp/snorkelvenv/bin/python] [--rows 200000]
                          [--repeats 3] [--dask] [--out bench/results/apply.json]

Requirements: the Snorkel venv (bench/snorkel_peer.py) with Dask for Snorkel's parallel
applier: `/tmp/snorkelvenv/bin/pip install -q 'dask[dataframe,distributed]'` (snorkel's
apply/dask.py imports dask.distributed). Without Dask there, that one peer is skipped
(said on stderr and in the JSON); without the venv the script exits 2.

Parts (one seeded synthetic text column, 200,000 rows by default):
  (a) 20 Python LFs (keyword checks, regexes, length checks): our local applier
      (`apply_python_lfs`, process pool on every core, default 5 s time limit per
      row) vs Snorkel's PandasLFApplier (single process, as Snorkel runs it).
      Target: >= 1.8x. Our 1-process time is reported too. The peer of our
      2-process figure is Snorkel's own multi-core applier, PandasParallelLFApplier
      (Dask, n_parallel = our process count, its default "processes" scheduler),
      timed in the same run with the same LFs and data.
  (b) 20 declarative LFs (12 KeywordLF, 8 RegexLF) through our DuckDB path
      (`apply_declarative_lfs`) vs Snorkel's PandasLFApplier on the equivalent
      Python LFs (the same functions the declarative LFs run when called in
      Python). Target: >= 20x.
  --dask: also (a) through `apply_lfs_dask` on a 2-worker LocalCluster (one run,
      informational; the cluster and its helper processes are started before timing).

Correctness: our label matrix (densified) must equal Snorkel's, entry for entry,
in both parts; the script exits 1 if not. Timings are medians over --repeats runs,
in process, data already in memory (an Arrow table for us, a pandas DataFrame for
Snorkel), LFs already built. Snorkel runs under --snorkel-python as a subprocess
(its venv has snorkel + pandas, no pyarrow: data goes over as JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
from snorkel_peer import DEFAULT_SNORKEL  # noqa: E402 (bench/ is sys.path[0])
SEED = 7

# The LFs, as source text both sides exec: plain functions, wrapped by each side's own
# LF class. ABSTAIN is injected as a global.
LF_SOURCE = r'''
import re

URL = re.compile(r"https?://\S+")
EMAIL = re.compile(r"\b[\w.]+@[\w]+\.(com|org|net)\b")
MONEY = re.compile(r"\$\d+")
PHONE = re.compile(r"\b\d{3}-\d{3}-\d{4}\b")
CAPS = re.compile(r"\b[A-Z]{4,}\b")
BANG = re.compile(r"!{2,}")
CLICK = re.compile(r"click (here|now|below)", re.IGNORECASE)

def lf_free(x): return 1 if "free" in x.text.lower() else ABSTAIN
def lf_winner(x): return 1 if "winner" in x.text.lower() else ABSTAIN
def lf_offer(x): return 1 if "limited offer" in x.text.lower() else ABSTAIN
def lf_unsub(x): return 1 if "unsubscribe" in x.text.lower() else ABSTAIN
def lf_thanks(x): return 0 if "thanks" in x.text.lower() or "thank you" in x.text.lower() else ABSTAIN
def lf_meeting(x): return 0 if "meeting" in x.text.lower() else ABSTAIN
def lf_invoice(x): return 0 if "invoice" in x.text.lower() else ABSTAIN
def lf_cheap(x):
    t = x.text.lower()
    return 1 if "cheap" in t or "discount" in t else ABSTAIN
def lf_url(x): return 1 if URL.search(x.text) else ABSTAIN
def lf_email(x): return 0 if EMAIL.search(x.text) else ABSTAIN
def lf_money(x): return 1 if MONEY.search(x.text) else ABSTAIN
def lf_phone(x): return 1 if PHONE.search(x.text) else ABSTAIN
def lf_caps(x): return 1 if CAPS.search(x.text) else ABSTAIN
def lf_bang(x): return 1 if BANG.search(x.text) else ABSTAIN
def lf_click(x): return 1 if CLICK.search(x.text) else ABSTAIN
def lf_very_short(x): return 0 if len(x.text) < 30 else ABSTAIN
def lf_very_long(x): return 1 if len(x.text) > 400 else ABSTAIN
def lf_few_words(x): return 0 if len(x.text.split()) < 6 else ABSTAIN
def lf_many_words(x): return 1 if len(x.text.split()) > 60 else ABSTAIN
def lf_shouty(x):
    letters = sum(c.isalpha() for c in x.text)
    return 1 if letters and sum(c.isupper() for c in x.text) > 0.3 * letters else ABSTAIN

PY_LFS = [lf_free, lf_winner, lf_offer, lf_unsub, lf_thanks, lf_meeting, lf_invoice, lf_cheap,
          lf_url, lf_email, lf_money, lf_phone, lf_caps, lf_bang, lf_click,
          lf_very_short, lf_very_long, lf_few_words, lf_many_words, lf_shouty]

# Declarative LFs: (kind, name, keywords | pattern, label[, ignore_case]).
DECL = [
    ("keyword", "kw_free", ["free", "gratis"], 1),
    ("keyword", "kw_winner", ["winner", "you won", "prize"], 1),
    ("keyword", "kw_offer", ["limited offer", "act now"], 1),
    ("keyword", "kw_unsub", ["unsubscribe"], 1),
    ("keyword", "kw_thanks", ["thanks", "thank you"], 0),
    ("keyword", "kw_meeting", ["meeting", "agenda", "minutes"], 0),
    ("keyword", "kw_invoice", ["invoice", "receipt"], 0),
    ("keyword", "kw_cheap", ["cheap", "discount", "sale"], 1),
    ("keyword", "kw_lunch", ["lunch", "dinner"], 0),
    ("keyword", "kw_money", ["cash", "money", "bitcoin"], 1),
    ("keyword", "kw_family", ["mom", "kids", "family"], 0),
    ("keyword", "kw_urgent", ["urgent", "immediately"], 1),
    ("regex", "rx_url", r"https?://\S+", 1, False),
    ("regex", "rx_email", r"\b[a-z.]+@[a-z]+\.(com|org|net)\b", 0, True),
    ("regex", "rx_money", r"\$[0-9]+", 1, False),
    ("regex", "rx_phone", r"\b[0-9]{3}-[0-9]{3}-[0-9]{4}\b", 1, False),
    ("regex", "rx_caps", r"\b[A-Z]{4,}\b", 1, False),
    ("regex", "rx_bang", r"!{2,}", 1, False),
    ("regex", "rx_click", r"click (here|now|below)", 1, True),
    ("regex", "rx_percent", r"[0-9]+% off", 1, True),
]


def decl_equivalents():
    """Python functions with exactly KeywordLF / RegexLF semantics (what their .f does)."""
    fns = []
    for spec in DECL:
        if spec[0] == "keyword":
            _, name, kws, label = spec
            def f(x, kws=tuple(k.lower() for k in kws), label=label):
                v = x.text.lower()
                return label if any(k in v for k in kws) else ABSTAIN
        else:
            _, name, pattern, label, icase = spec
            def f(x, rx=re.compile(pattern, re.IGNORECASE if icase else 0), label=label):
                return label if rx.search(x.text) else ABSTAIN
        f.__name__ = name
        fns.append(f)
    return fns
'''

SNORKEL_RUNNER = r'''
import json, sys, time
import numpy as np
import pandas as pd
from snorkel.labeling import LabelingFunction, PandasLFApplier

src, data_path, out_dir, repeats, n_parallel = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ns = {"ABSTAIN": -1}
exec(compile(open(src).read(), src, "exec"), ns)
df = pd.DataFrame({"text": json.load(open(data_path))})
result = {}
for part, fns in (("a", ns["PY_LFS"]), ("b", ns["decl_equivalents"]())):
    applier = PandasLFApplier([LabelingFunction(f.__name__, f) for f in fns])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        L = applier.apply(df, progress_bar=False)
        times.append(time.perf_counter() - t0)
    np.save(f"{out_dir}/snorkel_{part}.npy", L)
    result[part] = times
try:  # Snorkel's multi-core applier: Dask partitions over a process pool
    from snorkel.labeling.apply.dask import PandasParallelLFApplier
    import dask
except ImportError as e:
    result["a_dask"] = None
    result["a_dask_skipped"] = f"{type(e).__name__}: {e}"
else:
    applier = PandasParallelLFApplier([LabelingFunction(f.__name__, f) for f in ns["PY_LFS"]])
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        # fault_tolerant: Dask infers the output type by calling the LFs on a made-up row (text
        # <NA>), on which they raise; no LF fails on the real rows (labels checked equal below).
        L = applier.apply(df, n_parallel=n_parallel, fault_tolerant=True)
        times.append(time.perf_counter() - t0)
    result["a_dask"] = times
    result["a_dask_labels_equal"] = bool(np.array_equal(L, np.load(f"{out_dir}/snorkel_a.npy")))
    result["dask_version"] = dask.__version__
import snorkel
result["versions"] = {"snorkel": snorkel.__version__, "pandas": pd.__version__, "python": sys.version.split()[0]}
print(json.dumps(result))
'''

WORDS = ("the a to and of in for on is it you your we our this that with be at have from not are was "
         "will can just please about new time get all more up out so what when one do if my me "
         "report team project update week today tomorrow call note plan list file data code review").split()
SPECIAL = ["free", "FREE gift", "winner", "limited offer", "unsubscribe", "thanks", "thank you", "meeting",
           "agenda", "invoice", "receipt", "cheap", "discount", "sale", "lunch", "cash", "money", "Bitcoin",
           "mom", "kids", "urgent", "you won", "prize", "act now", "gratis", "http://spam.example/x",
           "https://docs.example.org/a?b=1", "bob.smith@mail.com", "ann@corp.org", "$100", "$5",
           "555-123-4567", "CLICK HERE", "click now", "!!!", "!!", "50% off", "URGENT", "minutes",
           "immediately", "family", "dinner"]


def make_texts(n: int, seed: int = SEED) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 90, size=n)
    words = np.array(WORDS)[rng.integers(0, len(WORDS), size=int(lengths.sum()))].tolist()
    n_special = rng.poisson(1.2, size=n)
    specials = np.array(SPECIAL, dtype=object)[rng.integers(0, len(SPECIAL), size=int(n_special.sum()))].tolist()
    caps = rng.random(n) < 0.05
    texts, w, s = [], 0, 0
    for i in range(n):
        toks = words[w:w + lengths[i]]
        w += lengths[i]
        for k in range(n_special[i]):
            toks.insert(int(rng.integers(0, len(toks) + 1)), specials[s + k])
        s += n_special[i]
        t = " ".join(toks)
        texts.append(t.upper() if caps[i] else t.capitalize())
    return texts


def dense(applied, n: int, m: int):
    import numpy as np

    L = np.full((n, m), -1, dtype=np.int64)
    L[applied.rows, applied.cols] = applied.labels
    return L


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snorkel-python", default=DEFAULT_SNORKEL)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dask", action="store_true", help="also time apply_lfs_dask on a 2-worker LocalCluster")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "apply.json"))
    args = ap.parse_args(argv)

    import duckdb
    import numpy as np
    import pyarrow as pa

    from mothermodel.labeling import ABSTAIN, KeywordLF, RegexLF, labeling_function
    from mothermodel.labeling.apply.config import ApplyConfig
    from mothermodel.labeling.apply.core import apply_declarative_lfs, apply_python_lfs

    load_before = os.getloadavg()[0]
    texts = make_texts(args.rows)
    table = pa.table({"_row": np.arange(args.rows, dtype=np.int64), "text": texts})
    ns = {"ABSTAIN": ABSTAIN}
    exec(compile(LF_SOURCE, "<bench LFs>", "exec"), ns)
    py_lfs = [labeling_function()(f) for f in ns["PY_LFS"]]
    decl_lfs = [KeywordLF(s[1], s[2], s[3]) if s[0] == "keyword" else RegexLF(s[1], s[2], s[3], ignore_case=s[4])
                for s in ns["DECL"]]
    n_cores = os.cpu_count() or 1
    res: dict = {"rows": args.rows, "repeats": args.repeats, "cores": n_cores}

    with tempfile.TemporaryDirectory() as tmp:
        src, data = Path(tmp) / "lfs.py", Path(tmp) / "texts.json"
        src.write_text(LF_SOURCE)
        data.write_text(json.dumps(texts))
        print(f"Snorkel PandasLFApplier ({args.snorkel_python}), {args.rows} rows x 20 LFs, "
              f"{args.repeats} runs per part ...", flush=True)
        proc = subprocess.run([args.snorkel_python, "-c", SNORKEL_RUNNER, str(src), str(data), tmp,
                               str(args.repeats), str(n_cores)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 2
        snork = json.loads(proc.stdout.strip().splitlines()[-1])
        L_snorkel = {p: np.load(Path(tmp) / f"snorkel_{p}.npy") for p in ("a", "b")}

    print("ours ...", flush=True)
    cfg = ApplyConfig(n_jobs=None, progress=False)
    t_a, out_a = timed(lambda: apply_python_lfs(table, py_lfs, 2, cfg), args.repeats)
    t_a1, out_a1 = timed(lambda: apply_python_lfs(table, py_lfs, 2, ApplyConfig(n_jobs=1, progress=False)),
                         args.repeats)
    t_a_nolimit, _ = timed(lambda: apply_python_lfs(table, py_lfs, 2, ApplyConfig(lf_timeout_s=0, progress=False)),
                           args.repeats)
    t_b, out_b = timed(lambda: apply_declarative_lfs(table, decl_lfs, 2), args.repeats)

    ok_a = bool(np.array_equal(dense(out_a, args.rows, 20), L_snorkel["a"])
                and np.array_equal(dense(out_a1, args.rows, 20), L_snorkel["a"]))
    ok_b = bool(np.array_equal(dense(out_b, args.rows, 20), L_snorkel["b"]))
    failed = sum(r.failed_rows for o in (out_a, out_b) for r in o.reports.values())
    med = statistics.median
    res["a_python_lfs"] = {
        "snorkel_pandas_s": med(snork["a"]), "ours_local_s": med(t_a), "ours_local_1proc_s": med(t_a1),
        "ours_local_no_time_limit_s": med(t_a_nolimit),
        "speedup": med(snork["a"]) / med(t_a), "speedup_per_process": med(snork["a"]) / med(t_a1),
        "target": 1.8, "met": med(snork["a"]) / med(t_a) >= 1.8, "labels_equal_snorkel": ok_a,
        "entries": int(len(out_a.rows)), "runs": {"snorkel": snork["a"], "ours": t_a, "ours_1proc": t_a1,
                                                  "ours_no_time_limit": t_a_nolimit, "snorkel_dask": snork["a_dask"]},
        # Processes and threads per side: LFs are pure Python, so one thread per process.
        "conditions": {"snorkel_pandas": "1 process x 1 thread",
                       "snorkel_parallel": f"PandasParallelLFApplier, n_parallel={n_cores}, Dask 'processes' "
                                           f"scheduler (a pool of {n_cores} processes x 1 thread)",
                       "ours_local": f"{cfg.n_jobs or n_cores} processes x 1 thread",
                       "ours_local_1proc": "1 process x 1 thread"},
    }
    if snork["a_dask"]:
        a_ = res["a_python_lfs"]
        a_["snorkel_parallel_s"] = med(snork["a_dask"])
        a_["speedup_vs_snorkel_parallel"] = med(snork["a_dask"]) / med(t_a)
        a_["snorkel_parallel_labels_equal"] = snork["a_dask_labels_equal"]
    else:
        print(f"Snorkel's PandasParallelLFApplier skipped: {snork.get('a_dask_skipped')}", file=sys.stderr)
        res["a_python_lfs"]["snorkel_parallel_skipped"] = snork.get("a_dask_skipped")
    res["b_declarative_lfs"] = {
        "snorkel_pandas_s": med(snork["b"]), "ours_duckdb_s": med(t_b), "speedup": med(snork["b"]) / med(t_b),
        "target": 20.0, "met": med(snork["b"]) / med(t_b) >= 20, "labels_equal_snorkel": ok_b,
        "entries": int(len(out_b.rows)), "runs": {"snorkel": snork["b"], "ours": t_b},
    }
    if args.dask:
        from distributed import Client, LocalCluster

        from mothermodel.labeling.apply.dask import DaskApplyConfig, apply_lfs_dask, start_helpers

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            dcfg = DaskApplyConfig(partition_rows=20_000, progress=False)
            start_helpers(client)  # the helper processes start on first use otherwise
            t_d, out_d = timed(lambda: apply_lfs_dask(table, py_lfs, 2, dcfg, client=client), args.repeats)
        res["a_python_lfs"]["ours_dask_2workers_s"] = med(t_d)
        res["a_python_lfs"]["dask_labels_equal_snorkel"] = bool(
            np.array_equal(dense(out_d, args.rows, 20), L_snorkel["a"]))
    res["failed_rows"] = failed
    res["environment"] = {
        "python": platform.python_version(), "duckdb": duckdb.__version__, "pyarrow": pa.__version__,
        "snorkel_side": {**snork["versions"], "dask": snork.get("dask_version")}, "machine": platform.machine(), "cpu_count": n_cores,
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "date": time.strftime("%Y-%m-%d"),
    }
    a, b = res["a_python_lfs"], res["b_declarative_lfs"]
    print(f"(a) 20 Python LFs x {args.rows} rows: Snorkel {a['snorkel_pandas_s']:.2f} s, ours {a['ours_local_s']:.2f} s "
          f"({n_cores} procs; 1 proc {a['ours_local_1proc_s']:.2f} s, no time limit {a['ours_local_no_time_limit_s']:.2f} s)"
          f" -> {a['speedup']:.2f}x (target 1.8x, {'met' if a['met'] else 'MISSED'}); labels equal: {ok_a}")
    if "snorkel_parallel_s" in a:
        print(f"    vs Snorkel PandasParallelLFApplier ({n_cores} Dask processes) {a['snorkel_parallel_s']:.2f} s "
              f"-> {a['speedup_vs_snorkel_parallel']:.2f}x; its labels equal PandasLFApplier's: "
              f"{a['snorkel_parallel_labels_equal']}")
    if "ours_dask_2workers_s" in a:
        print(f"    Dask, 2-worker LocalCluster: {a['ours_dask_2workers_s']:.2f} s; "
              f"labels equal: {a['dask_labels_equal_snorkel']}")
    print(f"(b) 20 declarative LFs: Snorkel (Python equivalents) {b['snorkel_pandas_s']:.2f} s, ours DuckDB "
          f"{b['ours_duckdb_s']:.3f} s -> {b['speedup']:.1f}x (target 20x, {'met' if b['met'] else 'MISSED'}); "
          f"labels equal: {ok_b}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    good = ok_a and ok_b and failed == 0 and res.get("a_python_lfs", {}).get("dask_labels_equal_snorkel", True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
