"""Every params.yaml key with its type and valid range: the one place values are checked.

:func:`dainet.params.load_params` runs :func:`problems` on the whole file, so every
stage refuses a bad value in *any* section before it does any work (and before Jittor
is imported)::

    params.yaml: train.checkpoint_every: expected an integer >= 1, got 0
    params.yaml: train.lerning_rate: unknown key (did you mean 'train.lr'?)

Keys a file leaves out are not an error here (test profiles hold only the sections
they use); the stage that reads a missing key reports it (``missing key 'train.lr'``).
A few rules need several keys (:func:`across_keys`); they are checked on the whole file
once every key they read has passed its own rule.
:meth:`dainet.params.Section.load` checks each value it reads against its rule here
(:func:`check`), so a section built without ``load_params`` is checked too. The
choices below repeat the code's constants; tests/test_params.py checks both agree.
"""
from __future__ import annotations

import difflib
import math
from typing import Any


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _fmt(x: float) -> str:
    return f"{x:g}"


class Rule:
    """One key's type and range. ``what`` reads after "expected", ``plural`` after "a list of N"."""
    what = "a value"
    plural = "values"

    def ok(self, v: Any) -> bool:
        raise NotImplementedError

    def problem(self, v: Any) -> str | None:
        """The message tail for a bad value (``expected ..., got ...``), None when it is good."""
        return None if self.ok(v) else f"expected {self.what}, got {v!r}"


class Int(Rule):
    def __init__(self, lo: int | None = None, hi: int | None = None, odd: bool = False):
        self.lo, self.hi, self.odd = lo, hi, odd
        kind = "odd integer" if odd else "integer"
        if lo is not None and hi is not None:
            bounds = f" in {lo}..{hi}"
        elif lo is not None:
            bounds = f" >= {lo}"
        else:
            bounds = ""
        self.what = f"an {kind}{bounds}"
        self.plural = f"{kind}s{bounds}"

    def ok(self, v):
        return (_is_int(v) and (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)
                and (not self.odd or v % 2 == 1))


class Num(Rule):
    """A finite number (an integer is one too); ``gt``/``ge`` and ``lt``/``le`` bound it."""

    def __init__(self, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, lt: float | None = None):
        self.lo, self.lo_open = (gt, True) if gt is not None else (ge, False)
        self.hi, self.hi_open = (lt, True) if lt is not None else (le, False)
        if self.lo is not None and self.hi is not None:
            bounds = (f" in {'(' if self.lo_open else '['}{_fmt(self.lo)}, "
                      f"{_fmt(self.hi)}{')' if self.hi_open else ']'}")
        elif self.lo is not None:
            bounds = f" {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
        elif self.hi is not None:
            bounds = f" {'<' if self.hi_open else '<='} {_fmt(self.hi)}"
        else:
            bounds = ""
        self.what, self.plural = f"a number{bounds}", f"numbers{bounds}"

    def problem(self, v):
        if _is_num(v) and not math.isfinite(v):
            return f"expected a finite {self.what[2:]}, got {v!r}"
        return super().problem(v)

    def ok(self, v):
        if not _is_num(v) or not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)


def Prob() -> Num:   # noqa: N802  (reads like a type in the tables below)
    return Num(ge=0, le=1)


class Bool(Rule):
    what, plural = "true or false", "booleans"

    def ok(self, v):
        return isinstance(v, bool)


class Str(Rule):
    """A string; ``empty=True``: "" and null (nothing given) are allowed too."""

    def __init__(self, empty: bool = False):
        self.empty = empty
        self.what = "a string" if empty else "a non-empty string"
        self.plural = "strings" if empty else "non-empty strings"

    def ok(self, v):
        if v is None:
            return self.empty
        return isinstance(v, str) and (self.empty or v != "")


class Choice(Rule):
    def __init__(self, *options: str):
        self.options = options
        self.what = "one of " + "|".join(options)
        self.plural = "names from " + "|".join(options)

    def ok(self, v):
        return isinstance(v, str) and v in self.options


class Either(Rule):
    def __init__(self, *rules: Rule):
        self.rules = rules
        self.what = " or ".join(r.what for r in rules)
        self.plural = " or ".join(r.plural for r in rules)

    def ok(self, v):
        return any(r.ok(v) for r in self.rules)


