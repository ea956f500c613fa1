"""params.yaml: YAML 1.2 numbers, every key checked (type, range, choice) by load_params, clear errors."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY, write_params
from dainet import schema
from dainet.params import ParamError, Section, load_params, parse_yaml, write_overrides

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [ROOT / "params.yaml", ROOT / "params" / "wider.yaml"]


# ---------------------------------------------------------------- typed access (Section)

def test_missing_key_names_file_and_key(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: 0.1\n")
    sec = load_params(p).section("train")
    with pytest.raises(ParamError, match=r"params.yaml: missing key 'train.momentum'"):
        sec.value("momentum", float)


def test_wrong_type_names_key_and_value():
    """Keys without a schema rule are checked by the annotation, keys with one by the rule."""
    sec = Section({"speed": "fast", "steps": [1, "two"], "flag": 1, "lr": "fast"}, "train", "params.yaml")
    with pytest.raises(ParamError, match=r"^params.yaml: train.speed: expected a number, got 'fast'$"):
        sec.value("speed", float)
    with pytest.raises(ParamError, match=r"^params.yaml: train.steps: expected a list of integers, got \[1, 'two'\]$"):
        sec.value("steps", list[int])
    with pytest.raises(ParamError, match=r"^params.yaml: train.flag: expected true or false, got 1$"):
        sec.value("flag", bool)
    with pytest.raises(ParamError, match=r"^params.yaml: train.lr: expected a number > 0, got 'fast'$"):
        sec.value("lr", float)


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ParamError, match="cannot read params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 0.1\n  steps: [unclosed\n")
    with pytest.raises(ParamError) as exc:
        load_params(bad)
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith(f"{bad}: line ") and "not valid YAML" in str(exc.value)


def test_duplicate_key_is_an_error_naming_its_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  lr: 0.1\n  seed: 0\n  lr: 0.2\n")   # PyYAML alone keeps the last lr silently
    with pytest.raises(ParamError, match=r"params.yaml: line 4: not valid YAML \(duplicate key 'lr'\)"):
        load_params(p)


def test_range_and_choice_by_their_schema_rules():
    dark = Section({"gamma": [3, 1]}, "sample.dark", "p.yaml")
    with pytest.raises(ParamError, match=r"^p.yaml: sample.dark.gamma: expected \[low, high\] with low <= high"):
        dark.value("gamma", tuple[float, float])
    assert Section({"gamma": [1, 3]}, "sample.dark", "p.yaml").value("gamma", tuple[float, float]) == (1.0, 3.0)
    train = Section({"method": "dsfd", "optimizer": "cnn"}, "train", "p.yaml")
    assert train.value("method", str) == "dsfd"
    with pytest.raises(ParamError, match=r"^p.yaml: train.optimizer: expected one of sgd\|adamw, got 'cnn'$"):
        train.value("optimizer", str)


@pytest.mark.parametrize("path", ["params.yaml", "params/wider.yaml"])
def test_profiles_hold_the_spec_numbers(path):
    p = load_params(ROOT / path)
    pri = p.section("priors")
    assert pri.value("steps", list[int]) == [4, 8, 16, 32, 64, 128]
    assert pri.value("sizes_shot1", list[int]) == [8, 16, 32, 64, 128, 256]
    assert pri.value("sizes_shot2", list[int]) == [16, 32, 64, 128, 256, 512]
    assert pri.value("variances", list[float]) == [0.1, 0.2]
    tr = p.section("train")
    assert tr.value("clip_grad_norm", float) == 35.0 and tr.value("match_iou", float) == 0.35
    assert tr.value("neg_pos_ratio", int) == 3 and tr.value("ref_lr_mult", float) == 0.1
    pr = p.section("predict")
    # the sample's small images take the top 1000 boxes into NMS (docs/profiles.md: the sample recipe)
    top_k = 5000 if path == "params/wider.yaml" else 1000
    assert (pr.value("conf_thresh", float), pr.value("nms_thresh", float), pr.value("top_k", int), pr.value("keep_top_k", int)) == (0.05, 0.3, top_k, 750)
    assert pr.value("vote_iou", float) == 0.3


# ---------------------------------------------------------------- YAML 1.2 numbers

YAML12 = [   # scalar text -> value under YAML 1.2 (core schema)
    ("5e-4", 5e-4), ("1e-3", 1e-3), ("1e3", 1000.0), ("-5e-4", -5e-4), (".5", 0.5), ("+1.0e+2", 100.0),
    ("1.0e-10", 1e-10), ("2E5", 2e5), ("3.", 3.0), ("-.5", -0.5),
    (".inf", math.inf), ("-.Inf", -math.inf), ("+.INF", math.inf), (".nan", math.nan),
    ("7", 7), ("-3", -3), ("+12", 12), ("012", 12), ("0o17", 15), ("0x1F", 31),
    ("true", True), ("False", False), ("null", None), ("~", None),
    # strings under YAML 1.2
    ("inf", "inf"), ("nan", "nan"), ("1e", "1e"), ("e3", "e3"), ("version", "version"), ("1.2.3", "1.2.3"),
    ("yes", "yes"), ("off", "off"), ("1_000", "1_000"), ("1:30", "1:30"), ("0b101", "0b101"),
]


@pytest.mark.parametrize("text,value", YAML12, ids=[t for t, _ in YAML12])
def test_scalars_follow_yaml_1_2(text, value):
    got = parse_yaml(f"k: {text}\n", "p.yaml")["k"]
    if isinstance(value, float) and math.isnan(value):
        assert isinstance(got, float) and math.isnan(got)
    else:
        assert got == value and type(got) is type(value)


def test_yaml_1_2_agrees_with_dvcs_ruamel_reader():
    """DVC reads params.yaml with ruamel (YAML 1.2): for these forms both readers agree."""
    from ruamel.yaml import YAML
    text = "".join(f"k{i}: {t}\n" for i, (t, _) in enumerate(YAML12) if t not in ("1_000", "0b101"))
    ours, theirs = parse_yaml(text, "p.yaml"), YAML(typ="safe").load(text)
    same = {k: (v if not (isinstance(v, float) and math.isnan(v)) else "nan!") for k, v in ours.items()}
    assert same == {k: (v if not (isinstance(v, float) and math.isnan(v)) else "nan!") for k, v in theirs.items()}


def test_hand_written_exponent_is_a_number(tmp_path):
    p = write_params(tmp_path / "params.yaml", TINY)
    text = p.read_text()
    assert "  lr: 0.001\n" in text            # train_decomp.lr and train.lr, as yaml.safe_dump wrote them
    p.write_text(text.replace("  lr: 0.001\n", "  lr: 5e-4\n"))
    params = load_params(p)
    assert params.section("train").value("lr", float) == 5e-4
    assert params.section("train_decomp").value("lr", float) == 5e-4


def test_params_written_by_dvc_exp_run_set_param(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml with ruamel: small floats lose the dot."""
    from dvc.utils.hydra import apply_overrides
    p = write_params(tmp_path / "params.yaml", TINY)
    apply_overrides(str(p), ["train.lr=1e-3", "model.l2norm_eps=1e-12", "predict.conf_thresh=2e-5",
                             "darkisp.eps=1e-9"])
    text = p.read_text()
    assert "l2norm_eps: 1e-12" in text and "conf_thresh: 2e-05" in text and "eps: 1e-09" in text
    params = load_params(p)
    assert params.section("train").value("lr", float) == 1e-3
    assert params.section("model").value("l2norm_eps", float) == 1e-12
    assert params.section("predict").value("conf_thresh", float) == 2e-5
    assert params.section("darkisp").value("eps", float) == 1e-9


