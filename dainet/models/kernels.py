"""Four memory-bound layers as 2-thread CPU kernels: 2x2 max pooling, replicate padding,
nearest x2 upsampling, and a convolution's bias add with its ReLU.

Jittor runs its own CPU kernels on one thread. These run over the full-resolution
activations of the VGG stages, the decomposition net and the reflectance decoder
(``docs/speed.md``). Each is a ``jt.code`` op whose loop over planes is an OpenMP
``parallel for`` (Jittor compiles CPU code with ``-fopenmp``); threads never share an output plane, and each gives the values
and gradients of the Jittor expression it replaces bit for bit, so seeded runs keep their
digits. On a GPU (``jt.flags.use_cuda``) the Jittor expressions run.

A ReLU alone is not here: a 2-thread ReLU op is as exact on its own, but it stops Jittor
fusing the bias add and the bias gradient's reduction around it, which changes summation
orders and with them a seeded run's digits (measured: the sample run's losses from iteration
10). :func:`bias_relu` takes the bias add and the bias gradient with it, summed in Jittor's
order.

Shapes: inputs are NCHW ``[N, C, H, W]``; dtypes are kept.
"""
from __future__ import annotations

from dainet.jt import jt, nn

_HEADER = "#include <cstring>\n#include <algorithm>\nusing std::min; using std::max;\n"

def _pool_loop(pooled: str, planes: str, window: str) -> str:
    """C source of a loop over the planes (one (n, c) image each; 2 threads) and the 2x2 windows
    ``(i, j)`` of ``pooled`` (the pooled tensor's name): ``planes`` runs once per plane,
    ``window`` once per window, which covers rows ``r0, r1`` and columns ``c0, c1`` (cut at the
    border: ``r1 == r0`` on a last one-row window)."""
    return f"""
const int H = in0_shape2, W = in0_shape3, OH = {pooled}_shape2, OW = {pooled}_shape3;
#pragma omp parallel for
for (int nc = 0; nc < {pooled}_shape0 * {pooled}_shape1; nc++) {{
    const in0_type* x = in0_p + (size_t)nc * H * W;
{planes}
    for (int i = 0; i < OH; i++) {{
        const int r0 = 2 * i, r1 = min(r0 + 1, H - 1);
        for (int j = 0; j < OW; j++) {{
            const int c0 = 2 * j, c1 = min(c0 + 1, W - 1);
{window}
        }}
    }}
}}
"""


_POOL_FORWARD = _pool_loop("out", """\
    out_type* y = out_p + (size_t)nc * OH * OW;""", """\
            in0_type m = x[r0 * W + c0];
            m = max(m, x[r0 * W + c1]);
            m = max(m, x[r1 * W + c0]);
            y[i * OW + j] = max(m, x[r1 * W + c1]);""")
# The window's gradient goes to its first maximum in row-major order (PyTorch's MaxPool2d);
# each thread clears the gradient planes it accumulates into.
_POOL_BACKWARD = _pool_loop("pout", """\
    const pout_type* y = pout_p + (size_t)nc * OH * OW;
    const dout_type* dy = dout_p + (size_t)nc * OH * OW;
    out_type* dx = out_p + (size_t)nc * H * W;
    std::memset(dx, 0, sizeof(out_type) * H * W);""", """\
            const pout_type m = y[i * OW + j];
            const int k = x[r0 * W + c0] == m ? r0 * W + c0
                        : x[r0 * W + c1] == m ? r0 * W + c1
                        : x[r1 * W + c0] == m ? r1 * W + c0 : r1 * W + c1;
            dx[k] += dy[i * OW + j];""")


