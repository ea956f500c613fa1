"""Published weights -> the initial state dict of our model (stage ``convert_weights``).

:func:`convert_weights` is the stage (stages/convert_weights.py calls it): it picks the
kind and source, reads the file, builds the Jittor module (for its names, shapes and
dtypes, and for the seeded initialisation; Jittor is imported only then) and returns
the state dict the stage saves. The rest are pure functions on ``{name: array}`` dicts.
Three kinds of published file (names: spec §13):

* ``vgg`` -- the backbone file ``vgg16_reducedfc.pth`` (``<i>.weight|bias``): its
  tensors replace ``vgg.<i>.*`` of a seeded initialisation of the whole model
  (:func:`convert_backbone`), as spec §9 initialises DAI-Net for training.
* ``dainet`` -- a whole published DAI-Net checkpoint, possibly wrapped as
  ``{'epoch': ..., 'weight': sd}`` (unwrapped by :func:`dainet.weights.read_pth`)
  and/or saved from DataParallel (``module.`` prefix): :func:`convert_model`.
* ``resnet`` -- torchvision's ImageNet ``resnet{50,101,152}-*.pth`` (``conv1.*``, ``bn1.*``,
  ``layer<s>.<b>.*``, ``fc.*``), the init the published DSFD-ResNet training uses: its
  tensors replace ``resnet.*`` of the seeded model (:func:`convert_resnet`); the ImageNet
  classifier ``fc.*`` is left out.
* ``decomp`` -- the published ``decomp.pth`` of the Retinex decomposition network
  (``DecomNet.net1_conv0.*``, ...): :func:`convert_model` against the decomposer.

Every misfit -- a missing, unexpected or mis-shaped name, an incompatible dtype, a
NaN or infinity -- raises one :class:`~dainet.weights.WeightError` naming the file and
the tensors. Published weights exist only for the paper's channel widths, so
:func:`require_published_width` refuses any other ``model.width`` up front, with a
message that says so rather than a list of 190 mis-shaped tensors.

``reference`` arguments are the model's own state dict, ``{name: array-like}`` whose
values have ``.shape`` and ``.dtype`` (numpy arrays or Jittor Vars); only
:func:`convert_backbone` uses the values themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from dainet.params import Section
from dainet.weights import WeightError
from dainet.weights.names import add_prefix, backbone_to_model, check_state_dict, strip_prefix

KINDS = ("vgg", "resnet", "decomp", "dainet")     # published file kinds; "init" = no file
WIDTH_SCALED_KINDS = ("vgg", "resnet", "dainet")  # the decomposer does not follow model.width
PUBLISHED_WIDTH = 1.0                    # the paper network: every published tensor has its shape
DATAPARALLEL_PREFIX = "module."
BACKBONE_PREFIX = "vgg."
RESNET_PREFIX = "resnet."
IMAGENET_HEAD = ("fc.weight", "fc.bias")  # torchvision's classifier: not part of DSFD
BN_COUNTER = "num_batches_tracked"       # PyTorch BatchNorm's step counter: unused with a momentum
MAX_LISTED = 12
SEEDED = "init"                          # the kind recorded when no file is converted
INITS = ("xavier", "kaiming")            # params convert.backbone_init / neck_init

if TYPE_CHECKING:
    from dainet.models import ModelConfig


def require_published_width(width: float, where: str, source: str,
                            published_width: float = PUBLISHED_WIDTH) -> None:
    """Refuse converting ``source`` into a model of another channel width than the paper's.

    ``where`` names the setting in the message, e.g. ``"params.yaml: model.width"``.
    """
    if width != published_width:
        raise WeightError(f"{where} is {float(width)} but published weights need {float(published_width)}: "
                          f"set model.width: {float(published_width)} to convert {source}, or convert "
                          "no file (a seeded initialisation)")


def _dtype(value: Any) -> np.dtype:
    return np.dtype(str(value.dtype))    # a Jittor Var's dtype prints as its numpy name


def fit_to_reference(reference: Mapping[str, Any], given: Mapping[str, np.ndarray],
                     source: str) -> dict[str, np.ndarray]:
    """``given`` checked against the model and cast to its dtypes, in the model's order.

    Names and shapes must match exactly (one ``WeightError`` lists every misfit).
    Values are cast when numpy's ``same_kind`` rule allows (float64 -> float32) and
    must be finite: a NaN or infinity in published weights means a broken file.
    Returns C-contiguous arrays.
    """
    check_state_dict({k: tuple(v.shape) for k, v in reference.items()}, given, source)
    out, mistyped, non_finite = {}, [], []
    for name, ref in reference.items():
        value, dtype = np.asarray(given[name]), _dtype(ref)
        if not np.can_cast(value.dtype, dtype, casting="same_kind"):
            mistyped.append(f"{name}: file {value.dtype}, model {dtype}")
            continue
        out[name] = np.ascontiguousarray(value, dtype=dtype)
        if np.issubdtype(dtype, np.inexact) and not np.isfinite(out[name]).all():
            non_finite.append(name)
    if mistyped:
        raise WeightError(f"{source} does not fit the model: {len(mistyped)} with an incompatible "
                          f"dtype ({', '.join(mistyped[:MAX_LISTED])})")
    if non_finite:
        raise WeightError(f"{source}: {len(non_finite)} tensors hold NaN or infinite values "
                          f"({', '.join(non_finite[:MAX_LISTED])})")
    return out


def without_bn_counters(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` without PyTorch BatchNorm's ``<bn>.num_batches_tracked`` entries (our
    BatchNorm keeps no step counter: it matters only without a momentum)."""
    return {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] != BN_COUNTER}