class List(Rule):
    """A list of ``item``s: exactly ``length`` of them, or at least ``min_len``."""

    def __init__(self, item: Rule, length: int | None = None, min_len: int = 0):
        self.item, self.length, self.min_len = item, length, min_len
        count = str(length) if length is not None else (f"{min_len} or more" if min_len else "any number of")
        self.what = f"a list of {count} {item.plural}"
        self.plural = f"lists of {count} {item.plural}"

    def ok(self, v):
        if not isinstance(v, list):
            return False
        if (self.length is not None and len(v) != self.length) or len(v) < self.min_len:
            return False
        return all(self.item.ok(x) for x in v)


class Pair(List):
    """``[low, high]`` with low <= high, both ``item``s."""

    def __init__(self, item: Rule):
        super().__init__(item, 2)
        self.what = f"[low, high] with low <= high, {item.plural}"
        self.plural = f"[low, high] pairs of {item.plural}"

    def ok(self, v):
        return super().ok(v) and v[0] <= v[1]


class Names(List):
    """A list of names from a fixed set (the message lists the unknown ones)."""

    def __init__(self, *options: str):
        super().__init__(Choice(*options))
        self.options = options

    def problem(self, v):
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            return f"expected a list of names from {', '.join(self.options)}, got {v!r}"
        unknown = [x for x in v if x not in self.options]
        return f"unknown {unknown}; choose from {', '.join(self.options)}" if unknown else None


class Matrices(Rule):
    """A 3x3 matrix of numbers, or (``stack=True``) a non-empty list of them."""

    def __init__(self, stack: bool = False):
        self.stack = stack
        self.what = "a list of 3x3 matrices of numbers" if stack else "a 3x3 matrix of numbers"

    @staticmethod
    def _matrix(m) -> bool:
        return (isinstance(m, list) and len(m) == 3
                and all(isinstance(r, list) and len(r) == 3 and all(Num().ok(x) for x in r) for r in m))

    def ok(self, v):
        if self.stack:
            return isinstance(v, list) and len(v) > 0 and all(self._matrix(m) for m in v)
        return self._matrix(v)


class Mapping(Rule):
    """A mapping of free names (e.g. difficulty levels) to values of one ``rule``."""

    def __init__(self, value: Rule, what: str):
        self.value, self.what = value, what

    def ok(self, v):
        return isinstance(v, dict) and len(v) > 0 and all(self.value.ok(x) for x in v.values())


class Rules(dict):
    """The rules of a params section: a mapping with fixed keys, ``{key: Rule or Rules}``."""


# ---------------------------------------------------------------------------------------
# The choices of the readers, repeated here so checking needs no Jittor import
# (tests/test_params.py compares them with the readers' own constants).
BACKBONES = ("vgg", "resnet50", "resnet101", "resnet152")  # dainet.models.config.BACKBONES
NORMS = ("none", "batch", "group")                       # dainet.models.config.NORMS
NORM_SCOPES = ("backbone", "all")                        # dainet.models.config.NORM_SCOPES
POOLS = ("M", "C")                                       # dainet.models.config.POOL, POOL_CEIL
HUE_ROUNDING = ("round", "truncate")                     # dainet.data.augment.*
ANCHOR_VALID = ("centre", "contained_or_iou")
ANCHOR_PAD = ("all_sides", "top_left")
ANCHOR_FALLBACK = ("original", "rescaled")
RESIZE_FILTERS = ("cv2", "cv2_antialias", "pil")
MIN_FACE_FILTER = ("final", "reference")
INITS = ("xavier", "kaiming")                            # dainet.weights.convert.INITS
METHODS = ("dainet", "dsfd")                             # dainet.training.config.TrainConfig
DSFD_INPUTS = ("dark", "clean")
DEVICES = ("auto", "cpu", "cuda")
BN_STREAMS = ("separate", "shared")                      # dainet.models.dainet.DAINet._shallow_streams
OPTIMIZERS = ("sgd", "adamw")                            # dainet.training.optim.OPTIMIZERS
LR_SCHEDULES = ("step", "cosine")
# visualize.feature_layers: x_shallow + dainet.models.dainet SOURCE_NAMES + ENHANCED_NAMES
FEATURE_LAYERS = ("x_shallow", "of1", "of2", "of3", "of4", "of5", "of6",
                  "ef1", "ef2", "ef3", "ef4", "ef5", "ef6")

