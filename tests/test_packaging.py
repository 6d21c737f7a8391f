"""One import namespace, a fast CLI start, and no torch/transformers on the registry path."""

import importlib.util
import subprocess
import sys

from conftest import REPO, run_proc, write_spec


def test_one_namespace():
    import mothermodel.distill
    import mothermodel.labeling
    import mothermodel.registry
    import mothermodel.trainer

    assert mothermodel.registry.__file__.endswith("registry/__init__.py")
    # Never importable under generic top-level names.
    for generic in ("registry", "labeling", "trainer", "distill"):
        assert importlib.util.find_spec(generic) is None, generic


def _imported_modules(ws, *args):
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "mothermodel.cli", "-w", str(ws), *map(str, args)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    mods = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "duckdb" in mods  # the measurement itself works
    return mods


def test_registry_commands_import_no_torch_or_transformers(ws, tmp_path):
    spec = write_spec(tmp_path / "a.py", name="a")
    commands = [
        ("task", "submit", spec),
        ("task", "list"),
        ("task", "show", "a", "--json"),
        ("dag", "show"),
        ("dag", "impact", "a"),
        ("status", "--json"),
    ]
    for cmd in commands:
        mods = _imported_modules(ws, *cmd)
        assert not {"torch", "transformers", "mlflow", "matplotlib"} & mods, (cmd, sorted(mods))


def test_console_script_and_version():
    p = run_proc("--version")
    assert p.returncode == 0 and "0.1.0" in p.stdout
    p = run_proc("--help")
    assert p.returncode == 0 and "task" in p.stdout and "dag" in p.stdout
    p = run_proc("no-such-command")
    assert p.returncode == 2


def test_layout():
    for d in ("registry", "labeling", "trainer", "distill", "tests", "docs", "bench", "mothermodel"):
        assert (REPO / d).is_dir(), d