def convert_model(reference: Mapping[str, Any], published: Mapping[str, np.ndarray],
                  source: str) -> dict[str, np.ndarray]:
    """A whole published network (DAI-Net, DSFD on a ResNet, or the decomposer) -> our state dict.

    ``published`` is the file's state dict as :func:`dainet.weights.read_pth` returns it
    (already unwrapped from ``{'epoch', 'weight'}``); a DataParallel ``module.`` prefix
    and BatchNorm step counters are dropped. The names are the same on both sides (spec
    §13, the published ``DSFD_resnet.py``), so nothing is renamed.
    """
    return fit_to_reference(reference, without_bn_counters(strip_prefix(published, DATAPARALLEL_PREFIX, source)),
                            source)


def convert_backbone(init: Mapping[str, np.ndarray], backbone: Mapping[str, np.ndarray],
                     source: str) -> dict[str, np.ndarray]:
    """The seeded initialisation ``init`` of the whole model with ``vgg.*`` from the backbone file.

    ``backbone``: ``vgg16_reducedfc.pth``'s state dict (``<i>.weight|bias``, ``<i>`` the
    conv indices of spec §2). It must supply exactly the model's ``vgg.*`` tensors; all
    other entries of ``init`` (extras, FPN, FEM, heads, L2Norm, ref) are kept as given.
    """
    renamed = backbone_to_model(strip_prefix(backbone, DATAPARALLEL_PREFIX, source), source,
                                BACKBONE_PREFIX)
    vgg = {k: v for k, v in init.items() if k.startswith(BACKBONE_PREFIX)}
    return {**init, **fit_to_reference(vgg, renamed, source)}


def convert_resnet(init: Mapping[str, np.ndarray], backbone: Mapping[str, np.ndarray],
                   source: str) -> dict[str, np.ndarray]:
    """The seeded initialisation ``init`` of DSFD-ResNet with ``resnet.*`` from torchvision's file.

    ``backbone``: torchvision's ``resnet{50,101,152}`` state dict (``conv1.weight``,
    ``layer1.0.bn1.running_mean``, ..., ``fc.weight``). Without ``fc.*`` and the BatchNorm
    step counters it must supply exactly the model's ``resnet.*`` tensors (one
    ``WeightError`` lists every misfit); extras, FPN, FEM and heads are kept as given.
    """
    state = without_bn_counters(strip_prefix(backbone, DATAPARALLEL_PREFIX, source))
    renamed = add_prefix({k: v for k, v in state.items() if k not in IMAGENET_HEAD}, RESNET_PREFIX)
    resnet = {k: v for k, v in init.items() if k.startswith(RESNET_PREFIX)}
    return {**init, **fit_to_reference(resnet, renamed, source)}


