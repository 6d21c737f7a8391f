"""`mothermodel demo`: the whole pipeline, as far as it is built, on a bundled synthetic world.

Labels, the mother model (the bundled MiniLM, CPU, four epochs of the small world plus self-training), a
distilled student per task (exported as an ONNX bundle and registered in MLflow) and the watch loop.

Every step runs the same CLI command a user would type, in-process, against a
fresh workspace, so the demo doubles as a walkthrough.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from importlib import resources
from pathlib import Path

MARKER = ".mothermodel-demo"
DISTILL_EPOCHS = 4.0  # a demo-sized distillation; the default (20) is for real data


def _step(title: str) -> None:
    if sys.stdout.isatty():
        from rich.console import Console

        Console().rule(f"[bold]{title}")
    else:
        print(f"\n== {title} ==")


def _cli(ws: Path, *args: str) -> None:
    from mothermodel.cli import cli

    print(f"$ mothermodel {shlex.join(args)}", flush=True)
    cli.main(args=["-w", str(ws), *args], prog_name="mothermodel", standalone_mode=False)
    sys.stdout.flush()


def run(directory: Path, epochs: float = 4.0, encoder: Path | None = None,
        distill_epochs: float = DISTILL_EPOCHS) -> Path:
    """Build the demo workspace in `directory` (recreated if an earlier demo made it)."""
    from mothermodel.demo import world
    from mothermodel.errors import UserError
    from mothermodel.api import Registry

    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        if not (directory / MARKER).exists():
            raise UserError(f"--dir: {directory} exists and is not a demo folder; choose another")
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    (directory / MARKER).write_text("made by `mothermodel demo`; safe to delete\n")

    _step("1. A workspace")
    _cli(directory, "init", str(directory))

    _step("2. Datasets from the synthetic world")
    data = directory / "data"
    data.mkdir()
    import pyarrow.parquet as pq

    pq.write_table(world.tickets(), data / "tickets.parquet")
    pq.write_table(world.reviews(), data / "reviews.parquet")
    _cli(directory, "dataset", "add", "tickets", str(data / "tickets.parquet"))
    _cli(directory, "dataset", "add", "reviews", str(data / "reviews.parquet"))

    _step("3. Task owners submit their tasks")
    specs = directory / "tasks"
    specs.mkdir()
    bundled = resources.files("mothermodel.demo") / "tasks"
    for name in ("ticket_topic.py", "billing_kind.py", "urgency.py", "sentiment.yaml"):
        (specs / name).write_text((bundled / name).read_text())
        _cli(directory, "task", "submit", str(specs / name))
    _cli(directory, "task", "list")

    _step("4. The dependency DAG")
    _cli(directory, "dag", "show")
    _cli(directory, "dag", "show", "--format", "png", "--out", str(directory / "dag.png"))
    _cli(directory, "dag", "show", "--format", "mermaid", "--out", str(directory / "dag.mmd"))

    _step("5. Weak labels: apply every source, analyse the LFs, fit label models")
    _cli(directory, "label", "apply")
    _cli(directory, "label", "analyze", "ticket_topic", "--split", "valid")
    for task in ("ticket_topic", "billing_kind", "urgency", "sentiment"):
        _cli(directory, "label", "fit", task)
    # ticket_topic and billing_kind form a task tree: one model labels both, consistently.
    _cli(directory, "label", "fit", "billing_kind", "--model", "hierarchical")

    _step("6. The mother model: one shared encoder, a head per task, trained on the labels above")
    train_args = ["--epochs", str(epochs), "--max-length", "48", "--device", "cpu"]
    if encoder is not None:
        train_args += ["--encoder", str(Path(encoder).resolve())]
    _cli(directory, "train", *train_args)
    _cli(directory, "predict", "urgency", "--split", "test", "--out", str(directory / "urgency-test.parquet"))

    _step("7. Ship each task as a small model: distil the mother model into a tiny student per task")
    _cli(directory, "distill", "--all", "--epochs", str(distill_epochs))
    _cli(directory, "status")

    _step("8. An owner edits one LF: what goes stale, and one watch tick rebuilds exactly that")
    topic = specs / "ticket_topic.py"
    topic.write_text(topic.read_text().replace('"fee")', '"fee", "invoice")'))
    _cli(directory, "dag", "impact", "ticket_topic.mentions_money")
    _cli(directory, "task", "submit", str(topic), "--replace")
    _cli(directory, "status")
    # One tick: label apply (only the edited LF runs), label fit of the stale tasks with their last
    # settings, upstream first, then train --if-changed (warm-started from the model above), then
    # distill --all for the deployables that went stale.
    _cli(directory, "watch", "--once", *train_args, "--distill-epochs", str(distill_epochs))
    _cli(directory, "label", "diff", "ticket_topic", "1", "2")
    _cli(directory, "label", "log", "ticket_topic")

    _step("9. Export every task's deployable: a folder that onnxruntime + tokenizers run alone")
    for task in ("ticket_topic", "billing_kind", "urgency", "sentiment"):
        _cli(directory, "export", task, "--format", "onnx", "--out", str(directory / "bundles" / task))

    _step("10. Status and results")
    _cli(directory, "status")
    reg = Registry.open(directory)
    _summary(reg)
    print(f"\nDemo workspace: {directory}  (DAG picture: {directory / 'dag.png'})")
    print(f"MLflow runs and registered models: mothermodel -w {directory} ui  (then open http://127.0.0.1:5000/)")
    print(f"Bundles: {directory / 'bundles'}  (run one: python -m mothermodel.distill.run_bundle "
          f"{directory / 'bundles' / 'urgency'} --text 'the app crashes, urgent!')")
    return directory


def _summary(reg) -> None:
    """Test accuracy per task: label model, mother model, student; the student's batch-1 latency."""
    from mothermodel import console

    model = reg.store.model()
    rows = []
    fmt = lambda x, f=".3f": "" if x is None else format(x, f)  # noqa: E731
    for t in reg.list_tasks():
        pl = reg.store.latest_prob_labels(t["name"])
        lm = (pl.metrics.get("test") or {}).get("accuracy") if pl else None
        mm = model.metrics.get(f"{t['name']}/{t['dataset']}/test/accuracy") if model else None
        dep = reg.store.latest_deployable(t["name"])
        sa = dep.metrics.get(f"{t['name']}/{t['dataset']}/test/accuracy") if dep else None
        lat = dep.metrics.get("latency_ms_batch1") if dep else None
        rows.append((t["name"], pl.model if pl else "", fmt(lm), fmt(mm), dep.student if dep else "", fmt(sa),
                     fmt(lat, ".2f")))
    print(f"\nTest accuracy on gold labels (model v{model.version if model else '-'}):")
    console.table(rows, ["task", "label model", "label model acc.", "mother model acc.", "student",
                         "student acc.", "student ms/text"])
