"""Which store a workspace's registry lives in: the one place a backend is chosen.

Today every workspace has the embedded DuckDB store (`RegistryStore`, .mothermodel/registry.duckdb); a second
backend (PostgreSQL, for a registry a team shares) is one more `AbstractStore` chosen here, and every stage
above takes an `AbstractStore` without knowing which.
"""

from __future__ import annotations

from mothermodel.registry.abstract_store import AbstractStore
from mothermodel.registry.store import RegistryStore
from mothermodel.registry.workspace import Workspace


def open_store(workspace: Workspace) -> AbstractStore:
    """The registry store of ``workspace``."""
    return RegistryStore(workspace)
