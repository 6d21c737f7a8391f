"""The `mothermodel` command line: each command is a thin twin of a Python API call.

Exit codes: 0 success, 2 bad input (one line naming the field or file, nothing
written), 1 internal failure. Registry commands import neither torch nor
transformers: a stage's modules load when its `Registry` method runs (mothermodel/api.py).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

# Before anything imports torch (label fit, train, watch): libgomp threads that spin while
# they wait made a 2-thread training step 7x slower on a shared 2-core machine. The user's
# own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

from mothermodel import console  # noqa: E402
from mothermodel.api import Registry  # noqa: E402
from mothermodel.atomic import atomic_path, write_text_atomic  # noqa: E402
from mothermodel.defaults import DEFAULT_SEED, UI_HOST, UI_PORT  # noqa: E402
from mothermodel.distill.config import DistillConfig, DistillOptions  # noqa: E402
from mothermodel.errors import CommandFailed, UserError  # noqa: E402
from mothermodel.inputs import TaskInput  # noqa: E402
from mothermodel.labeling.apply.config import ApplyConfig  # noqa: E402
from mothermodel.registry import dag as dag_mod  # noqa: E402
from mothermodel.registry.faults import TasksFailed  # noqa: E402
from mothermodel.spec import load_spec  # noqa: E402
from mothermodel.trainer.config import (  # noqa: E402  (no torch: dataclass modules)
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    TrainConfig,
    TrainOptions,
    parse_settings,
)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def _registry(ctx: click.Context) -> Registry:
    return Registry.open(ctx.obj.get("workspace"))


def _raise_if_lfs_stopped(result: dict[str, Any]) -> None:
    """After a `label apply` result is shown: exit 1 when an LF was stopped as a whole (`LFReport.fatal`),
    so that cron, systemd and `watch` notice; faults on some rows only do not (see --strict)."""
    stopped = [f"{t['task']}/{f['name']} ({f['fatal']})" for t in result.get("tasks", [])
               for f in t.get("faults", []) if f.get("fatal")]
    if stopped:
        raise CommandFailed(f"{len(stopped)} LF(s) stopped, none of their votes kept: {', '.join(stopped[:5])}"
                            f"{', ...' if len(stopped) > 5 else ''}; every other output was recorded")


def _failed_tasks(failed: list[dict], as_json: bool) -> None:
    """Tasks a run left out (registry/faults.py): a table (not with --json, whose "failed" lists them), then
    exit 1 after the healthy tasks' output, so cron and systemd notice."""
    if not failed:
        return
    if not as_json:
        console.table([(f["task"], f["stage"], f["reason"], f["fix"]) for f in failed],
                      ["failed task (left out)", "stage", "reason", "fix"])
    raise TasksFailed(failed)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-w", "--workspace", type=click.Path(file_okay=False), default=None,
              help="Workspace root (default: $MOTHERMODEL_HOME, else the nearest parent holding .mothermodel/).")
@click.version_option(package_name="mothermodel")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """mothermodel: one registry and one mother model for all your weakly supervised tasks."""
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace


@cli.command()
@click.argument("path", default=".", type=click.Path(file_okay=False))
@json_option
def init(path: str, as_json: bool) -> None:
    """Create a workspace (.mothermodel/ with the registry) at PATH."""
    reg = Registry.init(path)
    if as_json:
        console.emit_json({"workspace": str(reg.ws.root), "registry": str(reg.ws.db_path)})
    else:
        console.info(f"Initialised mothermodel workspace in {reg.ws.home}")


# --- datasets -----------------------------------------------------------------------


@cli.group()
def dataset() -> None:
    """Register and list datasets."""


@dataset.command("add")
@click.argument("name")
@click.argument("file", type=click.Path())
@click.option("--text-field", default=None, help="Column holding the text (default: 'text' if present).")
@click.option("--split-field", default=None, help="Column holding the split name (default: 'split' if present).")
@click.option("--gold-field", default=None, help="Column of gold labels (evaluation only, never training).")
@click.option("--replace", is_flag=True, help="Replace an existing dataset of that name.")
@click.option("--no-text", is_flag=True, help="The dataset has no text on purpose (votes-only tasks: labelled "
              "and fit, never trained or distilled).")
@json_option
@click.pass_context
def dataset_add(ctx, name, file, text_field, split_field, gold_field, replace, no_text, as_json) -> None:
    """Register FILE (.parquet, .csv or .jsonl) as dataset NAME: it needs a text column ('text' or
    --text-field, else --no-text); split values must be train, valid or test."""
    res = _registry(ctx).add_dataset(name, file, text_field, split_field, gold_field, replace, no_text=no_text)
    if as_json:
        console.emit_json(res)
    else:
        console.info(f"dataset {res['name']}: {res['num_rows']} rows, {res['status']} ({res['content_hash'][:12]})")


@dataset.command("list")
@json_option
@click.pass_context
def dataset_list(ctx, as_json) -> None:
    """List registered datasets."""
    rows = _registry(ctx).list_datasets()
    if as_json:
        console.emit_json([r.to_json() for r in rows])
    else:
        console.table([(r.name, r.num_rows, r.text_field, r.split_field, r.gold_field, r.content_hash[:12])
                       for r in rows],
                      ["name", "rows", "text", "split", "gold", "hash"])


@cli.group("import")
def import_() -> None:
    """Import weak-supervision benchmarks."""


@import_.command("wrench")
@click.argument("folder", type=click.Path())
@click.option("--task", "task_name", required=True, help="Name of the dataset and task to create.")
@click.option("--replace", is_flag=True, help="Replace an existing dataset and task of that name.")
@json_option
@click.pass_context
def import_wrench(ctx, folder, task_name, replace, as_json) -> None:
    """Import a WRENCH-format FOLDER as dataset and task TASK, with sources lf_0..lf_{m-1}."""
    res = _registry(ctx).import_wrench(folder, task_name, replace=replace)
    if as_json:
        console.emit_json(res)
    else:
        t, d = res["task"], res["dataset"]
        console.info(f"dataset {d['name']}: {d['num_rows']} rows ({d['status']}); "
                     f"task {t['name']} v{t['version']} ({t['status']}) with {len(t['sources'])} sources")
        if res.get("input"):
            console.info(f"a relation set: the task reads the {TaskInput.from_dict(res['input']).describe()}")


