"""The one generic loader ``Section.load``: conversion by annotation, schema checks, no defaults."""
from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dainet.data.augment import AugmentConfig
from dainet.data.sample import DifficultyRule, SampleConfig
from dainet.data.synth import LowLightConfig, SceneConfig
from dainet.inference.multiscale import MultiScaleConfig
from dainet.params import ParamError, Section, load_params

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [ROOT / "params.yaml", ROOT / "params" / "wider.yaml"]

# Every params config class, the section it is loaded from, and the fields its callers give
# (values of other sections, derived ones) instead of reading them.
CONFIGS = [
    ("dainet.training.config:TrainConfig", "train", ("image_size", "losses")),
    ("dainet.training.objective:LossWeights", "train", ()),
    ("dainet.training.decomp:DecompTrainConfig", "train_decomp", ()),
    ("dainet.models.config:ModelConfig", "model", ()),
    ("dainet.inference.multiscale:MultiScaleConfig", "predict", ()),
    ("dainet.data.sample:SampleConfig", "sample", ("scene",)),
    ("dainet.data.synth:SceneConfig", "sample", ()),
    ("dainet.data.synth:LowLightConfig", "sample.dark", ()),
    ("dainet.data.darkisp:DarkISPConfig", "darkisp", ()),
    ("dainet.data.augment:AugmentConfig", "augment", ()),
    ("dainet.boxes.priors:PriorSpec", "priors", ("sizes", "downsampling")),
]


def _class(name: str):
    module, cls = name.split(":")
    return getattr(importlib.import_module(module), cls)


def _section(path: Path, dotted: str) -> Section:
    sec = load_params(path)
    for key in dotted.split("."):
        sec = sec.section(key)
    return sec


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


def _edited(section: str, **values) -> Section:
    """A section of params.yaml with ``values`` replaced, not checked by load_params."""
    sec = _section(ROOT / "params.yaml", section)
    return Section({**sec.to_dict(), **values}, sec.path, "params.yaml")


@pytest.mark.parametrize("section,cls,values,message", [
    ("predict", MultiScaleConfig, {"single_scale": "yes"}, "predict.single_scale: expected true or false, got 'yes'"),
    ("predict", MultiScaleConfig, {"top_k": 0}, "predict.top_k: expected an integer >= 1, got 0"),
    ("predict", MultiScaleConfig, {"top_k": None}, "predict.top_k: expected an integer >= 1, got None"),
    ("predict", MultiScaleConfig, {"shrink_scales": [0.5]},
     "predict.shrink_scales: expected a list of 2 numbers > 0, got [0.5]"),
    ("augment", AugmentConfig, {"flip_prob": 1.5}, "augment.flip_prob: expected a number in [0, 1], got 1.5"),
    ("augment", AugmentConfig, {"anchor_pad": "bottom"},
     "augment.anchor_pad: expected one of all_sides|top_left, got 'bottom'"),
    ("sample.dark", LowLightConfig, {"jpeg_quality": [55, 101]},
     "sample.dark.jpeg_quality: expected [low, high] with low <= high, integers in 1..100, got [55, 101]"),
    ("sample", SceneConfig, {"image_side": [512, 256]},
     "sample.image_side: expected [low, high] with low <= high, integers >= 16, got [512, 256]"),
])
def test_configs_refuse_bad_values_with_the_schema_message(section, cls, values, message):
    with pytest.raises(ParamError) as exc:
        _edited(section, **values).load(cls)
    assert str(exc.value) == f"params.yaml: {message}"


def test_missing_key_of_a_config_names_file_and_dotted_key():
    sec = _section(ROOT / "params.yaml", "predict").to_dict()
    del sec["enlarge_extra"]   # optional (a default) before the loader; every key is needed now
    with pytest.raises(ParamError) as exc:
        Section(sec, "predict", "params.yaml").load(MultiScaleConfig)
    assert str(exc.value) == "params.yaml: missing key 'predict.enlarge_extra'"


