"""Labeling functions: the `@labeling_function()` decorator and the LF object.

An LF receives one row (fields as attributes, e.g. ``x.text``) and returns a
class index or ``ABSTAIN`` (-1). Its version in the registry follows a hash of
its code, so editing an LF makes exactly its downstream stale.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import json
import operator
import os
import re
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mothermodel.defaults import ABSTAIN  # re-exported: LF authors import it from here
from mothermodel.errors import UserError


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


# --- declarative LFs: compiled to SQL and applied by DuckDB in one pass ----------


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sql_ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


class DeclarativeLF(LabelingFunction):
    """An LF described by data, not code: DuckDB evaluates it over the whole
    dataset in one SQL pass; calling it on one row gives the same answer in Python."""

    kind = "declarative"

    def params(self) -> dict[str, Any]:  # what defines it
        raise NotImplementedError

    @property
    def column(self) -> str:
        """The column it reads: its `field`, or "text" for a keyword/regex LF built without one and applied
        directly (a submitted one has its dataset's text field filled in)."""
        return getattr(self, "field", None) or "text"

    def sql(self, col: str | None = None) -> str:
        """A SQL expression over the dataset's columns giving the label or -1 (`col`: the column
        holding the LF's field, when the applier renamed it)."""
        raise NotImplementedError

    @property
    def code(self) -> str:
        return json.dumps({"kind": self.kind, **self.params()}, sort_keys=True)

    @property
    def code_hash(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()


class KeywordLF(DeclarativeLF):
    """Label `label` when any keyword occurs in `field` (substring; case-insensitive by default).
    `field` None: the dataset's text field, filled in at submit."""

    kind = "keyword"

    def __init__(self, name: str, keywords: Sequence[str], label: int, field: str | None = None,
                 case_sensitive: bool = False):
        if isinstance(keywords, str) or not keywords:
            raise ValueError(f"{name}: keywords must be a non-empty list of strings")
        self.keywords = tuple(keywords)
        self.label, self.field, self.case_sensitive = int(label), field, bool(case_sensitive)
        kws = self.keywords if case_sensitive else tuple(k.lower() for k in self.keywords)

        def f(x):
            v = getattr(x, self.column)
            if v is None:
                return ABSTAIN
            v = v if case_sensitive else v.lower()
            return self.label if any(k in v for k in kws) else ABSTAIN

        super().__init__(name=name, f=f)

    def params(self):
        return {"keywords": list(self.keywords), "label": self.label, "field": self.field,
                "case_sensitive": self.case_sensitive}

    def sql(self, lower_col: str | None = None, col: str | None = None) -> str:
        """lower_col: a column already holding lower(field), so many LFs lower the text once;
        col: the column holding `field` when the applier renamed it (default: `field` itself)."""
        field_col = sql_ident(col or self.column)
        if self.case_sensitive:
            col = field_col
        else:
            col = sql_ident(lower_col) if lower_col else f"lower({field_col})"
        kws = self.keywords if self.case_sensitive else [k.lower() for k in self.keywords]
        cond = " OR ".join(f"contains({col}, {_sql_str(k)})" for k in kws)
        return f"CASE WHEN {cond} THEN {self.label} ELSE -1 END"


def re2_compatible(pattern: str) -> bool:
    """False for the Python-only syntax RE2 lacks: lookarounds and backreferences."""
    return re.search(r"\(\?<?[=!]|\\[1-9]", pattern) is None


class RegexLF(DeclarativeLF):
    """Label `label` when `pattern` matches anywhere in `field` (re.search semantics, RE2 syntax).
    `field` None: the dataset's text field, filled in at submit."""

    kind = "regex"

    def __init__(self, name: str, pattern: str, label: int, field: str | None = None, ignore_case: bool = False):
        self.pattern, self.label, self.field, self.ignore_case = pattern, int(label), field, bool(ignore_case)
        rx = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        if not re2_compatible(pattern):  # the SQL path runs it in DuckDB's RE2: both paths must agree
            raise ValueError(f"{name}: pattern {pattern!r}: lookarounds and backreferences are not supported "
                             "(RE2 syntax)")

        def f(x):
            v = getattr(x, self.column)
            return self.label if v is not None and rx.search(v) else ABSTAIN

        super().__init__(name=name, f=f)

    def params(self):
        return {"pattern": self.pattern, "label": self.label, "field": self.field, "ignore_case": self.ignore_case}

    def sql(self, col: str | None = None) -> str:
        opts = ", 'i'" if self.ignore_case else ""
        return (f"CASE WHEN regexp_matches({sql_ident(col or self.column)}, {_sql_str(self.pattern)}{opts}) "
                f"THEN {self.label} ELSE -1 END")


class ThresholdLF(DeclarativeLF):
    """Label `label` when the numeric `field` compares to `value` with `op` (<, <=, >, >=, ==, !=)."""

    kind = "threshold"
    OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "<>"}

    def __init__(self, name: str, field: str, op: str, value: float, label: int):
        if op not in self.OPS:
            raise ValueError(f"{name}: op must be one of {', '.join(self.OPS)}")
        self.field, self.op, self.value, self.label = field, op, value, int(label)
        fn = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
              "==": operator.eq, "!=": operator.ne}[op]

        def f(x):
            v = getattr(x, field)
            return self.label if v is not None and fn(v, value) else ABSTAIN

        super().__init__(name=name, f=f)

    def params(self):
        return {"field": self.field, "op": self.op, "value": self.value, "label": self.label}

    def sql(self, col: str | None = None) -> str:
        return f"CASE WHEN {sql_ident(col or self.field)} {self.OPS[self.op]} {float(self.value)!r} THEN {self.label} ELSE -1 END"