# --- tasks --------------------------------------------------------------------------


@cli.group()
def task() -> None:
    """Submit, list, show and remove tasks."""


@task.command("submit")
@click.argument("spec", type=click.Path())
@click.option("--replace", is_flag=True, help="Change an existing task (bumps its version and changed LFs').")
@json_option
@click.pass_context
def task_submit(ctx, spec, replace, as_json) -> None:
    """Submit a task SPEC (.py with Task + @labeling_function, or .yaml/.toml)."""
    reg = _registry(ctx)
    task_spec = load_spec(spec)  # user code runs before the registry is locked
    res = reg.submit(task_spec, replace=replace)
    if as_json:
        console.emit_json(res["tasks"][0] | {"restamped": res["restamped"]})
        return
    t = res["tasks"][0]
    changed = [s for s in t["sources"] if s["status"] != "unchanged"]
    n_slices = sum(1 for s in t["sources"] if s["kind"] == "slice")
    console.info(f"task {t['name']} v{t['version']} ({t['status']}), {len(t['sources']) - n_slices} sources"
                 + (f", {n_slices} slice{'s' * (n_slices != 1)}" if n_slices else "")
                 + (f", {len(changed)} new or changed" if t["previous_version"] else ""))
    for s in changed if t["previous_version"] else []:
        console.info(f"  {s['name']} ({s['kind']}) -> v{s['version']} ({s['status']})")
    for s in t["removed_sources"]:
        console.info(f"  {s} removed")
    if res["restamped"]:
        console.info(f"  downstream fingerprints changed: {', '.join(res['restamped'])}")


@task.command("list")
@json_option
@click.pass_context
def task_list(ctx, as_json) -> None:
    """List tasks."""
    rows = _registry(ctx).list_tasks()
    if as_json:
        console.emit_json([r.to_json() for r in rows])
    else:
        console.table([(r.name, r.dataset, len(r.classes), r.parent or "", r.num_sources, r.version,
                        r.fingerprint[:12]) for r in rows],
                      ["name", "dataset", "classes", "parent", "sources", "version", "fingerprint"])


@task.command("show")
@click.argument("name")
@json_option
@click.pass_context
def task_show(ctx, name, as_json) -> None:
    """Show one task: classes, sources with versions, up- and downstream tasks."""
    shown = _registry(ctx).show_task(name)
    if as_json:
        console.emit_json(shown.to_json())
        return
    t = shown.task
    console.info(f"{t.name}  v{t.version}  fingerprint {t.fingerprint[:16]}")
    console.info(f"  dataset: {t.dataset}")
    console.info(f"  classes: {', '.join(t.classes)}")
    if t.parent:
        console.info(f"  parent:  {t.parent}")
    if t.description:
        console.info(f"  description: {t.description}")
    if shown.upstream:
        console.info("  upstream: " + ", ".join(f"{e.upstream} ({e.kind})" for e in shown.upstream))
    if shown.downstream:
        console.info("  downstream: " + ", ".join(f"{e.downstream} ({e.kind})" for e in shown.downstream))
    console.table([(s.name, s.kind, s.ref or "", s.version) for s in shown.sources],
                  ["source", "kind", "ref", "version"])


@task.command("remove")
@click.argument("name")
@json_option
@click.pass_context
def task_remove(ctx, name, as_json) -> None:
    """Remove a task no other task depends on (its version history stays)."""
    res = _registry(ctx).remove_task(name)
    if as_json:
        console.emit_json(res)
    else:
        console.info(f"removed task {name} and its {res['sources_removed']} sources")


# --- DAG ----------------------------------------------------------------------------


@cli.group()
def dag() -> None:
    """The task dependency DAG."""


@dag.command("show")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid", "png"]), default="text")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to FILE (required for png).")
@click.pass_context
def dag_show(ctx, fmt, out) -> None:
    """Show the task DAG as a text tree, Graphviz DOT, mermaid or a PNG picture."""
    if fmt == "png" and not out:
        raise UserError("--out: a PNG needs a file to write (e.g. --out dag.png)")
    g = _registry(ctx).graph()
    if fmt == "png":
        dag_mod.to_png(g, out)
        console.info(f"wrote {out}")
        return
    text = {"text": dag_mod.to_text, "dot": dag_mod.to_dot, "mermaid": dag_mod.to_mermaid}[fmt](g)
    if out:
        write_text_atomic(Path(out), text + "\n")
        console.info(f"wrote {out}")
    else:
        console.info(text)


@dag.command("impact")
@click.argument("name")
@click.option("--kind", type=click.Choice(["auto", "task", "source", "dataset"]), default="auto",
              help="What NAME is (auto: a task, then TASK.SOURCE or TASK.SLICE, then a dataset).")
@json_option
@click.pass_context
def dag_impact(ctx, name, kind, as_json) -> None:
    """Everything a change to NAME makes stale: tasks, label versions, models, deployables."""
    res = _registry(ctx).impact(name, kind)
    if as_json:
        console.emit_json(res.to_json())
        return
    if res.kind == "slice":
        v = ", ".join(f"v{x.version}" for x in res.label_versions)
        what = f"task {res.tasks[0].name}'s slice membership{f' ({v})' if v else ''} and its per-slice figures"
        if res.models or res.deployables:  # the task trains slice heads
            deps = ", ".join(f"{d.task} v{d.version}" for d in res.deployables) or "none"
            console.info(f"A change to slice {res.name} makes stale {what}, and (the task trains slice heads) "
                         f"model {', '.join(f'v{m.version}' for m in res.models) or '-'} for it and its deployable "
                         f"({deps}). A slice never votes: no labels, and nothing downstream.")
        else:
            console.info(f"A change to slice {res.name} makes stale only what it measures: {what}. A slice never "
                         "votes: no labels, models or deployables.")
        return
    console.info(f"A change to {res.kind} {res.name} makes stale:")
    console.info(f"  tasks ({len(res.tasks)}):")
    lines = []
    for t in res.tasks:
        how = f"  via {t.via} ({t.edge})" if t.via else ""
        lines.append(f"    {'  ' * min(t.depth, 20)}{t.name}{how}")
    console.info("\n".join(lines))
    console.info(f"  label versions: {len(res.label_versions)}")
    console.info(f"  models: {', '.join(str(m.version) for m in res.models) or 'none'}")
    deps = [f"{d.task} v{d.version} ({d.student}, from model v{d.model_version})" for d in res.deployables]
    console.info(f"  deployables: {', '.join(deps) or 'none'}")


