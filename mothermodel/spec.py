"""Task specs: what a task owner submits, and how spec files are read.

A spec is a Python module (a `Task(...)` plus `@labeling_function` functions)
or a YAML/TOML file with the same fields for tasks without LF code. Loading a
spec never touches the registry: it yields a `TaskSpec` (registry/records.py),
which the registry store's `submit` (`AbstractStore.submit`) validates against the registry and writes.

This module sits above both the registry and the labeling layer (it needs the
LF types and the registry's normalised form), so neither imports it.
"""

from __future__ import annotations

import ast
import contextlib
import dis
import hashlib
import importlib.machinery
import importlib.util
import inspect
import json
import os
import re
import sys
import textwrap
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from mothermodel.errors import UserError
from mothermodel.inputs import InputError, TaskInput
from mothermodel.labeling.lf.core import (DeclarativeLF, KeywordLF, LabelingFunction, RegexLF, ThresholdLF,
                                          re2_compatible)
from mothermodel.labeling.lf.slicing import IN_SLICE, SlicingFunction
from mothermodel.registry.records import (NAME_RE, SourceSpec, TaskSpec, class_names_problem, is_name,
                                          is_source_name)



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


# --- sources computed by a model over the whole dataset ------------------------------
# Embedding: labeling/apply/embedding.py applies it; Prompt: labeling/apply/prompted.py.
# Each is recorded as a SourceSpec whose `code` is its checked parameters as canonical JSON.


@dataclass(frozen=True)
class Embedding:
    """A source that votes by similarity in an encoder's space (docs/writing-tasks.md, "Embedding sources").

    Each row's text is embedded once per dataset and encoder (cached under the workspace); the source votes
    for the class whose seed examples / description its embedding is most similar to, or, with `clusters`,
    for the class of the seed rows in its k-means cluster, or, with `neighbours`, for the class its nearest
    rows are given by the task's other sources (on the rows those sources leave uncovered).

    Attributes:
        name: the source's name.
        params: the same settings as a mapping, as in a YAML spec (every field but `kind` and `name`);
            a setting given both ways is refused.
        field: the text column embedded; None = the task's input as text (else the dataset's text field).
        encoder: "default" (the bundled all-MiniLM-L6-v2) or a Hugging Face model folder (a relative path
            is taken from the current folder at submit and recorded absolute).
        seeds: class (name or index) -> example texts of that class.
        seed_rows: class -> dataset row ids (`_row`) of examples of that class.
        descriptions: class -> a text describing the class (counts as one more seed).
        threshold: least cosine similarity to the best class's prototype for a vote (default 0.4).
        margin: least gap between the best and the second class's similarity (default 0.05).
        clusters: k: vote through k-means clusters of the dataset's embeddings instead; a cluster takes
            the class its seed rows / seeds agree on (at least `min_agreement` of them, default 0.6).
        neighbours: k: vote on the rows the task's other sources leave uncovered, for the class of their k
            nearest rows that those sources (a majority with a lead, hand labels first) or seed_rows label,
            when at least `min_agreement` of the similarity-weighted neighbours agree. Seeds are optional.
        vote_on: with neighbours: "uncovered" (default; the rows the other sources leave) or "all" rows.
        max_length: tokens per text embedded (default 128; longer texts are cut).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    field: str | None = None
    encoder: str | None = None
    seeds: dict[Any, list[str]] | None = None
    seed_rows: dict[Any, list[int]] | None = None
    descriptions: dict[Any, str] | None = None
    threshold: float | None = None
    margin: float | None = None
    clusters: int | None = None
    neighbours: int | None = None
    vote_on: str | None = None
    min_agreement: float | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Prompt:
    """A source that asks a model: an OpenAI-compatible endpoint or a local Hugging Face model folder
    (docs/writing-tasks.md, "Prompted sources").

    Backend, by the fields given: `endpoint` + `model` (a served model's name) asks an OpenAI-compatible
    server with `template`; `model` alone is a local model folder, asked zero-shot through an NLI model with
    `hypothesis`, or as a text-to-text model with `template`.

    Attributes:
        name: the source's name.
        params: the same settings as a mapping, as in a YAML spec (every field but `kind` and `name`);
            a setting given both ways is refused.
        field: the text column asked about; None = the task's input as text.
        endpoint: base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1).
        model: the served model's name (with `endpoint`), else a local Hugging Face model folder (a relative
            path is taken from the current folder at submit and recorded absolute; checked at apply).
        template: the prompt: `{text}` is the row's text, `{classes}` the class names joined by ", ".
        hypothesis: (local NLI model) e.g. "This text is about {label}."; `{label}` is each class's first
            verbaliser word.
        verbalizer: class (name or index) -> answer word(s); a class not given answers to its own name.
        threshold: (NLI) least probability of the best class (softmax over the classes' entailment
            logits) for a vote (default 0: always votes).
        prompt_version: part of the answer cache's key (default: a hash of template, hypothesis and
            max_tokens); change it to ask again what is cached.
        max_tokens: tokens an answer may have (default 16).
        timeout: seconds per request (default 30). retries: more tries after a connection error, 429 or 5xx
            (default 3, exponential backoff). rate_limit: requests per second (default none).
        api_key_env: the environment variable holding the endpoint's API key (the key is never recorded).
        max_rows: ask only the dataset's first max_rows rows (default all).
        batch_size: concurrent requests (endpoint) or rows per forward pass (local) (default 8).
        cost_per_1k_tokens: price per 1000 tokens (prompt + completion), for the cost in `label apply --json`.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    field: str | None = None
    endpoint: str | None = None
    model: str | None = None
    template: str | None = None
    hypothesis: str | None = None
    verbalizer: dict[Any, Any] | None = None
    threshold: float | None = None
    prompt_version: str | None = None
    max_tokens: int | None = None
    timeout: float | None = None
    retries: int | None = None
    rate_limit: float | None = None
    api_key_env: str | None = None
    max_rows: int | None = None
    batch_size: int | None = None
    cost_per_1k_tokens: float | None = None