def max_pool2x2(x: jt.Var, out_h: int, out_w: int) -> jt.Var:
    """2x2 stride-2 max pool of ``x [N, C, H, W]`` into ``[N, C, out_h, out_w]`` on the CPU.

    Window ``(i, j)`` covers rows ``2i, 2i+1`` and columns ``2j, 2j+1``, cut at the border
    (``out_h = ceil(H / 2)`` keeps a last one-row window). The gradient of each window goes
    to its first maximum in row-major order. The caller chooses the output size
    (:class:`dainet.models.vgg.MaxPool2x2`) and handles CUDA.
    """
    n, c, h, w = x.shape
    if not (1 <= out_h <= (h + 1) // 2 and 1 <= out_w <= (w + 1) // 2):
        raise ValueError(f"max_pool2x2: output {out_h}x{out_w} does not fit an input of {h}x{w}")
    return jt.code([n, c, out_h, out_w], x.dtype, [x], cpu_header=_HEADER, cpu_src=_POOL_FORWARD,
                   cpu_grad_src=[_POOL_BACKWARD])


_PAD_FORWARD = """
const int H = in0_shape2, W = in0_shape3, P = (out_shape3 - W) / 2, OW = out_shape3;
#pragma omp parallel for
for (int nc = 0; nc < out_shape0 * out_shape1; nc++) {
    const in0_type* x = in0_p + (size_t)nc * H * W;
    out_type* y = out_p + (size_t)nc * out_shape2 * OW;
    for (int i = 0; i < out_shape2; i++) {
        const in0_type* row = x + (size_t)min(max(i - P, 0), H - 1) * W;
        out_type* o = y + (size_t)i * OW;
        for (int j = 0; j < P; j++) o[j] = row[0];
        std::memcpy(o + P, row, W * sizeof(out_type));
        for (int j = P + W; j < OW; j++) o[j] = row[W - 1];
    }
}
"""
# Each input pixel sums the output pixels that copy it, in row-major order over the output
# (each thread clears the gradient planes it accumulates into).
_PAD_BACKWARD = """
const int H = in0_shape2, W = in0_shape3, P = (dout_shape3 - W) / 2, OW = dout_shape3;
#pragma omp parallel for
for (int nc = 0; nc < dout_shape0 * dout_shape1; nc++) {
    const dout_type* dy = dout_p + (size_t)nc * dout_shape2 * OW;
    out_type* dx = out_p + (size_t)nc * H * W;
    std::memset(dx, 0, sizeof(out_type) * H * W);
    for (int i = 0; i < dout_shape2; i++) {
        const dout_type* g = dy + (size_t)i * OW;
        out_type* d = dx + (size_t)min(max(i - P, 0), H - 1) * W;
        for (int j = 0; j < OW; j++) d[min(max(j - P, 0), W - 1)] += g[j];
    }
}
"""


def replicate_pad(x: jt.Var, pad: int) -> jt.Var:
    """``x [N, C, H, W]`` -> ``[N, C, H + 2 pad, W + 2 pad]``, the border pixels repeated.

    ``nn.pad(x, (pad,) * 4, mode="replicate")``, as 2-thread CPU kernels (forward and
    backward); that expression on CUDA.
    """
    if jt.flags.use_cuda or pad == 0:
        return nn.pad(x, (pad, pad, pad, pad), mode="replicate") if pad else x
    n, c, h, w = x.shape
    return jt.code([n, c, h + 2 * pad, w + 2 * pad], x.dtype, [x], cpu_header=_HEADER,
                   cpu_src=_PAD_FORWARD, cpu_grad_src=[_PAD_BACKWARD])


# -Ofast (Jittor's kernel flags) may reassociate the four-term sum; Jittor's own gradient
# adds the four output pixels one by one in row-major order, and so does this.
_IN_ORDER = '#pragma GCC optimize("no-fast-math")\n'
_UP_FORWARD = """
const int H = in0_shape2, W = in0_shape3, OW = out_shape3;
#pragma omp parallel for
for (int nc = 0; nc < out_shape0 * out_shape1; nc++) {
    const in0_type* x = in0_p + (size_t)nc * H * W;
    out_type* y = out_p + (size_t)nc * 4 * H * W;
    for (int i = 0; i < H; i++) {
        out_type* o = y + (size_t)2 * i * OW;
        for (int j = 0; j < W; j++) o[2 * j] = o[2 * j + 1] = x[i * W + j];
        std::memcpy(o + OW, o, OW * sizeof(out_type));
    }
}
"""
_UP_BACKWARD = """
const int H = in0_shape2, W = in0_shape3, OW = dout_shape3;
#pragma omp parallel for
for (int nc = 0; nc < dout_shape0 * dout_shape1; nc++) {
    const dout_type* dy = dout_p + (size_t)nc * 4 * H * W;
    out_type* dx = out_p + (size_t)nc * H * W;
    for (int i = 0; i < H; i++) {
        const dout_type* a = dy + (size_t)2 * i * OW;
        const dout_type* b = a + OW;
        for (int j = 0; j < W; j++) {
            out_type s = a[2 * j];
            s += a[2 * j + 1];
            s += b[2 * j];
            s += b[2 * j + 1];
            dx[i * W + j] = s;
        }
    }
}
"""


_NEAREST = nn.Upsample(scale_factor=2, mode="nearest")


def upsample_nearest2x(x: jt.Var) -> jt.Var:
    """``x [N, C, H, W]`` -> ``[N, C, 2H, 2W]``, each pixel repeated 2x2.

    ``nn.Upsample(scale_factor=2, mode="nearest")``, as 2-thread CPU kernels (its gradient
    sums each 2x2 block in row-major order, as Jittor's does); that layer on CUDA.
    """
    if jt.flags.use_cuda:
        return _NEAREST(x)
    n, c, h, w = x.shape
    return jt.code([n, c, 2 * h, 2 * w], x.dtype, [x], cpu_header=_HEADER + _IN_ORDER,
                   cpu_src=_UP_FORWARD, cpu_grad_src=[_UP_BACKWARD])


class UpsampleNearest2x(nn.Module):
    """:func:`upsample_nearest2x` as a layer (no parameters)."""

    def execute(self, x: jt.Var) -> jt.Var:
        return upsample_nearest2x(x)


# relu(x + bias), as Jittor's ``nn.relu(y + b.broadcast(...))``: the float32 sum, then ``v > 0 ? v : 0``
_BIAS_RELU_FORWARD = """
const int C = out_shape1, HW = out_shape2 * out_shape3;
#pragma omp parallel for
for (int nc = 0; nc < out_shape0 * C; nc++) {
    const in0_type* x = in0_p + (size_t)nc * HW;
    const in1_type b = in1_p[nc % C];
    out_type* y = out_p + (size_t)nc * HW;
    for (int k = 0; k < HW; k++) {
        const out_type v = x[k] + b;
        y[k] = v > 0 ? v : 0;
    }
}
"""
# One pass over the gradient, 2 threads over channels: the ReLU's gradient (``dout`` where the
# output is positive, else 0) and the bias gradient, its sum over images and pixels. Jittor's
# reduce sums it one element at a time, image by image, in memory order, from 0; so does this
# (no-fast-math keeps the compiler from splitting the sum into vector lanes).
_BIAS_RELU_BACKWARD = """
const int N = in0_shape0, C = in0_shape1, HW = in0_shape2 * in0_shape3;
#pragma omp parallel for
for (int c = 0; c < C; c++) {
    out1_type sum = 0;
    for (int n = 0; n < N; n++) {
        const size_t o = ((size_t)n * C + c) * HW;
        const in0_type* y = in0_p + o;
        const in1_type* dy = in1_p + o;
        out0_type* dx = out0_p + o;
        for (int k = 0; k < HW; k++) {
            const out0_type g = y[k] > 0 ? dy[k] : 0;
            dx[k] = g;
            sum = sum + g;
        }
    }
    out1_p[c] = sum;
}
"""


class _BiasReLU(jt.Function):
    def execute(self, x: jt.Var, bias: jt.Var) -> jt.Var:
        self.out = jt.code(x.shape, x.dtype, [x, bias], cpu_header=_HEADER, cpu_src=_BIAS_RELU_FORWARD)
        return self.out

    def grad(self, dout: jt.Var):
        dx, dbias = jt.code([self.out.shape, [self.out.shape[1]]], [dout.dtype, dout.dtype], [self.out, dout],
                            cpu_header=_HEADER + _IN_ORDER, cpu_src=_BIAS_RELU_BACKWARD)
        return dx, dbias


def bias_relu(x: jt.Var, bias: jt.Var) -> jt.Var:
    """``relu(x + bias)`` for ``x [N, C, H, W]`` and ``bias [C]``, as 2-thread CPU kernels.

    Values and gradients are those of ``nn.relu(x + bias.broadcast(x.shape, [0, 2, 3]))`` bit
    for bit (tests/test_kernels.py), the bias gradient included; the forward keeps no mask
    (the backward reads the output), and the backward is one pass. That expression on CUDA.
    """
    if jt.flags.use_cuda:
        return nn.relu(x + bias.broadcast(x.shape, [0, 2, 3]))
    return _BiasReLU.apply(x, bias)