# ---------------------------------------------------------------- every key checked by load_params

@pytest.mark.parametrize("path", PROFILES, ids=["params.yaml", "wider.yaml"])
def test_profiles_validate_and_every_key_has_a_rule(path):
    load_params(path)
    tree = yaml.safe_load(path.read_text())

    def keys(node, rules, prefix=""):
        out = set()
        for k, v in rules.items():
            out.add(prefix + k)
            if isinstance(v, schema.Rules):
                out |= keys(node.get(k, {}), v, f"{prefix}{k}.")
        return out
    in_file = set()

    def walk(node, rules, prefix=""):
        for k, v in node.items():
            in_file.add(prefix + k)
            if isinstance(rules.get(k), schema.Rules):
                walk(v, rules[k], f"{prefix}{k}.")
    walk(tree, schema.SCHEMA)
    assert keys(tree, schema.SCHEMA) == in_file   # no rule without its key, no key without a rule


def test_test_profiles_validate(tmp_path):
    load_params(write_params(tmp_path / "tiny.yaml", TINY))


@pytest.mark.parametrize("key,value", [("data.train_list", ""), ("data.train_list", None),
                                       ("convert.vgg_src", ""), ("convert.dainet_src", None),
                                       ("train_decomp.src", "")])
def test_empty_or_null_paths_keep_working(tmp_path, key, value):
    sec, name = key.split(".")
    p = load_params(write_params(tmp_path / "p.yaml", {key: value}))
    assert p.section(sec).value(name, str) == ""