def _params_source(kind: str, name: Any, params: dict[str, Any], origin: str, where: str) -> SourceSpec:
    """A model-computed source's SourceSpec: its parameters as canonical JSON, hashed."""
    if not isinstance(name, str):
        raise _err(origin, f"{where}.name", f"{name!r} is not a valid source name")
    code = json.dumps({"kind": kind, **params}, sort_keys=True)
    return SourceSpec(name=name, kind=kind, code=code, code_hash=hashlib.sha256(code.encode()).hexdigest())


def _settings(s: Any, defaults: dict[str, Any], what: str, origin: str, where: str) -> dict[str, Any]:
    """A model-computed source's settings: its typed fields and its `params` mapping (a setting given both
    ways, or unknown, is refused), over `defaults`."""
    if not isinstance(s.params, dict):
        raise _err(origin, f"{where}.params", "must be a mapping of settings")
    given = {k: getattr(s, k) for k in defaults if getattr(s, k) is not None}
    for k, v in s.params.items():
        if k not in defaults:
            raise _err(origin, f"{where}.{k}", f"unknown field for {what} source")
        if k in given:
            raise _err(origin, f"{where}.{k}", "given both as a field and in params")
        if v is not None:
            given[k] = v
    return {**defaults, **given}


EMBEDDING_DEFAULTS = {"field": None, "encoder": "default", "seeds": {}, "seed_rows": {}, "descriptions": {},
                      "threshold": 0.4, "margin": 0.05, "clusters": None, "neighbours": None, "vote_on": None,
                      "min_agreement": 0.6,
                      "max_length": 128}
"""An embedding source's settings when not given (threshold and margin tuned on valid splits: docs/benchmarks.md)."""


