"""State-dict names: find the state dict in a loaded file, rename keys, check the fit.

Published names (spec §13) are PyTorch ``state_dict`` keys: ``vgg.<i>.weight``,
``L2Normof1.weight``, ``fpn_fem.<i>.branch3.<j>.bias``, ... Our Jittor modules use the
same attribute names, so a DAI-Net checkpoint needs no renaming beyond dropping a
DataParallel ``module.`` prefix. The backbone file vgg16_reducedfc.pth holds the bare
VGG list (``<i>.weight|bias``) and becomes ``vgg.<i>.*`` with :func:`backbone_to_model`.

Public API (every ``source`` argument is the file name used in error messages):

* ``unwrap_state_dict(obj, source) -> dict[str, np.ndarray]``
* ``strip_prefix(state, prefix, source) -> dict``      (``"module."``)
* ``add_prefix(state, prefix) -> dict``
* ``backbone_to_model(state, source, prefix="vgg.") -> dict``
* ``check_state_dict(expected, given, source) -> None``   (one ``WeightError`` for all misfits)
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from dainet.weights import WeightError

WRAPPER_KEYS = ("state_dict", "weight")   # {'state_dict': sd, ...}, {'epoch': e, 'weight': sd}
BACKBONE_KEY = re.compile(r"^\d+\.(weight|bias)$")
MAX_LISTED = 12                            # names shown per kind of misfit


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f", ... {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def unwrap_state_dict(obj: Any, source: str) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict inside a loaded weights file.

    ``obj`` is a bare state dict, or a dict holding it under ``'state_dict'`` or
    ``'weight'`` (``{'epoch': 3, 'weight': sd}``) next to other entries, which are
    ignored. Raises ``WeightError`` when no such mapping of names to arrays is found.
    """
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise WeightError(f"{source}: no state dict found (the file holds a {type(obj).__name__})")
    if not obj:
        raise WeightError(f"{source}: the state dict is empty")
    bad = [f"{k!r}: {type(v).__name__}" for k, v in obj.items()
           if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise WeightError(f"{source}: not a state dict of named tensors; "
                          f"{len(bad)} entries are not: {_listing(bad)}")
    return dict(obj)


def strip_prefix(state: Mapping[str, Any], prefix: str, source: str) -> dict[str, Any]:
    """Drop ``prefix`` (e.g. DataParallel's ``"module."``) from every name.

    Unchanged when no name has it; a ``WeightError`` when only some names have it (a
    wrapper prefixes all of them, so a mix means an unexpected file).
    """
    having = [k for k in state if k.startswith(prefix)]
    if not having:
        return dict(state)
    if len(having) != len(state):
        lacking = [k for k in state if not k.startswith(prefix)]
        raise WeightError(f"{source}: {len(having)} names start with {prefix!r} but "
                          f"{len(lacking)} do not: {_listing(lacking)}")
    return {k[len(prefix):]: v for k, v in state.items()}


def add_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``{prefix + name: value}``, order kept."""
    return {prefix + k: v for k, v in state.items()}


def backbone_to_model(state: Mapping[str, Any], source: str, prefix: str = "vgg.") -> dict[str, Any]:
    """Names of the VGG backbone file (``<i>.weight|bias``) -> the model's ``vgg.<i>.*``.

    ``<i>`` is the index in the ``vgg`` layer list (spec §2, conv layers only); names
    that do not have this form raise ``WeightError`` (a wrong file, e.g. a full model).
    """
    bad = [k for k in state if not BACKBONE_KEY.match(k)]
    if bad:
        raise WeightError(f"{source}: not a backbone file of '<index>.weight|bias' names; "
                          f"{len(bad)} other names: {_listing(bad)}")
    return add_prefix(state, prefix)


def check_state_dict(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, Any],
                     source: str) -> None:
    """Raise one ``WeightError`` listing every missing, unexpected and mis-shaped name.

    ``expected``: the model's ``{name: shape}``; ``given``: ``{name: array}`` (anything
    with ``.shape``). Nothing is raised when names and shapes match exactly. Message::

        weights.pth does not fit the model: 2 missing (a, b), 1 unexpected (c),
        1 mis-shaped (vgg.0.weight: file (64, 3, 3, 3), model (16, 3, 3, 3))
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    misshaped = [f"{k}: file {tuple(given[k].shape)}, model {tuple(expected[k])}"
                 for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k])]
    parts = [f"{len(names)} {kind} ({_listing(names)})"
             for kind, names in (("missing", missing), ("unexpected", unexpected),
                                 ("mis-shaped", misshaped)) if names]
    if parts:
        raise WeightError(f"{source} does not fit the model: " + ", ".join(parts))
