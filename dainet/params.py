"""Typed access to ``params.yaml`` with errors that name the file and the key.

Each stage reads its own section::

    p = load_params("params.yaml")
    lr = p.section("train").float("lr")

A missing key or a value of the wrong type raises :class:`ParamError`
("params.yaml: train.lr: expected a number, got 'abc'"), never a deep KeyError.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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


def load_params(path: str | Path = "params.yaml") -> Section:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ParamError(f"{path}: cannot read params file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML: {exc}") from None
    return Section(data, "", str(path))
