"""Distillation: small per-task students exported to ONNX and MLflow. Not built yet (see the issues)."""
