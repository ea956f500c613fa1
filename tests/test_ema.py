"""The weight average (params ``train.ema_decay``): its arithmetic, the swap in and out,
and a resumed run that keeps it (the slow test trains on the tiny profile)."""
from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY, stage_main, write_params
from helpers import SELF_SIGNAL, run_dir, train_args

slow = pytest.mark.slow


def tiny_net(seed: int = 0):
    import jittor as jt
    jt.set_global_seed(seed)
    return jt.nn.Sequential(jt.nn.Conv2d(2, 3, 3), jt.nn.BatchNorm2d(3))


def set_state(net, scale: float) -> dict:
    """Give every float entry of the state (weights and BN statistics) new values; returns them."""
    values = {}
    for i, (k, v) in enumerate(sorted(net.state_dict().items())):
        a = (np.arange(int(np.prod(v.shape)), dtype=np.float32).reshape(v.shape) + i) * np.float32(scale)
        v.update(a)
        values[k] = a
    return values


def test_the_average_folds_with_the_ramped_rate_and_swaps_out_bit_for_bit():
    from dainet.training.ema import WeightAverage
    net = tiny_net()
    avg = WeightAverage(0.5)
    assert avg.rate(1) == pytest.approx(2 / 11) and avg.rate(100) == 0.5   # ramp, then the decay
    s1 = set_state(net, 1.0)
    avg.fold(net, 1)
    s2 = set_state(net, -3.0)
    avg.fold(net, 2)
    avg.fold(net, 2)                       # that state is in already: no-op
    with pytest.raises(RuntimeError, match="holds 2 updates, asked to fold update 4"):
        avg.fold(net, 4)
    d = np.float32(3 / 12)                 # rate(2)
    expected = {k: d * s1[k] + (np.float32(1) - d) * s2[k] for k in s1}
    for k, v in expected.items():
        np.testing.assert_allclose(avg.arrays[k], v, rtol=1e-6)
    assert not np.allclose(avg.arrays[k], s2[k])
    with avg.swapped_in(net):
        for k, v in net.state_dict().items():
            np.testing.assert_allclose(v.numpy(), expected[k], rtol=1e-6)
    assert all(np.array_equal(v.numpy(), s2[k]) for k, v in net.state_dict().items())
    again = WeightAverage(0.5)
    again.restore(avg.state(), "test")
    assert again.updates == 2 and all(np.array_equal(again.arrays[k], avg.arrays[k]) for k in expected)


def test_decay_out_of_range_is_a_params_error(tmp_path):
    from dainet.params import ParamError, load_params
    for bad in (1.0, -0.1):
        path = write_params(tmp_path / "p.yaml", {"train.ema_decay": bad})
        with pytest.raises(ParamError, match=r"train\.ema_decay: expected a number in \[0, 1\)"):
            load_params(path)


@slow
def test_the_exported_model_is_the_average_and_a_resumed_run_keeps_it(tmp_path, tiny_data, weights):  # noqa: F811
    from dainet.weights.checkpoint import load_checkpoint
    params = write_params(tmp_path / "ema.yaml", {**TINY, "train.ema_decay": 0.9})
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert stage_main("train")(train_args(tiny_data, weights, whole, params)) == 0
    last = load_checkpoint(run_dir(whole) / "last.ckpt")
    average, live = last["average"], last["model"]
    assert average["updates"] == TINY["train.max_iter"]
    exported = load_checkpoint(whole / "model.ckpt")["model"]     # the best (and only) validation: the end
    assert all(np.array_equal(exported[k], average["arrays"][k]) for k in live)
    assert any(not np.array_equal(exported[k], live[k]) for k in live)
    # stopped by a signal after iteration 3, then resumed: the same average, the same export
    args = train_args(tiny_data, weights, part, params)
    proc = subprocess.run([sys.executable, "-c", SELF_SIGNAL, "2", str(int(signal.SIGTERM)), *args], cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert load_checkpoint(run_dir(part) / "last.ckpt")["average"]["updates"] == 3
    assert stage_main("train")(args) == 0
    resumed = load_checkpoint(run_dir(part) / "last.ckpt")["average"]
    assert resumed["updates"] == average["updates"]
    diff = [k for k in live if not np.array_equal(resumed["arrays"][k], average["arrays"][k])]
    assert not diff, diff
    assert (part / "model.ckpt").read_bytes() == (whole / "model.ckpt").read_bytes()