# --- labeling -------------------------------------------------------------------------


@cli.group()
def label() -> None:
    """Apply sources, analyse LFs, fit label models, inspect label versions."""


@label.command("apply")
@click.argument("tasks", nargs=-1)
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes for Python LFs (default: every core).")
@click.option("--timeout", "lf_timeout", type=float, default=5.0, show_default=True,
              help="Time limit in seconds for one LF on one row (0: none).")
@click.option("--memory-mb", "memory_mb", type=int, default=4096, show_default=True,
              help="Memory limit in MB for each worker process running Python LFs, on top of what it inherits "
                   "(0: none); an LF past it fails with MemoryError and is reported.")
@click.option("--force", is_flag=True, help="Recompute every source even when nothing changed.")
@click.option("--strict", is_flag=True, help="Exit 1, recording nothing for that task, if any LF fails on any row.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Where Python LFs run: this machine's cores, or a Dask cluster.")
@click.option("--scheduler", default=None, help="With --engine dask: scheduler address (default: a local cluster).")
@json_option
@click.pass_context
def label_apply(ctx, tasks, jobs, lf_timeout, memory_mb, force, strict, engine, scheduler, as_json) -> None:
    """Run every stale source of TASKS (default: all) in DAG order into new label-matrix versions."""
    if scheduler and engine != "dask":
        raise UserError("--scheduler: only with --engine dask")
    if memory_mb < 0:
        raise UserError(f"--memory-mb: must be >= 0 (0: no limit), got {memory_mb}")
    cfg = ApplyConfig(n_jobs=jobs, lf_timeout_s=lf_timeout, lf_memory_mb=memory_mb, progress=not as_json,
                      engine=engine, scheduler=scheduler)
    res = _registry(ctx).label_apply(list(tasks) or None, cfg, force=force, strict=strict)
    if as_json:
        console.emit_json(res)
        _failed_tasks(res.get("failed", []), as_json)
        _raise_if_lfs_stopped(res)
        return
    for t in res["tasks"]:
        sl = t.get("slices")
        if sl and sl["status"] == "created":
            sizes = ", ".join(f"{n} {k}" for n, k in sl["sizes"].items()) or "none"
            console.info(f"{t['task']}: slice membership v{sl['version']} (rows per slice: {sizes}; "
                         f"{len(sl['recomputed'])} slices run, {len(sl['reused'])} reused)")
        for f in (sl or {}).get("faults", []):
            lines = (f["first_error"] or "").strip().splitlines()
            console.info(f"  ! slice {f['name']}: {f['failed_rows']} rows failed"
                         f"{'; stopped: ' + f['fatal'] if f.get('fatal') else ''}{': ' + lines[-1] if lines else ''}")
        if t["status"] == "up to date":
            console.info(f"{t['task']}: label matrix v{t['version']} is up to date")
            continue
        console.info(f"{t['task']}: label matrix v{t['version']} ({t['entries']} labels; "
                     f"{len(t['recomputed'])} sources run, {len(t['reused'])} reused)")
        for name, st in (t.get("sources") or {}).items():  # model-computed sources: what they cost
            shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in st.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool))
            console.info(f"  {name}: {shown}")
        for f in t["faults"]:
            first = (f["first_error"] or "").strip().splitlines()
            console.info(f"  ! {f['name']}: {f['failed_rows']} rows failed (raised {f['raised']}, timed out "
                         f"{f['timed_out']}, bad type {f['bad_type']}, out of range {f['out_of_range']}"
                         f"{'; stopped: ' + f['fatal'] if f.get('fatal') else ''}); "
                         f"{'' if f['first_row'] is None else 'first at row ' + str(f['first_row']) + ': '}"
                         f"{first[-1] if first else ''}")
    if res.get("dvc"):
        console.info(f"note: {res['dvc']}")
    _failed_tasks(res.get("failed", []), as_json)
    _raise_if_lfs_stopped(res)


@label.command("analyze")
@click.argument("task")
@click.option("--split", default=None, help="Only rows of this split (e.g. valid).")
@json_option
@click.pass_context
def label_analyze(ctx, task, split, as_json) -> None:
    """Per LF: polarity, coverage, overlaps, conflicts, empirical accuracy on gold labels."""
    res = _registry(ctx).label_analyze(task, split)
    if as_json:
        console.emit_json(res)
        return
    console.info(f"{task}: label matrix v{res['label_matrix_version']}, split {res['split']}, "
                 f"{res['num_rows']} rows, coverage {res['coverage']:.3f}")
    fmt = lambda x: "" if x is None else f"{x:.3f}"  # noqa: E731
    console.table([(lf["name"], lf["kind"], ",".join(lf["polarity"]), fmt(lf["coverage"]), fmt(lf["overlaps"]),
                    lf["overlap_rows"], lf["confirm_rows"], fmt(lf["conflicts"]), lf["correct"] if res["gold"] else "",
                    lf["incorrect"] if res["gold"] else "", fmt(lf["empirical_accuracy"])) for lf in res["lfs"]],
                  ["source", "kind", "polarity", "coverage", "overlaps", "overlap rows", "confirm rows", "conflicts", "correct",
                   "incorrect", "emp. acc"])
    console.info(f"rows with 2+ votes {res['overlap_rate']:.3f}, with conflicting votes {res['conflict_rate']:.3f}; "
                 f"median overlapping rows per LF {res['median_overlap_rows']:g}, "
                 f"confirming rows {res['median_confirm_rows'] or 0:g}")
    for g in res["near_duplicate_groups"]:
        console.info(f"near-duplicate LFs (their votes count once in the label model): {', '.join(g)}")
    if res.get("slices"):
        rows = []
        for sl in res["slices"]["slices"]:
            ok = sum(lf["correct"] for lf in sl["lfs"])
            bad = sum(lf["incorrect"] for lf in sl["lfs"])
            rows.append((sl["name"], sl["rows"], f"{sl['coverage']:.3f}", f"{sl['conflicts']:.3f}",
                         sum(1 for lf in sl["lfs"] if lf["coverage"] > 0),
                         f"{ok / (ok + bad):.3f}" if ok + bad else "-"))
        console.table(rows, ["slice", "rows", "coverage", "conflicts", "LFs voting", "their accuracy"],
                      title=f"slices (membership v{res['slices']['membership_version']})")
    if res.get("hand_labels"):
        console.info(f"hand labels (version {res['hand_labels']['version']}): {res['hand_labels']['rows']} rows, "
                     "clean labels rather than votes: not in the figures above")
    for w in res["warnings"]:
        console.info(f"warning: {w}")