def _embedding_spec(s: Embedding, classes: list[str], origin: str, where: str) -> SourceSpec:
    """An embedding source checked (needs no registry) and normalised: every setting filled in, classes as
    indices (JSON keys "0", "1", ...), seed rows sorted, the encoder path absolute."""
    p = _settings(s, EMBEDDING_DEFAULTS, "an embedding", origin, where)

    def by_class(key: str, check) -> dict[str, Any]:
        m = p[key]
        if not isinstance(m, dict):
            raise _err(origin, f"{where}.{key}", "must map class names (or indices) to values")
        out: dict[str, Any] = {}
        for c, v in m.items():
            at = f"{where}.{key}.{c}"
            idx = str(_label_index(c, classes, origin, at))
            if idx in out:
                raise _err(origin, at, f"class {classes[int(idx)]!r} given twice")
            out[idx] = check(v, at)
        return out

    def texts(v: Any, at: str) -> list[str]:
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
            raise _err(origin, at, "must be a non-empty list of non-empty texts")
        return v

    def rows(v: Any, at: str) -> list[int]:
        if not isinstance(v, list) or not v or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                       for x in v):
            raise _err(origin, at, "must be a non-empty list of dataset row ids (whole numbers >= 0)")
        return sorted(set(v))

    def text(v: Any, at: str) -> str:
        if not isinstance(v, str) or not v.strip():
            raise _err(origin, at, "must be a non-empty text")
        return v

    def number(key: str, lo: float, hi: float) -> float:
        v = p[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise _err(origin, f"{where}.{key}", f"must be a number in {lo:g}..{hi:g}")
        return float(v)

    if p["field"] is not None and (not isinstance(p["field"], str) or not p["field"]):
        raise _err(origin, f"{where}.field", "must be a column name")
    enc = p["encoder"]
    if not isinstance(enc, str) or not enc:
        raise _err(origin, f"{where}.encoder", "must be 'default' or a Hugging Face model folder")
    if enc != "default":
        folder = Path(enc).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise _err(origin, f"{where}.encoder", f"{enc}: not a Hugging Face model folder (no config.json)")
        enc = str(folder)
    seeds, seed_rows = by_class("seeds", texts), by_class("seed_rows", rows)
    descriptions = by_class("descriptions", text)
    clusters = p["clusters"]
    if clusters is not None and (isinstance(clusters, bool) or not isinstance(clusters, int) or clusters < 2):
        raise _err(origin, f"{where}.clusters", "must be a whole number of clusters >= 2")
    if clusters is not None and not (seeds or seed_rows):
        raise _err(origin, f"{where}.clusters", "needs seeds or seed_rows (a cluster takes the class of its seeds)")
    neighbours = p["neighbours"]
    if neighbours is not None:
        if isinstance(neighbours, bool) or not isinstance(neighbours, int) or not 1 <= neighbours <= 1000:
            raise _err(origin, f"{where}.neighbours", "must be a whole number of neighbours in 1..1000")
        if clusters is not None:
            raise _err(origin, f"{where}.neighbours", "give clusters or neighbours, not both")
    if p["vote_on"] is not None and (neighbours is None or p["vote_on"] not in ("uncovered", "all")):
        raise _err(origin, f"{where}.vote_on", "must be 'uncovered' or 'all', and needs neighbours")
    if neighbours is None and not (seeds or seed_rows or descriptions):
        raise _err(origin, where, "an embedding source needs seeds, seed_rows or descriptions (or neighbours)")
    max_length = p["max_length"]
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 8 <= max_length <= 8192:
        raise _err(origin, f"{where}.max_length", "must be a whole number of tokens in 8..8192")
    params = {"field": p["field"], "encoder": enc, "seeds": seeds, "seed_rows": seed_rows,
              "descriptions": descriptions, "threshold": number("threshold", -1, 1), "margin": number("margin", 0, 2),
              "clusters": clusters, "min_agreement": number("min_agreement", 0, 1), "max_length": max_length}
    if neighbours is not None:  # only when set: sources recorded before the mode existed keep their code hash
        params["neighbours"] = neighbours
        params["vote_on"] = p["vote_on"] or "uncovered"
    return _params_source("embedding", s.name, params, origin, where)


PROMPT_DEFAULTS = {"field": None, "endpoint": None, "model": None, "template": None, "hypothesis": None,
                   "verbalizer": {}, "threshold": 0.0, "prompt_version": None, "max_tokens": 16, "timeout": 30.0,
                   "retries": 3, "rate_limit": None, "api_key_env": None, "max_rows": None, "batch_size": 8,
                   "cost_per_1k_tokens": None}
"""A prompted source's settings when not given (labeling/apply/prompted.py applies them)."""


def _prompt_spec(s: Prompt, classes: list[str], origin: str, where: str) -> SourceSpec:
    """A prompted source checked (needs no registry) and normalised: every setting filled in, the backend
    named ("http", "nli" or "generate"), the verbaliser per class index with every class, a local model's
    folder absolute (whether it is there is checked at apply, so a spec can be submitted from elsewhere)."""
    p = _settings(s, PROMPT_DEFAULTS, "a prompt", origin, where)

    def text(key: str, must_have: str | None = None) -> str | None:
        v = p[key]
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            raise _err(origin, f"{where}.{key}", "must be a non-empty text")
        if must_have and must_have not in v:
            raise _err(origin, f"{where}.{key}", f"must contain {must_have}")
        return v

    def number(key: str, lo: float, hi: float, whole: bool = False) -> Any:
        v = p[key]
        if v is None:
            return None
        ok = isinstance(v, int) if whole else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or not lo <= v <= hi:
            raise _err(origin, f"{where}.{key}", f"must be a {'whole number' if whole else 'number'} in {lo:g}..{hi:g}")
        return v if whole else float(v)

    if p["field"] is not None and (not isinstance(p["field"], str) or not p["field"]):
        raise _err(origin, f"{where}.field", "must be a column name")
    endpoint, model = text("endpoint"), text("model")
    template, hypothesis = text("template", "{text}"), text("hypothesis", "{label}")
    if model is None:
        raise _err(origin, f"{where}.model", "missing: a served model's name (with endpoint) or a local model folder")
    if endpoint is not None:
        if not re.match(r"https?://[^/\s]+", endpoint):
            raise _err(origin, f"{where}.endpoint", "must be an http(s) URL, e.g. http://127.0.0.1:8000/v1")
        if hypothesis is not None:
            raise _err(origin, f"{where}.hypothesis", "only for a local NLI model (no endpoint)")
        if template is None:
            raise _err(origin, f"{where}.template", "missing: the prompt sent to the endpoint (with {text})")
        backend, endpoint = "http", endpoint.rstrip("/")
    else:
        if (template is None) == (hypothesis is None):
            raise _err(origin, f"{where}.template", "a local model needs exactly one of template (text-to-text) "
                                                    "or hypothesis (zero-shot NLI)")
        backend, model = ("nli" if hypothesis else "generate"), str(Path(model).expanduser().resolve())
        if p["api_key_env"] is not None:
            raise _err(origin, f"{where}.api_key_env", "only with an endpoint")
    if p["threshold"] and backend != "nli":
        raise _err(origin, f"{where}.threshold", "only for a local NLI model (hypothesis)")
    key_env = p["api_key_env"]
    if key_env is not None and (not isinstance(key_env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env)):
        raise _err(origin, f"{where}.api_key_env", "must be an environment variable's name (the key itself is "
                                                   "never written in a spec)")
    verb = p["verbalizer"]
    if not isinstance(verb, dict):
        raise _err(origin, f"{where}.verbalizer", "must map class names (or indices) to answer words")
    words: dict[str, list[str]] = {str(i): [c] for i, c in enumerate(classes)}
    owner: dict[str, str] = {}
    given_for: set[str] = set()
    for c, v in verb.items():
        at = f"{where}.verbalizer.{c}"
        idx = str(_label_index(c, classes, origin, at))
        if idx in given_for:
            raise _err(origin, at, f"class {classes[int(idx)]!r} given twice")
        given_for.add(idx)
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v or not all(isinstance(w, str) and w.strip() for w in v):
            raise _err(origin, at, "must be an answer word or a non-empty list of them")
        words[idx] = [w.strip() for w in v]
    for idx, ws_ in words.items():  # an answer word must name one class only
        for w in ws_:
            other = owner.setdefault(w.lower(), idx)
            if other != idx:
                raise _err(origin, f"{where}.verbalizer", f"answer {w!r} names both {classes[int(other)]!r} "
                                                          f"and {classes[int(idx)]!r}")
    version = text("prompt_version")
    max_tokens = number("max_tokens", 1, 4096, whole=True)
    if version is None:  # the answer depends on these beyond the prompt text itself (hashed per row)
        basis = json.dumps([backend, template, hypothesis, max_tokens])
        version = "auto-" + hashlib.sha256(basis.encode()).hexdigest()[:16]
    params = {"backend": backend, "field": p["field"], "endpoint": endpoint, "model": model, "template": template,
              "hypothesis": hypothesis, "verbalizer": words, "threshold": number("threshold", 0, 1),
              "prompt_version": version, "max_tokens": max_tokens, "timeout": number("timeout", 0.001, 86400),
              "retries": number("retries", 0, 20, whole=True), "rate_limit": number("rate_limit", 0.001, 1e6),
              "api_key_env": key_env, "max_rows": number("max_rows", 1, 10**12, whole=True),
              "batch_size": number("batch_size", 1, 1024, whole=True),
              "cost_per_1k_tokens": number("cost_per_1k_tokens", 0, 1e9)}
    return _params_source("prompt", s.name, params, origin, where)


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
        sources: non-LF weak sources (TaskOutput, Column, Model); in a spec file LFs come from the module,
            for ``Registry.submit(task)`` in code they go here too (their code is recorded: `from_task`).
        description: free text for people; not part of the fingerprint.
        owner: who to ask about this task; not part of the fingerprint.
        input: how the model input is built from a row (a `TaskInput`, or its mapping form, e.g.
            ``{"kind": "markers", "field": "text", "spans": ["span1", "span2"]}``); None = the
            dataset's text field. Part of the fingerprint (docs/writing-tasks.md, "Inputs").
        gold: the dataset column holding this task's gold labels (class names or indices; evaluation
            only), when it is not the dataset's `--gold-field`. Checked against `classes` at submit;
            part of the fingerprint when set.
        slices: named subsets of the task's rows to measure (docs/writing-tasks.md, "Slices"):
            `@slicing_function()`s, or keyword / regex / threshold LFs (their label is ignored). In a .py spec,
            module-level slicing functions are found like LFs. Versioned like sources, never voting, not part
            of the fingerprint.
        slice_heads: train a slice head per slice in the mother model (an indicator and an expert each,
            docs/trainer.md "Slice heads"); the slices then join the fingerprint (editing one retrains).
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
    gold: str | None = None
    slices: list[Any] = field(default_factory=list)
    slice_heads: bool = False