N_LEVELS = 6          # detection layers of1..of6: one prior step and size each (spec §4)

POS = Num(gt=0)
NONNEG = Num(ge=0)
COUNT = Int(lo=0)
POS_INT = Int(lo=1)
SEED = Int(lo=0)
JPEG = Int(lo=1, hi=100)
IOU = Num(gt=0, le=1)

SCHEMA = Rules(
    sample=Rules(
        seed=SEED, n_train=COUNT, n_val=COUNT, n_dark=COUNT, n_events=POS_INT,
        image_side=Pair(Int(lo=16)), faces_per_image=Pair(COUNT), face_size=Pair(Num(ge=2)),
        zero_face_fraction=Prob(), distractors=Pair(COUNT), occlusion_prob=Prob(), blur_prob=Prob(),
        jpeg_quality=JPEG,
        difficulty=Mapping(List(NONNEG, 3), "a mapping of level -> [min height, max blur, max occlusion]"),
        dark=Rules(exposure=Pair(POS), gamma=Pair(POS), shot_noise=Pair(POS), read_noise=Pair(POS),
                     colour_cast=Num(ge=0, lt=1), jpeg_quality=Pair(JPEG)),
    ),
    data=Rules(
        wider_root=Str(), wider_gt_dir=Str(), darkface_root=Str(), train_list=Str(empty=True),
        max_missing_images=COUNT, max_bad_images=COUNT,
    ),
    model=Rules(
        backbone=Choice(*BACKBONES),
        width=POS, vgg_cfg=List(Either(POS_INT, Choice(*POOLS)), min_len=1), fc_channels=POS_INT,
        fc_dilation=POS_INT, extras_cfg=List(POS_INT, 4), l2norm_scales=List(POS, 3), l2norm_eps=POS,
        fem_dilation=POS_INT, num_classes=Int(lo=2), ref_channels=POS_INT, decomp_channels=POS_INT,
        decomp_kernel=Int(lo=1, odd=True), decomp_layers=POS_INT, norm=Choice(*NORMS),
        norm_group_size=POS_INT, norm_scope=Choice(*NORM_SCOPES),
    ),
    priors=Rules(
        steps=List(POS_INT, N_LEVELS), sizes_shot1=List(POS_INT, N_LEVELS),
        sizes_shot2=List(POS_INT, N_LEVELS), variances=List(POS, 2), clip=Bool(),
    ),
    darkisp=Rules(
        gamma=Pair(POS), red_gain=Pair(POS), blue_gain=Pair(POS), wb_scale_mean=POS, wb_scale_std=NONNEG,
        darkness_mean=Num(ge=0, le=1), darkness_std=POS, darkness_range=Pair(Num(ge=0, le=1)),
        shot_noise=Pair(POS), read_noise_slope=Num(), read_noise_intercept=Num(), read_noise_std=NONNEG,
        quant_bits=List(POS_INT, min_len=1), eps=POS,
        xyz2cams=Matrices(stack=True), rgb2xyz=Matrices(),
    ),
    augment=Rules(
        image_size=POS_INT, photometric_prob=Prob(), brightness_delta=Num(ge=0, le=1),
        contrast_range=Pair(NONNEG), saturation_range=Pair(NONNEG), hue_delta=Num(ge=0, le=255),
        hue_rounding=Choice(*HUE_ROUNDING), anchor_sampling_prob=Prob(),
        anchor_scales=List(POS_INT, min_len=1), crop_tries=POS_INT, pad_value=List(Num(ge=0, le=255), 3),
        anchor_face_plus_one=Bool(), anchor_valid=Choice(*ANCHOR_VALID), anchor_valid_iou=Prob(),
        anchor_pad=Choice(*ANCHOR_PAD), anchor_fallback=Choice(*ANCHOR_FALLBACK), anchor_clip_boxes=Bool(),
        ssd_crop_min_scale=Num(gt=0, le=1), ssd_crop_samplers=COUNT, ssd_crop_full_sampler=Bool(),
        resize_filters=Choice(*RESIZE_FILTERS), flip_prob=Prob(), min_face=NONNEG,
        min_face_filter=Choice(*MIN_FACE_FILTER), expand=Bool(), expand_prob=Prob(),
        expand_max_ratio=Num(ge=1),
    ),
    convert=Rules(
        seed=SEED, backbone_init=Choice(*INITS), neck_init=Choice(*INITS), zero_init_residual=Bool(),
        vgg_src=Str(empty=True), resnet_src=Str(empty=True), dainet_src=Str(empty=True),
    ),
    train_decomp=Rules(
        src=Str(empty=True), seed=SEED, iterations=COUNT, batch_size=POS_INT, image_size=POS_INT, lr=POS,
        w_recon_mutual=NONNEG, w_smooth=NONNEG, w_equal_r=NONNEG, smooth_edge=NONNEG, log_every=POS_INT,
        n_preview=POS_INT, preview_size=POS_INT,
    ),
    train=Rules(
        method=Choice(*METHODS), dsfd_input=Choice(*DSFD_INPUTS), device=Choice(*DEVICES),
        processes=POS_INT, mpi_hostfile=Str(empty=True), seed=SEED,
        batch_size=POS_INT, num_workers=COUNT, optimizer=Choice(*OPTIMIZERS), lr=POS,
        lr_reference_batch=POS_INT, ref_lr_mult=NONNEG, train_l2norm=Bool(), momentum=Num(ge=0, lt=1),
        weight_decay=NONNEG, lr_steps=List(POS_INT), lr_gamma=POS, warmup_iters=COUNT,
        lr_schedule=Choice(*LR_SCHEDULES), lr_final_fraction=Prob(), clean_warmup_iters=COUNT,
        max_iter=POS_INT, max_epochs=POS_INT, clip_grad_norm=POS, ema_decay=Num(ge=0, lt=1),
        bn_streams=Choice(*BN_STREAMS), match_iou=IOU, neg_pos_ratio=POS_INT,
        smooth_l1_beta=POS, w_enh=NONNEG, w_enh_equal_r=NONNEG, w_enh_smooth=NONNEG,
        w_enh_redecomp=NONNEG, w_mutual=NONNEG, kl_temperature=POS, smooth_edge=NONNEG,
        ssim_window=Int(lo=1, odd=True), ssim_sigma=POS, ssim_crop_border=Bool(),
        checkpoint_every=POS_INT, log_every=POS_INT, image_every=COUNT,   # image_every 0: no pictures
    ),
    predict=Rules(
        conf_thresh=Prob(), nms_thresh=IOU, top_k=POS_INT, keep_top_k=POS_INT, vote_iou=IOU,
        max_shrink_cap=POS, max_pixels_factor=POS, min_side=POS, max_side=POS,
        shrink_scales=List(POS, 2), enlarge_factor=Num(gt=1), enlarge_extra=POS,
        pyramid_scales=List(POS), base_scale=POS, single_scale=Bool(), max_skipped_images=COUNT,
    ),
    evaluate=Rules(
        iou_thresh=IOU, thresholds=POS_INT, darkface_xyxy_as_xywh=Bool(), max_missing_predictions=COUNT,
        bootstrap=COUNT, bootstrap_seed=SEED,
    ),
    visualize=Rules(
        n_images=POS_INT,
        score_thresh=NONNEG,   # above 1 draws the ground truth alone (tests/test_visualize.py)
        feature_layers=Names(*FEATURE_LAYERS), feature_channels=POS_INT,
    ),
)