@dataclass(frozen=True)
class ConvertConfig:
    """Params ``convert``: the seeded initialisation and the published files to convert."""
    seed: int
    backbone_init: str        # INITS: the backbone's init when no backbone file is given
    neck_init: str            # INITS: extras / FPN / FEM convolutions
    zero_init_residual: bool  # a seeded ResNet bottleneck starts at its shortcut
    vgg_src: str              # "" = none
    resnet_src: str
    dainet_src: str

    def source(self) -> tuple[str, str]:
        """``(kind, file)``: a whole-network file wins over a backbone file (the schema allows
        only the backbone file of ``model.backbone``); ``(SEEDED, "")`` without either."""
        for kind, src in (("dainet", self.dainet_src), ("vgg", self.vgg_src), ("resnet", self.resnet_src)):
            if src:
                return kind, src
        return SEEDED, ""


def numpy_state(net) -> dict[str, np.ndarray]:
    return {name: var.numpy() for name, var in net.state_dict().items()}


def convert_state(kind: str, src: str, cfg: "ModelConfig", seed: int,
                  backbone_init: str = "kaiming", neck_init: str = "xavier",
                  zero_residual: bool = False) -> tuple[dict[str, np.ndarray], int]:
    """``(state dict, tensors taken from src)`` for one kind; the file is read before any model work."""
    # imported here, not at module level: Jittor loads (and may compile) only after the params passed
    from dainet.models import build_decomposer, build_model, init_weights
    from dainet.weights import read_pth

    reflectance = not cfg.resnet  # DAI-Net's ref.* on the VGG (DSFD's training drops it); none on a ResNet
    if kind == SEEDED:
        return numpy_state(init_weights(build_model(cfg, reflectance), seed, backbone_init, neck_init,
                                        zero_residual)), 0
    published = read_pth(src)     # refuses unsafe or corrupt files before anything else runs
    if kind == "decomp":
        state = convert_model(build_decomposer(cfg).state_dict(), published, src)
    elif kind == "dainet":
        state = convert_model(build_model(cfg, reflectance).state_dict(), published, src)
    else:
        convert = convert_backbone if kind == "vgg" else convert_resnet
        state = convert(numpy_state(init_weights(build_model(cfg, reflectance), seed, neck=neck_init)),
                        published, src)
    return state, len(published)


def convert_weights(params: Section, kind: str | None = None, src: str | None = None,
                    ) -> tuple[dict[str, np.ndarray], dict, int]:
    """The `convert_weights` stage: ``(state dict, record, tensors taken from src)``.

    ``kind`` and ``src`` (both or neither) name one published file; without them they
    come from params ``convert`` (:meth:`ConvertConfig.source`). ``record`` is what the
    checkpoint and the metrics hold besides the state: pretrained, kind, source, seed, width.
    """
    from dainet.models.config import ModelConfig   # no Jittor

    cfg = params.section("model").load(ModelConfig)
    convert = params.section("convert").load(ConvertConfig)
    kind, src = (kind, src) if kind else convert.source()
    if kind in WIDTH_SCALED_KINDS:
        require_published_width(cfg.width, f"{params.source}: model.width", src)
    state, loaded = convert_state(kind, src, cfg, convert.seed, convert.backbone_init, convert.neck_init,
                                  convert.zero_init_residual)
    record = {"pretrained": kind != SEEDED, "kind": kind, "source": src, "seed": convert.seed, "width": cfg.width}
    return state, record, loaded