def _err(origin: str, fld: str, msg: str) -> UserError:
    return UserError(f"{origin}: {fld}: {msg}")


def normalise(task: Task, lfs: list[LabelingFunction], origin: str = "<api>",
              source_text: str | None = None, shared_hash: str | None = None,
              slicing: list[SlicingFunction] | None = None) -> TaskSpec:
    """Check a task's own fields and turn it plus its LFs into a `TaskSpec`.

    Checks here need no registry: name pattern, classes, source shapes,
    duplicate source names. Registry checks (dataset, parent, cycles) come at submit.
    """
    if not is_name(task.name):
        raise _err(origin, "name", f"{task.name!r} does not match {NAME_RE.pattern}")
    if not is_name(task.dataset):
        raise _err(origin, "dataset", f"{task.dataset!r} is not a dataset name (must match {NAME_RE.pattern})")
    classes = task.classes
    problem = class_names_problem(classes)  # the same rules as `import wrench`
    if problem:
        raise _err(origin, "classes", problem)
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
        elif isinstance(s, Embedding):
            sources.append(_embedding_spec(s, list(classes), origin, where))
        elif isinstance(s, Prompt):
            sources.append(_prompt_spec(s, list(classes), origin, where))
        elif isinstance(s, LabelingFunction):
            # In place, so sources[i] in a registry-side error is the i-th source as written.
            _check_regex_lf(s, origin, where)
            sources.append(_lf_source(s, shared_hash))
        else:
            raise _err(origin, where, f"unknown source type {type(s).__name__}")
    for lf in lfs:
        _check_regex_lf(lf, origin, f"LF {lf.name}")
    sources += [_lf_source(lf, shared_hash) for lf in lfs]
    seen: set[str] = set()
    for i, s in enumerate(sources):
        if not is_source_name(s.name):
            raise _err(origin, f"sources[{i}].name", f"{s.name!r} is not a valid source name")
        if s.name in seen:
            raise _err(origin, "sources", f"duplicate source name {s.name!r}")
        seen.add(s.name)
    listed = list(task.slices or [])
    if not isinstance(listed, list):
        raise _err(origin, "slices", "must be a list of slicing functions")
    listed += [f for f in slicing or [] if not any(f is g for g in listed)]
    for i, sl in enumerate(listed):
        where = f"slices[{i}]"
        spec = _slice_source(sl, shared_hash, origin, where)
        if not is_source_name(spec.name):
            raise _err(origin, f"{where}.name", f"{spec.name!r} is not a valid slice name")
        if spec.name in seen:
            raise _err(origin, "slices", f"duplicate name {spec.name!r} (slices and sources share one namespace)")
        seen.add(spec.name)
        sources.append(spec)
    if not isinstance(task.slice_heads, bool):
        raise _err(origin, "slice_heads", "must be true or false")
    if task.slice_heads and not listed:
        raise _err(origin, "slice_heads", "the task declares no slices")
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
        gold=_gold_field(task.gold, origin),
        slice_heads=task.slice_heads,
    )


