"""Typed access to ``params.yaml`` with errors that name the file and the key.

Each stage reads its own section::

    p = load_params("params.yaml")
    lr = p.section("train").float("lr")

A missing key or a value of the wrong type raises :class:`ParamError`
("params.yaml: train.lr: expected a number, got 'abc'"), never a deep KeyError.
:func:`load_params` checks every key of the file against :mod:`dainet.schema` first,
so a bad value anywhere stops a stage before it does any work.

Numbers follow YAML 1.2 (the YAML that DVC reads and writes with ruamel): ``5e-4``,
``1e-3`` and ``+1.0e+2`` are floats, ``012`` is twelve, ``.inf`` / ``.nan`` are floats
but ``inf`` / ``nan`` / ``1e`` / ``1_000`` are strings, and only true/false are booleans.
PyYAML's plain ``safe_load`` follows YAML 1.1 and reads ``5e-4`` as the string '5e-4'.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from dainet import schema
from dainet.errors import UserError


class ParamError(UserError):
    """A params key is missing or has the wrong type."""


_MISSING = object()


class Section:
    """One mapping of params.yaml, addressed by its dotted path for messages."""

    def __init__(self, data: dict, path: str, source: str):
        if not isinstance(data, dict):
            raise ParamError(f"{source}: {path or '<top>'}: expected a mapping, got {data!r}")
        self._data, self.path, self.source = data, path, source

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, what: str, val: Any):
        raise ParamError(f"{self.source}: {self._name(key)}: expected {what}, got {val!r}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key not in self._data:
            if default is _MISSING:
                raise ParamError(f"{self.source}: missing key '{self._name(key)}'")
            return default
        return self._data[key]

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def keys(self):
        return self._data.keys()

    def to_dict(self) -> dict:
        return dict(self._data)

    def section(self, key: str) -> "Section":
        return Section(self.raw(key), self._name(key), self.source)

    def int(self, key: str, default: Any = _MISSING) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            self._fail(key, "an integer", v)
        return v

    def float(self, key: str, default: Any = _MISSING) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self._fail(key, "a number", v)
        return float(v)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            self._fail(key, "true or false", v)
        return v

    def str(self, key: str, default: Any = _MISSING) -> str:
        v = self.raw(key, default)
        if v is None:
            return ""
        if not isinstance(v, str):
            self._fail(key, "a string", v)
        return v

    def choice(self, key: str, choices, default: Any = _MISSING) -> str:
        v = self.str(key, default)
        if v not in choices:
            self._fail(key, "one of " + "|".join(choices), v)
        return v

    def list(self, key: str, of=float, length: int | None = None, default: Any = _MISSING) -> list:
        """A list whose items are ``of`` (int, float, str or ``None`` for any)."""
        v = self.raw(key, default)
        if not isinstance(v, list) or (length is not None and len(v) != length):
            self._fail(key, f"a list of {length or 'any number of'} items", v)
        if of is None:
            return list(v)
        out = []
        for item in v:
            if of is float and isinstance(item, (int, float)) and not isinstance(item, bool):
                out.append(float(item))
            elif of is int and isinstance(item, int) and not isinstance(item, bool):
                out.append(item)
            elif of is str and isinstance(item, str):
                out.append(item)
            else:
                self._fail(key, f"a list of {of.__name__}", v)
        return out

    def range(self, key: str, default: Any = _MISSING) -> tuple[float, float]:
        """A ``[low, high]`` pair with low <= high."""
        lo, hi = self.list(key, float, 2, default)
        if lo > hi:
            self._fail(key, "[low, high] with low <= high", [lo, hi])
        return lo, hi


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


def load_params(path: str | Path = "params.yaml") -> Section:
    """Read and check a params file: every key known, every value of its type and range."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParamError(f"{path}: cannot read params file ({exc.strerror})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        data = {}
    top = Section(data, "", str(path))   # refuses a file that is not a mapping
    found = schema.problems(data)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ParamError(f"{path}: {found[0]}{more}")
    return top
