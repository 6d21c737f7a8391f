"""Distillation: a small student per task, trained on the mother model's soft predictions, exported to ONNX
and registered in the MLflow Model Registry (docs/distill.md).

Modules: config (DistillConfig, DistillOptions), students (tiny transformer, hashed n-grams), kd (the
distillation loss and loop), onnx_export (export + onnxruntime check), bundle (the export folder, atomic and
hash-checked; `export TASK`, without torch), run_bundle (a standalone runner: onnxruntime + tokenizers only),
pyfunc (MLflow model and registration), run (the registry glue: distill, distill --all, leftovers of killed
runs). Nothing is imported here: the CLI stays light.
"""
