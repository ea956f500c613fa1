"""Typed access to ``params.yaml`` with errors that name the file and the key.

Each stage reads its own section::

    p = load_params("params.yaml")
    lr = p.section("train").value("lr", float)

A missing key or a value of the wrong type raises :class:`ParamError`
("params.yaml: train.lr: expected a number, got 'abc'"), never a deep KeyError.
:func:`load_params` checks every key of the file against :mod:`dainet.schema` first,
so a bad value anywhere stops a stage before it does any work.

A config dataclass is built from its section by the one generic loader
:meth:`Section.load`, one field per key of the same name, converted by the field's
annotation and checked against the key's schema rule::

    cfg = p.section("predict").load(MultiScaleConfig)

Numbers follow YAML 1.2 (the YAML that DVC reads and writes with ruamel): ``5e-4``,
``1e-3`` and ``+1.0e+2`` are floats, ``012`` is twelve, ``.inf`` / ``.nan`` are floats
but ``inf`` / ``nan`` / ``1e`` / ``1_000`` are strings, and only true/false are booleans.
PyYAML's plain ``safe_load`` follows YAML 1.1 and reads ``5e-4`` as the string '5e-4'.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dainet import schema
from dainet.errors import UserError


class ParamError(UserError):
    """A params key is missing or has the wrong type."""



class _Mismatch(Exception):
    """A value that does not fit an annotation (:meth:`Section.value` words the message)."""


_WHAT = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
         str: ("a string", "strings"), np.ndarray: ("an array of numbers", "arrays of numbers")}


def _what(kind) -> tuple[str, str]:
    """``kind`` in words after "expected": (singular, plural)."""
    if kind in _WHAT:
        return _WHAT[kind]
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        words = [_what(a) for a in args]
        return " or ".join(w[0] for w in words), " or ".join(w[1] for w in words)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            same = len(set(args)) == 1
            items = _what(args[0])[1] if same else "items"
            return f"a list of {len(args)} {items}", f"lists of {len(args)} {items}"
        return f"a list of {_what(args[0])[1]}", f"lists of {_what(args[0])[1]}"
    if origin is dict or dataclasses.is_dataclass(kind):
        return "a mapping of keys", "mappings of keys"
    return f"a {getattr(kind, '__name__', kind)}", f"{getattr(kind, '__name__', kind)} values"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class Section:
    """One mapping of params.yaml, addressed by its dotted path for messages."""

    def __init__(self, data: dict, path: str, source: str, reads: set | None = None):
        if not isinstance(data, dict):
            raise ParamError(f"{source}: {path or '<top>'}: expected a mapping, got {data!r}")
        self._data, self.path, self.source = data, path, source
        # the dotted keys (a section's path: all of it) read through this file's sections
        self.reads: set[str] = set() if reads is None else reads

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, what: str, val: Any):
        raise ParamError(f"{self.source}: {self._name(key)}: expected {what}, got {val!r}")

    def raw(self, key: str) -> Any:
        """The value as the file holds it (unchecked: :meth:`value` checks and converts)."""
        self.reads.add(self._name(key))
        if key not in self._data:
            raise ParamError(f"{self.source}: missing key '{self._name(key)}'")
        return self._data[key]

    def __contains__(self, key: str) -> bool:
        self.reads.add(self._name(key))
        return key in self._data

    def keys(self):
        self.reads.add(self.path)
        return self._data.keys()

    def to_dict(self) -> dict:
        self.reads.add(self.path)
        return dict(self._data)

    def section(self, key: str) -> "Section":
        if key not in self._data:
            raise ParamError(f"{self.source}: missing key '{self._name(key)}'")
        return Section(self._data[key], self._name(key), self.source, self.reads)

    # -- the generic loader ----------------------------------------------------------
    def load(self, cls, **given):
        """The dataclass ``cls`` built from this section: each field is the key of the same
        name, converted by its annotation (:meth:`value`) and checked against its rule in
        :data:`dainet.schema.SCHEMA`.

        Not read: the fields in ``given`` (derived values, values of other sections),
        taken as they are, and fields with a default (not params values, e.g. a ``source``
        for messages). A :class:`ParamError` ``"<key>: <what>"`` from ``cls.__post_init__``
        (a check across keys) comes out naming the file and the section:
        ``params.yaml: augment.ssd_crop_samplers: ...``.
        """
        hints = typing.get_type_hints(cls)
        values = dict(given)
        for f in dataclasses.fields(cls):
            if (f.init and f.name not in given and f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING):
                values[f.name] = self.value(f.name, hints[f.name])
        try:
            return cls(**values)
        except ParamError as exc:
            raise ParamError(f"{self.source}: {self._name(str(exc))}") from None

    def value(self, key: str, kind) -> Any:
        """One key, checked against its schema rule (when the schema has one), then
        converted by the annotation ``kind``: int, float (an int becomes a float), bool,
        str (null is ""), ``tuple[T, ...]`` / ``tuple[A, B]`` / ``list[T]`` from a list,
        a union (``int | str``: the first that fits), ``np.ndarray`` (float64, from nested
        lists), ``dict[str, T]`` from a mapping, a dataclass from a mapping (the
        sub-section: :meth:`load`) or from a list (its fields in order)."""
        raw = self.raw(key)
        name = self._name(key)
        found = schema.check(name, raw)
        if found:
            raise ParamError(f"{self.source}: {found[0]}")
        try:
            return self._convert(raw, kind, name)
        except _Mismatch:
            self._fail(key, _what(kind)[0], raw)

    def _convert(self, v: Any, kind, name: str) -> Any:
        origin, args = typing.get_origin(kind), typing.get_args(kind)
        if kind is bool:
            if isinstance(v, bool):
                return v
        elif kind is int:
            if _is_int(v):
                return v
        elif kind is float:
            if _is_int(v) or isinstance(v, float):
                return float(v)
        elif kind is str:
            if v is None or isinstance(v, str):
                return v or ""
        elif kind is np.ndarray:
            try:
                arr = np.asarray(v, dtype=np.float64)
            except (TypeError, ValueError):
                raise _Mismatch from None
            if arr.dtype == object or not isinstance(v, list):
                raise _Mismatch
            return arr
        elif origin in (typing.Union, types.UnionType):
            for option in args:
                try:
                    return self._convert(v, option, name)
                except _Mismatch:
                    pass
        elif origin in (tuple, list):
            if isinstance(v, (list, tuple)):
                if origin is list or args[-1] is Ellipsis:
                    items = [self._convert(x, args[0], name) for x in v]
                elif len(v) == len(args):
                    items = [self._convert(x, a, name) for x, a in zip(v, args)]
                else:
                    raise _Mismatch
                return tuple(items) if origin is tuple else items
        elif origin is dict:
            if isinstance(v, dict):
                return {k: self._convert(x, args[1], f"{name}.{k}") for k, x in v.items()}
        elif dataclasses.is_dataclass(kind):
            if isinstance(v, dict):
                return Section(v, name, self.source, self.reads).load(kind)
            fields = [f for f in dataclasses.fields(kind) if f.init]
            if isinstance(v, list) and len(v) == len(fields):
                hints = typing.get_type_hints(kind)
                return kind(*(self._convert(x, hints[f.name], name) for x, f in zip(v, fields)))
        else:
            raise TypeError(f"{name}: Section.load cannot convert to {kind!r}")
        raise _Mismatch


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, mark):
        super().__init__(f"duplicate key {key!r}")
        self.problem, self.problem_mark = f"duplicate key {key!r}", mark


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's booleans, integers and floats; no duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str):
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


_BOOL, _INT, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
Yaml12Loader.yaml_implicit_resolvers = {   # PyYAML's resolvers less its YAML 1.1 bool / int / float
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
# Added in this order: for a leading digit the int pattern is tried before the float one.
Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
Yaml12Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
Yaml12Loader.add_implicit_resolver(_FLOAT, re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def _bad_scalar(node, what: str):
    return yaml.constructor.ConstructorError(None, None, f"{node.value!r} is not {what}", node.start_mark)


def _construct_int(loader, node) -> int:
    text = loader.construct_scalar(node)
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)   # YAML 1.2: a leading zero is still decimal
    except ValueError:         # only an explicit !!int tag gets here
        raise _bad_scalar(node, "an integer") from None


def _construct_float(loader, node) -> float:
    text = loader.construct_scalar(node)
    low = text.lower()
    if low.endswith(".inf"):
        return -math.inf if low.startswith("-") else math.inf
    if low == ".nan":
        return math.nan
    try:
        return float(text)
    except ValueError:         # only an explicit !!float tag gets here
        raise _bad_scalar(node, "a number") from None


Yaml12Loader.add_constructor(_INT, _construct_int)
Yaml12Loader.add_constructor(_FLOAT, _construct_float)


def parse_yaml(text: str, source: str) -> Any:
    """YAML 1.2 text -> Python; a syntax error is one line naming the file and line."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamError(f"{source}:{where} not valid YAML ({what})") from None
    except (ValueError, TypeError) as exc:   # e.g. an explicit tag PyYAML cannot build
        raise ParamError(f"{source}: not valid YAML ({exc})") from None


