"""The MLflow side of a deployable: a pyfunc model over the bundle, registered under the task's name.

``mlflow.pyfunc.load_model("models:/<task>/<version>")`` gives a model whose
``predict`` maps a pandas DataFrame with a ``text`` column (or, for a task whose
input is more than one field, the columns its input reads: a text pair, a text
and its entity spans) to class names; the
same model answers ``mlflow models serve -m models:/<task>/<version>
--env-manager local``. The bundle travels as the model's artifact and is
hash-checked when the model loads (a modified ``model.onnx`` is refused).

Only :class:`MlflowClient` calls are used (no fluent active-run state), so a
distillation's run and registration stay explicit.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Array, ColSpec, Schema

from mothermodel.distill.bundle import verify
from mothermodel.distill.run_bundle import Bundle
from mothermodel.inputs import TaskInput

try:  # MLflow's own type-hint check (a private helper): another MLflow version may lack it
    from mlflow.pyfunc.utils.data_validation import _get_func_info_if_type_hint_supported as _type_hint_check
except ImportError:  # then the warning filter below is all there is
    _type_hint_check = None

__all__ = ["BundleModel", "register", "lineage_tags", "remove_orphans", "end_stale_runs"]

TAG_WORKSPACE = "mothermodel.workspace"
TAG_BUNDLE = "mothermodel.bundle_sha256"
MODEL_CODE = ("import mlflow\nfrom mothermodel.distill.pyfunc import BundleModel\n\n"
              "mlflow.models.set_model(BundleModel())\n")


# MLflow suggests type hints on predict(); ours are deliberately absent (see predict).
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")


def _no_type_hint_warning(func):
    """Run MLflow's (cached) type-hint check of `func` once with warnings shown nowhere, and return `func`.

    MLflow warns, with raw colour codes, when predict() has no type hints, under its own
    ``simplefilter("once")``, which beats the ignore filter above; the class made from `func`
    then finds the check cached and says nothing.
    """
    if _type_hint_check is None:
        return func
    with warnings.catch_warnings():
        warnings.showwarning = lambda *a, **k: None  # restored when the block ends
        try:
            _type_hint_check(func)
        except Exception:  # noqa: BLE001 - the class's own check reports what matters
            pass
    return func


class BundleModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model that runs a mothermodel bundle with onnxruntime."""

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts["bundle"])
        verify(folder)  # a UserError naming the modified file, before onnxruntime reads it
        self.bundle = Bundle(folder)

    # No type hints here: MLflow would read them as a schema; the logged signature says fields -> string.
    @_no_type_hint_warning
    def predict(self, context, model_input, params=None):
        """Class names for `model_input`: a DataFrame with the columns the bundle's input reads (``text`` for
        a one-field task), or a list of texts (one-field tasks) or of row dicts."""
        inp = self.bundle.input
        if hasattr(model_input, "columns"):
            cols = list(inp.columns)
            if inp.kind == "text" and cols[0] not in model_input.columns and "text" in model_input.columns:
                cols = ["text"]
            missing = [c for c in cols if c not in model_input.columns]
            if missing:
                raise ValueError(f"needs a {missing[0]!r} column (the input is the {inp.describe()}), "
                                 f"got columns {list(model_input.columns)}")
            if inp.kind == "text":
                return self.bundle.predict(["" if t is None else str(t) for t in model_input[cols[0]].tolist()])
            rows = [{c: _plain(v) for c, v in r.items()} for r in model_input[cols].to_dict("records")]
            return self.bundle.predict_rows(rows)
        items = list(model_input)
        if items and isinstance(items[0], dict):
            return self.bundle.predict_rows(items)
        return self.bundle.predict([str(t) for t in items])


def _plain(v: Any) -> Any:
    """A DataFrame cell as plain Python (numpy arrays of span offsets become lists)."""
    return v.tolist() if hasattr(v, "tolist") else v


def signature_for(manifest: dict[str, Any]):
    """The registered model's signature: the input's fields (strings; span columns arrays of long) -> class name."""
    inp = TaskInput.from_dict(manifest.get("input") or {"kind": "text", "fields": ["text"]})
    if inp.kind == "text":
        cols = [ColSpec("string", "text")]
    else:
        cols = [ColSpec("string", f) for f in inp.fields] + [ColSpec(Array("long"), c) for c in inp.spans]
    return ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("string")]))


def lineage_tags(manifest: dict[str, Any], workspace: str) -> dict[str, str]:
    """The registered version's tags: what it was distilled from, and which bundle it carries."""
    return {
        "mothermodel.task": manifest["task"],
        "mothermodel.model_version": str(manifest["model_version"]),
        "mothermodel.task_fingerprint": manifest["fingerprint"],
        "mothermodel.label_versions": json.dumps(manifest["label_versions"], sort_keys=True),
        "mothermodel.student": manifest["student"],
        TAG_BUNDLE: manifest["sha256"],
        TAG_WORKSPACE: workspace,
    }


def register(client: Any, run_id: str, artifact_uri: str, bundle_dir: Path, name: str,
             tags: dict[str, str]) -> str:
    """Log the pyfunc model (bundle inside) to the run and register it as a new version of `name`."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    signature = signature_for(json.loads((Path(bundle_dir) / "manifest.json").read_text()))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model"
        # "Models from code": the model is this module's class, named in a two-line file; nothing is pickled.
        code = Path(d) / "bundle_model.py"
        code.write_text(MODEL_CODE)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no input example": the signature above is the schema
            # Explicit requirements: inferring them would load the model in a subprocess.
            mlflow.pyfunc.save_model(str(path), python_model=str(code), artifacts={"bundle": str(bundle_dir)},
                                     signature=signature, pip_requirements=["mothermodel", "onnxruntime",
                                                                            "tokenizers", "numpy", "pandas"])
        client.log_artifacts(run_id, str(path), "model")
    try:
        client.create_registered_model(name, description=f"Distilled deployables of mothermodel task {name}")
    except MlflowException as e:
        if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
            raise
    mv = client.create_model_version(name, f"{artifact_uri.rstrip('/')}/model", run_id=run_id, tags=tags)
    return str(mv.version)


def remove_orphans(client: Any, name: str, workspace: str, recorded: set[str]) -> list[str]:
    """Delete versions of `name` this workspace registered but never recorded (a killed distill's);
    end its runs left RUNNING as KILLED. Returns the deleted versions."""
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []
    gone = []
    for mv in versions:
        tags = mv.tags or {}
        if tags.get(TAG_WORKSPACE) == workspace and str(mv.version) not in recorded:
            client.delete_model_version(name, mv.version)
            gone.append(str(mv.version))
    return gone


def end_stale_runs(client: Any, experiment_id: str, task: str, workspace: str, keep: str) -> None:
    """Mark this workspace's distill runs of `task` still RUNNING (their process was killed) as KILLED."""
    runs = client.search_runs([experiment_id], filter_string=(
        f"tags.`mothermodel.kind` = 'distill' AND tags.`mothermodel.task` = '{task}' AND attributes.status = 'RUNNING'"))
    for r in runs:
        if r.info.run_id != keep and r.data.tags.get(TAG_WORKSPACE) == workspace:
            client.set_terminated(r.info.run_id, "KILLED")
