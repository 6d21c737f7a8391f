"""Slicing functions: named subsets of a task's rows, declared like labeling functions (Snorkel's
`@slicing_function()` shape: a row -> bool) and measured everywhere the task has metrics
(docs/writing-tasks.md, "Slices").

A slice never votes. It is applied by the same appliers as LFs (DuckDB for the declarative kinds, the
sandboxed process pool for Python) with one convention: an applied slice "labels" its member rows 0
(IN_SLICE) and abstains on the rest, so membership rides the label-matrix machinery (fault isolation, sparse
Parquet) without a class of the task being involved.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from mothermodel.defaults import ABSTAIN
from mothermodel.labeling.lf.core import LabelingFunction

IN_SLICE = 0
"""What an applied slice gives its member rows (any other row: ABSTAIN)."""


class SlicingFunction(LabelingFunction):
    """A slicing function: ``f(x, **resources) -> bool``; True puts the row in the slice."""

    def __call__(self, x: Any) -> int:
        for p in self.pre:
            x = p(x)
        return IN_SLICE if self.f(x, **self.resources) else ABSTAIN


def slicing_function(name: str | None = None, resources: Mapping[str, Any] | None = None,
                     pre: Sequence[Callable[[Any], Any]] | None = None
                     ) -> Callable[[Callable[..., bool]], SlicingFunction]:
    """Decorator turning a row -> bool function into a `SlicingFunction` (a slice of its task's rows).

    >>> @slicing_function()
    ... def short(x):
    ...     return len(x.text) < 30
    """
    if callable(name):  # used bare: @slicing_function
        fn = name
        return SlicingFunction(name=fn.__name__, f=fn)  # type: ignore[return-value]

    def wrap(fn: Callable[..., bool]) -> SlicingFunction:
        return SlicingFunction(name=name or fn.__name__, f=fn, resources=dict(resources or {}), pre=tuple(pre or ()))

    return wrap
