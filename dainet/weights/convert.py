"""Published weights -> the initial state dict of our model (stage ``convert_weights``).

Pure functions on ``{name: array}`` dicts; the stage reads the files, builds the
Jittor module (for its names, shapes and dtypes, and for the seeded initialisation)
and writes the checkpoint. Three kinds of published file (names: spec §13):

* ``vgg`` -- the backbone file ``vgg16_reducedfc.pth`` (``<i>.weight|bias``): its
  tensors replace ``vgg.<i>.*`` of a seeded initialisation of the whole model
  (:func:`convert_backbone`), as spec §9 initialises DAI-Net for training.
* ``dainet`` -- a whole published DAI-Net checkpoint, possibly wrapped as
  ``{'epoch': ..., 'weight': sd}`` (unwrapped by :func:`dainet.weights.read_pth`)
  and/or saved from DataParallel (``module.`` prefix): :func:`convert_model`.
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

from typing import Any, Mapping

import numpy as np

from dainet.weights import WeightError
from dainet.weights.names import backbone_to_model, check_state_dict, strip_prefix

KINDS = ("vgg", "decomp", "dainet")      # published file kinds; "init" = no file
WIDTH_SCALED_KINDS = ("vgg", "dainet")   # the decomposer does not follow model.width
PUBLISHED_WIDTH = 1.0                    # the paper network: every published tensor has its shape
DATAPARALLEL_PREFIX = "module."
BACKBONE_PREFIX = "vgg."
MAX_LISTED = 12


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


def convert_model(reference: Mapping[str, Any], published: Mapping[str, np.ndarray],
                  source: str) -> dict[str, np.ndarray]:
    """A whole published network (DAI-Net or the decomposer) -> our state dict.

    ``published`` is the file's state dict as :func:`dainet.weights.read_pth` returns it
    (already unwrapped from ``{'epoch', 'weight'}``); a DataParallel ``module.`` prefix
    is dropped. The names are the same on both sides (spec §13), so nothing is renamed.
    """
    return fit_to_reference(reference, strip_prefix(published, DATAPARALLEL_PREFIX, source), source)


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
