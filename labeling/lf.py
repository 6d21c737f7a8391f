"""Labeling functions: the `@labeling_function()` decorator and the LF object.

An LF receives one row (fields as attributes, e.g. ``x.text``) and returns a
class index or ``ABSTAIN`` (-1). Its version in the registry follows a hash of
its code, so editing an LF makes exactly its downstream stale.
"""

from __future__ import annotations

import hashlib
import inspect
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

ABSTAIN = -1


def _source_of(fn: Callable) -> str:
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        # Built in or defined in a REPL: fall back to the qualified name, so the
        # hash is stable but only changes when the name does.
        return f"<no source: {getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}>"


@dataclass
class LabelingFunction:
    """A labeling function.

    Attributes:
        name: unique within its task; defaults to the function's name.
        f: the function, ``f(x, **resources) -> int``.
        resources: keyword arguments passed to every call (lexicons, models...).
        pre: pre-processors applied to the row, in order, before ``f``.
    """

    name: str
    f: Callable[..., int]
    resources: Mapping[str, Any] = field(default_factory=dict)
    pre: Sequence[Callable[[Any], Any]] = ()

    def __call__(self, x: Any) -> int:
        for p in self.pre:
            x = p(x)
        return self.f(x, **self.resources)

    @property
    def code(self) -> str:
        """The code that defines this LF (function and pre-processors)."""
        parts = [_source_of(self.f)] + [_source_of(p) for p in self.pre]
        return "\n".join(parts)

    @property
    def code_hash(self) -> str:
        """Hash of code plus resource names and values' reprs: what decides the LF's version."""
        h = hashlib.sha256(self.code.encode())
        for key in sorted(self.resources):
            h.update(f"\0{key}={self.resources[key]!r}".encode())
        return h.hexdigest()


def labeling_function(
    name: str | None = None,
    resources: Mapping[str, Any] | None = None,
    pre: Sequence[Callable[[Any], Any]] | None = None,
) -> Callable[[Callable[..., int]], LabelingFunction]:
    """Decorator turning a function into a `LabelingFunction`.

    >>> @labeling_function()
    ... def has_link(x):
    ...     return 1 if "http" in x.text else ABSTAIN
    """
    if callable(name):  # used bare: @labeling_function
        fn = name
        return LabelingFunction(name=fn.__name__, f=fn)  # type: ignore[return-value]

    def wrap(fn: Callable[..., int]) -> LabelingFunction:
        return LabelingFunction(
            name=name or fn.__name__, f=fn, resources=dict(resources or {}), pre=tuple(pre or ())
        )

    return wrap
