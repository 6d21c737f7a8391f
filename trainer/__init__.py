"""Trainer: the shared-encoder multi-task mother model (torch, transformers). Not built yet (see the issues)."""
