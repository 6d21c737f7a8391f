"""Task specs: what a task owner submits, and how spec files are read.

A spec is a Python module (a `Task(...)` plus `@labeling_function` functions)
or a YAML/TOML file with the same fields for tasks without LF code. Loading a
spec never touches the registry: it yields a `TaskSpec` (registry/records.py),
which `RegistryStore.submit` validates against the registry and writes.

This module sits above both the registry and the labeling layer (it needs the
LF types and the registry's normalised form), so neither imports it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothermodel.errors import UserError
from mothermodel.inputs import InputError, TaskInput
from mothermodel.labeling.lf import DeclarativeLF, KeywordLF, LabelingFunction, RegexLF
from mothermodel.registry.records import NAME_RE, SourceSpec, TaskSpec, is_name, is_source_name



# --- non-LF sources, as written in a spec -----------------------------------


@dataclass(frozen=True)
class TaskOutput:
    """Another task's output (its most likely label per row) used as a weak source.

    map: upstream class name -> this task's class name; unmapped classes
    abstain. Default: classes of the same name map to each other.
    """

    task: str
    name: str | None = None
    map: dict[str, str] | None = None


@dataclass(frozen=True)
class Column:
    """A dataset column holding weak labels (class index, -1 = abstain)."""

    column: str
    name: str | None = None


@dataclass(frozen=True)
class Model:
    """An external model's predictions, identified by a URI (e.g. an MLflow model)."""

    uri: str
    name: str


@dataclass
class Task:
    """A weakly supervised classification task.

    Attributes:
        name: ``^[a-z][a-z0-9_]{0,62}$``, unique in the registry.
        dataset: name of a registered dataset the task labels.
        classes: class names; label ``i`` means ``classes[i]``.
        parent: a parent task's name (task tree: a child's label implies its parent's), or None.
        parent_class: the parent's class this task refines (e.g. BILLING for billing_kind);
            the hierarchical label model needs it. Only with `parent`.
        sources: non-LF weak sources (TaskOutput, Column, Model); LFs come from the module.
        description: free text for people; not part of the fingerprint.
        owner: who to ask about this task; not part of the fingerprint.
        input: how the model input is built from a row (a `TaskInput`, or its mapping form, e.g.
            ``{"kind": "markers", "field": "text", "spans": ["span1", "span2"]}``); None = the
            dataset's text field. Part of the fingerprint (docs/writing-tasks.md, "Inputs").
    """

    name: str
    dataset: str
    classes: list[str]
    parent: str | None = None
    sources: list[Any] = field(default_factory=list)
    description: str = ""
    owner: str | None = None
    parent_class: str | None = None
    input: Any = None


def _err(origin: str, fld: str, msg: str) -> UserError:
    return UserError(f"{origin}: {fld}: {msg}")


