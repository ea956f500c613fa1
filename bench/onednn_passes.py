"""oneDNN's own account of a step: time and arithmetic rate per primitive, from ``ONEDNN_VERBOSE``.

The convolutions are most of the port's step (bench/versus.py). With ``ONEDNN_VERBOSE=1``
oneDNN prints one ``exec`` line per primitive run: kind, implementation, pass, memory
layouts, problem (``mb2_ic64oc64_ih320oh320kh3...``) and milliseconds. :func:`summarise`
groups them by (kind, implementation, pass) and gives a convolution's rate in GFLOP/s
(2 * mb * oc * ic / groups * oh * ow * kh * kw multiply-adds counted as two operations),
which shows how close to the machine's peak each pass runs and what the reorders between
Jittor's NCHW and oneDNN's blocked layouts cost.
"""
from __future__ import annotations

import re
from collections import defaultdict

_PROBLEM = re.compile(r"(?:g(?P<g>\d+))?mb(?P<mb>\d+)_ic(?P<ic>\d+)oc(?P<oc>\d+)_ih\d+oh(?P<oh>\d+)kh(?P<kh>\d+)"
                      r"\S*_iw\d+ow(?P<ow>\d+)kw(?P<kw>\d+)")


def conv_flops(problem: str) -> float:
    """Floating-point operations of one convolution pass, from oneDNN's problem string
    (``[gG]mbN_icCocO_ihHohHkhK..._iwWowWkwK...``, channels counted over all groups); 0 if it
    is not a 2-D convolution."""
    m = _PROBLEM.search(problem)
    if not m:
        return 0.0
    v = {k: int(x) for k, x in m.groupdict(default="1").items()}
    return 2.0 * v["mb"] * v["oc"] * v["ic"] / v["g"] * v["oh"] * v["ow"] * v["kh"] * v["kw"]


def summarise(stdout: str, steps: int) -> list[dict]:
    """Rows ``{kind, impl, pass, ms, calls, gflops}`` per step (totals divided by ``steps``,
    the number of steps the verbose output covers), largest time first. ``gflops`` is None
    for primitives other than convolutions."""
    ms, calls, flops = defaultdict(float), defaultdict(int), defaultdict(float)
    for line in stdout.splitlines():
        f = line.split(",")
        if len(f) < 8 or f[0] not in ("onednn_verbose", "dnnl_verbose") or f[1] != "exec":
            continue
        key = (f[3], f[4], f[5])
        ms[key] += float(f[-1])
        calls[key] += 1
        flops[key] += conv_flops(f[-2]) if f[3] == "convolution" else 0.0
    rows = [{"kind": k[0], "impl": k[1], "pass": k[2], "ms": ms[k] / steps, "calls": calls[k] / steps,
             "gflops": flops[k] / ms[k] / 1e6 if flops[k] and ms[k] else None} for k in ms]
    return sorted(rows, key=lambda r: -r["ms"])
