"""The Dask applier against a real multi-process LocalCluster: same entries as the local applier,
fault isolation (raise, bad type, out of range, timeout) per LF, spec-module LFs shipped to workers."""

import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from mothermodel.labeling import ABSTAIN, KeywordLF, RegexLF, ThresholdLF, labeling_function  # noqa: E402
from mothermodel.labeling.apply.config import ApplyConfig  # noqa: E402
from mothermodel.labeling.apply.core import apply_lfs  # noqa: E402
from mothermodel.labeling.apply.dask import DaskApplyConfig, apply_lfs_dask  # noqa: E402

WORDS = ["free", "money", "hello", "http://x.io", "meeting", "WIN", "now", "lunch", "offer", "ok"]


def make_table(n=600, seed=0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 9))) for _ in range(n)]
    texts[7] = None
    return pa.table({"_row": np.arange(n, dtype=np.int64) * 3 + 10,  # non-trivial row ids
                     "text": texts, "score": rng.random(n)})


@labeling_function()
def has_link(x):
    return 1 if x.text and "http" in x.text else ABSTAIN


@labeling_function()
def short(x):
    return 0 if x.text and len(x.text) < 12 else ABSTAIN


@labeling_function()
def high_score(x):
    return 1 if x.score > 0.8 else (0 if x.score < 0.1 else ABSTAIN)


def standard_lfs():
    return [has_link, short, high_score,
            KeywordLF("kw_money", ["free", "Money"], 1),
            RegexLF("rx_meet", r"\bmeet(ing)?\b", 0, ignore_case=True),
            ThresholdLF("th_low", "score", "<", 0.3, 0)]


def entries(a):
    return sorted(zip(a.rows.tolist(), [a.sources[c] for c in a.cols.tolist()], a.labels.tolist()))


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


def test_same_as_local_applier_table_and_parquet(client, tmp_path):
    table = make_table()
    lfs = standard_lfs()
    local = apply_lfs(table, lfs, 2, ApplyConfig(n_jobs=1, progress=False))
    cfg = DaskApplyConfig(partition_rows=128, progress=False)
    from_table = apply_lfs_dask(table, lfs, 2, cfg, client=client)
    assert from_table.sources == local.sources
    assert entries(from_table) == entries(local) and len(local.rows) > 300
    assert not any(r.failed_rows for r in from_table.reports.values())

    # Parquet: small row groups (grouped into partitions) and one big row group (split).
    pq.write_table(table, tmp_path / "small_rg.parquet", row_group_size=50)
    pq.write_table(table, tmp_path / "one_rg.parquet")
    for f in ("small_rg.parquet", "one_rg.parquet"):
        got = apply_lfs_dask(str(tmp_path / f), lfs, 2, cfg, client=client)
        assert entries(got) == entries(local), f
    # A file without `_row`: row ids are positions; a directory of files follows sorted order.
    d = tmp_path / "ds"
    d.mkdir()
    pq.write_table(table.drop(["_row"]).slice(0, 300), d / "a.parquet", row_group_size=64)
    pq.write_table(table.drop(["_row"]).slice(300), d / "b.parquet", row_group_size=64)
    got = apply_lfs_dask(d, lfs, 2, cfg, client=client)
    renum = table.set_column(0, "_row", pa.array(np.arange(table.num_rows, dtype=np.int64)))
    assert entries(got) == entries(apply_lfs(renum, lfs, 2, ApplyConfig(n_jobs=1, progress=False)))


@labeling_function()
def raises_on_money(x):
    if x.text and "money" in x.text:
        raise KeyError("boom")
    return 1 if x.text and "free" in x.text else ABSTAIN


@labeling_function()
def bad_type(x):
    return "SPAM" if x.text and "offer" in x.text else ABSTAIN


@labeling_function()
def out_of_range(x):
    return 5 if x.text and "lunch" in x.text else (0 if x.text and "ok" in x.text else ABSTAIN)


@labeling_function()
def hangs_on_one_row(x):
    if x.score == HANG_SCORE[0]:
        time.sleep(30)
    return 1 if x.text and "WIN" in x.text else ABSTAIN


HANG_SCORE = [None]


def test_fault_isolation_reported_per_lf(client):
    table = make_table(n=400, seed=1)
    HANG_SCORE[0] = table.column("score")[123].as_py()  # pickled by value with the LF's module
    lfs = [raises_on_money, bad_type, out_of_range, hangs_on_one_row, has_link,
           KeywordLF("bad_label", ["free"], 7)]
    t0 = time.monotonic()
    got = apply_lfs_dask(table, lfs, 2, DaskApplyConfig(partition_rows=100, lf_timeout_s=0.5, progress=False),
                         client=client)
    assert time.monotonic() - t0 < 15
    texts = table.column("text").to_pylist()
    rep = got.reports
    n_money = sum(1 for t in texts if t and "money" in t)
    assert rep["raises_on_money"].raised == n_money > 0 and "KeyError" in rep["raises_on_money"].first_error
    assert rep["bad_type"].bad_type == sum(1 for t in texts if t and "offer" in t) > 0
    assert rep["out_of_range"].out_of_range == sum(1 for t in texts if t and "lunch" in t) > 0
    assert rep["hangs_on_one_row"].timed_out == 1
    assert rep["hangs_on_one_row"].first_row == table.column("_row")[123].as_py()
    assert rep["bad_label"].out_of_range == table.num_rows  # a declarative LF's bad label: every row
    assert rep["has_link"].failed_rows == 0
    # Every other output is kept, and equals the local applier's (no timeouts there: the hang is skipped).
    HANG_SCORE[0] = None
    local = apply_lfs(table, lfs, 2, ApplyConfig(n_jobs=1, progress=False))
    hang_row = table.column("_row")[123].as_py()
    assert entries(got) == [e for e in entries(local) if not (e[0] == hang_row and e[1] == "hangs_on_one_row")]
    for name in ("raises_on_money", "bad_type", "out_of_range"):
        d, loc = rep[name].to_dict(), local.reports[name].to_dict()
        # cloudpickle >= 3.1.3 ships by-value code as File "<dynamic-code>" (its frames keep line and
        # function), so a traceback is compared by the LF's frame and the exception it ends in.
        err, loc_err = d.pop("first_error"), loc.pop("first_error")
        assert d == loc and err and loc_err, name
        if loc_err.startswith("Traceback"):
            assert err.splitlines()[-1] == loc_err.splitlines()[-1] and f"in {name}\n" in err, (name, err)
        else:
            assert err == loc_err, name


