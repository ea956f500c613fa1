"""params.yaml access: every stage's keys exist with the right types; clear errors."""
from pathlib import Path

import pytest

from dainet.params import ParamError, Section, load_params

ROOT = Path(__file__).resolve().parents[1]


def test_missing_key_names_file_and_key(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: 0.1\n")
    sec = load_params(p).section("train")
    with pytest.raises(ParamError, match=r"params.yaml: missing key 'train.momentum'"):
        sec.float("momentum")


def test_wrong_type_names_key_and_value(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: fast\n  steps: [1, two]\n  flag: 1\n")
    sec = load_params(p).section("train")
    with pytest.raises(ParamError, match=r"train.lr: expected a number, got 'fast'"):
        sec.float("lr")
    with pytest.raises(ParamError, match=r"train.steps: expected a list of int"):
        sec.list("steps", int)
    with pytest.raises(ParamError, match=r"train.flag: expected true or false"):
        sec.bool("flag")


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ParamError, match="cannot read params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        load_params(bad)


def test_range_and_choice():
    sec = Section({"r": [3, 1], "m": "dsfd"}, "x", "p.yaml")
    with pytest.raises(ParamError, match="low <= high"):
        sec.range("r")
    assert sec.choice("m", ("dainet", "dsfd")) == "dsfd"
    with pytest.raises(ParamError, match="one of dainet\\|cnn"):
        sec.choice("m", ("dainet", "cnn"))


@pytest.mark.parametrize("path", ["params.yaml", "params/wider.yaml"])
def test_profiles_hold_the_spec_numbers(path):
    if not (ROOT / path).exists():
        pytest.skip(f"{path} not written yet")
    p = load_params(ROOT / path)
    pri = p.section("priors")
    assert pri.list("steps", int) == [4, 8, 16, 32, 64, 128]
    assert pri.list("sizes_shot1", int) == [8, 16, 32, 64, 128, 256]
    assert pri.list("sizes_shot2", int) == [16, 32, 64, 128, 256, 512]
    assert pri.list("variances", float) == [0.1, 0.2]
    tr = p.section("train")
    assert tr.float("clip_grad_norm") == 35.0 and tr.float("match_iou") == 0.35
    assert tr.int("neg_pos_ratio") == 3 and tr.float("ref_lr_mult") == 0.1
    pr = p.section("predict")
    # the sample's small images take the top 1000 boxes into NMS (README: the sample profile)
    top_k = 5000 if path == "params/wider.yaml" else 1000
    assert (pr.float("conf_thresh"), pr.float("nms_thresh"), pr.int("top_k"), pr.int("keep_top_k")) == (0.05, 0.3, top_k, 750)
    assert pr.float("vote_iou") == 0.3
