"""SGD with the two parameter groups of spec §9, and its resumable state."""
from __future__ import annotations

import jittor as jt
import numpy as np

from dainet.weights import WeightError

REF_PREFIX = "ref."  # the reflectance decoder learns at lr * train.ref_lr_mult


def make_sgd(net: jt.nn.Module, lr: float, ref_lr_mult: float, momentum: float,
             weight_decay: float) -> jt.optim.SGD:
    """Group 0: every parameter but the reflectance decoder; group 1: ``ref.*`` at lr * mult."""
    main, ref = [], []
    for name, p in net.named_parameters():
        (ref if name.startswith(REF_PREFIX) else main).append(p)
    groups = [{"params": main, "lr": lr}]
    if ref:
        groups.append({"params": ref, "lr": lr * ref_lr_mult})
    return jt.optim.SGD(groups, lr, momentum=momentum, weight_decay=weight_decay)


def set_lr(opt: jt.optim.SGD, lr: float, ref_lr_mult: float) -> None:
    opt.lr = lr
    opt.param_groups[0]["lr"] = lr
    for pg in opt.param_groups[1:]:
        pg["lr"] = lr * ref_lr_mult


def sgd_state(opt: jt.optim.SGD) -> dict:
    """Momentum buffers per group (numpy) and the current lr: all SGD needs to resume."""
    return {"lr": float(opt.lr),
            "groups": [{"lr": float(pg["lr"]), "momentum": [v.numpy() for v in pg["values"]]}
                       for pg in opt.param_groups]}


def load_sgd_state(opt: jt.optim.SGD, state: dict, source: str) -> None:
    groups = state["groups"]
    if len(groups) != len(opt.param_groups) or any(
            len(g["momentum"]) != len(pg["values"]) for g, pg in zip(groups, opt.param_groups)):
        raise WeightError(f"{source}: optimiser state does not fit this model "
                          f"(different method or width?)")
    opt.lr = state["lr"]
    for g, pg in zip(groups, opt.param_groups):
        pg["lr"] = g["lr"]
        for v, arr in zip(pg["values"], g["momentum"]):
            if tuple(v.shape) != tuple(np.shape(arr)):
                raise WeightError(f"{source}: momentum buffer of shape {np.shape(arr)} "
                                  f"does not fit a parameter of shape {tuple(v.shape)}")
            v.update(jt.array(arr).stop_grad())