def _slice_source(sl: Any, shared_hash: str | None, origin: str, where: str) -> SourceSpec:
    """A slice as the registry stores it: kind "slice", its code recorded as an LF's. A declarative LF given as
    a slice is rebuilt with the label IN_SLICE (a slice has no class)."""
    if isinstance(sl, DeclarativeLF):
        params = {k: v for k, v in sl.params().items() if k != "label"}
        sl = type(sl)(name=sl.name, label=IN_SLICE, **params)
        _check_regex_lf(sl, origin, where)
    elif not isinstance(sl, SlicingFunction):
        raise _err(origin, where, f"a slice is a @slicing_function() or a keyword/regex/threshold LF, "
                                  f"not {type(sl).__name__}")
    src = _lf_source(sl, shared_hash)
    return SourceSpec(name=src.name, kind="slice", code=src.code, code_hash=src.code_hash)


def _check_regex_lf(lf: LabelingFunction, origin: str, where: str) -> None:
    """A RegexLF built in Python is checked as a YAML regex source is: by the engine that runs it."""
    if isinstance(lf, RegexLF):
        problem = re2_problem(lf.pattern, lf.ignore_case)
        if problem:
            raise _err(origin, f"{where}.pattern", f"{lf.name}: {problem}")


def _gold_field(gold: Any, origin: str) -> str | None:
    """A task's own gold column: a column name (whether it holds labels that fit is checked at submit)."""
    if gold is not None and (not isinstance(gold, str) or not gold):
        raise _err(origin, "gold", f"must be a column name, not {gold!r}")
    return gold


def _lf_source(lf: LabelingFunction, shared_hash: str | None) -> SourceSpec:
    code_hash = lf.code_hash
    if shared_hash and not isinstance(lf, DeclarativeLF):
        # A Python LF also depends on the module code around it (constants, helpers).
        code_hash = hashlib.sha256(f"{code_hash}\0{shared_hash}".encode()).hexdigest()
    return SourceSpec(name=lf.name, kind="lf", code=lf.code, code_hash=code_hash)


# --- tasks built in Python (Registry.submit(Task(...))) ----------------------


def from_task(task: Task) -> TaskSpec:
    """A `Task` built in code, its LFs among its sources, as a `TaskSpec` `AbstractStore.submit` takes.

    `label apply` runs in another process later, so each Python LF's code is recorded: a small module made of
    the LF functions' source, the helpers of the same module they call, the imports and the constant values
    they read (`_python_lf_module`). What cannot be recorded (a lambda, a function typed at a REPL, a closure,
    a global holding an arbitrary object) is refused here naming the LF, not left to fail at apply.
    """
    if not isinstance(task, Task):
        raise UserError(f"submit: expected a Task, a TaskSpec or a spec file, got {type(task).__name__}")
    origin = f"<task {task.name} built in Python>"
    py_lfs = [s for s in [*(task.sources or []), *(task.slices or [])]
              if isinstance(s, LabelingFunction) and not isinstance(s, DeclarativeLF)]
    text, shared = _python_lf_module(py_lfs, origin) if py_lfs else (None, None)
    return normalise(task, [], origin=origin, source_text=text, shared_hash=shared)


