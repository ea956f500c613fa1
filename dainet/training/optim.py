"""SGD with the parameter groups of spec §9 (and the reference's frozen L2Norm weights), and its resumable state."""
from __future__ import annotations

from dainet.jt import jt
import numpy as np

from dainet.models.layers import L2Norm
from dainet.weights import WeightError

REF_PREFIX = "ref."  # the reflectance decoder learns at lr * train.ref_lr_mult


def parameter_groups(net: jt.nn.Module, train_l2norm: bool) -> dict[str, list[tuple[str, jt.Var]]]:
    """``{"main": ..., "ref": ..., "frozen": ...}`` lists of (name, parameter).

    ``ref``: the reflectance decoder (``ref.*``). ``frozen``: the L2Norm weights when
    ``train_l2norm`` is False, as in the reference, whose optimiser groups leave them out
    (they stay at ``model.l2norm_scales``); their gradients still count in the clip norm.
    """
    l2norm = {id(m.weight) for m in net.modules() if isinstance(m, L2Norm)}
    groups = {"main": [], "ref": [], "frozen": []}
    for name, p in net.named_parameters():
        if name.startswith(REF_PREFIX):
            groups["ref"].append((name, p))
        elif id(p) in l2norm and not train_l2norm:
            groups["frozen"].append((name, p))
        else:
            groups["main"].append((name, p))
    return groups


OPTIMIZERS = ("sgd", "adamw")  # params train.optimizer


def make_optimizer(net: jt.nn.Module, kind: str, lr: float, ref_lr_mult: float, momentum: float,
                   weight_decay: float, train_l2norm: bool = False) -> jt.optim.Optimizer:
    """SGD (the paper) or AdamW (not in the paper) over :func:`parameter_groups`.

    ``main`` learns at lr, ``ref`` at lr * ``ref_lr_mult``, ``frozen`` at 0. The frozen group
    takes part in ``clip_grad_norm`` (as ``clip_grad_norm_(net.parameters())`` in the
    reference) but never moves: lr 0, no momentum, no weight decay. Each group's
    ``lr_mult`` tells :func:`set_lr` its share of the scheduled lr. AdamW uses
    ``momentum`` as beta1 (beta2 0.999) and decoupled ``weight_decay``.
    """
    mults = {"main": 1.0, "ref": ref_lr_mult, "frozen": 0.0}
    groups = []
    for key, members in parameter_groups(net, train_l2norm).items():
        if members:
            group = {"params": [p for _, p in members], "lr": lr * mults[key], "lr_mult": mults[key],
                     "name": key}
            if key == "frozen":
                group.update(weight_decay=0.0, **({"momentum": 0.0} if kind == "sgd" else {}))
            groups.append(group)
    if kind == "sgd":
        return jt.optim.SGD(groups, lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adamw":
        return jt.optim.AdamW(groups, lr, betas=(momentum, 0.999), weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {'|'.join(OPTIMIZERS)}, got {kind!r}")


def clip_grad_norm(opt: jt.optim.Optimizer, max_norm: float) -> None:
    """Scale every gradient by ``min(1, max_norm / (norm + 1e-6))``, ``norm`` the 2-norm of all
    gradients together, as torch's ``clip_grad_norm_`` and Jittor's ``Optimizer.clip_grad_norm``.

    The norm is summed gradient by gradient: Jittor's method first copies every gradient into
    one vector (90 MB at the paper's width) and reduces it in one thread, 3x the reference's
    clip-and-step time (bench/versus.py). Call after ``opt.backward``.
    """
    grads = [g for pg in opt.param_groups for p, g in zip(pg["params"], pg["grads"]) if not p.is_stop_grad()]
    if not grads:
        return
    norm = jt.sqrt(sum((g * g).sum() for g in grads))
    scale = jt.minimum(max_norm / (norm + 1e-6), 1.0)
    for g in grads:
        g.update(g * scale)


def set_lr(opt: jt.optim.SGD, lr: float) -> None:
    """The scheduled lr, times each group's ``lr_mult``."""
    opt.lr = lr
    for pg in opt.param_groups:
        pg["lr"] = lr * pg.get("lr_mult", 1.0)


_BUFFERS = ("values", "m")  # SGD: momentum in "values"; AdamW: exp_avg_sq in "values", exp_avg in "m"


def optimizer_state(opt: jt.optim.Optimizer) -> dict:
    """Every buffer per group (numpy), the step count and the current lr: all a resume needs."""
    return {"lr": float(opt.lr), "n_step": int(opt.n_step),
            "groups": [{"lr": float(pg["lr"]),
                        **{key: [v.numpy() for v in pg[key]] for key in _BUFFERS if key in pg}}
                       for pg in opt.param_groups]}


def load_optimizer_state(opt: jt.optim.Optimizer, state: dict, source: str) -> None:
    """Put :func:`optimizer_state` back; everything is checked first, so a misfit changes nothing."""
    try:
        groups = state["groups"]
        keys = [tuple(k for k in _BUFFERS if k in pg) for pg in opt.param_groups]
        fits = len(groups) == len(opt.param_groups) and not any(
            tuple(k for k in _BUFFERS if k in g) != ks or any(len(g[k]) != len(pg[k]) for k in ks)
            for g, pg, ks in zip(groups, opt.param_groups, keys))
        lr, n_step = float(state["lr"]), int(state.get("n_step", 0))
        group_lrs = [float(g["lr"]) for g in groups]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise WeightError(f"{source}: optimiser state is malformed") from None
    if not fits:
        raise WeightError(f"{source}: optimiser state does not fit this model and optimiser "
                          f"(different method, width or train.optimizer?)")
    for g, pg, ks in zip(groups, opt.param_groups, keys):
        for key in ks:
            for v, arr in zip(pg[key], g[key]):
                if tuple(v.shape) != tuple(np.shape(arr)):
                    raise WeightError(f"{source}: optimiser buffer of shape {np.shape(arr)} "
                                      f"does not fit a parameter of shape {tuple(v.shape)}")
    opt.lr, opt.n_step = lr, n_step
    for g, pg, ks, glr in zip(groups, opt.param_groups, keys, group_lrs):
        pg["lr"] = glr
        for key in ks:
            for v, arr in zip(pg[key], g[key]):
                v.update(jt.array(arr).stop_grad())
