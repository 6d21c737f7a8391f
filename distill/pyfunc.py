"""The MLflow side of a deployable: a pyfunc model over the bundle, registered under the task's name.

``mlflow.pyfunc.load_model("models:/<task>/<version>")`` gives a model whose
``predict`` maps a pandas DataFrame with a ``text`` column to class names; the
same model answers ``mlflow models serve -m models:/<task>/<version>
--env-manager local``. The bundle travels as the model's artifact and is
hash-checked when the model loads (a modified ``model.onnx`` is refused).

Only :class:`MlflowClient` calls are used (no fluent active-run state), so a
distillation's run and registration stay explicit.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc

__all__ = ["BundleModel", "register", "lineage_tags", "remove_orphans", "end_stale_runs"]

TAG_WORKSPACE = "mothermodel.workspace"
TAG_BUNDLE = "mothermodel.bundle_sha256"
MODEL_CODE = ("import mlflow\nfrom mothermodel.distill.pyfunc import BundleModel\n\n"
              "mlflow.models.set_model(BundleModel())\n")


# MLflow suggests type hints on predict(); ours are deliberately absent (see predict).
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method.*")


class BundleModel(mlflow.pyfunc.PythonModel):
    """A pyfunc model that runs a mothermodel bundle with onnxruntime."""

    def load_context(self, context: Any) -> None:
        from mothermodel.distill.bundle import verify
        from mothermodel.distill.run_bundle import Bundle

        folder = Path(context.artifacts["bundle"])
        verify(folder)  # a UserError naming the modified file, before onnxruntime reads it
        self.bundle = Bundle(folder)

    # No type hints here: MLflow would read them as a schema; the logged signature says text -> string.
    def predict(self, context, model_input, params=None):
        """Class names for `model_input`: a DataFrame with a ``text`` column (or a list of texts)."""
        if hasattr(model_input, "columns"):
            if "text" not in model_input.columns:
                raise ValueError(f"needs a 'text' column, got columns {list(model_input.columns)}")
            texts = ["" if t is None else str(t) for t in model_input["text"].tolist()]
        else:
            texts = [str(t) for t in model_input]
        return self.bundle.predict(texts)


def lineage_tags(manifest: dict[str, Any], workspace: str) -> dict[str, str]:
    """The registered version's tags: what it was distilled from, and which bundle it carries."""
    import json

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
    from mlflow.exceptions import MlflowException
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    signature = ModelSignature(inputs=Schema([ColSpec("string", "text")]), outputs=Schema([ColSpec("string")]))
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
    from mlflow.exceptions import MlflowException

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