@label.command("fit")
@click.argument("task", required=False)
@click.option("--model", type=click.Choice(["majority", "label-model", "hierarchical"]), default="label-model",
              show_default=True, help="hierarchical: one model over TASK's whole task tree (parent + parent_class).")
@click.option("--use-dev/--no-dev", default=None,
              help="Let the label model use the valid split's gold labels (default: see docs/label_model.md).")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Seed for the fit and the tie-break.")
@click.option("--text-view/--no-text-view", default=True, show_default=True,
              help="label-model: combine the votes with a cross-fitted classifier on the dataset's text field "
                   "(docs/label_model.md); --no-text-view gives the votes-only model.")
@click.option("--select-on", type=click.Choice(["valid", "none"]), default=None,
              help="label-model: keep whichever of majority vote, label model and label model + text view is "
                   "most accurate on the valid split's gold labels (default: when valid has gold labels; "
                   "'none': never, the gold-free default).")
@json_option
@click.pass_context
def label_fit(ctx, task, model, use_dev, seed, text_view, select_on, as_json) -> None:
    """Fit a label model on TASK's current label matrix into a new probabilistic-labels version.

    Without TASK: every task whose labels are stale, upstream first, each with its last fit's settings (the
    other options are for a named TASK); a task that fails is reported and left out, the others go on, and
    the command exits 1 at the end."""
    if task is None:
        fitted, failed = _registry(ctx).label_fit_stale(apply_config=ApplyConfig(progress=not as_json),
                                                        echo=(lambda s: None) if as_json else console.info)
        if as_json:
            console.emit_json({"tasks": fitted, "failed": failed})
        elif not fitted and not failed:
            console.info("every task's labels are up to date")
        _failed_tasks(failed, as_json)
        return
    res = _registry(ctx).label_fit(task, model=model, use_dev=use_dev, seed=seed, text_view=text_view,
                                   apply_config=ApplyConfig(progress=not as_json), select_on=select_on)
    if as_json:
        console.emit_json(res.to_json())
        return
    console.info(f"{task}: probabilistic labels v{res.version} ({model}, label matrix v{res.label_matrix_version}"
                 f"{', uses valid gold labels' if res.uses_dev_labels else ''})")
    for w in res.warnings:
        console.info(f"warning: {w}")
    if (res.label_model_fit or {}).get("balance_fallback"):
        console.info(f"note: the first fit overruled {res.label_model_fit['overruled']:.1%} of the rows whose votes "
                     f"all agree; refitted with the majority vote's class shares as the class balance")
    if res.selected:
        sel = res.selected
        console.info(f"selected on {sel['selected_on']['split']} ({sel['selected_on']['rows']} gold rows"
                     f"{'; --select-on none for the gold-free default' if sel.get('automatic') else ''}): "
                     f"{sel['chosen']}; " + ", ".join(f"{c} {f['accuracy']:.4f}" for c, f in sel["candidates"].items()))
    for t in res.tree or [{"task": task, "version": res.version, "metrics": res.metrics}]:
        if res.tree is not None:
            console.info(f"{t['task']}: probabilistic labels v{t['version']}")
        votes = res.metrics_votes_only or {}  # label-model with the text view only
        console.table([(s, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", m["n"])
                       + ((f"{votes[s]['accuracy']:.4f}",) if votes else ()) for s, m in t["metrics"].items()],
                      ["split", "accuracy", "macro F1", "rows"] + (["votes-only acc."] if votes else []))
    if res.slices:
        _slice_table(res.slices["metrics"], f"{task}: slices (membership v{res.slices['membership_version']})")


def _slice_table(per_slice: dict, title: str, splits: tuple[str, ...] = ("valid", "test")) -> None:
    """Per slice and split: rows, scored rows, accuracy with its 95% interval; "too small" below slices.MIN_ROWS."""
    rows = []
    for name, per in per_slice.items():
        for s in splits:
            f = per.get(s)
            if f is None:
                continue
            acc = "-" if f["accuracy"] is None else f"{f['accuracy']:.4f}"
            ci = "-" if f["ci95"] is None else f"{f['ci95'][0]:.3f}-{f['ci95'][1]:.3f}"
            rows.append((name, s, f["rows"], f["n"], acc, ci, "too small" if f["too_small"] else ""))
    if rows:
        console.table(rows, ["slice", "split", "rows", "scored", "accuracy", "95% interval", ""], title=title)


@label.command("add")
@click.argument("task")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--by", default=None, help="Who labelled them (default: your user name).")
@click.option("--replace", is_flag=True, help="Replace TASK's hand labels with FILE's instead of adding to them.")
@click.option("--list", "list_", is_flag=True, help="List TASK's hand-label versions instead (who, when, how many).")
@json_option
@click.pass_context
def label_add(ctx, task, file, by, replace, list_, as_json) -> None:
    """Add hand labels to TASK from FILE (CSV, JSON lines or Parquet with `label` and `row` or `text`).

    They become TASK's hand-label source (a new version each time): the label model anchors on them, the
    mother model trains on them, and no row with a hand label is ever scored. Test-split rows are refused."""
    reg = _registry(ctx)
    if list_:
        if file:
            raise UserError("FILE: not with --list")
        rows = reg.hand_labels(task)
        if as_json:
            console.emit_json(rows)
            return
        console.table([(r["version"], (r["created_at"] or "")[:19], r["rows"], r["added"], r["valid_rows"], r["by"],
                        "replaced" if r["replaced"] else "added", r["file"]) for r in rows],
                      ["version", "created", "rows", "added", "valid rows", "by", "how", "file"])
        return
    if not file:
        raise UserError("FILE: missing (a CSV, JSON lines or Parquet file of hand labels)")
    res = reg.label_add(task, file, by=by, replace=replace)
    if as_json:
        console.emit_json(res)
        return
    if res["status"] == "unchanged":
        console.info(f"{task}: hand labels unchanged (version {res['version']}, {res['rows']} rows)")
        return
    per = ", ".join(f"{c} {n}" for c, n in res.get("classes", {}).items())
    console.info(f"{task}: hand labels version {res['version']}: {res['rows']} rows ({per}), {res['added']} new or "
                 f"changed" + (f"; {res['valid_rows']} in valid: left out of valid's figures" if res["valid_rows"]
                               else ""))


@label.command("log")
@click.argument("task")
@json_option
@click.pass_context
def label_log(ctx, task, as_json) -> None:
    """List TASK's label-matrix and probabilistic-label versions."""
    res = _registry(ctx).label_log(task)
    if as_json:
        console.emit_json(res)
        return
    console.table([(m["version"], m["created_at"][:19], m["entries"], m["faults"], m["content_hash"][:12])
                   for m in res["label_matrices"]], ["matrix", "created", "labels", "faulty LFs", "hash"])
    console.table([(p["version"], p["created_at"][:19], p["model"], p["label_matrix_version"],
                    " ".join(f"{s}={m['accuracy']:.3f}" for s, m in p["metrics"].items()))
                   for p in res["prob_labels"]], ["probs", "created", "model", "matrix", "accuracy"])
    if res.get("slice_memberships"):
        console.table([(m["version"], m["created_at"][:19], " ".join(f"{n}={k}" for n, k in m["sizes"].items()),
                        m["faults"], m["content_hash"][:12]) for m in res["slice_memberships"]],
                      ["slices", "created", "rows per slice", "faulty slices", "hash"])


@label.command("diff")
@click.argument("task")
@click.argument("v1", type=int)
@click.argument("v2", type=int)
@click.option("--slices", is_flag=True, help="Compare slice-membership versions V1 and V2 instead (`label log`).")
@json_option
@click.pass_context
def label_diff(ctx, task, v1, v2, slices, as_json) -> None:
    """Per source: rows changed and coverage between label-matrix versions V1 and V2 (--slices: per slice,
    rows that joined and left it between slice-membership versions)."""
    res = _registry(ctx).label_diff(task, v1, v2, slices=slices)
    if as_json:
        console.emit_json(res)
        return
    if slices:
        console.table([(s["slice"], s["status"], s["rows_before"], s["rows_after"], s["joined"], s["left"])
                       for s in res["slices"]], ["slice", "status", f"rows v{v1}", f"rows v{v2}", "joined", "left"])
        return
    console.table([(s["source"], s["status"], s["rows_changed"], f"{s['coverage_before']:.3f}",
                    f"{s['coverage_after']:.3f}") for s in res["sources"]],
                  ["source", "status", "rows changed", f"coverage v{v1}", f"coverage v{v2}"])


# --- the mother model ------------------------------------------------------------------


def train_options(f):
    """The TrainConfig options `train` and `watch` share; their help quotes TrainConfig's own defaults."""
    d = {fl.name: fl.default for fl in fields(TrainConfig)}
    opts = [
        click.option("--encoder", type=click.Path(file_okay=False), default=None,
                     help="A Hugging Face model folder (default: the bundled all-MiniLM-L6-v2)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--epochs", type=float, default=None, help=f"Passes over the training rows in the first stage (default {DEFAULT_EPOCHS}, more for datasets under {d['small_data_rows']} rows)."),
        click.option("--max-steps", type=int, default=None, help="Optimizer steps in all (overrides --epochs)."),
        click.option("--batch-size", type=int, default=None, help=f"Examples per step (default {d['batch_size']})."),
        click.option("--max-length", type=int, default=None, help=f"Tokens per text (default {d['max_length']})."),
        click.option("--lr", type=float, default=None, help=f"Peak encoder learning rate (default {DEFAULT_LR:g}; {d['small_data_lr']:.0e} under {d['small_data_rows']} rows in all).".replace("e-0", "e-")),
        click.option("--layout", type=click.Choice(["flat", "hierarchical"]), default=None,
                     help="Heads on the shared vector, or child heads reading their parent's output."),
        click.option("--mixing", type=click.Choice(["heterogeneous", "homogeneous"]), default=None,
                     help="Tasks mixed within a batch (default) or one task per batch."),
        click.option("--self-train-rounds", type=int, default=None,
                     help=f"Self-training rounds after the first stage (default {d['self_train_rounds']}; 0 = off)."),
        click.option("--seed", type=int, default=None, help=f"Seed (default {d['seed']})."),
        click.option("--checkpoint-every", type=int, default=None,
                     help="Write a checkpoint every N steps (default: at the end only); --resume continues from it."),
        click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
                     help="Any other TrainConfig field (docs/trainer.md), e.g. --set warm_epochs=1; repeatable."),
        click.option("--tracking-uri", default=None,
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the workspace's own store)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _train_config(encoder, device, epochs, max_steps, batch_size, max_length, lr, layout, mixing, self_train_rounds,
                  seed, checkpoint_every, settings=()):
    try:
        extra = parse_settings(settings)
    except ValueError as e:
        raise UserError(f"--set: {e}") from None
    known = set(TrainConfig.__dataclass_fields__)
    for k in extra:
        if k not in known:
            raise UserError(f"--set: unknown TrainConfig field {k!r}")
    options = {"encoder": encoder, "device": device, "epochs": epochs, "max_steps": max_steps,
               "batch_size": batch_size, "max_length": max_length, "lr": lr, "layout": layout, "mixing": mixing,
               "self_train_rounds": self_train_rounds, "seed": seed, "checkpoint_every": checkpoint_every}
    # An option given on the command line wins; one left out must not hide `--set` of the same field.
    given = {**extra, **{k: v for k, v in options.items() if v is not None}}
    try:
        return TrainConfig(**given)
    except TypeError as e:  # a --set value of the wrong type: '>' not supported between 'str' and 'int'
        raise UserError(f"--set: a value has the wrong type ({e})") from None
    except ValueError as e:  # "TrainConfig.max_length: must be >= 4, got 2" -> name the option
        msg = str(e)
        field = msg.split(":", 1)[0].removeprefix("TrainConfig.")
        opt = f"--set {field}" if field in extra else f"--{field.replace('_', '-')}"
        raise UserError(f"{opt}: {msg.split(':', 1)[1].strip()}") from None


def _distill_config(student, epochs, max_length, seed):
    # A student named on the command line is what ships; left out, the default (tiny) ships unless the
    # character n-gram student, tried where the tiny one falls short, does better on valid.
    given = {"student": student, "epochs": epochs, "max_length": max_length, "seed": seed,
             "fallback": False if student else None}
    try:
        return DistillConfig(**{k: v for k, v in given.items() if v is not None})
    except ValueError as e:  # "DistillConfig.epochs: must be > 0, got 0" -> name the option
        field, why = str(e).split(":", 1)
        raise UserError(f"--{field.removeprefix('DistillConfig.').replace('_', '-')}: {why.strip()}") from None


@cli.command()
@click.option("--if-changed", is_flag=True, help="Train only when tasks, fingerprints or labels changed since the latest model.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--fresh", is_flag=True,
              help="Train a fresh model even where a warm start from the latest is possible.")
@click.option("--task", "tasks", multiple=True, help="Train these tasks only (default: every task with text).")
@train_options
@json_option
@click.pass_context
def train(ctx, if_changed, resume, fresh, tasks, encoder, device, epochs, max_steps, batch_size, max_length, lr, layout,
          mixing, self_train_rounds, seed, checkpoint_every, settings, tracking_uri, as_json) -> None:
    """Train the mother model on every task's fresh probabilistic labels (warm-starting from the latest)."""
    cfg = _train_config(encoder, device, epochs, max_steps, batch_size, max_length, lr, layout, mixing, self_train_rounds,
                        seed, checkpoint_every, settings)
    opts = TrainOptions(tasks=list(tasks) or None, if_changed=if_changed, resume=resume, fresh=fresh,
                        tracking_uri=tracking_uri, progress=not as_json)
    try:
        res = _registry(ctx).train(cfg, opts, echo=console.info if not as_json else (lambda s: None))
    except KeyboardInterrupt:
        # click would say only "aborted": say what is kept and how to go on
        console.error("interrupted: `mothermodel train --resume` continues this training run from its last "
                      "checkpoint (`mothermodel status` shows it)")
        sys.exit(130)
    if as_json:
        console.emit_json(res.to_json())
        _failed_tasks(res.failed, as_json)
        return
    if res.status == "failed":
        console.info("nothing trained: every task failed")
        _failed_tasks(res.failed, as_json)
    if not res.trained:
        console.info(f"up to date: model v{res.model_version} was trained on every task's current labels"
                     + (" but those below" if res.failed else ""))
        _failed_tasks(res.failed, as_json)
        return
    run = res.run
    console.info(f"model v{res.model_version}: {run.steps} steps in {run.seconds:.0f}s "
                 f"({run.examples_per_s:.0f} examples/s); MLflow run {run.mlflow_run_id}")
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for t, r in res.tasks.items():  # per task and split: its labels' accuracy beside the chosen stage's
        for col, figures in (("accuracy", r.metrics), ("label_model_accuracy", r.label_metrics)):
            for split, m in figures.items():
                if "accuracy" in m:
                    rows.setdefault((t, split), {})[col] = m["accuracy"]
    console.table([(t, s, f"{m.get('label_model_accuracy', float('nan')):.4f}", f"{m.get('accuracy', float('nan')):.4f}",
                    _served(res.tasks[t].guard))
                   for (t, s), m in sorted(rows.items())],
                  ["task", "split", "label model acc.", "mother model acc.", "served by (valid margin)"])
    _failed_tasks(res.failed, as_json)


def _served(c: dict | None) -> str:
    """The guard's choice for a task, e.g. 'model (+3.2)', 'model stage 0 (+1.0)', 'labels (-10.1)'."""
    if not c:
        return ""
    what = "labels" if c["served_by"] == "labels" else (
        "model" if c["stage"] == c["final_stage"] else f"model stage {c['stage']}")
    return what + (f" ({c['margin']:+.1f})" if c.get("margin") is not None else " (no gold valid)")


@cli.command()
@click.argument("task")
@click.option("--split", default=None, help="Only rows of this split of the task's dataset.")
@click.option("--input", "input_file", type=click.Path(dir_okay=False), default=None,
              help="Rows of this file (.jsonl, .csv or .parquet with a 'text' column) instead of the dataset.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write .parquet, .csv or .jsonl.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@json_option
@click.pass_context
def predict(ctx, task, split, input_file, out, device, as_json) -> None:
    """The latest mother model's class probabilities and predicted class for TASK's rows."""
    if split and input_file:
        raise UserError("--input: give --split or --input, not both")
    if out and Path(out).suffix.lower() not in (".parquet", ".csv", ".jsonl"):
        raise UserError(f"--out: {out} must end in .parquet, .csv or .jsonl")
    table = _registry(ctx).predict(task, split=split, input_file=input_file, device=device,
                                   echo=console.info if not as_json else console.note)
    if out:
        _write_table(table, Path(out))
        console.info(f"wrote {table.num_rows} predictions to {out}")
    elif as_json:
        console.emit_json(table.to_pylist())
    else:
        probs = [c for c in table.column_names if c.startswith("p_")]
        console.info(f"{task}: predicted by {table.schema.metadata[b'source'].decode()}")
        console.table([(r["row"], (r["text"][:60] + "...") if len(r["text"]) > 60 else r["text"], r["pred"])
                       + tuple(f"{r[c]:.3f}" for c in probs)
                       for r in table.slice(0, 50).to_pylist()], ["row", "text", "pred", *probs])
        if table.num_rows > 50:
            console.info(f"... {table.num_rows - 50} more rows (use --out FILE)")


def _write_table(table, path: Path) -> None:
    import pyarrow.csv as pcsv  # lazy: pyarrow stays off the registry commands
    import pyarrow.parquet as pq  # lazy: pyarrow stays off the registry commands

    with atomic_path(path) as tmp:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            pq.write_table(table, tmp)
        elif suffix == ".csv":
            pcsv.write_csv(table, tmp)
        else:
            with open(tmp, "w") as fh:
                for r in table.to_pylist():
                    fh.write(json.dumps(r) + "\n")


@cli.command()
@click.option("--every", default=None, help="Period between ticks (e.g. 90s, 15m, 2h).")
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron and tests).")
@train_options
@click.option("--student", type=click.Choice(["tiny", "ngram", "chars"]), default=None,
              help="The student that `distill --all` trains for each stale deployable (default: tiny, or chars "
                   "where that does better on valid; see `distill --student`).")
@click.option("--distill-epochs", type=float, default=None, help="Distillation epochs (default 20).")
@json_option
@click.pass_context
def watch(ctx, every, once, encoder, device, epochs, max_steps, batch_size, max_length, lr, layout, mixing,
          self_train_rounds, seed, checkpoint_every, settings, tracking_uri, student, distill_epochs, as_json) -> None:
    """Relabel, refit, retrain and redistil whatever went stale, every DURATION (Ctrl-C or SIGTERM stops it)."""
    cfg = _train_config(encoder, device, epochs, max_steps, batch_size, max_length, lr, layout, mixing, self_train_rounds,
                        seed, checkpoint_every, settings)
    dcfg = _distill_config(student, distill_epochs, None, seed)
    opts = TrainOptions(if_changed=True, tracking_uri=tracking_uri, progress=not as_json)
    ticks = _registry(ctx).watch(every, once, cfg, opts, echo=console.info if not as_json else (lambda s: None),
                                 distill_config=dcfg)
    if as_json:
        console.emit_json(ticks[-1] if once else ticks)
    last = ticks[-1] if ticks else {}
    if last.get("failed"):
        _failed_tasks(last["failed"], as_json)
    if last.get("errors"):
        e = last["errors"][0]
        raise CommandFailed(f"watch: {e['stage']} failed: {e['reason']}")


@cli.command()
@click.argument("task", required=False)
@click.option("--all", "all_tasks", is_flag=True, help="Every task whose deployable is stale.")
@click.option("--student", type=click.Choice(["tiny", "ngram", "chars"]), default=None,
              help="A 2-layer transformer on the teacher's tokens, hashed token n-grams + a linear layer, or hashed "
                   "character n-grams (its own character tokenizer). Default: tiny; where the encoder fits the "
                   "text badly or tiny falls 2 points below its teacher on valid, chars is tried too and valid "
                   "decides. A student named here is what ships.")
@click.option("--epochs", type=float, default=None, help="Passes over the task's rows (default 20).")
@click.option("--max-length", type=int, default=None, help="Tokens per text (default: the mother model's).")
@click.option("--seed", type=int, default=None, help=f"Seed (default {DEFAULT_SEED}).")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the workspace's own store).")
@json_option
@click.pass_context
def distill(ctx, task, all_tasks, student, epochs, max_length, seed, tracking_uri, as_json) -> None:
    """Distil TASK (or --all stale tasks) from the latest mother model into a small ONNX deployable,
    registered in MLflow as a new version of the model named TASK."""
    cfg = _distill_config(student, epochs, max_length, seed)
    opts = DistillOptions(tracking_uri=tracking_uri, progress=not as_json)
    res = _registry(ctx).distill(task, all_tasks, cfg, opts, echo=console.info if not as_json else (lambda s: None))
    if as_json:
        console.emit_json(res)
        return
    if all_tasks:
        done = res["distilled"]
        console.info(f"distilled {len(done)} task(s)" + (f": {', '.join(d['task'] for d in done)}" if done else "")
                     + (f"; up to date: {', '.join(res['up_to_date'])}" if res["up_to_date"] else ""))
        for s in res["skipped"]:
            console.info(f"skipped {s['task']}: {s['reason']}")


@cli.command()
@click.argument("task")
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", required=True, type=click.Path(), help="The bundle folder to write (absent, empty, or a bundle).")
@json_option
@click.pass_context
def export(ctx, task, fmt, out, as_json) -> None:
    """Write TASK's latest deployable as a self-contained bundle: model.onnx, tokenizer.json, labels.json,
    manifest.json (run it with onnxruntime + tokenizers only: distill/run_bundle.py)."""
    res = _registry(ctx).export(task, out, fmt)
    if as_json:
        console.emit_json(res)
        return
    console.info(f"exported {task} deployable v{res['deployable_version']} ({res['student']} student, "
                 f"model v{res['model_version']}) to {res['out']}: {', '.join(res['files'])}")
    if res["stale"]:
        console.info(f"note: this deployable is stale ({res['stale_reason']}); `mothermodel distill {task}` refreshes it")


@cli.command()
@json_option
@click.pass_context
def status(ctx, as_json) -> None:
    """Tasks, versions, and what is stale."""
    res = _registry(ctx).status()
    if as_json:
        console.emit_json(res.to_json())
        return
    st, c = res.registry, res.registry.counts
    console.info(f"workspace {res.workspace}: {c.tasks} tasks, {c.sources} sources, {c.datasets} datasets")
    console.info(f"MLflow tracking URI: {res.mlflow_tracking_uri}")
    tr = res.training
    if tr:
        console.info(f"training: a run is in progress ({tr['run_dir']})" if tr["state"] == "running" else
                     f"training: a run was interrupted ({tr['run_dir']}); `{tr['resume']}` continues it")
    yes = lambda b: "stale" if b else "ok"  # noqa: E731
    why = lambda t: next((f"{k}: {getattr(t, k).reason}" for k in ("labels", "model", "deployable")  # noqa: E731
                          if getattr(t, k).stale), "")
    ver = lambda s: f" v{s.version}" if s.version else ""  # noqa: E731
    with_slices = any(t.slices is not None for t in st.tasks)  # the column only where slices are declared
    first = lambda t: why(t) or (f"slices: {t.slices.reason}" if t.slices is not None and t.slices.stale  # noqa: E731
                                 else "")
    console.table([(t.name, t.version, yes(t.labels.stale), yes(t.model.stale),
                    yes(t.deployable.stale) + ver(t.deployable))
                   + ((("-" if t.slices is None else yes(t.slices.stale)),) if with_slices else ())
                   + (_served(t.serving.to_json() if t.serving else None), first(t)) for t in st.tasks],
                  ["task", "version", "labels", "model", "deployable"] + (["slices"] if with_slices else [])
                  + ["served by (valid margin)", "first reason"])
    if res.slices:  # per declared slice: what serves the task inside it, beside overall (the latest model)
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        console.table([(r["task"], r["slice"], r["split"], r["n"], fmt(r["served_accuracy"]), fmt(r["overall"]))
                       + ("too small" if r["n"] < 30 else "",) for r in res.slices],
                      ["task", "slice", "split", "rows", "accuracy in slice", "overall", ""],
                      title="slices (latest model; what serves each task)")
    if st.failed:
        console.table([(f.task, f.stage, f.reason, f.fix, f.at.isoformat()[:19]) for f in st.failed],
                      ["failed task", "stage", "reason", "fix", "since"])
    for t in st.tasks:
        sv = t.serving
        if sv is not None and sv.below_labels:
            console.info(f"warning: {t.name}: the mother model is {-sv.margin:.1f} points below its labels on "
                         f"{sv.split}, so its labels serve it" + (f"; likely cause: {sv.cause}" if sv.cause else ""))
        elif sv is not None and sv.encoder_fit:
            console.info(f"note: {t.name}: {sv.encoder_fit['advice']} (whole-word share "
                         f"{sv.encoder_fit['whole_word_share']:.2f})")


@cli.command()
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the workspace's own store).")
@json_option
@click.pass_context
def verify(ctx, tracking_uri, as_json) -> None:
    """Check the workspace: every file the registry records exists and matches its hash, no interrupted
    command left files behind, MLflow's registered versions match the deployables. Changes nothing;
    exit 1 listing what is wrong, 0 when clean (an interrupted `train` to resume is only a note)."""
    res = _registry(ctx).verify(tracking_uri)
    if as_json:
        console.emit_json(res.to_dict())
    else:
        if res.problems:
            console.table([(p.kind, p.path, p.problem) for p in res.problems], ["kind", "path", "problem"])
        for n in res.notes:
            console.info(f"note: {n}")
        console.info(f"clean: {res.checked} files checked" if res.ok else
                     f"{len(res.problems)} problem(s) found ({res.checked} files checked)")
    if not res.ok:
        sys.exit(1)


@cli.command()
@click.option("--port", type=int, default=UI_PORT, show_default=True, help="Port to listen on.")
@click.option("--host", default=UI_HOST, show_default=True,
              help="Interface to bind (loopback by default; 0.0.0.0 exposes the UI to your network).")
@click.pass_context
def ui(ctx, port, host) -> None:
    """Serve the MLflow UI for this workspace: training and distillation runs, metrics, artifacts and the
    registered per-task models. Ctrl-C stops it."""
    reg = _registry(ctx)
    console.info(f"starting the MLflow UI for {reg.ws.root} ...")
    sys.stdout.flush()  # before the server's own log lines
    server = reg.ui(host, port)
    console.info(f"MLflow UI: {server.url}  (Ctrl-C stops it)\n"
                 f"  runs:   {server.url}#/experiments  (experiment 'mothermodel')\n"
                 f"  models: {server.url}#/models  (one registered model per distilled task)\n"
                 f"  store:  {server.tracking_uri}")
    sys.stdout.flush()
    code = server.serve()
    if code:
        raise CommandFailed(f"mlflow server exited with code {code}")
    console.info("MLflow UI stopped")


@cli.command()
@click.option("--workspace", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to build the demo workspace (default: ./mothermodel-demo; recreated if a demo made it).")
@click.option("--dir", "old_dir", type=click.Path(file_okay=False), default=None, hidden=True)  # the old name
@click.option("--epochs", type=float, default=4.0, show_default=True, help="Mother-model training epochs.")
@click.option("--encoder", type=click.Path(file_okay=False), default=None,
              help="Encoder folder for the mother model (default: the bundled all-MiniLM-L6-v2).")
@click.option("--distill-epochs", type=float, default=4.0, show_default=True, help="Distillation epochs per task.")
@click.pass_context
def demo(ctx, directory: str | None, old_dir: str | None, epochs: float, encoder: str | None,
         distill_epochs: float) -> None:
    """Run the whole pipeline on a bundled synthetic world: six tasks, from weak labels to ONNX students."""
    from mothermodel.demo import run

    if directory and old_dir and Path(directory).resolve() != Path(old_dir).resolve():
        raise UserError("--workspace: given twice (--workspace and its old name --dir) with different folders")
    # `mothermodel -w DIR demo` works too: every command takes the group's -w.
    target = directory or old_dir or ctx.obj.get("workspace") or "mothermodel-demo"
    run(Path(target), epochs=epochs, encoder=Path(encoder) if encoder else None, distill_epochs=distill_epochs)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mothermodel", standalone_mode=False)
    except UserError as e:
        console.error(str(e).splitlines()[0] if str(e) else "bad input")
        sys.exit(2)
    except click.exceptions.Abort:
        console.error("aborted")
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except CommandFailed as e:
        console.error(str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        console.error("interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001
        if os.environ.get("MOTHERMODEL_DEBUG"):
            raise
        console.error(f"internal error: {type(e).__name__}: {e} (set MOTHERMODEL_DEBUG=1 for a traceback)")
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