def split_stored_spec(text: str) -> tuple[str, dict[str, str]]:
    """A stored Python spec: (module text, {helper module name: its text}). Helper modules beside a
    spec are stored after it, NUL-separated (Python source cannot contain NUL): `name\0text` each."""
    parts = text.split("\0")
    return parts[0], dict(zip(parts[1::2], parts[2::2]))


class _StoredModules:
    """A meta-path finder serving a spec's stored helper modules, and nothing else."""

    def __init__(self, texts: dict[str, str], folder: str):
        self.texts, self.folder = texts, folder

    def find_spec(self, name, path=None, target=None):
        if name not in self.texts:
            return None
        return importlib.util.spec_from_loader(name, self, origin=os.path.join(self.folder, f"{name}.py"))

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = module.__spec__.origin
        exec(compile(self.texts[module.__name__], module.__file__, "exec"), module.__dict__)


def lfs_from_source(text: str, origin: str) -> dict[str, LabelingFunction]:
    """Re-create a Python spec's LFs from its stored module text (exactly what was submitted).

    Only stored code runs: the spec's text and the helper modules stored with it.
    Neither the spec's folder nor the current directory is searched for imports
    (a file dropped there later would otherwise run as whoever applies the task).
    What the module prints goes to stderr (stdout may carry --json).
    LFs (and slicing functions, LFs too) are found among the module's globals and in the `sources` and
    `slices` lists of any object that has them (the spec's `Task`), so this module needs no spec types.
    """
    spec_text, helpers = split_stored_spec(text)
    mod_name = f"_mothermodel_spec_{uuid.uuid4().hex}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(mod_name, loader=None))
    module.__file__ = origin
    sys.modules[mod_name] = module
    folder = str(Path(origin).parent)

    def local(p: str) -> bool:
        return p in ("", ".") or os.path.realpath(p) in {os.path.realpath(folder), os.path.realpath(os.getcwd())}

    saved_path = list(sys.path)
    sys.path[:] = [p for p in sys.path if not local(p)]
    for name in helpers:  # this spec's stored helper, not one loaded earlier under that name
        sys.modules.pop(name, None)
    finder = _StoredModules(helpers, folder)
    sys.meta_path.insert(0, finder)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            exec(compile(spec_text, origin, "exec"), module.__dict__)
    except BaseException as e:  # noqa: BLE001 - user code, sys.exit() included
        if isinstance(e, KeyboardInterrupt):
            raise
        hint = (f" (if {e.name!r} is a module beside the spec: only modules stored with the spec are "
                "imported; resubmit it with task submit --replace to store them)"
                if isinstance(e, ModuleNotFoundError) and e.name not in helpers else "")
        raise UserError(f"{origin}: failed to import: {type(e).__name__}: {e}".splitlines()[0] + hint) from None
    finally:
        sys.meta_path.remove(finder)
        sys.path[:] = saved_path
    # Keep the module registered: LFs pickled to worker processes refer to it.
    lfs: dict[str, LabelingFunction] = {}
    for v in list(vars(module).values()):
        if isinstance(v, LabelingFunction):
            lfs[v.name] = v
        elif not isinstance(v, type):  # the spec's Task: LFs in its sources, slicing functions in its slices
            for attr in ("sources", "slices"):
                listed = getattr(v, attr, None)
                for src in listed if isinstance(listed, (list, tuple)) else ():
                    if isinstance(src, LabelingFunction):
                        lfs[src.name] = src
    return lfs