BAD = [   # (key, value, message after "<file>: ")
    ("train.checkpoint_every", 0, "train.checkpoint_every: expected an integer >= 1, got 0"),
    ("train.log_every", 0, "train.log_every: expected an integer >= 1, got 0"),
    ("train.max_iter", 0, "train.max_iter: expected an integer >= 1, got 0"),
    ("train.max_iter", -5, "train.max_iter: expected an integer >= 1, got -5"),
    ("train.max_iter", 1000.0, "train.max_iter: expected an integer >= 1, got 1000.0"),
    ("train.num_workers", -1, "train.num_workers: expected an integer >= 0, got -1"),
    ("train.lr", 0, "train.lr: expected a number > 0, got 0"),
    ("train.lr", -5e-4, "train.lr: expected a number > 0, got -0.0005"),
    ("train.lr", "5e-4x", "train.lr: expected a number > 0, got '5e-4x'"),
    ("train.lr", math.inf, "train.lr: expected a finite number > 0, got inf"),
    ("train.momentum", 1.0, "train.momentum: expected a number in [0, 1), got 1.0"),
    ("train.batch_size", 0, "train.batch_size: expected an integer >= 1, got 0"),
    ("train_decomp.batch_size", 0, "train_decomp.batch_size: expected an integer >= 1, got 0"),
    ("train.method", "yolo", "train.method: expected one of dainet|dsfd, got 'yolo'"),
    ("train.ssim_window", 10, "train.ssim_window: expected an odd integer >= 1, got 10"),
    ("train.lr_steps", [100, "x"], "train.lr_steps: expected a list of any number of integers >= 1, got [100, 'x']"),
    ("predict.top_k", 0, "predict.top_k: expected an integer >= 1, got 0"),
    ("predict.keep_top_k", 0, "predict.keep_top_k: expected an integer >= 1, got 0"),
    ("predict.conf_thresh", 1.5, "predict.conf_thresh: expected a number in [0, 1], got 1.5"),
    ("predict.conf_thresh", -0.1, "predict.conf_thresh: expected a number in [0, 1], got -0.1"),
    ("predict.nms_thresh", 0, "predict.nms_thresh: expected a number in (0, 1], got 0"),
    ("predict.shrink_scales", [0.5], "predict.shrink_scales: expected a list of 2 numbers > 0, got [0.5]"),
    ("predict.enlarge_factor", 1.0, "predict.enlarge_factor: expected a number > 1, got 1.0"),
    ("predict.single_scale", "yes", "predict.single_scale: expected true or false, got 'yes'"),
    ("predict.max_skipped_images", -1, "predict.max_skipped_images: expected an integer >= 0, got -1"),
    ("evaluate.iou_thresh", 0, "evaluate.iou_thresh: expected a number in (0, 1], got 0"),
    ("evaluate.thresholds", 0, "evaluate.thresholds: expected an integer >= 1, got 0"),
    ("evaluate.max_missing_predictions", -1, "evaluate.max_missing_predictions: expected an integer >= 0, got -1"),
    ("data.max_bad_images", -1, "data.max_bad_images: expected an integer >= 0, got -1"),
    ("data.max_missing_images", 0.5, "data.max_missing_images: expected an integer >= 0, got 0.5"),
    ("data.wider_root", "", "data.wider_root: expected a non-empty string, got ''"),
    ("model.norm", "layer", "model.norm: expected one of none|batch|group, got 'layer'"),
    ("model.width", 0, "model.width: expected a number > 0, got 0"),
    ("model.extras_cfg", [256, 512, 128], "model.extras_cfg: expected a list of 4 integers >= 1, got [256, 512, 128]"),
    ("model.vgg_cfg", [64, "X"], "model.vgg_cfg: expected a list of 1 or more integers >= 1 or names from M|C, "
                                 "got [64, 'X']"),
    ("model.decomp_kernel", 4, "model.decomp_kernel: expected an odd integer >= 1, got 4"),
    ("priors.steps", [4, 8], "priors.steps: expected a list of 6 integers >= 1, got [4, 8]"),
    ("priors.variances", [0.1, 0], "priors.variances: expected a list of 2 numbers > 0, got [0.1, 0]"),
    ("augment.flip_prob", 1.5, "augment.flip_prob: expected a number in [0, 1], got 1.5"),
    ("augment.image_size", 0, "augment.image_size: expected an integer >= 1, got 0"),
    ("augment.image_size", 7, "augment.image_size: expected an integer >= 28, the smallest training crop that "
                              "leaves every detection level at least one cell after the pools of model.vgg_cfg "
                              "(M, M, C, M, M), got 7"),
    ("augment.anchor_pad", "bottom", "augment.anchor_pad: expected one of all_sides|top_left, got 'bottom'"),
    ("augment.contrast_range", [1.5, 0.5], "augment.contrast_range: expected [low, high] with low <= high, "
                                           "numbers >= 0, got [1.5, 0.5]"),
    ("darkisp.darkness_std", 0, "darkisp.darkness_std: expected a number > 0, got 0"),
    ("darkisp.rgb2xyz", [[1, 0, 0]], "darkisp.rgb2xyz: expected a 3x3 matrix of numbers, got [[1, 0, 0]]"),
    ("sample.blur_prob", 1.5, "sample.blur_prob: expected a number in [0, 1], got 1.5"),
    ("sample.image_side", [512, 256], "sample.image_side: expected [low, high] with low <= high, "
                                      "integers >= 16, got [512, 256]"),
    ("sample.dark.jpeg_quality", [55, 101], "sample.dark.jpeg_quality: expected [low, high] with low <= high, "
                                            "integers in 1..100, got [55, 101]"),
    ("sample.difficulty", {"easy": [50, 1]}, "sample.difficulty.easy: expected a list of 3 numbers >= 0, "
                                             "got [50, 1]"),
    ("convert.neck_init", "he", "convert.neck_init: expected one of xavier|kaiming, got 'he'"),
    ("visualize.n_images", 0, "visualize.n_images: expected an integer >= 1, got 0"),
    ("visualize.feature_layers", ["of1", "of9"], "visualize.feature_layers: unknown ['of9']; choose from "
                                                 "x_shallow, of1, of2, of3, of4, of5, of6, ef1, ef2, ef3, ef4, ef5, ef6"),
]


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_is_refused_by_load_params_naming_key_and_range(tmp_path, key, value, message):
    p = write_params(tmp_path / "params.yaml", {**TINY, key: value})
    with pytest.raises(ParamError) as exc:
        load_params(p)
    assert str(exc.value) == f"{p}: {message}"