# ---------------------------------------------------------------------------------------

def _initials(name: str) -> str:
    words = [w for w in name.split("_") if w]
    return "".join(w[0] for w in words) if len(words) > 1 else ""


def closest(name: str, known) -> str | None:
    """The known key a mistyped ``name`` most likely meant (``learning_rate`` -> ``lr`` too)."""
    known = list(known)
    for k in known:
        if k == _initials(name) or name == _initials(k):
            return k
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown(dotted: str, name: str, known, what: str) -> str:
    guess = closest(name, known)
    prefix = dotted[: len(dotted) - len(name)]
    hint = f" (did you mean '{prefix}{guess}'?)" if guess else ""
    return f"{dotted}: unknown {what}{hint}"


def smallest_input_side(vgg_cfg: list) -> int:
    """The smallest side of a square input that leaves every detection level of the
    network at least one cell (spec §2): the pools of ``vgg_cfg`` halve it, ``M``
    flooring and ``C`` (ceil_mode) rounding up; of1..of4 follow pools 2..5, and the
    strided extras convs (of5, of6) keep a side of 1 at 1. The paper's
    ``M, M, C, M, M`` gives 28 (:class:`dainet.boxes.priors.PriorSpec` computes the
    feature-map sizes the same way)."""
    side = 1
    for v in reversed(vgg_cfg):
        if v == "M":
            side *= 2
        elif v == "C":
            side = 2 * side - 1
    return side