SPEC = '''
import re
from mothermodel import ABSTAIN, Task, labeling_function

LINK = re.compile(r"https?://")
BONUS = {"WIN": 1, "lunch": 0}

def helper(text):
    return LINK.search(text) is not None

@labeling_function()
def spec_link(x):
    return 1 if x.text and helper(x.text) else ABSTAIN

@labeling_function(resources={"table": BONUS})
def spec_bonus(x, table):
    for k, v in table.items():
        if x.text and k in x.text:
            return v
    return ABSTAIN

task = Task(name="spec_task", dataset="d", classes=["HAM", "SPAM"])
'''


def test_lfs_from_a_spec_module_run_on_workers(client, tmp_path):
    from mothermodel.labeling.lf.core import lfs_from_source

    path = tmp_path / "spec_task.py"
    path.write_text(SPEC)
    lfs = list(lfs_from_source(SPEC, str(path)).values())
    assert {lf.name for lf in lfs} == {"spec_link", "spec_bonus"}
    mod = lfs[0].f.__module__
    assert mod.startswith("_mothermodel_spec_")
    # The workers cannot import that module by name...
    assert not any(client.run(lambda m=mod: __import__("importlib").util.find_spec(m) is not None).values())
    table = make_table(n=300, seed=2)
    got = apply_lfs_dask(table, lfs, 2, DaskApplyConfig(partition_rows=100, progress=False), client=client)
    local = apply_lfs(table, lfs, 2, ApplyConfig(n_jobs=1, progress=False))
    assert not any(r.failed_rows for r in got.reports.values())
    assert entries(got) == entries(local) and len(local.rows) > 50


def test_isolate_false_runs_in_worker_threads_and_warns(client):
    table = make_table(n=200, seed=3)
    with pytest.warns(RuntimeWarning, match="not enforced"):
        got = apply_lfs_dask(table, [has_link, short], 2, DaskApplyConfig(isolate=False, progress=False),
                             client=client)
    assert entries(got) == entries(apply_lfs(table, [has_link, short], 2, ApplyConfig(n_jobs=1, progress=False)))


@labeling_function()
def kills_interpreter(x):
    import os

    os._exit(3)


@labeling_function()
def calls_exit(x):
    import sys

    sys.exit(0)


@labeling_function()
def ignores_the_limit(x):
    import time

    if x.text and "money" in x.text:
        while True:
            try:
                time.sleep(10)
            except:  # noqa: E722 - swallows the in-helper time limit too
                pass
    return 0


def test_a_dying_or_stuck_helper_stops_only_that_lf(client):
    # Before: os._exit in an LF failed the whole apply ("helper process died"); a call that swallowed
    # the time limit hung it.
    table = make_table(n=50, seed=4)
    cfg = DaskApplyConfig(progress=False, partition_rows=20, lf_timeout_s=0.5)
    t0 = time.monotonic()
    got = apply_lfs_dask(table, [kills_interpreter, has_link, calls_exit, ignores_the_limit], 2, cfg, client=client)
    assert time.monotonic() - t0 < 60
    assert entries(got) == entries(apply_lfs(table, [has_link], 2, ApplyConfig(n_jobs=1, progress=False)))
    rep = got.reports
    assert rep["kills_interpreter"].fatal == "crashed" and rep["kills_interpreter"].failed_rows == 50
    assert "exit code 3" in rep["kills_interpreter"].first_error
    assert rep["ignores_the_limit"].fatal == "timeout" and rep["ignores_the_limit"].failed_rows == 50
    assert rep["calls_exit"].fatal == "every row" and "SystemExit" in rep["calls_exit"].first_error
    assert rep["has_link"].failed_rows == 0
    # The workers start fresh helpers next time.
    got = apply_lfs_dask(table, [has_link], 2, DaskApplyConfig(progress=False), client=client)
    assert entries(got) == entries(apply_lfs(table, [has_link], 2, ApplyConfig(n_jobs=1, progress=False)))


def test_start_helpers_once_per_worker_thread(client):
    from mothermodel.labeling.apply.dask import start_helpers

    start_helpers(client)
    assert set(start_helpers(client).values()) == {0}  # already there: none started