def test_nested_sections_are_loaded_and_checked_at_their_path():
    sample = _edited("sample", dark={**_section(ROOT / "params.yaml", "sample.dark").to_dict(), "gamma": [0, 2]},
                     difficulty={"easy": [50, 1, 1], "hard": [10, 2]})
    with pytest.raises(ParamError) as exc:
        sample.load(SampleConfig, scene=sample.load(SceneConfig))
    assert str(exc.value) == ("params.yaml: sample.dark.gamma: expected [low, high] with low <= high, "
                              "numbers > 0, got [0, 2]")
    sample = _edited("sample", difficulty={"easy": [50, 1, 1], "hard": [10, 2]})
    with pytest.raises(ParamError) as exc:
        sample.load(SampleConfig, scene=sample.load(SceneConfig))
    assert str(exc.value) == "params.yaml: sample.difficulty.hard: expected a list of 3 numbers >= 0, got [10, 2]"


@pytest.mark.parametrize("section,cls,values,message", [
    ("augment", AugmentConfig, {"ssd_crop_samplers": 0, "ssd_crop_full_sampler": False},
     "augment.ssd_crop_samplers: expected at least one SSD crop sampler "
     "(ssd_crop_samplers + ssd_crop_full_sampler >= 1), got 0 and false"),
    ("sample", SampleConfig, {"difficulty": {"easy": [50, 1, 1], "hard": [60, 2, 2]}},
     "sample.difficulty: expected levels from easy to hard with relaxing limits (hard ⊇ medium ⊇ easy)"),
])
def test_checks_across_keys_name_file_and_key(section, cls, values, message):
    sec = _edited(section, **values)
    given = {"scene": sec.load(SceneConfig)} if cls is SampleConfig else {}
    with pytest.raises(ParamError) as exc:
        sec.load(cls, **given)
    assert str(exc.value) == f"params.yaml: {message}"


def test_normalisations_of_the_old_readers_are_kept():
    aug = _edited("augment", anchor_scales=[64, 16, 32]).load(AugmentConfig)
    assert aug.anchor_scales == (16, 32, 64)
    sample = _section(ROOT / "params.yaml", "sample")
    cfg = sample.load(SampleConfig, scene=sample.load(SceneConfig))
    assert cfg.difficulty == {"easy": DifficultyRule(50.0, 1, 1), "medium": DifficultyRule(30.0, 2, 2),
                              "hard": DifficultyRule(10.0, 2, 2)}
    assert type(cfg.difficulty["easy"].min_height) is float and type(cfg.difficulty["easy"].max_blur) is int
    assert cfg.scene.face_size == (8.0, 256.0) and type(cfg.scene.face_size[0]) is float


# ---------------------------------------------------------------- each value written once

def test_no_config_has_a_default_for_a_key_the_params_files_hold():
    for name, section, given in CONFIGS:
        cls = _class(name)
        keys = set().union(*(_section(p, section).keys() for p in PROFILES))
        for f in dataclasses.fields(cls):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            assert not (has_default and f.name in keys), f"{name}.{f.name}: a default for params key {section}.{f.name}"
            if not has_default and f.name not in given:
                assert f.name in keys, f"{name}.{f.name}: no key {section}.{f.name} in the params files"


def _holds(value, hint) -> bool:
    """Whether ``value`` is what the annotation ``hint`` says (recursively)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_holds(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if args and args[-1] is Ellipsis:
            return all(_holds(v, args[0]) for v in value)
        return len(value) == len(args) and all(_holds(v, a) for v, a in zip(value, args))
    if origin is list:
        return isinstance(value, list) and all(_holds(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_holds(v, args[1]) for v in value.values())
    if hint is float:
        return type(value) is float
    if hint is int:
        return type(value) is int
    return isinstance(value, hint)


@pytest.mark.parametrize("path", PROFILES, ids=["params.yaml", "wider.yaml"])
def test_every_config_loads_from_both_profiles_and_holds_what_it_declares(path):
    from dainet.training.objective import LossWeights
    params = load_params(path)
    built = {}
    given_values = {   # as the stages give them
        "image_size": lambda sec: params.section("augment").value("image_size", int),
        "losses": lambda sec: sec.load(LossWeights),
        "scene": lambda sec: sec.load(SceneConfig),
        "sizes": lambda sec: sec.value("sizes_shot2", tuple[float, ...]),
        "downsampling": lambda sec: built["ModelConfig"].level_downsampling,
    }
    for name, section, given in CONFIGS:
        cls = _class(name)
        sec = _section(path, section)
        built[cls.__name__] = cfg = sec.load(cls, **{k: given_values[k](sec) for k in given})
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert _holds(getattr(cfg, f.name), hints[f.name]), f"{name}.{f.name}: {getattr(cfg, f.name)!r}"