@pytest.mark.parametrize("size, ok", [(27, False), (28, True), (29, True), (128, True), (640, True)])
def test_training_crop_too_small_for_the_backbone_names_augment_image_size(tmp_path, size, ok):
    """`augment.image_size: 7` used to reach training, which failed building its priors
    ("input of 7x7 pixels is too small for the backbone") without naming the key."""
    from dainet.boxes.priors import both_shots
    from dainet.models.config import ModelConfig

    p = write_params(tmp_path / "params.yaml", {**TINY, "augment.image_size": size})
    if not ok:
        with pytest.raises(ParamError, match=rf"^{p}: augment.image_size: expected an integer >= 28, .*got {size}$"):
            load_params(p)
        return
    params = load_params(p)
    shots = both_shots(params.section("priors"), params.section("model").load(ModelConfig))
    assert all(spec.fits((size, size)) for spec in shots)   # what training builds from the size


@pytest.mark.parametrize("pools", [("M", "M", "C", "M", "M"), ("M",) * 5, ("C",) * 5, ("C", "M", "M", "C", "C")])
def test_smallest_input_side_is_where_the_priors_start_to_fit(pools):
    from dainet.boxes.priors import PriorSpec
    from dainet.models.config import ModelConfig
    from helpers import paper_model

    vgg_cfg = [64, pools[0], 64, pools[1], 64, pools[2], 64, pools[3], 64, pools[4]]
    model = paper_model(vgg_cfg=tuple(vgg_cfg))
    assert isinstance(model, ModelConfig)
    spec = PriorSpec(steps=(4, 8, 16, 32, 64, 128), sizes=(16,) * 6, variances=(0.1, 0.2), clip=False,
                     downsampling=model.level_downsampling)
    side = schema.smallest_input_side(vgg_cfg)
    assert spec.fits((side, side)) and not spec.fits((side - 1, side - 1))