def _read_tree(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParamError(f"{path}: cannot read params file ({exc.strerror})") from None
    data = parse_yaml(text, str(path))
    return {} if data is None else data


# the files load_params read in this process, each with its values then and what was read of them
_LOADED: list[tuple[Path, Section]] = []


def load_params(path: str | Path = "params.yaml") -> Section:
    """Read and check a params file: every key known, every value of its type and range.
    The values read are remembered for :func:`changed_under_us`."""
    path = Path(path)
    data = _read_tree(path)
    top = Section(data, "", str(path))   # refuses a file that is not a mapping
    found = schema.problems(data)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ParamError(f"{path}: {found[0]}{more}")
    _LOADED.append((path, Section(copy.deepcopy(data), "", str(path), top.reads)))
    return top


def forget_loaded() -> None:
    """Start a new record of the params files read (:func:`changed_under_us`)."""
    _LOADED.clear()


_ABSENT = object()


def _at(tree: Any, dotted: str) -> Any:
    for part in dotted.split(".") if dotted else ():
        if not isinstance(tree, dict) or part not in tree:
            return _ABSENT
        tree = tree[part]
    return tree


def _shown(value: Any) -> str:
    return "absent" if value is _ABSENT else repr(value)


def changed_under_us() -> str | None:
    """None when every params value this process read (through :func:`load_params`) is still
    the file's; else one line naming the keys that changed since (DVC records a stage's
    params from the file once the stage has finished: these would be recorded, not used)."""
    for path, then in _LOADED:
        try:
            now = _read_tree(path)
        except ParamError as exc:
            return f"{path} changed while this stage ran and is no longer readable ({exc})"
        keys = sorted(set().union(*(_changed_keys(_at(then._data, k), _at(now, k), k) for k in then.reads)))
        if keys:
            shown = "; ".join(f"{k}: {_shown(_at(then._data, k))} -> {_shown(_at(now, k))}" for k in keys[:5])
            more = f" (and {len(keys) - 5} more)" if len(keys) > 5 else ""
            return (f"{path} changed while this stage ran ({shown}{more}); its outputs are of the values it "
                    "read, not of those DVC would record: run it again")
    return None


def _changed_keys(a: Any, b: Any, path: str = "") -> set[str]:
    """The dotted leaf keys whose values differ between two params trees."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return {path} if _shown(a) != _shown(b) else set()
    out = set()
    for key in a.keys() | b.keys():
        dotted = f"{path}.{key}" if path else str(key)
        out |= _changed_keys(a.get(key, _ABSENT), b.get(key, _ABSENT), dotted)
    return out


# the params keys that name inputs of the pipeline, files or folders (an empty value: not used)
INPUT_KEYS = ("data.wider_root", "data.wider_gt_dir", "data.darkface_root", "data.train_list",
              "convert.vgg_src", "convert.resnet_src", "convert.dainet_src", "train_decomp.src")


def missing_inputs(top: Section, made: list[str | Path]) -> list[str]:
    """``"<key>: <path> does not exist"`` for each input of :data:`INPUT_KEYS` that is
    neither on disk nor inside ``made`` (the outputs a stage of the pipeline writes)."""
    made = [Path(m) for m in made]
    found = []
    for dotted in INPUT_KEYS:
        section, _, key = dotted.rpartition(".")
        value = top.section(section).value(key, str)
        if not value or Path(value).exists():
            continue
        if any(m == Path(value) or m in Path(value).parents for m in made):
            continue
        found.append(f"{dotted}: {value} does not exist (and no stage of the pipeline makes it)")
    return found


_ITERATION = re.compile(r"\$\{\s*(key|item)(?:\.(\w+))?\s*\}")


def _as_text(value: Any) -> str:
    """A value as DVC writes it into a string (booleans as true / false)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _iterations(name: str, foreach: Any, where: str) -> dict[str, tuple[dict, Any]]:
    """DVC's names of a ``foreach`` stage's iterations: a mapping's keys; a list's items (when
    every item is a scalar) or positions; each with what ``${key}`` / ``${item}`` stand for."""
    if isinstance(foreach, dict):
        return {_as_text(k): ({"key": _as_text(k)}, v) for k, v in foreach.items()}
    if isinstance(foreach, list):
        if any(isinstance(v, (dict, list)) for v in foreach):
            return {str(i): ({}, v) for i, v in enumerate(foreach)}
        return {_as_text(v): ({}, v) for v in foreach}
    raise UserError(f"{where}: stage {name}: foreach must be a mapping or a list (a ${{...}} reference "
                    "to params is not read here)")


def _substitute(node: Any, names: dict, item: Any, where: str) -> Any:
    """``${key}``, ``${item}`` and ``${item.<field>}`` of one iteration put into ``node``."""
    def one(m: re.Match) -> str:
        if m.group(1) == "key" and m.group(2) is None and "key" in names:
            return names["key"]
        if m.group(1) == "item" and m.group(2) is None:
            return _as_text(item)
        if m.group(1) == "item" and isinstance(item, dict) and m.group(2) in item:
            return _as_text(item[m.group(2)])
        raise UserError(f"{where}: {m.group(0)} has no value in this iteration")

    if isinstance(node, str):
        return _ITERATION.sub(one, node)
    if isinstance(node, list):
        return [_substitute(v, names, item, where) for v in node]
    if isinstance(node, dict):
        return {_substitute(k, names, item, where): _substitute(v, names, item, where) for k, v in node.items()}
    return node


def pipeline_stages(dvc_yaml: str | Path) -> dict[str, dict]:
    """The stages of the pipeline file ``dvc_yaml`` by DVC's names: a ``foreach`` stage ``s``
    as one stage per iteration, ``s@<key>`` (a mapping's keys, a list's scalar items, else
    its positions), its ``${key}``, ``${item}`` and ``${item.<field>}`` filled in; other
    ``${...}`` (params) left as written. ``matrix`` stages are refused."""
    dvc_yaml = Path(dvc_yaml)
    try:
        text = dvc_yaml.read_text()
    except OSError as exc:
        raise UserError(f"{dvc_yaml}: cannot read ({exc.strerror})") from None
    out = {}
    for name, stage in ((parse_yaml(text, str(dvc_yaml)) or {}).get("stages") or {}).items():
        if not isinstance(stage, dict):
            raise UserError(f"{dvc_yaml}: stage {name}: expected a mapping, got {stage!r}")
        if "matrix" in stage:
            raise UserError(f"{dvc_yaml}: stage {name}: matrix stages are not read here; write a foreach")
        if "foreach" not in stage:
            out[name] = stage
            continue
        if "do" not in stage:
            raise UserError(f"{dvc_yaml}: stage {name}: foreach without do")
        for key, (names, item) in _iterations(name, stage["foreach"], str(dvc_yaml)).items():
            out[f"{name}@{key}"] = _substitute(stage["do"], names, item, f"{dvc_yaml}: stage {name}@{key}")
    return out


def pipeline_outputs(dvc_yaml: str | Path) -> list[str]:
    """Every path a stage of the pipeline file ``dvc_yaml`` writes (outs, metrics, plots)."""
    return [o if isinstance(o, str) else next(iter(o)) for stage in pipeline_stages(dvc_yaml).values()
            for kind in ("outs", "metrics", "plots") for o in stage.get(kind, [])]


def write_overrides(path: str | Path, overrides: dict | None = None,
                    base: str | Path = "params.yaml") -> Path:
    """Write ``base`` to ``path`` with dotted-key overrides, as ``dvc exp run -S train.lr=...``
    does: ``{"train.lr": 1e-3}``. Every key must exist in ``base`` (a ParamError otherwise)."""
    base, path = Path(base), Path(path)
    tree = _read_tree(base)
    for dotted, value in (overrides or {}).items():
        *parents, last = dotted.split(".")
        node = tree
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise ParamError(f"{base}: has no key {dotted}")
        node[last] = value
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path
