"""The one generic loader ``Section.load``: conversion by annotation, schema checks."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pytest

from dainet.params import ParamError, Section


# ---------------------------------------------------------------- conversion by annotation

@dataclass(frozen=True)
class Limits:
    low: int
    span: tuple[float, float]


@dataclass(frozen=True)
class Level:
    min_height: float
    max_blur: int


@dataclass(frozen=True)
class Every:
    """One field of each annotation kind the loader converts."""
    count: int
    rate: float
    rate_from_int: float
    flag: bool
    name: str
    name_null: str
    ints: tuple[int, ...]
    floats: tuple[float, ...]
    pair: tuple[float, float]
    layout: tuple[int | str, ...]
    rows: list[list[float]]
    matrix: np.ndarray
    limits: Limits                  # the sub-section of the same name
    levels: dict[str, Level]        # a mapping of lists, each a dataclass by field order
    given: str
    note: str = "not a params value"


EVERY = {"count": 3, "rate": 0.5, "rate_from_int": 2, "flag": True, "name": "cv2", "name_null": None,
         "ints": [4, 8], "floats": [1, 2.5], "pair": [0, 1], "layout": [64, "M", 128, "C"],
         "rows": [[1, 2], [3.5]], "matrix": [[1, 0], [0, 2]], "limits": {"low": 1, "span": [2, 3]},
         "levels": {"easy": [50, 1], "hard": [10, 2]}, "note": "ignored: the field has a default"}


def _types(v):
    """``v`` with every leaf replaced by its type, to compare types exactly."""
    if isinstance(v, (tuple, list)):
        return type(v), [_types(x) for x in v]
    if dataclasses.is_dataclass(v):
        return type(v), {f.name: _types(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: _types(x) for k, x in v.items()}
    return type(v)


def test_load_converts_each_annotation_kind():
    cfg = Section(EVERY, "x", "p.yaml").load(Every, given="from elsewhere")
    assert cfg.count == 3 and cfg.rate == 0.5 and cfg.rate_from_int == 2.0 and cfg.flag is True
    assert cfg.name == "cv2" and cfg.name_null == ""
    assert cfg.ints == (4, 8) and cfg.floats == (1.0, 2.5) and cfg.pair == (0.0, 1.0)
    assert cfg.layout == (64, "M", 128, "C") and cfg.rows == [[1.0, 2.0], [3.5]]
    assert cfg.matrix.dtype == np.float64 and cfg.matrix.shape == (2, 2) and cfg.matrix.tolist() == [[1, 0], [0, 2]]
    assert cfg.limits == Limits(1, (2.0, 3.0))
    assert cfg.levels == {"easy": Level(50.0, 1), "hard": Level(10.0, 2)} and list(cfg.levels) == ["easy", "hard"]
    assert cfg.given == "from elsewhere" and cfg.note == "not a params value"
    # types exactly: an int where a float belongs would change float32 arithmetic downstream
    assert _types(cfg.rate_from_int) is float and _types(cfg.floats) == (tuple, [float, float])
    assert _types(cfg.layout) == (tuple, [int, str, int, str]) and _types(cfg.rows) == (list, [(list, [float, float]),
                                                                                            (list, [float])])
    assert _types(cfg.limits) == (Limits, {"low": int, "span": (tuple, [float, float])})
    assert _types(cfg.levels) == {"easy": (Level, {"min_height": float, "max_blur": int}),
                                  "hard": (Level, {"min_height": float, "max_blur": int})}


@pytest.mark.parametrize("key,value,message", [
    ("count", 1.5, "x.count: expected an integer, got 1.5"),
    ("count", True, "x.count: expected an integer, got True"),
    ("rate", "fast", "x.rate: expected a number, got 'fast'"),
    ("flag", 1, "x.flag: expected true or false, got 1"),
    ("name", 7, "x.name: expected a string, got 7"),
    ("ints", [4, 8.0], "x.ints: expected a list of integers, got [4, 8.0]"),
    ("pair", [1, 2, 3], "x.pair: expected a list of 2 numbers, got [1, 2, 3]"),
    ("layout", [64, 1.5], "x.layout: expected a list of integers or strings, got [64, 1.5]"),
    ("matrix", [[1, 0], [0]], "x.matrix: expected an array of numbers, got [[1, 0], [0]]"),
    ("levels", {"easy": [50]}, "x.levels: expected a mapping of keys, got {'easy': [50]}"),
    ("limits", {"low": 1.5, "span": [2, 3]}, "x.limits.low: expected an integer, got 1.5"),
    ("limits", {"span": [2, 3]}, "missing key 'x.limits.low'"),
])
def test_a_value_that_does_not_fit_its_annotation_is_one_line_naming_file_and_key(key, value, message):
    with pytest.raises(ParamError) as exc:
        Section({**EVERY, key: value}, "x", "p.yaml").load(Every, given="")
    assert str(exc.value) == f"p.yaml: {message}"


def test_given_fields_and_fields_with_a_default_are_not_read():
    data = {k: v for k, v in EVERY.items() if k != "count"}
    cfg = Section(data, "x", "p.yaml").load(Every, given="g", count=99)
    assert cfg.count == 99 and cfg.note == "not a params value"
    with pytest.raises(ParamError, match=r"^p.yaml: missing key 'x.given'$"):
        Section(EVERY, "x", "p.yaml").load(Every)


# ---------------------------------------------------------------- schema checks without load_params

@dataclass(frozen=True)
class Lr:
    lr: float


@pytest.mark.parametrize("path,data,message", [
    ("train", {"lr": -0.001}, "train.lr: expected a number > 0, got -0.001"),
    ("train", {"lr": "5e-4x"}, "train.lr: expected a number > 0, got '5e-4x'"),
    ("train", {}, "missing key 'train.lr'"),
])
def test_a_section_built_without_load_params_gets_the_schema_checks(path, data, message):
    with pytest.raises(ParamError) as exc:
        Section(data, path, "params.yaml").load(Lr)
    assert str(exc.value) == f"params.yaml: {message}"