def _python_lf_module(lfs: list[LabelingFunction], origin: str) -> tuple[str, str]:
    """(module text that rebuilds `lfs`, hash of its shared part: imports, constants, helpers)."""
    support: dict[str, tuple[Any, str]] = {}  # global name -> (value, code that defines it)
    lf_defs: dict[str, tuple[Any, str]] = {}

    def refuse(lf, why):
        return _err(origin, "sources", f"LF {lf.name!r}: {why}")

    def globals_read(code):
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                yield ins.argval
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                yield from globals_read(c)

    def put(table, name, value, code, lf):
        if name in support or name in lf_defs:
            old = (support.get(name) or lf_defs[name])[0]
            if old is not value and old != value:
                raise refuse(lf, f"two different objects are called {name!r} among the task's LFs: rename one")
            return
        table[name] = (value, code)

    def function(fn, lf, table):
        if not inspect.isfunction(fn):
            raise refuse(lf, f"{fn!r} is not a Python function defined with def")
        if fn.__name__ == "<lambda>":
            raise refuse(lf, "a lambda's code cannot be recorded: define the LF with def")
        if fn.__closure__:
            raise refuse(lf, f"{fn.__name__} uses variables of the function it is defined in "
                             f"({', '.join(fn.__code__.co_freevars)}): define it at module level or pass them "
                             "as resources")
        if fn.__name__ in support or fn.__name__ in lf_defs:
            put(table, fn.__name__, fn, "", lf)
            return
        try:
            src = textwrap.dedent(inspect.getsource(fn))
            node = next(n for n in ast.parse(src).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        except (OSError, TypeError, SyntaxError, StopIteration):
            raise refuse(lf, f"the code of {fn.__name__} cannot be read (typed at an interactive prompt?): define it "
                             "in a file or a notebook cell") from None
        # From the `def` line: the decorators are replaced by the LabelingFunction(...) built below.
        put(table, fn.__name__, fn, "\n".join(src.splitlines()[node.lineno - 1:]), lf)
        # Default values are evaluated where the def runs: the names they read are needed too.
        in_defaults = [n.id for d in [*node.args.defaults, *node.args.kw_defaults] if d is not None
                       for n in ast.walk(d) if isinstance(n, ast.Name)]
        for name in [*globals_read(fn.__code__), *in_defaults]:
            if name in fn.__globals__:
                dependency(name, fn.__globals__[name], fn, lf)

    def dependency(name, value, fn, lf):
        home = getattr(value, "__module__", None)
        if isinstance(value, types.ModuleType):
            if not _importable_elsewhere(value.__name__, fn):
                raise refuse(lf, f"{fn.__name__} uses module {value.__name__}, a file of yours that `label apply` "
                                 f"cannot import: import the functions it needs (from {value.__name__} import ...) "
                                 "so their code is recorded")
            alias = f" as {name}" if name != value.__name__ else ""
            put(support, name, value, f"import {value.__name__}{alias}", lf)
        elif inspect.isfunction(value) and (home in (fn.__module__, "__main__") or not _importable_elsewhere(home, fn)):
            function(value, lf, support)  # a helper of yours (this module or a file beside it): recorded with it
        elif (inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value)) and \
                home not in (None, fn.__module__, "__main__") and "." not in value.__qualname__ and \
                _importable_elsewhere(home, fn):
            alias = f" as {name}" if name != value.__name__ else ""
            put(support, name, value, f"from {home} import {value.__qualname__}{alias}", lf)
        elif isinstance(value, re.Pattern):
            put(support, name, value, f"{name} = __import__('re').compile({value.pattern!r}, {int(value.flags)})", lf)
        elif _literal(value):
            put(support, name, value, f"{name} = {_stable_repr(value)}", lf)
        else:
            raise refuse(lf, f"{fn.__name__} reads the global {name!r} (a {type(value).__name__}), whose value "
                             "cannot be recorded: pass it as resources= or create it inside the function")

    built = []
    for i, lf in enumerate(lfs):
        function(lf.f, lf, lf_defs)
        for p in lf.pre:
            function(p, lf, lf_defs)
        for key, value in lf.resources.items():
            if not _literal(value):
                raise refuse(lf, f"resource {key!r} (a {type(value).__name__}) cannot be recorded: give plain values "
                                 "(numbers, text, lists, sets, dicts)")
        pre = "".join(f"{p.__name__}, " for p in lf.pre)
        built.append(f"_lf_{i} = _LabelingFunction(name={lf.name!r}, f={lf.f.__name__}, "
                     f"resources={_stable_repr(dict(lf.resources))}, pre=({pre}))")
    shared = "\n\n".join(code for _, code in support.values() if code)
    text = "\n\n".join([f"# The Python LFs of {origin}, recorded at submit: `label apply` runs this module.",
                        "from __future__ import annotations  # annotations name types this module need not hold",
                        "from mothermodel.labeling.lf.core import LabelingFunction as _LabelingFunction", shared,
                        *(code for _, code in lf_defs.values() if code), "\n".join(built)]) + "\n"
    try:  # built once here, as `label apply` will: a task whose LFs cannot be rebuilt is not registered
        exec(compile(text, origin, "exec"), {"__name__": f"_mothermodel_check_{len(text)}"})
    except Exception as e:  # noqa: BLE001 - the user's code
        raise _err(origin, "sources", f"the recorded LF code does not run: {type(e).__name__}: {e}".splitlines()[0]) \
            from None
    return text, hashlib.sha256(shared.encode()).hexdigest()


