import io
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def cli_exe() -> list[str]:
    """The installed console script, next to this interpreter."""
    exe = Path(sys.executable).parent / "mothermodel"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mothermodel.cli"]


class Result:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"Result(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


def run_cli(*args, ws=None) -> Result:
    """Run the CLI in-process (fast), as `mothermodel [-w ws] args...`."""
    from mothermodel.cli import main

    argv = (["-w", str(ws)] if ws else []) + [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())


def run_proc(*args, ws=None, env=None, **kw) -> subprocess.CompletedProcess:
    argv = cli_exe() + (["-w", str(ws)] if ws else []) + [str(a) for a in args]
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


def kill_at_fault(args, ws, marker: Path, point: str = "before_commit", timeout: float = 60, env=None) -> None:
    """Start `mothermodel -w ws args...`, wait until it hangs at fault point `point` (registry/db.py
    `fault_point`; before_commit: inside its write transaction), and SIGKILL it."""
    import signal
    import time

    import tempfile

    env = {**os.environ, **(env or {}), "MOTHERMODEL_FAULT": f"{point}:{marker}"}
    # stderr to a file, not a pipe: a chatty command must not block on a full pipe before the fault point
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cli_exe() + ["-w", str(ws), *map(str, args)], env=env,
                             stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.time() + timeout
            while not Path(marker).exists():
                if p.poll() is not None:
                    err.seek(0)
                    raise AssertionError(f"exited {p.returncode} first: {err.read().decode()[-2000:]}")
                assert time.time() < deadline, f"never reached the fault point {point}"
                time.sleep(0.05)
            os.kill(p.pid, signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert p.returncode == -signal.SIGKILL


def snapshot(ws) -> dict:
    """Every registry table's rows, for 'nothing changed' assertions."""
    import duckdb

    con = duckdb.connect(str(Path(ws) / ".mothermodel" / "registry.duckdb"), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in tables}
    finally:
        con.close()


@pytest.fixture
def ws(tmp_path):
    """A workspace with dataset `docs` (text, split, lf_a, lf_b columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ws"
    assert run_cli("init", root).code == 0
    pq.write_table(
        pa.table({
            "text": ["buy now http://x", "hello friend", "win money", "see you"],
            "split": ["train", "train", "valid", "test"],
            "lf_a": pa.array([1, -1, 1, 0], pa.int8()),
            "lf_b": pa.array([-1, 0, 1, -1], pa.int8()),
        }),
        tmp_path / "docs.parquet",
    )
    r = run_cli("dataset", "add", "docs", tmp_path / "docs.parquet", ws=root)
    assert r.code == 0, r
    return root


def write_spec(path: Path, name="spam", classes=("HAM", "SPAM"), parent=None, sources="", lf_body='1 if "http" in x.text else ABSTAIN', extra_lfs="", dataset="docs") -> Path:
    path.write_text(
        "from mothermodel import ABSTAIN, Column, Task, TaskOutput, labeling_function\n"
        f"task = Task(name={name!r}, dataset={dataset!r}, classes={list(classes)!r}, parent={parent!r}, sources=[{sources}])\n"
        "@labeling_function()\n"
        "def has_link(x):\n"
        f"    return {lf_body}\n"
        "@labeling_function()\n"
        "def says_money(x):\n"
        "    return 1 if 'money' in x.text else ABSTAIN\n"
        f"{extra_lfs}"
    )
    return path


# The tests marked `slow` (pyproject.toml's markers): over ~2.5 s each on a 2-core machine (`--durations=0`
# of a full run), or sharing a costly module fixture only with such tests. `pytest -m "not slow"` runs the
# rest in under 3 minutes; a plain `pytest` (README, CI) still runs everything. Kept here, by file, so that
# the list is one place to re-measure; a name that no longer exists fails the run (pytest_collection_modifyitems).
SLOW = {
    "test_concurrency.py": {"test_16_concurrent_submits_while_a_reader_loops"},
    "test_dask_apply.py": {"test_a_dying_or_stuck_helper_stops_only_that_lf"},
    "test_demo.py": {"test_demo"},
    "test_distill.py": {"test_distill_export_run_bundle_pyfunc_and_tamper", "test_ngram_student_and_distill_all",
                        "test_kill_9_during_distill_leaves_nothing_half_done",
                        "test_kill_9_while_the_bundle_is_written_leaves_nothing",
                        "test_mlflow_models_serve_answers_invocations"},
    "test_faults.py": {"test_kill_9_during_label_apply_then_rerun", "test_16_concurrent_writers_while_watch_runs",
                       "test_kill_9_while_train_records_keeps_the_old_model",
                       "test_malformed_specs_exit_2_with_one_line_and_change_nothing"},
    "test_first_use.py": {"test_ordinary_commands_print_no_library_noise"},
    "test_guard.py": {"test_guard_serves_the_labels_where_the_model_loses"},
    "test_inputs.py": {"test_template_round_trips_through_bundle_runner_and_pyfunc"},
    "test_isolation.py": {"test_gold_out_of_range_fails_its_task_only_in_label_fit_train_and_watch"},
    "test_labeling.py": {"test_real_data_through_apply_analyze_fit", "test_kill_and_interrupt_leave_no_version"},
    "test_sandbox.py": {"test_a_call_that_ignores_the_time_limit_is_killed_from_outside"},
    "test_slices.py": {"test_a_slice_edit_makes_only_what_it_measures_stale",
                       "test_per_slice_figures_in_label_fit_analyze_train_and_mlflow",
                       "test_slice_heads_train_follow_slice_edits_and_survive_a_warm_start"},
    "test_train.py": {"test_kill_9_during_train_then_resume", "test_concurrent_writers_land_while_training",
                      "test_watch_once_relabels_refits_and_retrains", "test_train_json_if_changed_and_warm_start",
                      "test_self_training_then_an_incremental_retrain_for_a_new_task",
                      "test_predict_split_input_and_out"},
    "test_train_subset.py": {"test_training_a_subset_keeps_the_other_tasks_heads_lineage_and_deployables"},
    "test_trainer_checkpoint.py": {"test_kill_9_during_checkpoint_write_keeps_the_previous_one"},
    "test_trainer_ddp.py": {"test_torchrun_two_cpu_processes_gloo"},
    "test_ui.py": {"test_ui_shows_runs_artifacts_and_registered_models"},
}

# Slow tests that exercise what only the installed wheel can get wrong (the bundle runner and the pyfunc
# model load code and files from the installed package): CI's non-editable pass runs `-m "not slow or installed"`.
INSTALLED = {
    "test_distill.py": {"test_distill_export_run_bundle_pyfunc_and_tamper"},
    "test_inputs.py": {"test_template_round_trips_through_bundle_runner_and_pyfunc"},
}


def pytest_collection_modifyitems(config, items):
    seen = set()
    for item in items:
        file = item.path.name
        if file in SLOW and file not in seen:
            seen.add(file)
            gone = sorted(n for n in SLOW[file] | INSTALLED.get(file, set()) if not hasattr(item.module, n))
            if gone:  # renamed or removed: the mark would silently stop applying
                raise pytest.UsageError(f"tests/conftest.py SLOW names no test {gone} in {file}")
        if item.originalname in SLOW.get(file, ()):
            item.add_marker(pytest.mark.slow)
        if item.originalname in INSTALLED.get(file, ()):
            item.add_marker(pytest.mark.installed)