def across_keys(data: dict) -> list[str]:
    """The rules across keys, each message naming the key it refuses. Only keys present in
    ``data`` and good by their own rule are compared (the others are reported as such).

    - ``augment.image_size`` >= :func:`smallest_input_side` of ``model.vgg_cfg`` (VGG
      backbone): a smaller training crop leaves a detection level without a cell, which
      training cannot use. A ResNet's stride-2 convs and pool keep a side of 1 at 1.
    - ``model.backbone`` a ResNet only with ``train.method: dsfd`` (DAI-Net's reflectance
      decoder is defined on VGG's conv1_2 features; the published code has no DAI-Net on a
      ResNet), and ``convert.vgg_src`` / ``convert.resnet_src`` only with their backbone.
    """
    def good(dotted: str):
        node: Any = data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node if rule(dotted).ok(node) else None

    found = []
    backbone = good("model.backbone")
    size, vgg_cfg = good("augment.image_size"), good("model.vgg_cfg")
    if backbone is not None and backbone != "vgg":
        if good("train.method") == "dainet":
            found.append(f"model.backbone: DAI-Net is defined on the VGG backbone only (its reflectance "
                         f"decoder reads VGG's conv1_2 features), got {backbone}; set train.method: dsfd "
                         f"for DSFD on a ResNet")
        if good("convert.vgg_src"):
            found.append(f"convert.vgg_src: a VGG backbone file for model.backbone {backbone}; "
                         f"give the torchvision ResNet file as convert.resnet_src")
    elif backbone == "vgg" and good("convert.resnet_src"):
        found.append("convert.resnet_src: a ResNet backbone file for model.backbone vgg; "
                     "give vgg16_reducedfc.pth as convert.vgg_src")
    if size is not None and vgg_cfg is not None and backbone in (None, "vgg"):
        side = smallest_input_side(vgg_cfg)
        if size < side:
            pools = ", ".join(v for v in vgg_cfg if isinstance(v, str))
            found.append(f"augment.image_size: expected an integer >= {side}, the smallest training crop "
                         f"that leaves every detection level at least one cell after the pools of "
                         f"model.vgg_cfg ({pools}), got {size!r}")
    return found


def problems(data: dict, schema: Rules = SCHEMA, path: str = "") -> list[str]:
    """Every problem of a params tree, each ``"<dotted key>: <what is wrong>"``, in file order;
    on the whole file (``schema`` :data:`SCHEMA`, no ``path``), then those across keys
    (:func:`across_keys`)."""
    found = []
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else str(key)
        rule = schema.get(key) if isinstance(key, str) else None
        if rule is None:
            found.append(_unknown(dotted, str(key), schema, "key" if path else "section"))
        elif isinstance(rule, Rules):
            if isinstance(value, dict):
                found += problems(value, rule, dotted)
            else:
                found.append(f"{dotted}: expected a mapping of keys, got {value!r}")
        elif isinstance(rule, Mapping) and isinstance(value, dict) and value and not rule.ok(value):
            found += [f"{dotted}.{name}: {rule.value.problem(item)}"
                      for name, item in value.items() if not rule.value.ok(item)]
        else:
            tail = rule.problem(value)
            if tail is not None:
                found.append(f"{dotted}: {tail}")
    if schema is SCHEMA and not path:
        found += across_keys(data)
    return found


def rule(dotted: str) -> Rule | Rules | None:
    """The rule of a dotted key (``"train.lr"``, ``"sample.dark"``), None when the schema has none."""
    node: Any = SCHEMA
    for part in dotted.split("."):
        if not isinstance(node, Rules) or part not in node:
            return None
        node = node[part]
    return node


def check(dotted: str, value: Any) -> list[str]:
    """The problems of one key's value, worded as :func:`problems` words them; [] when it is
    good or the schema has no rule for the key."""
    parent, _, key = dotted.rpartition(".")
    rules = rule(parent) if parent else SCHEMA
    if not isinstance(rules, Rules) or key not in rules:
        return []
    return problems({key: value}, rules, parent)
