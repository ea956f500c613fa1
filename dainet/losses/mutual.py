"""Mutual feature alignment (spec §5.5): temperature-scaled KL between pooled shallow features."""
from __future__ import annotations

from dainet.jt import jt, nn


def mutual_kl(g_s: jt.Var, g_t: jt.Var, T: float = 4.0) -> jt.Var:
    """KL_T(s, t) = T^2 / N * sum_{n,c} p_t (log p_t - log p_s), p = softmax(g / T) over C.

    ``g_s``, ``g_t``: [N, C] pooled features; neither is stopped (both directions are
    trained, as in the reference's symmetric sum).
    """
    log_p_s = nn.log_softmax(g_s / T, dim=1)
    log_p_t = nn.log_softmax(g_t / T, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum() * (T * T) / g_s.shape[0]


def mutual_loss(g_light: jt.Var, g_dark: jt.Var, g_light2: jt.Var, g_dark2: jt.Var,
                weight: float = 0.1, T: float = 4.0) -> jt.Var:
    """weight * (KL(light, dark) + KL(dark, light) + KL(light2, dark2) + KL(dark2, light2)).

    params: ``train.w_mutual``, ``train.kl_temperature``.
    """
    return weight * (mutual_kl(g_light, g_dark, T) + mutual_kl(g_dark, g_light, T)
                     + mutual_kl(g_light2, g_dark2, T) + mutual_kl(g_dark2, g_light2, T))
