"""bench/onednn_passes.py reads oneDNN's verbose lines as oneDNN 2.6 (Debian's libdnnl) prints them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import onednn_passes  # noqa: E402

# exec records as one step of the paper network printed them (ONEDNN_VERBOSE=1; times rounded), among
# lines that are not exec records
LOG = """\
onednn_verbose,info,oneDNN v2.6.0 (commit N/A)
onednn_verbose,create:cache_miss,cpu,convolution,jit:avx2,forward_inference,src_f32::blocked:aBcd8b:f0 wei_f32::blocked:ABcd8b8a:f0 bia_undef::undef::f0 dst_f32::blocked:aBcd8b:f0,,alg:convolution_direct,mb2_ic64oc64_ih322oh320kh3sh1dh0ph0_iw322ow320kw3sw1dw0pw0,0.5
onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd:f0 dst_f32::blocked:Acdb8a:f0,,,64x4x9x9,5.97803
onednn_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src_f32::blocked:aBcd8b:f0 wei_f32::blocked:ABcd8b8a:f0 bia_undef::undef::f0 dst_f32::blocked:aBcd8b:f0,,alg:convolution_direct,mb2_ic64oc64_ih322oh320kh3sh1dh0ph0_iw322ow320kw3sw1dw0pw0,100.0
onednn_verbose,exec,cpu,convolution,jit:avx2,forward_inference,src_f32::blocked:aBcd8b:f0 wei_f32::blocked:ABcd8b8a:f0 bia_undef::undef::f0 dst_f32::blocked:aBcd8b:f0,,alg:convolution_direct,mb1_ic512oc512_ih40oh40kh3sh1dh0ph1_iw40ow40kw3sw1dw0pw1,50.0
onednn_verbose,exec,cpu,convolution,x64:gemm:jit,backward_weights,src_f32::blocked:abcd:f0 wei_f32::blocked:abcd:f0 bia_f32::blocked:a:f0 dst_f32::blocked:abcd:f0,,alg:convolution_direct,mb1_ic256oc85_ih80oh80kh3sh1dh2ph3_iw80ow80kw3sw1dw2pw3,40.0
[i 1207 03:00:00.000000 56 compiler.py:33] not a oneDNN line
{"mkl": true, "total": 4.4}
"""


def test_conv_flops_counts_two_operations_per_multiply_add():
    # 2 images, 64 -> 64 channels, 320 x 320 outputs, 3 x 3 taps
    assert onednn_passes.conv_flops("mb2_ic64oc64_ih322oh320kh3sh1dh0ph0_iw322ow320kw3sw1dw0pw0") == \
        2 * 2 * 64 * 64 * 320 * 320 * 9
    # a 2-group conv, 8 -> 8 channels, as oneDNN 2.6 printed it for Jittor's Conv2d(8, 8, 3, groups=2)
    assert onednn_passes.conv_flops("g2mb1_ic8oc8_ih6oh6kh3sh1dh0ph1_iw6ow6kw3sw1dw0pw1") == 2 * 8 * 4 * 6 * 6 * 9
    assert onednn_passes.conv_flops("64x4x9x9") == 0.0


def test_summarise_groups_exec_records_per_step_with_their_rate():
    rows = onednn_passes.summarise(LOG, steps=2)
    assert [(r["kind"], r["impl"], r["pass"]) for r in rows] == [
        ("convolution", "jit:avx2", "forward_inference"),
        ("convolution", "x64:gemm:jit", "backward_weights"),
        ("reorder", "jit:uni", "undef")]
    fwd, gemm, reorder = rows
    assert fwd["ms"] == pytest.approx(75.0) and fwd["calls"] == 1.0
    flops = 2 * 2 * 64 * 64 * 320 * 320 * 9 + 2 * 512 * 512 * 40 * 40 * 9
    assert fwd["gflops"] == pytest.approx(flops / 150.0 / 1e6)
    assert gemm["gflops"] == pytest.approx(2 * 85 * 256 * 80 * 80 * 9 / 40.0 / 1e6)
    assert reorder["gflops"] is None and reorder["ms"] == pytest.approx(5.97803 / 2)