def _importable_elsewhere(module: str | None, fn) -> bool:
    """Whether `label apply`, in another process and folder, can import `module`: an installed package (or the
    standard library), not a file found only through the current folder or the folder of the user's code."""
    if not module:
        return False
    top = module.split(".")[0]
    if top in sys.builtin_module_names:
        return True
    local = {"", os.getcwd()}
    for f in (getattr(sys.modules.get("__main__"), "__file__", None), fn.__globals__.get("__file__")):
        if f:
            local.add(str(Path(f).resolve().parent))
    paths = [p for p in sys.path if p not in local and str(Path(p or ".").resolve()) not in local]
    for finder in sys.meta_path:
        try:
            if finder is importlib.machinery.PathFinder:
                found = finder.find_spec(top, paths)
            else:  # editable installs and other import hooks
                found = finder.find_spec(top, None)
        except Exception:  # noqa: BLE001 - a broken import hook: try the next one
            continue
        if found is not None:
            origin = getattr(found, "origin", None)
            return not (origin and str(Path(origin).resolve().parent) in local)
    return False


def _literal(value: Any) -> bool:
    """Whether `value` is written back exactly by its repr (numbers, text, and containers of them)."""
    try:
        return ast.literal_eval(_stable_repr(value)) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def _stable_repr(value: Any) -> str:
    """repr with sets sorted: a set's order follows string hashing, which differs between processes, and the
    recorded text decides the LFs' versions."""
    if type(value) in (set, frozenset):  # exact types: a subclass's repr is not a literal
        items = sorted(_stable_repr(v) for v in value)
        return "{" + ", ".join(items) + "}" if items else "set()"
    if type(value) is dict:
        return "{" + ", ".join(f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items()) + "}"
    if type(value) is list:
        return "[" + ", ".join(_stable_repr(v) for v in value) + "]"
    if type(value) is tuple:
        return "(" + ", ".join(_stable_repr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


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
        try:
            data = yaml.safe_load(_read_text(p))
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
        return _from_mapping(data, str(p))
    if suffix == ".toml":
        try:
            data = tomllib.loads(_read_text(p))
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{p}: not valid TOML: {e}") from None
        return _from_mapping(data, str(p))
    raise UserError(f"{p}: a spec must be .py, .yaml, .yml or .toml")


def _read_text(p: Path) -> str:
    """A spec file's text: UTF-8 (a UTF-8 byte-order mark is dropped); other encodings are refused, since the
    text is stored and re-read as UTF-8."""
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")
        raise UserError(f"{p}: not UTF-8 text{' (it is UTF-16)' if utf16 else ''}: save the spec as UTF-8") from None


def _load_python(p: Path) -> TaskSpec:
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
        with contextlib.redirect_stdout(sys.stderr):  # print() in a spec must not break --json
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
    lfs = [v for v in values if isinstance(v, LabelingFunction) and not isinstance(v, SlicingFunction)]
    slicing = [v for v in values if isinstance(v, SlicingFunction)]
    text = _read_text(p)
    shared = _shared_code_hash(text, module)
    if helpers:  # a helper module beside the spec is code every Python LF may use
        shared = hashlib.sha256("\0".join([shared, *helpers]).encode()).hexdigest()
    # Helper modules are stored after the spec's text (NUL-separated, see lf.split_stored_spec):
    # `label apply` runs these texts, never files found beside the spec later.
    return normalise(tasks[0], lfs, origin=str(p), source_text="\0".join([text, *helpers]), shared_hash=shared,
                     slicing=slicing)


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
    lf_names = {n for n, v in vars(module).items() if isinstance(v, (LabelingFunction, Task))}
    task_names = {n for n, v in vars(module).items() if isinstance(v, Task)}
    fn_names = {v.f.__name__ for v in vars(module).values()
                if isinstance(v, LabelingFunction) and not isinstance(v, DeclarativeLF)}

    def on_task(expr) -> bool:
        """`task.x` / `task.sources.append(...)`: a statement that changes the Task (the spec records that),
        not code an LF may read."""
        while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
            expr = expr.func if isinstance(expr, ast.Call) else expr.value
        return isinstance(expr, ast.Name) and expr.id in task_names

    tree = ast.parse(text)
    keep = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in fn_names:
            continue
        if isinstance(node, (ast.Assign, ast.AugAssign)) and all(
                isinstance(t, (ast.Attribute, ast.Subscript)) and on_task(t)
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and on_task(node.value):
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
    known = {"name", "dataset", "classes", "parent", "parent_class", "description", "owner", "sources", "input",
             "gold", "slices", "slice_heads"}
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
        gold=data.get("gold"),
    )
    normalise(task, [], origin=origin)  # the task's own fields first: a source's label needs valid classes
    raw_sources = data.get("sources") or []
    if not isinstance(raw_sources, list):
        raise _err(origin, "sources", "must be a list")
    for i, s in enumerate(raw_sources):
        task.sources.append(_source_from_mapping(s, f"sources[{i}]", i, list(task.classes), origin))
    raw_slices = data.get("slices") or []
    if not isinstance(raw_slices, list):
        raise _err(origin, "slices", "must be a list")
    task.slices = [_slice_from_mapping(s, f"slices[{i}]", i, origin) for i, s in enumerate(raw_slices)]
    task.slice_heads = data.get("slice_heads", False)
    return normalise(task, [], origin=origin)


_SLICE_KINDS = ("keyword", "regex", "threshold")


def _slice_from_mapping(s: Any, where: str, i: int, origin: str) -> DeclarativeLF:
    """A YAML/TOML slice: a keyword, regex or threshold rule without a label (a slice has no class)."""
    if not isinstance(s, dict) or s.get("kind") not in _SLICE_KINDS:
        raise _err(origin, f"{where}.kind" if isinstance(s, dict) else where,
                   f"each slice needs a kind ({' | '.join(_SLICE_KINDS)}; Python slices: a .py spec)")
    kind = s["kind"]
    if kind == "threshold":
        required, optional = {"field", "op", "value"}, {"name"}
    else:
        required, optional = _SOURCE_FIELDS[kind][0] - {"label"}, _SOURCE_FIELDS[kind][1]
    missing, unknown = sorted(required - set(s)), sorted(set(s) - required - optional - {"kind"})
    if missing:
        raise _err(origin, f"{where}.{missing[0]}", "missing")
    if unknown:
        raise _err(origin, f"{where}.{unknown[0]}", f"unknown field for a {kind} slice")
    if kind == "threshold":
        name = s.get("name", f"slice_{i}")
        if not isinstance(s["field"], str) or not s["field"]:
            raise _err(origin, f"{where}.field", "must be a column name")
        if s["op"] not in ThresholdLF.OPS:
            raise _err(origin, f"{where}.op", f"must be one of {', '.join(ThresholdLF.OPS)}")
        if isinstance(s["value"], bool) or not isinstance(s["value"], (int, float)):
            raise _err(origin, f"{where}.value", "must be a number")
        return ThresholdLF(name, s["field"], s["op"], s["value"], IN_SLICE)
    lf = _source_from_mapping({**s, "label": IN_SLICE, "name": s.get("name", f"slice_{i}")}, where, i, ["IN"], origin)
    return lf


# Per source kind: its required and optional fields in a YAML/TOML spec.
_SOURCE_FIELDS = {
    "column": ({"column"}, {"name"}),
    "task_output": ({"task"}, {"name", "map"}),
    "model": ({"uri", "name"}, set()),
    "keyword": ({"keywords", "label"}, {"name", "field", "case_sensitive"}),
    "regex": ({"pattern", "label"}, {"name", "field", "ignore_case"}),
    # Model-computed sources: every field but kind and name goes to their parameters (checked by
    # _embedding_spec / _prompt_spec).
    "embedding": (set(), {"name", *EMBEDDING_DEFAULTS}),
    "prompt": (set(), {"name", *PROMPT_DEFAULTS}),
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
        article = "an" if kind[0] in "aeiou" else "a"
        raise _err(origin, f"{where}.{unknown[0]}", f"unknown field for {article} {kind} source")
    if kind == "column":
        return Column(column=s["column"], name=s.get("name"))
    if kind == "task_output":
        return TaskOutput(task=s["task"], name=s.get("name"), map=s.get("map"))
    if kind == "model":
        return Model(uri=s["uri"], name=s["name"])
    if kind in ("embedding", "prompt"):
        cls = Embedding if kind == "embedding" else Prompt
        return cls(name=s.get("name", f"{kind}_{i}"), params={k: v for k, v in s.items() if k not in ("kind", "name")})
    # Declarative LFs: checked here, so a bad one is refused at submit rather than failing at apply.
    name = s.get("name", f"{kind}_{i}")
    if not isinstance(name, str):
        raise _err(origin, f"{where}.name", f"{name!r} is not a valid source name")
    label = _label_index(s["label"], classes, origin, f"{where}.label")
    fld = s.get("field")  # None: the dataset's text field (filled in by Registry.submit)
    if fld is not None and (not isinstance(fld, str) or not fld):
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
    try:
        re.compile(pattern)
    except re.error as e:
        raise _err(origin, where, f"not a valid regular expression: {e}") from None
    if not re2_compatible(pattern):  # Python accepts both; RE2 does not
        raise _err(origin, where, "lookarounds and backreferences are not supported (RE2 syntax)")
    problem = re2_problem(pattern)
    if problem:
        raise _err(origin, where, problem)


def re2_problem(pattern: str, ignore_case: bool = False) -> str | None:
    """Why DuckDB's RE2, which runs regex sources at apply, refuses `pattern` (None: it compiles). Python's re
    accepts more (\\Z, atomic groups, possessive quantifiers, conditionals, named back-references) and no
    nesting limit, so only compiling it with the engine itself tells."""
    import duckdb  # lazy: DuckDB kept off `import mothermodel` (spec files import it)

    con = duckdb.connect()
    try:
        # A constant pattern is compiled when the statement is bound: no rows needed.
        con.execute("SELECT regexp_matches('', " + "'" + pattern.replace("'", "''") + "'"
                    + (", 'i')" if ignore_case else ")")).fetchall()
        return None
    except duckdb.Error as e:
        msg = str(e).splitlines()[0]
        return "not supported by RE2, which runs it: " + msg.split("Error: ", 1)[-1]
    finally:
        con.close()