def test_augment_image_size_refused_by_the_train_stage_naming_the_key(tmp_path, capsys):
    from conftest import stage_main
    from dainet.cli import run

    p = write_params(tmp_path / "params.yaml", {**TINY, "augment.image_size": 7})
    argv = [a for flag in ("--train-list", "--val-list", "--init", "--decomp", "--checkpoints", "--out",
                           "--metrics", "--plots") for a in (flag, str(tmp_path / "unused"))]
    with pytest.raises(SystemExit) as exc:
        run(stage_main("train"), argv + ["--params", str(p)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {p}: augment.image_size: expected an integer >= 28")


def test_several_problems_report_the_first_and_count_the_rest(tmp_path):
    p = write_params(tmp_path / "params.yaml", {"train.log_every": 0, "predict.top_k": 0, "visualize.n_images": 0})
    with pytest.raises(ParamError) as exc:
        load_params(p)
    assert str(exc.value) == f"{p}: train.log_every: expected an integer >= 1, got 0 (and 2 more)"


def _with(tmp_path, edit) -> Path:
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(tree)
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(tree, sort_keys=False))
    return p


@pytest.mark.parametrize("edit,message", [
    (lambda t: t["train"].update(lerning_rate=1e-3), "train.lerning_rate: unknown key (did you mean 'train.lr'?)"),
    (lambda t: t["train"].update(learning_rate=1e-3), "train.learning_rate: unknown key (did you mean 'train.lr'?)"),
    (lambda t: t["train"].update(checkpoint_evry=10),
     "train.checkpoint_evry: unknown key (did you mean 'train.checkpoint_every'?)"),
    (lambda t: t["sample"]["dark"].update(gama=[1, 2]), "sample.dark.gama: unknown key (did you mean 'sample.dark.gamma'?)"),
    (lambda t: t.update(trian={"lr": 1}), "trian: unknown section (did you mean 'train'?)"),
    (lambda t: t["predict"].update(zzz=1), "predict.zzz: unknown key"),
    (lambda t: t.update(model=[1, 2]), "model: expected a mapping of keys, got [1, 2]"),
], ids=["lerning_rate", "learning_rate", "checkpoint_evry", "nested", "section", "no-guess", "not-a-mapping"])
def test_unknown_keys_name_the_closest_known_key(tmp_path, edit, message):
    p = _with(tmp_path, edit)
    with pytest.raises(ParamError) as exc:
        load_params(p)
    assert str(exc.value) == f"{p}: {message}"


def test_choices_agree_with_the_readers():
    """The schema repeats the readers' choices (so checking needs no Jittor); they must agree."""
    from dainet.data import augment
    from dainet.models import config
    from dainet.models.dainet import ENHANCED_NAMES, SOURCE_NAMES
    from dainet.training.optim import OPTIMIZERS
    assert schema.NORMS == config.NORMS and schema.NORM_SCOPES == config.NORM_SCOPES
    assert schema.BACKBONES == config.BACKBONES and set(config.RESNET_BLOCKS) == set(config.BACKBONES[1:])
    assert schema.POOLS == (config.POOL, config.POOL_CEIL)
    for name in ("HUE_ROUNDING", "ANCHOR_VALID", "ANCHOR_PAD", "ANCHOR_FALLBACK", "RESIZE_FILTERS",
                 "MIN_FACE_FILTER"):
        assert getattr(schema, name) == getattr(augment, name), name
    assert tuple(schema.OPTIMIZERS) == tuple(OPTIMIZERS)
    assert schema.FEATURE_LAYERS == ("x_shallow",) + SOURCE_NAMES + ENHANCED_NAMES


def test_train_choices_are_read_by_train_config():
    from dainet.training.config import TrainConfig
    from dainet.training.objective import LossWeights
    base = load_params(ROOT / "params.yaml")
    for key, options in (("method", schema.METHODS), ("dsfd_input", schema.DSFD_INPUTS),
                         ("device", schema.DEVICES), ("lr_schedule", schema.LR_SCHEDULES)):
        for option in options:
            sec = Section({**base.section("train").to_dict(), key: option}, "train", "p.yaml")
            cfg = sec.load(TrainConfig, image_size=base.section("augment").value("image_size", int),
                           losses=sec.load(LossWeights))
            assert getattr(cfg, key) == option


# ---------------------------------------------------------------- a bad file fails before Jittor loads

def test_importing_params_does_not_import_jittor():
    code = "import dainet.params, sys; assert 'jittor' not in sys.modules, 'jittor imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


STAGE_ARGS = {   # the required arguments of each stage; nothing they name needs to exist
    "check": ["--dvc-yaml", "{tmp}/dvc.yaml", "--out", "{tmp}/checked"],
    "convert_weights": ["--dst", "{tmp}/init.ckpt"],
    "sample": ["--out", "{tmp}/sample"],
    "train_decomp": ["--train-list", "{tmp}/t.txt", "--val-list", "{tmp}/v.txt", "--out", "{tmp}/d.ckpt",
                     "--metrics", "{tmp}/m.json", "--plots", "{tmp}/plots"],
    "visualize": ["--weights", "{tmp}/w.ckpt", "--clean-list", "{tmp}/c.txt", "--dark-list", "{tmp}/d.txt",
                  "--out", "{tmp}/vis"],
}


@pytest.mark.parametrize("stage", sorted(STAGE_ARGS))
def test_stage_with_bad_params_fails_in_one_line_before_importing_jittor(tmp_path, stage):
    p = write_params(tmp_path / "params.yaml", {**TINY, "train.checkpoint_every": 0})
    args = [a.format(tmp=tmp_path) for a in STAGE_ARGS[stage]]
    # -X importtime lists every module the process imported, on stderr
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", f"stages.{stage}", *args,
                        "--params", str(p)], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    imports = [line for line in r.stderr.splitlines() if line.startswith("import time:")]
    said = [line for line in r.stderr.splitlines() if not line.startswith("import time:")]
    assert r.returncode == 2, r.stderr[-2000:]
    assert said == [f"error: {p}: train.checkpoint_every: expected an integer >= 1, got 0"]
    assert r.stdout == ""
    assert any(line.split("|")[-1].strip() == "dainet.params" for line in imports)   # the listing works
    assert not [line for line in imports if "jittor" in line]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["params.yaml"]        # nothing written


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_profiles_differ_only_in_the_keys_the_docs_list():
    """docs/profiles.md's key-by-key table is the whole difference of params.yaml and params/wider.yaml."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "docs" / "profiles.md").read_text()
    table = text.split("<!-- profile-diff:begin -->")[1].split("<!-- profile-diff:end -->")[0]
    listed = {}
    for row in table.strip().splitlines()[2:]:
        key, sample, paper = (c.strip().strip("`") for c in row.strip("|").split("|")[:3])
        listed[key] = (parse_yaml(sample, "docs/profiles.md"), parse_yaml(paper, "docs/profiles.md"))
    sample = _flat(parse_yaml((root / "params.yaml").read_text(), "params.yaml"))
    paper = _flat(parse_yaml((root / "params" / "wider.yaml").read_text(), "params/wider.yaml"))
    assert list(sample) == list(paper), "the two profiles hold the same keys in the same order"
    differ = {k: (sample[k], paper[k]) for k in sample if sample[k] != paper[k]}
    assert set(listed) == set(differ), (sorted(set(listed) ^ set(differ)))
    for k, values in differ.items():
        assert listed[k] == values, f"docs/profiles.md says {k}: {listed[k]}, the files hold {values}"


def test_write_overrides_changes_only_the_named_keys_and_refuses_unknown_ones(tmp_path):
    out = write_overrides(tmp_path / "p.yaml", {"train.lr": 5e-4, "model.width": 0.5})
    base, got = (parse_yaml(p.read_text(), str(p)) for p in (ROOT / "params.yaml", out))
    assert got["train"]["lr"] == 5e-4 and isinstance(got["train"]["lr"], float)
    assert got["model"]["width"] == 0.5
    base["train"]["lr"], base["model"]["width"] = 5e-4, 0.5
    assert got == base
    load_params(out)   # still a valid profile
    for bad in ("train.lrr", "nosuch.lr", "train.lr.x"):
        with pytest.raises(ParamError, match=f"has no key {bad}"):
            write_overrides(tmp_path / "q.yaml", {bad: 1})
    with pytest.raises(ParamError, match=r"nothing\.yaml: cannot read params file"):
        write_overrides(tmp_path / "q.yaml", {}, tmp_path / "nothing.yaml")
