"""Registry at scale: the issue's speed targets, measured end to end.

Target (from the issue): with 10,000 tasks and 100,000 sources registered,
`mothermodel task list` (process start included) under 0.5 s and
`mothermodel dag impact` under 1 s.

What this does:
  1. creates a workspace (a temp dir, or --workspace DIR to keep it) and
     registers one small dataset (text + lf_0..lf_9 int8, 300 rows);
  2. generates --tasks TaskSpecs (Task + Column/TaskOutput sources + normalise)
     with --sources-per-task sources each, as a seeded random DAG: a forest of
     parent trees up to depth 10, a few hub tasks with wide fan-outs, and some
     tasks using an earlier task's output as a source; submits them all in
     one `Registry.submit` call (timed);
  3. times CLI commands as subprocesses (process start included, stdout to a
     pipe): task list [--json], dag impact ROOT [--json] for the task with the
     most descendants, dag impact DATASET [--json] (the dataset every task
     labels, so all tasks are stale: the worst case), status --json, dag show --format dot; one untimed warm-up
     run, then --repeat timed runs; median and min against the targets;
  4. times `mothermodel task submit` of one extra .py spec into the full
     registry (--repeat times, a new task each time, after the reads);
  5. checks with `python -X importtime` (and an import guard that also catches
     attempted imports of packages that are not installed) that the registry
     commands import neither torch nor transformers.

Writes bench/results/registry_scale.json. Exit status is non-zero on a missed
target only with --check. There is no peer for this benchmark: Snorkel has no
task registry or DAG to compare against.

    python bench/registry_scale.py                 # 10,000 tasks x 10 sources
    python bench/registry_scale.py --check         # exit 1 if a target is missed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "registry_scale.json"
N_COLUMNS = 10
N_ROWS = 300
DATASET = "bench"
MAX_DEPTH = 10
N_HUBS = 5
HEAVY = ("torch", "transformers")
PEER_NOTE = "No peer comparison: Snorkel (the labeling peer) has no task registry or dependency DAG."


# --- the workload -------------------------------------------------------------------


def make_dataset():
    import pyarrow as pa

    rng = random.Random(1)
    words = "good bad great awful link http free win spam ham hello video song love".split()
    cols = {"text": [" ".join(rng.choice(words) for _ in range(8)) for _ in range(N_ROWS)]}
    for j in range(N_COLUMNS):
        cols[f"lf_{j}"] = pa.array([rng.choice((-1, -1, 0, 1)) for _ in range(N_ROWS)], type=pa.int8())
    return pa.table(cols)


def task_name(i: int) -> str:
    return f"t_{i:05d}"


def make_specs(n_tasks: int, per_task: int, seed: int = 0):
    """A seeded DAG of TaskSpecs; returns (specs, upstream map name -> [(up, kind)])."""
    from mothermodel.spec import Column, Task, TaskOutput, normalise

    rng = random.Random(seed)
    depth: list[int] = []
    eligible: list[int] = []  # tasks that may still get children (depth < MAX_DEPTH)
    specs = []
    for i in range(n_tasks):
        parent = None
        upstream_out = None
        if i >= N_HUBS:
            r = rng.random()
            if r < 0.10:
                parent = rng.randrange(N_HUBS)  # wide fan-out under a few hubs
            elif r < 0.60:
                # Mostly recent tasks, so chains grow deep; sometimes any earlier one.
                pool = eligible[-300:] if rng.random() < 0.7 else eligible
                parent = rng.choice(pool)
            if rng.random() < 0.15:
                cand = rng.choice(eligible)
                if cand != parent:
                    upstream_out = cand
        d = 0
        if parent is not None:
            d = max(d, depth[parent] + 1)
        if upstream_out is not None:
            d = max(d, depth[upstream_out] + 1)
        depth.append(d)
        if d < MAX_DEPTH:
            eligible.append(i)
        sources = []
        n_cols = per_task - (1 if upstream_out is not None else 0)
        for k in range(n_cols):
            col = f"lf_{k % N_COLUMNS}"
            sources.append(Column(col) if k < N_COLUMNS else Column(col, name=f"{col}_{k}"))
        if upstream_out is not None:
            sources.append(TaskOutput(task_name(upstream_out)))
        t = Task(
            name=task_name(i), dataset=DATASET, classes=["NEG", "POS"],
            parent=task_name(parent) if parent is not None else None,
            sources=sources, description=f"benchmark task {i}", owner="bench",
        )
        specs.append(normalise(t, [], origin=f"<bench:{i}>"))
    return specs


def dag_stats(specs) -> dict:
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(s.name for s in specs)
    kinds = {"parent": 0, "task_output": 0}
    for s in specs:
        for up, kind in s.upstream_tasks:
            g.add_edge(up, s.name)
            kinds[kind] += 1
    longest = nx.dag_longest_path_length(g)
    # Descendant counts by reverse topological order (sets; 10k nodes is fine).
    desc: dict[str, set] = {}
    for n in reversed(list(nx.topological_sort(g))):
        acc: set = set()
        for v in g.successors(n):
            acc.add(v)
            acc |= desc[v]
        desc[n] = acc
    root = max(g.nodes, key=lambda n: (len(desc[n]), n))
    outdeg = sorted((d for _, d in g.out_degree()), reverse=True)
    return {
        "tasks": g.number_of_nodes(),
        "sources": sum(len(s.sources) for s in specs),
        "edges": g.number_of_edges(),
        "parent_edges": kinds["parent"],
        "task_output_edges": kinds["task_output"],
        "roots": sum(1 for n in g.nodes if g.in_degree(n) == 0),
        "longest_path": longest,
        "top_out_degrees": outdeg[:5],
        "impact_root": root,
        "impact_root_descendants": len(desc[root]),
    }


EXTRA_SPEC = '''\
from mothermodel import ABSTAIN, Column, Task, TaskOutput, labeling_function

task = Task(
    name="{name}",
    dataset="{dataset}",
    classes=["NEG", "POS"],
    parent="{parent}",
    sources=[{columns}, TaskOutput("{upstream}")],
    description="one extra task submitted into the full registry",
)


@labeling_function()
def says_good(x):
    return 1 if "good" in x.text else ABSTAIN
'''


# --- timing -------------------------------------------------------------------------


def cli_prefix() -> list[str]:
    exe = Path(sys.executable).parent / "mothermodel"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mothermodel.cli"]


def run_once(argv: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(argv)}\n{p.stderr.decode()[-2000:]}")
    return dt, len(p.stdout)


def time_cmd(argv: list[str], repeat: int) -> dict:
    first, out_bytes = run_once(argv)  # warm-up: not counted in median/min
    runs = [run_once(argv)[0] for _ in range(repeat)]
    return {
        "argv": argv, "first_s": first, "runs_s": runs, "median_s": statistics.median(runs),
        "min_s": min(runs), "max_s": max(runs), "stdout_bytes": out_bytes,
    }


def time_inproc(fn, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(runs), "min_s": min(runs)}


GUARD = textwrap.dedent('''\
    import json, os, sys
    attempted = []
    class _Guard:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {heavy!r}:
                attempted.append(name)
            return None
    sys.meta_path.insert(0, _Guard())
    def _report():
        mods = sorted({{m.split(".")[0] for m in sys.modules}} - set(sys.stdlib_module_names)
                      - {{"__main__", "_distutils_hack"}})
        os.write(2, ("\\n@@GUARD " + json.dumps({{"attempted": sorted(set(attempted)), "packages": mods}}) + "\\n").encode())
    import atexit
    atexit.register(_report)
    sys.argv = ["mothermodel"] + {argv!r}
    from mothermodel.cli import main
    main()
''')


def import_check(args: list[str]) -> dict:
    """-X importtime: which modules load, and how long the imports take."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "mothermodel.cli", *args],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    mods: dict[str, int] = {}
    for line in p.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        # "import time:  self [us] | cumulative | imported package" (name indented by nesting)
        _self_us, cum_us, name = (x.strip() for x in line[len("import time:"):].split("|"))
        mods[name] = int(cum_us)
    top = {}
    for name, cum in mods.items():
        if "." not in name:  # top-level packages only; cumulative includes their submodules
            top[name] = cum
    heavy_loaded = sorted(m for m in mods if m.split(".")[0] in HEAVY)
    g = subprocess.run([sys.executable, "-c", GUARD.format(heavy=set(HEAVY), argv=args)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    guard = {"attempted": None, "packages": None}
    for line in g.stderr.splitlines():
        if line.startswith("@@GUARD "):
            guard = json.loads(line[len("@@GUARD "):])
    return {
        "args": args,
        "rc": p.returncode,
        "modules_imported": len(mods),
        "import_total_ms": round(sum(top.values()) / 1000, 1),
        "slowest_top_level_ms": {k: round(v / 1000, 1) for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:8]},
        "heavy_imported": heavy_loaded,
        "heavy_import_attempted": guard["attempted"],
        "third_party_packages_loaded": guard["packages"],
    }


# --- main ---------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--sources-per-task", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per command (after one warm-up)")
    ap.add_argument("--workspace", type=Path, default=None, help="build the workspace here and keep it")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    import duckdb
    import networkx
    import pyarrow

    from mothermodel.api import Registry

    if args.workspace:
        ws_dir = args.workspace.resolve()
        if (ws_dir / ".mothermodel").exists():
            raise SystemExit(f"{ws_dir}: already holds a workspace; give an empty or new directory")
        tmp = None
    else:
        tmp = tempfile.mkdtemp(prefix="mm-registry-scale-")
        ws_dir = Path(tmp) / "ws"
    try:
        load_before = os.getloadavg()
        print(f"workspace: {ws_dir}")
        reg = Registry.init(ws_dir)
        reg.add_dataset_table(DATASET, make_dataset(), text_field="text")

        t0 = time.perf_counter()
        specs = make_specs(args.tasks, args.sources_per_task)
        t_gen = time.perf_counter() - t0
        stats = dag_stats(specs)
        print(f"generated {stats['tasks']} tasks, {stats['sources']} sources in {t_gen:.2f}s; "
              f"{stats['edges']} edges ({stats['parent_edges']} parent, {stats['task_output_edges']} task_output), "
              f"{stats['roots']} roots, longest path {stats['longest_path']}, top fan-outs {stats['top_out_degrees']}")

        t0 = time.perf_counter()
        reg.submit(specs)
        t_submit = time.perf_counter() - t0
        st = reg.status().registry.counts
        assert st.tasks == args.tasks and st.sources == stats["sources"], st
        db_mb = (ws_dir / ".mothermodel" / "registry.duckdb").stat().st_size / 2**20
        print(f"Registry.submit of {args.tasks} specs in one call: {t_submit:.2f}s (registry.duckdb {db_mb:.1f} MiB)")

        root = stats["impact_root"]
        impact = reg.impact(root)
        n_stale = len(impact.tasks) - 1
        assert n_stale == stats["impact_root_descendants"], (n_stale, stats["impact_root_descendants"])
        print(f"impact root: {root} ({n_stale} descendant tasks)")

        cli = cli_prefix()
        base = [*cli, "-w", str(ws_dir)]
        commands = [
            ("task list", ["task", "list"], 0.5),
            ("task list --json", ["task", "list", "--json"], 0.5),
            ("dag impact ROOT", ["dag", "impact", root], 1.0),
            ("dag impact ROOT --json", ["dag", "impact", root, "--json"], 1.0),
            # Worst case: a change to the dataset every task labels makes all tasks stale.
            ("dag impact DATASET (all tasks)", ["dag", "impact", DATASET], 1.0),
            ("dag impact DATASET --json", ["dag", "impact", DATASET, "--json"], 1.0),
            ("status --json", ["status", "--json"], None),
            ("dag show --format dot", ["dag", "show", "--format", "dot"], None),
        ]
        floors = [
            ("python -c pass", [sys.executable, "-c", "pass"]),
            ("python -c 'import mothermodel.cli'", [sys.executable, "-c", "import mothermodel.cli"]),
            ("mothermodel --version", [*cli, "--version"]),
        ]
        results = []
        for label, argv in floors:
            r = time_cmd(argv, args.repeat)
            results.append({"command": label, "target_s": None, **r})
        for label, sub, target in commands:
            r = time_cmd([*base, *sub], args.repeat)
            entry = {"command": label, "target_s": target, **r}
            if target is not None:
                entry["ratio"] = r["median_s"] / target
                entry["met"] = r["median_s"] < target
            results.append(entry)

        # In-process (no process start, no output): how much of each command is registry work.
        inproc = {
            "list_tasks": time_inproc(reg.list_tasks, args.repeat),
            "impact_root": time_inproc(lambda: reg.impact(root), args.repeat),
            "status": time_inproc(reg.status, args.repeat),
            "graph": time_inproc(reg.graph, args.repeat),
        }

        # One extra .py spec into the full registry, a new task each run.
        spec_dir = ws_dir / "bench_specs"
        spec_dir.mkdir(exist_ok=True)
        deep = next(s.name for s in reversed(specs) if s.parent)  # a task inside some tree
        cols = ", ".join(f'Column("lf_{k}")' for k in range(N_COLUMNS - 1))
        submit_runs = []
        for k in range(args.repeat + 1):
            f = spec_dir / f"extra_{k}.py"
            f.write_text(EXTRA_SPEC.format(name=f"extra_{k}", dataset=DATASET, parent=deep,
                                           columns=cols, upstream=root))
            submit_runs.append(run_once([*base, "task", "submit", str(f)])[0])
        submit_cli = {"argv": [*base, "task", "submit", "SPEC.py"], "first_s": submit_runs[0],
                      "runs_s": submit_runs[1:], "median_s": statistics.median(submit_runs[1:]),
                      "min_s": min(submit_runs[1:]), "max_s": max(submit_runs[1:])}

        imports = [import_check(["-w", str(ws_dir), *sub]) for sub in
                   (["task", "list"], ["dag", "impact", root], ["status", "--json"])]
        heavy_ok = all(not c["heavy_imported"] and not c["heavy_import_attempted"] for c in imports)
        heavy_installed = {m: __import__("importlib.util").util.find_spec(m) is not None for m in HEAVY}

        # --- report ---------------------------------------------------------------------
        print()
        print(f"Registry scale: {args.tasks} tasks, {stats['sources']} sources; {args.repeat} timed runs "
              f"per command after one warm-up; subprocess wall time incl. process start, stdout to a pipe")
        hdr = f"{'command':<36} {'median':>8} {'min':>8} {'first':>8} {'target':>7} {'ratio':>6}  verdict"
        print(hdr)
        print("-" * len(hdr))
        for r in results + [{"command": "task submit SPEC.py (1 new task)", "target_s": None, **submit_cli}]:
            tgt = f"{r['target_s']:.1f}s" if r["target_s"] else "-"
            ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
            verdict = ("MET" if r["met"] else "MISSED") if "met" in r else ""
            print(f"{r['command']:<36} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['first_s']:>7.3f}s "
                  f"{tgt:>7} {ratio:>6}  {verdict}")
        print(f"{'Registry.submit (' + str(args.tasks) + ' specs, in-process)':<36} {t_submit:>7.3f}s")
        print("in-process registry work (median): " + ", ".join(f"{k} {v['median_s'] * 1000:.0f} ms"
                                                              for k, v in inproc.items()))
        print(f"dag impact root {root}: {n_stale} descendant tasks of {args.tasks}")
        for c in imports:
            print(f"imports for `{' '.join(c['args'][2:])}`: {c['modules_imported']} modules, "
                  f"{c['import_total_ms']:.0f} ms; torch/transformers imported: {c['heavy_imported'] or 'no'}, "
                  f"attempted: {c['heavy_import_attempted'] or 'no'}; third-party packages: "
                  f"{', '.join(c['third_party_packages_loaded'] or [])}")
        print(f"torch/transformers installed in this environment: {heavy_installed}")
        print(f"1-minute load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
              f"on {os.cpu_count()} CPUs (high load inflates the medians)")
        print(PEER_NOTE)

        missed = [r["command"] for r in results if r.get("met") is False]
        out = {
            "benchmark": "registry_scale",
            "targets": {"task list": 0.5, "dag impact": 1.0,
                        "text": "With 10,000 tasks and 100,000 sources registered: `task list` (process start "
                                "included) under 0.5 s, `dag impact` under 1 s."},
            "config": {"tasks": args.tasks, "sources_per_task": args.sources_per_task, "repeat": args.repeat,
                       "dataset_rows": N_ROWS, "seed": 0, "warmup_runs": 1},
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpu_count": os.cpu_count(), "processor": _cpu_model(),
                        "duckdb": duckdb.__version__, "networkx": networkx.__version__,
                        "pyarrow": pyarrow.__version__,
                        # Timings are noisy when the machine is busy: the 1-minute load before and after.
                        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                        # Set in some sandboxes: mothermodel's own modules are then compiled on every
                        # start (measured: under 10 ms on `task list`).
                        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE")},
            "dag": stats,
            "generate_specs_s": t_gen,
            "registry_submit_s": t_submit,
            "registry_mib": round(db_mb, 2),
            "commands": results,
            "task_submit_cli": submit_cli,
            "in_process": inproc,
            "imports": imports,
            "heavy_not_imported": heavy_ok,
            "heavy_installed": heavy_installed,
            "targets_met": not missed,
            "missed": missed,
            "peer": PEER_NOTE,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
        if missed:
            print(f"targets missed: {', '.join(missed)}")
        if not heavy_ok:
            print("registry commands import torch or transformers")
        return 1 if args.check and (missed or not heavy_ok) else 0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