def normalise(task: Task, lfs: list[LabelingFunction], origin: str = "<api>",
              source_text: str | None = None, shared_hash: str | None = None) -> TaskSpec:
    """Check a task's own fields and turn it plus its LFs into a `TaskSpec`.

    Checks here need no registry: name pattern, classes, source shapes,
    duplicate source names. Registry checks (dataset, parent, cycles) come at submit.
    """
    if not is_name(task.name):
        raise _err(origin, "name", f"{task.name!r} does not match {NAME_RE.pattern}")
    if not is_name(task.dataset):
        raise _err(origin, "dataset", f"{task.dataset!r} is not a dataset name (must match {NAME_RE.pattern})")
    classes = task.classes
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or not classes:
        raise _err(origin, "classes", "must be a non-empty list of class names")
    for c in classes:
        if isinstance(c, bool):
            raise _err(origin, "classes", f"class {c!r} is a boolean, not a name (YAML reads NO/YES/ON/OFF as booleans: quote them)")
        if not isinstance(c, str) or not c.strip():
            raise _err(origin, "classes", f"class {c!r}: every class name must be a non-empty string")
    dup = sorted({c for c in classes if list(classes).count(c) > 1})
    if dup:
        raise _err(origin, "classes", f"duplicate class name {dup[0]!r}")
    if task.parent is not None and not is_name(task.parent):
        raise _err(origin, "parent", f"{task.parent!r} is not a task name")
    if task.parent_class is not None and (task.parent is None or not isinstance(task.parent_class, str)):
        raise _err(origin, "parent_class", "needs a parent, and must be one of the parent's class names")
    if task.parent == task.name:
        raise _err(origin, "parent", f"dependency cycle {task.name} -> {task.name}")
    if task.description is not None and not isinstance(task.description, str):
        raise _err(origin, "description", f"must be text, not {type(task.description).__name__}")
    if task.owner is not None and not isinstance(task.owner, str):
        raise _err(origin, "owner", f"must be text, not {type(task.owner).__name__}")
    try:
        task_input = TaskInput.from_dict(task.input) if task.input is not None else None
    except InputError as e:
        raise UserError(f"{origin}: {e}") from None

    sources: list[SourceSpec] = []
    for i, s in enumerate(task.sources or []):
        where = f"sources[{i}]"
        if isinstance(s, TaskOutput):
            if not is_name(s.task):
                raise _err(origin, f"{where}.task", f"{s.task!r} is not a task name")
            if s.task == task.name:
                raise _err(origin, f"{where}.task", f"dependency cycle {task.name} -> {task.name}")
            mapping = None
            if s.map is not None:
                if not isinstance(s.map, dict) or not all(isinstance(k, str) and v in classes for k, v in s.map.items()):
                    raise _err(origin, f"{where}.map", "must map upstream class names to this task's class names")
                mapping = json.dumps(s.map, sort_keys=True)
            sources.append(SourceSpec(name=s.name or s.task, kind="task_output", ref=s.task, code=mapping,
                                      code_hash=hashlib.sha256(mapping.encode()).hexdigest() if mapping else None))
        elif isinstance(s, Column):
            if not isinstance(s.column, str) or not s.column:
                raise _err(origin, f"{where}.column", "must be a column name")
            sources.append(SourceSpec(name=s.name or s.column, kind="column", ref=s.column))
        elif isinstance(s, Model):
            if not isinstance(s.uri, str) or not s.uri or not isinstance(s.name, str) or not s.name:
                raise _err(origin, where, "a model source needs a uri and a name (text)")
            sources.append(SourceSpec(name=s.name, kind="model", ref=s.uri))
        elif isinstance(s, LabelingFunction):
            # In place, so sources[i] in a registry-side error is the i-th source as written.
            sources.append(_lf_source(s, shared_hash))
        else:
            raise _err(origin, where, f"unknown source type {type(s).__name__}")
    sources += [_lf_source(lf, shared_hash) for lf in lfs]
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if not is_source_name(s.name):
            raise _err(origin, f"sources[{i}].name", f"{s.name!r} is not a valid source name")
        if s.name in seen:
            raise _err(origin, "sources", f"duplicate source name {s.name!r}")
        seen.add(s.name)
    return TaskSpec(
        name=task.name,
        dataset=task.dataset,
        classes=tuple(classes),
        parent=task.parent,
        description=task.description or "",
        owner=task.owner,
        sources=tuple(sources),
        origin=origin,
        source_text=source_text,
        parent_class=task.parent_class,
        input=task_input,
    )


def _lf_source(lf: LabelingFunction, shared_hash: str | None) -> SourceSpec:
    code_hash = lf.code_hash
    if shared_hash and not isinstance(lf, DeclarativeLF):
        # A Python LF also depends on the module code around it (constants, helpers).
        code_hash = hashlib.sha256(f"{code_hash}\0{shared_hash}".encode()).hexdigest()
    return SourceSpec(name=lf.name, kind="lf", code=lf.code, code_hash=code_hash)


# --- reading spec files ------------------------------------------------------


def load_spec(path: str | Path) -> TaskSpec:
    """Read a spec file (.py, .yaml/.yml, .toml) into a `TaskSpec`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such spec file")
    suffix = p.suffix.lower()
    if suffix == ".py":
        return _load_python(p)
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
        return _from_mapping(data, str(p))
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{p}: not valid TOML: {e}") from None
        return _from_mapping(data, str(p))
    raise UserError(f"{p}: a spec must be .py, .yaml, .yml or .toml")


def _load_python(p: Path) -> TaskSpec:
    import importlib.util
    import uuid

    # A fresh, unique module name: two specs named alike must not share state.
    mod_name = f"_mothermodel_spec_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise UserError(f"{p}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    parent = str(p.resolve().parent)
    added = parent not in sys.path
    if added:
        sys.path.insert(0, parent)  # specs may import helper modules beside them (as `label apply` allows)
    for name in _helper_modules(set(sys.modules), Path(parent)):  # imported by an earlier load or `label apply`
        del sys.modules[name]  # so this load reads them afresh
    known = set(sys.modules)
    try:
        spec.loader.exec_module(module)
    except SystemExit:
        raise UserError(f"{p}: the module called exit() while importing") from None
    except BaseException as e:  # noqa: BLE001 - any failure of user code is bad input
        if isinstance(e, KeyboardInterrupt):
            raise
        raise UserError(f"{p}: failed to import: {type(e).__name__}: {e}".splitlines()[0]) from None
    finally:
        sys.modules.pop(mod_name, None)
        # Helper modules beside the spec: their texts count in the LFs' versions; then forgotten.
        helpers = []
        for name in _helper_modules(set(sys.modules) - known, Path(parent)):
            helpers.append(f"{name}\0{Path(sys.modules.pop(name).__file__).read_text()}")
        if added:
            sys.path.remove(parent)
    values = list(vars(module).values())
    tasks = [v for v in values if isinstance(v, Task)]
    if len(tasks) != 1:
        raise UserError(f"{p}: a spec module must define exactly one Task (found {len(tasks)})")
    lfs = [v for v in values if isinstance(v, LabelingFunction)]
    text = p.read_text()
    shared = _shared_code_hash(text, module)
    if helpers:  # a helper module beside the spec is code every Python LF may use
        shared = hashlib.sha256("\0".join([shared, *helpers]).encode()).hexdigest()
    return normalise(tasks[0], lfs, origin=str(p), source_text=text, shared_hash=shared)


def _helper_modules(names: set[str], folder: Path) -> list[str]:
    """The top-level modules among `names` whose file is in `folder` (helpers beside a spec), sorted."""
    out = []
    for name in sorted(names):
        f = getattr(sys.modules.get(name), "__file__", None)
        if ("." not in name and not name.startswith(("mothermodel", "_mothermodel")) and f
                and f.endswith(".py") and Path(f).resolve().parent == folder):
            out.append(name)
    return out


def _shared_code_hash(text: str, module) -> str:
    """Hash of a spec module minus its LFs and its Task(...): the code every LF may use.

    Editing one LF bumps that LF's version only; editing a shared constant or
    helper bumps every Python LF's, since any of them may read it.
    """
    import ast

    lf_names = {n for n, v in vars(module).items() if isinstance(v, (LabelingFunction, Task))}
    fn_names = {v.f.__name__ for v in vars(module).values()
                if isinstance(v, LabelingFunction) and not isinstance(v, DeclarativeLF)}
    tree = ast.parse(text)
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in fn_names:
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(t, ast.Name) and t.id in lf_names for t in targets):
                continue
        if isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant):
            continue  # docstrings
        keep.append(node)
    return hashlib.sha256(ast.unparse(ast.Module(body=keep, type_ignores=[])).encode()).hexdigest()


def _from_mapping(data: Any, origin: str) -> TaskSpec:
    if not isinstance(data, dict):
        raise UserError(f"{origin}: the spec must be a mapping of fields")
    known = {"name", "dataset", "classes", "parent", "parent_class", "description", "owner", "sources", "input"}
    unknown = sorted(set(data) - known, key=str)  # YAML keys may be numbers too
    if unknown:
        raise _err(origin, unknown[0], "unknown field")
    for required in ("name", "dataset", "classes"):
        if required not in data:
            raise _err(origin, required, "missing")
    task = Task(
        name=data["name"],
        dataset=data["dataset"],
        classes=data["classes"],
        parent=data.get("parent"),
        parent_class=data.get("parent_class"),
        sources=[],
        description=data.get("description", ""),  # normalise checks its type
        owner=data.get("owner"),
        input=data.get("input"),
    )
    normalise(task, [], origin=origin)  # the task's own fields first: a source's label needs valid classes
    raw_sources = data.get("sources") or []
    if not isinstance(raw_sources, list):
        raise _err(origin, "sources", "must be a list")
    for i, s in enumerate(raw_sources):
        task.sources.append(_source_from_mapping(s, f"sources[{i}]", i, list(task.classes), origin))
    return normalise(task, [], origin=origin)


# Per source kind: its required and optional fields in a YAML/TOML spec.
_SOURCE_FIELDS = {
    "column": ({"column"}, {"name"}),
    "task_output": ({"task"}, {"name", "map"}),
    "model": ({"uri", "name"}, set()),
    "keyword": ({"keywords", "label"}, {"name", "field", "case_sensitive"}),
    "regex": ({"pattern", "label"}, {"name", "field", "ignore_case"}),
}


def _source_from_mapping(s: Any, where: str, i: int, classes: list[str], origin: str) -> Any:
    kinds = " | ".join(_SOURCE_FIELDS)
    if not isinstance(s, dict) or "kind" not in s:
        raise _err(origin, where, f"each source needs a kind ({kinds})")
    kind = s["kind"]
    if kind == "lf":
        raise _err(origin, f"{where}.kind", "LFs need code: write the spec as a .py file (or use kind keyword | regex)")
    if kind not in _SOURCE_FIELDS:
        raise _err(origin, f"{where}.kind", f"unknown kind {kind!r} ({kinds})")
    required, optional = _SOURCE_FIELDS[kind]
    missing, unknown = sorted(required - set(s)), sorted(set(s) - required - optional - {"kind"})
    if missing:
        raise _err(origin, f"{where}.{missing[0]}", "missing")
    if unknown:
        raise _err(origin, f"{where}.{unknown[0]}", f"unknown field for a {kind} source")
    if kind == "column":
        return Column(column=s["column"], name=s.get("name"))
    if kind == "task_output":
        return TaskOutput(task=s["task"], name=s.get("name"), map=s.get("map"))
    if kind == "model":
        return Model(uri=s["uri"], name=s["name"])
    # Declarative LFs: checked here, so a bad one is refused at submit rather than failing at apply.
    name = s.get("name", f"{kind}_{i}")
    if not isinstance(name, str):
        raise _err(origin, f"{where}.name", f"{name!r} is not a valid source name")
    label = _label_index(s["label"], classes, origin, f"{where}.label")
    fld = s.get("field", "text")
    if not isinstance(fld, str) or not fld:
        raise _err(origin, f"{where}.field", "must be a column name")
    flag = "case_sensitive" if kind == "keyword" else "ignore_case"
    if not isinstance(s.get(flag, False), bool):
        raise _err(origin, f"{where}.{flag}", "must be true or false")
    if kind == "keyword":
        kws = s["keywords"]
        if not isinstance(kws, list) or not kws or not all(isinstance(k, str) and k for k in kws):
            raise _err(origin, f"{where}.keywords", "must be a non-empty list of non-empty strings")
        return KeywordLF(name, kws, label, field=fld, case_sensitive=s.get(flag, False))
    pattern = s["pattern"]
    if not isinstance(pattern, str) or not pattern:
        raise _err(origin, f"{where}.pattern", "must be a non-empty regular expression")
    _check_regex(pattern, origin, f"{where}.pattern")
    return RegexLF(name, pattern, label, field=fld, ignore_case=s.get(flag, False))


def _label_index(label: Any, classes: list[str], origin: str, where: str) -> int:
    """A class name or a class index, as the class index."""
    if isinstance(label, str):
        if label not in classes:
            raise _err(origin, where, f"{label!r} is not a class of this task ({', '.join(classes)})")
        return classes.index(label)
    if isinstance(label, int) and not isinstance(label, bool):
        if not 0 <= label < len(classes):
            raise _err(origin, where, f"class index {label} is outside 0..{len(classes) - 1}")
        return label
    raise _err(origin, where, "must be a class name or a class index")


def _check_regex(pattern: str, origin: str, where: str) -> None:
    """Python's re must compile it (the LF's row-at-a-time path) and DuckDB's RE2 must accept it (the SQL path)."""
    import re

    try:
        re.compile(pattern)
    except re.error as e:
        raise _err(origin, where, f"not a valid regular expression: {e}") from None
    from mothermodel.labeling.lf import re2_compatible

    if not re2_compatible(pattern):  # Python accepts both; RE2 does not
        raise _err(origin, where, "lookarounds and backreferences are not supported (RE2 syntax)")
